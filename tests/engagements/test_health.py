"""The system health check: rounds, answers (members and residents), results and suppression."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from html import unescape
from typing import Any

import pytest
import time_machine
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from engagements import digests, health, residents
from engagements.models import (
    Behaviour,
    BehaviourGroup,
    HealthResponse,
    HealthRound,
    HealthScore,
    Membership,
    SharedLink,
)
from engagements.services import Refused
from tests.conftest import verified_client
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db

BEHAVIOURS = Behaviour.values


def answers(score: Any = 7, **overrides: Any) -> dict[str, Any]:
    """What the answer form posts: every behaviour scored ``score``, no comments."""
    data: dict[str, Any] = {}
    for behaviour in BEHAVIOURS:
        data[f"score_{behaviour}"] = score
        data[f"comment_{behaviour}"] = ""
    data.update(overrides)
    return data


def scores(value: int = 7, **overrides: int) -> dict[str, tuple[int, str]]:
    """What the services take: behaviour → (score, comment)."""
    return {b: (overrides.get(b, value), "") for b in BEHAVIOURS}


def open_round(world: Any, *, cycle: Any = None, **options: Any) -> HealthRound:
    health_round, _link = health.round_open(
        engagement=world.engagement,
        cycle=cycle,
        by=world.personas.facilitator,
        title=options.pop("title", "Spring round"),
        **options,
    )
    return health_round


def with_link(world: Any, *, cycle: Any = None) -> tuple[HealthRound, SharedLink, str]:
    health_round, made = health.round_open(
        engagement=world.engagement,
        cycle=cycle,
        by=world.personas.facilitator,
        title="With residents",
        resident_link=True,
    )
    assert made is not None
    link, token = made
    return health_round, link, token


def residents_answer(link: SharedLink, count: int, value: int = 7) -> None:
    for _ in range(count):
        health.resident_answer_submit(
            link_id=link.pk, submission_key=uuid.uuid4(), answers=scores(value)
        )


def members(world: Any, count: int, role: str, organisation: Any = None) -> list[Any]:
    organisation = organisation or world.personas.org_a
    return [
        MembershipFactory(
            user=UserFactory(username=f"{role}.{organisation.pk}.{i}"),
            organisation=organisation,
            role=role,
        ).user
        for i in range(count)
    ]


def members_answer(health_round: HealthRound, people: list[Any], value: int, perspective: str):
    for person in people:
        health.answer_save(
            health_round=health_round, by=person, perspective=perspective, answers=scores(value)
        )


def url(name: str, *args: Any) -> str:
    return reverse(f"engagements:{name}", args=args)


def page(response: Any) -> str:
    return response.content.decode()


# --- opening, answering, closing --------------------------------------------------------------


def test_a_facilitator_opens_a_round_and_is_told_what_happens_next(world):
    client = verified_client(world.personas.facilitator)
    form = client.get(url("health_round_open", world.engagement.public_id))
    assert form.status_code == 200
    assert "What happens next" in page(form)
    assert "Nobody is emailed" in page(form)

    response = client.post(
        url("health_round_open", world.engagement.public_id), {"title": "  Spring   round "}
    )
    health_round = HealthRound.objects.get()
    assert response.status_code == 302
    assert response["Location"] == url("health_round", health_round.public_id)
    assert (health_round.title, health_round.cycle, health_round.closed) == (
        "Spring round",
        None,
        None,
    )
    assert health_round.opened_by == world.personas.facilitator
    shown = client.get(response["Location"], follow=True)
    assert "Round opened." in page(shown)
    assert "Close the round now" in page(shown)
    assert not SharedLink.objects.exists()  # no resident link unless asked for


def test_members_answer_once_and_change_their_answer_while_the_round_is_open(world):
    p = world.personas
    health_round = open_round(world)
    client = verified_client(p.manager_a)
    form = client.get(url("health_answer", health_round.public_id))
    assert form.status_code == 200
    assert "These scores are for discussion, never a target." in page(form)
    assert "Your answers count as: Manager" in page(form)
    for group in BehaviourGroup.labels:
        assert f'<legend class="health-group__legend">{group}</legend>' in page(form)

    posted = answers(7, comment_dialogue="We argue well now.")
    response = client.post(url("health_answer", health_round.public_id), posted)
    assert response.status_code == 302
    response = client.post(url("health_answer", health_round.public_id), answers(3))
    assert response.status_code == 302

    answer = HealthResponse.objects.get()
    assert (answer.respondent, answer.perspective) == (p.manager_a, "manager")
    assert sorted(answer.scores.values_list("score", flat=True)) == [3] * 9
    again = client.get(url("health_answer", health_round.public_id))
    assert "Your earlier answers are filled in." in page(again)
    assert again.context["form"].initial["score_dialogue"] == 3


def test_the_perspective_comes_from_the_role(world):
    p = world.personas
    cycle_round = open_round(world, cycle=world.cycle_a)
    engagement_round = open_round(world, title="Everyone")
    expected = {
        (p.manager_a, cycle_round): "manager",
        (p.practitioner_a, cycle_round): "practitioner",
        (p.facilitator, cycle_round): "learning_partner",
        (p.manager_b, engagement_round): "manager",
        (p.practitioner_a, engagement_round): "practitioner",
    }
    for (person, health_round), perspective in expected.items():
        response = verified_client(person).post(
            url("health_answer", health_round.public_id), answers(5)
        )
        assert response.status_code == 302
        stored = HealthResponse.objects.get(round=health_round, respondent=person)
        assert stored.perspective == perspective, person


def test_closing_ends_answers_and_closing_twice_says_so_plainly(world):
    p = world.personas
    health_round = open_round(world)
    client = verified_client(p.facilitator)

    closed = client.post(url("health_close", health_round.public_id), follow=True)
    assert closed.status_code == 200
    assert "Round closed." in page(closed)
    health_round.refresh_from_db()
    assert health_round.closed is not None
    assert health_round.closed_by == p.facilitator
    first_close = health_round.closed

    twice = client.post(url("health_close", health_round.public_id), follow=True)
    assert twice.status_code == 200
    assert "This round was already closed on" in page(twice)
    health_round.refresh_from_db()
    assert health_round.closed == first_close
    with pytest.raises(health.AlreadyClosed):
        health.round_close(health_round=health_round, by=p.facilitator)

    member = verified_client(p.manager_a)
    late = member.post(
        url("health_answer", health_round.public_id),
        answers(6, comment_feedback="Kept for me"),
    )
    assert late.status_code == 200
    assert "This round closed on" in page(late)
    assert "Kept for me" in page(late)
    assert not HealthResponse.objects.exists()
    assert member.get(url("health_answer", health_round.public_id)).status_code == 302


def test_a_last_day_for_answers_stops_answers_after_it(world):
    p = world.personas
    with time_machine.travel(datetime(2026, 3, 2, 12, tzinfo=UTC)):
        health_round = open_round(world, closes_on=datetime(2026, 3, 5).date())
        health.answer_save(
            health_round=health_round, by=p.manager_a, perspective="manager", answers=scores()
        )
    with time_machine.travel(datetime(2026, 3, 6, 12, tzinfo=UTC)):
        with pytest.raises(health.RoundClosed, match="stopped taking answers after 5 March 2026"):
            health.answer_save(
                health_round=health_round, by=p.manager_a, perspective="manager", answers=scores()
            )
        facilitator = verified_client(p.facilitator)
        shown = page(facilitator.get(url("health_round", health_round.public_id)))
        assert "Answers closed on 5 March 2026" in shown
        assert "the round is still open until a facilitator closes it" in shown
        assert "Nothing closes the round by itself: you can still close it below" in shown
        assert "Close the round now" in shown
        member = verified_client(p.manager_a)
        seen = page(member.get(url("health_round", health_round.public_id)))
        assert "Answers closed on 5 March 2026" in seen
        assert "A facilitator closes the round when the group is ready" in seen
        assert "Change your answers" not in seen
        listed = page(member.get(url("health_rounds", world.engagement.public_id)))
        assert (
            "answers closed on 5 Mar 2026, waiting for a facilitator to close the round" in listed
        )
        assert url("health_answer", health_round.public_id) not in listed

        # No job closes it: the facilitator still can, once.
        closed = facilitator.post(url("health_close", health_round.public_id), follow=True)
        assert "Round closed." in page(closed)
        assert "Answers closed on" not in page(closed)
    health_round.refresh_from_db()
    assert health_round.closed is not None


def test_one_round_of_a_scope_is_open_at_a_time(world):
    client = verified_client(world.personas.facilitator)
    open_round(world)
    response = client.post(url("health_round_open", world.engagement.public_id), {"title": "Two"})
    assert response.status_code == 200
    assert "A round is already open here. Close it before opening another." in page(response)
    assert HealthRound.objects.count() == 1
    # A cycle's round is another scope.
    response = client.post(
        url("cycle_health_round_open", world.cycle_a.public_id), {"title": "Cycle A"}
    )
    assert response.status_code == 302
    listing = client.get(url("health_rounds", world.engagement.public_id))
    assert "The round “Spring round” is open." in page(listing)


# --- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("posted", "message"),
    [
        ({"score_devolved": "0"}, "Scores go from 1 to 10: choose one of them for"),
        ({"score_devolved": "11"}, "Scores go from 1 to 10: choose one of them for"),
        ({"score_devolved": "seven"}, "Scores go from 1 to 10: choose one of them for"),
        ({"score_devolved": "7.5"}, "Scores go from 1 to 10: choose one of them for"),
        ({"score_devolved": ""}, "Choose a score from 1 to 10 for"),
        ({"score_devolved": "\x00"}, "Scores go from 1 to 10: choose one of them for"),
        ({"comment_devolved": "a\x00b"}, "Null characters are not allowed."),
        ({"comment_devolved": "x" * 1001}, "Keep the comment on “Decision-making is devolved”"),
    ],
)
def test_bad_scores_are_explained_and_the_other_answers_kept(world, posted, message):
    health_round = open_round(world)
    data = answers(4, comment_feedback="My words stay", **posted)
    response = verified_client(world.personas.manager_a).post(
        url("health_answer", health_round.public_id), data
    )
    assert response.status_code == 200
    html = page(response)
    assert message in html
    assert "“Decision-making is devolved”" in html
    assert "My words stay" in html
    assert re.search(r'name="score_feedback" value="4"[^>]*checked', html)  # kept as chosen
    assert not HealthResponse.objects.exists()


def test_a_missing_score_field_and_junk_fields_do_not_break_the_form(world):
    health_round = open_round(world)
    data = answers(4)
    del data["score_leadership"]
    data.update(organisation="x", perspective="resident", respondent="1")
    response = verified_client(world.personas.manager_a).post(
        url("health_answer", health_round.public_id), data
    )
    assert response.status_code == 200
    assert "Choose a score from 1 to 10 for “Leadership is collaborative" in page(response)

    response = verified_client(world.personas.manager_a).post(
        url("health_answer", health_round.public_id), answers(4, perspective="resident")
    )
    assert response.status_code == 302
    assert HealthResponse.objects.get().perspective == "manager"  # posted extras are ignored


@pytest.mark.parametrize(
    ("posted", "message"),
    [
        ({"title": ""}, "Give the round a title."),
        ({"title": "   "}, "Give the round a title."),
        ({"title": "x", "closes_on": "2020-01-01"}, "The last day for answers cannot be before"),
        ({"title": "x", "closes_on": "2026-02-31"}, "Enter a real date, for example 2026-06-30."),
        (
            {"title": "x", "closes_on": "9999-12-31", "resident_link": "on"},
            "The last day for answers can be at most a year from today.",
        ),
        ({"title": "x" * 201}, "Ensure this value has at most 200 characters"),
    ],
)
def test_opening_with_bad_input_is_explained(world, posted, message):
    response = verified_client(world.personas.facilitator).post(
        url("health_round_open", world.engagement.public_id), posted
    )
    assert response.status_code == 200
    assert message in page(response)
    assert not HealthRound.objects.exists()


def test_the_service_refuses_what_the_form_would(world):
    health_round = open_round(world)
    person = world.personas.manager_a
    for bad in ({**scores(), "dialogue": (0, "")}, {"dialogue": (5, "")}, scores(11)):
        with pytest.raises(Refused, match="Give every behaviour a score from 1 to 10"):
            health.answer_save(
                health_round=health_round, by=person, perspective="manager", answers=bad
            )
    with pytest.raises(Refused):
        health.round_open(
            engagement=world.engagement, by=person, title="x", cycle=_other_engagement_cycle(world)
        )


def _other_engagement_cycle(world: Any) -> Any:
    from tests.factories import cycle_for, engagement_with

    p = world.personas
    other = engagement_with(
        learning_partner=p.learning_partner, facilitator=p.facilitator, partners=[p.org_a]
    )
    return cycle_for(other, p.org_a, p.manager_a)


# --- residents through the link -----------------------------------------------------------------


def test_residents_answer_through_the_link_once_per_submission(world):
    p = world.personas
    facilitator = verified_client(p.facilitator)
    opened = facilitator.post(
        url("cycle_health_round_open", world.cycle_a.public_id),
        {"title": "With residents", "resident_link": "on"},
    )
    health_round = HealthRound.objects.get()
    round_page = facilitator.get(opened["Location"])
    new_url = round_page.context["new_url"]
    assert new_url in page(round_page)
    assert "Copy it now" in page(round_page)
    assert "new_url" not in facilitator.get(opened["Location"]).context  # shown once
    token = new_url.rsplit("/r/", 1)[1]
    link = SharedLink.objects.get()
    assert (link.health_round, link.cycle) == (health_round, None)

    resident = Client()
    landing = resident.get(f"/r/{token}")
    assert landing.status_code == 302
    assert landing["Location"] == "/r/health/"
    form = resident.get("/r/health/")
    assert form.status_code == 200
    for header, value in [
        ("Referrer-Policy", "no-referrer"),
        ("X-Robots-Tag", "noindex, nofollow"),
    ]:
        assert form[header] == value
        assert landing[header] == value
    assert "no-store" in form["Cache-Control"]
    html = page(form)
    assert token not in html
    assert "These scores are for discussion, never a target." in html
    initial = form.context["form"].initial
    data = answers(
        8,
        submission_key=str(initial["submission_key"]),
        link_ref=initial["link_ref"],
        comment_shared_power="Nobody asks us.",
    )

    first = resident.post("/r/health/", data)
    second = resident.post("/r/health/", data)  # a double click
    for response in (first, second):
        assert response.status_code == 200
        assert "Thank you: your answers are saved" in page(response)
    answer = HealthResponse.objects.get()
    assert (answer.respondent, answer.perspective, answer.shared_link) == (None, "resident", link)
    assert answer.scores.get(behaviour="shared_power").comment == "Nobody asks us."
    link.refresh_from_db()
    assert link.submissions == 1
    assert link.last_used is not None

    # Another time through the same link is another answer.
    fresh = resident.get("/r/health/").context["form"].initial
    resident.post(
        "/r/health/",
        answers(2, submission_key=str(fresh["submission_key"]), link_ref=fresh["link_ref"]),
    )
    assert HealthResponse.objects.count() == 2

    facilitator.post(url("health_close", health_round.public_id))
    assert Client().get(f"/r/{token}").status_code == 410
    late_key = resident.get("/r/health/")
    assert late_key.status_code == 410
    late = resident.post("/r/health/", {**data, "submission_key": str(uuid.uuid4())})
    assert late.status_code == 410
    assert "This health check closed on" in page(late)
    assert "Nobody asks us." in page(late)  # their words are still on the page
    assert HealthResponse.objects.count() == 2


def test_two_copies_of_one_resident_post_at_once_store_one_answer(world):
    _round, link, _token = with_link(world)
    key = uuid.uuid4()
    first = health.resident_answer_submit(link_id=link.pk, submission_key=key, answers=scores())
    again = health.resident_answer_submit(link_id=link.pk, submission_key=key, answers=scores(1))
    assert (first[1], again[1]) == (True, False)
    assert first[0].pk == again[0].pk
    assert set(HealthScore.objects.values_list("score", flat=True)) == {7}


def resident_form(token: str, score: int, **comments: str) -> tuple[Client, dict[str, Any]]:
    """A resident's browser (security checks on) with the round's form open, and what the
    form posts when they send it."""
    resident = Client(enforce_csrf_checks=True)
    resident.get(f"/r/{token}")
    initial = resident.get("/r/health/").context["form"].initial
    data = answers(
        score,
        submission_key=str(initial["submission_key"]),
        link_ref=initial["link_ref"],
        **comments,
    )
    return resident, data


def test_a_resident_whose_page_aged_gets_their_answers_back(world):
    _round, _link, token = with_link(world)
    resident, data = resident_form(token, 6, comment_devolved="Decisions are made far away.")

    # The security token is missing (an old tab): the form comes back with their answers.
    refused = resident.post("/r/health/", data)
    assert refused.status_code == 403
    assert "Decisions are made far away." in page(refused)
    assert "press “Send my answers” once more" in page(refused)
    assert not HealthResponse.objects.exists()
    again = refused.context["form"].data
    assert again["submission_key"] != data["submission_key"]
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page(refused))
    assert csrf is not None
    sent = resident.post("/r/health/", {**again.dict(), "csrfmiddlewaretoken": csrf[1]})
    assert sent.status_code == 200
    assert "Thank you: your answers are saved" in page(sent)
    assert HealthResponse.objects.get().scores.get(behaviour="devolved").score == 6

    # The resident cookie expired while they answered: the answers come back to send again.
    stranger = Client()
    resumed = stranger.post(
        "/r/health/",
        {
            **answers(9, comment_feedback="Still here"),
            "submission_key": str(uuid.uuid4()),
            "link_ref": data["link_ref"],
        },
    )
    assert resumed.status_code == 200
    assert "Still here" in page(resumed)
    assert "once more" in page(resumed)
    assert HealthResponse.objects.count() == 1
    resent = stranger.post("/r/health/", resumed.context["form"].data)
    assert "Thank you: your answers are saved" in page(resent)
    assert HealthResponse.objects.count() == 2


def test_a_failed_security_check_after_the_round_closed_keeps_the_answers_and_says_why(world):
    health_round, _link, token = with_link(world)
    resident, data = resident_form(token, 4, comment_dialogue="We talk past each other.")
    health.round_close(health_round=health_round, by=world.personas.facilitator)

    refused = resident.post("/r/health/", data)  # an old tab: no security token
    assert refused.status_code == 410
    assert "This health check closed on" in page(refused)
    assert "We talk past each other." in page(refused)
    assert not HealthResponse.objects.exists()

    # Posted from another site, nothing comes back: the plain security page.
    forged = resident.post("/r/health/", data, headers={"Sec-Fetch-Site": "cross-site"})
    assert forged.status_code == 403
    assert "We talk past each other." not in page(forged)


def test_a_busy_link_keeps_the_residents_answers_and_says_to_wait(world, settings):
    settings.RESIDENT_SUBMIT_LIMIT = 1
    _round, _link, token = with_link(world)
    resident = Client()
    resident.get(f"/r/{token}")

    def send(comment: str) -> Any:
        initial = resident.get("/r/health/").context["form"].initial
        data = answers(
            5,
            submission_key=str(initial["submission_key"]),
            link_ref=initial["link_ref"],
            comment_leadership=comment,
        )
        return resident.post("/r/health/", data)

    assert send("First").status_code == 200
    busy = send("Second, kept")
    assert busy.status_code == 429
    assert int(busy["Retry-After"]) > 0
    assert "Many people are answering right now." in page(busy)
    assert "Second, kept" in page(busy)
    assert HealthResponse.objects.count() == 1


def test_without_a_link_a_resident_is_told_to_open_it_again_with_their_comments(world):
    response = Client().post("/r/health/", answers(5, comment_dialogue="Please keep this"))
    assert response.status_code == 400
    assert "Open your link again" in page(response)
    assert "Please keep this" in page(response)
    assert Client().get("/r/health/").status_code == 200


def test_a_health_link_never_reaches_the_reflection_form(world):
    _round, link, token = with_link(world)
    resident = Client()
    resident.get(f"/r/{token}")
    assert resident.get("/r/").status_code == 200  # "open your link again", not the form
    link_ref = resident.get("/r/health/").context["form"].initial["link_ref"]
    posted = resident.post("/r/", {"text": "Hello", "consent": "on", "link_ref": link_ref})
    assert posted.status_code == 400
    with pytest.raises(Refused):
        residents.submit(
            link_id=link.pk,
            submission_key=uuid.uuid4(),
            text="Through the wrong door",
            identity="anonymous",
            first_name="",
            better_or_worse="",
            feeling="",
            principles=[],
            follow_up_email="",
            language="en",
        )
    reflection_link, _token = residents.link_create(
        cycle=world.cycle_a, by=world.personas.manager_a, label="Reflections"
    )
    with pytest.raises(Refused, match="This link has closed"):
        health.resident_answer_submit(
            link_id=reflection_link.pk, submission_key=uuid.uuid4(), answers=scores()
        )


def test_a_link_is_for_a_cycle_or_a_round_never_both_nor_neither(world):
    from django.db import IntegrityError, transaction

    health_round = open_round(world)
    for fields in ({}, {"cycle": world.cycle_a, "health_round": health_round}):
        with pytest.raises(IntegrityError), transaction.atomic():
            residents.link_create(by=world.personas.facilitator, label="x", **fields)


# --- results and suppression --------------------------------------------------------------------


def test_four_residents_are_not_shown_and_five_are(world):
    health_round, link, _token = with_link(world)
    residents_answer(link, 4, value=6)
    client = verified_client(world.personas.facilitator)
    html = page(client.get(url("health_round", health_round.public_id)))
    assert "4 people have answered." in html
    # While answers come in, the page shows a count only: a figure that moved after one answer
    # would tell anyone watching what that person said.
    assert "The results appear once answers close." in html
    assert "Answers by perspective" not in html
    results = health.round_results(health_round)
    assert results.suppressed
    assert all(g.median is None for g in results.headline.groups)
    assert all(b.spread is None for g in results.groups for b in g.behaviours)
    resident_row = next(p for p in results.perspectives if p.perspective == "resident")
    assert resident_row.suppressed
    assert resident_row.median is None

    residents_answer(link, 1, value=8)
    html = page(client.get(url("health_round", health_round.public_id)))
    assert "How many gave each score" not in html
    health.round_close(health_round=health_round, by=world.personas.facilitator)
    results = health.round_results(health_round)
    assert not results.suppressed
    assert [g.median for g in results.headline.groups] == [6.0, 6.0, 6.0]
    spread = results.groups[0].behaviours[0].spread
    assert spread is not None
    assert (spread.minimum, spread.median, spread.maximum) == (6, 6, 8)
    assert spread.counts == (0, 0, 0, 0, 0, 4, 0, 1, 0, 0)
    html = page(client.get(url("health_round", health_round.public_id)))
    assert "5 people have answered." in html
    assert "How many gave each score" in html
    assert (
        "fewer than 5 answered" not in html.split("Answers by perspective")[1].split("</table>")[0]
    )


def test_a_perspective_with_fewer_than_five_shows_no_figures(world):
    health_round, link, _token = with_link(world)
    residents_answer(link, 5, value=8)
    practitioners = members(world, 2, Membership.Role.PRACTITIONER)
    members_answer(health_round, practitioners, 2, "practitioner")

    results = health.round_results(health_round)
    shown = {p.perspective: p for p in results.groups[0].behaviours[0].perspectives}
    assert shown["resident"].median == 8
    assert shown["resident"].respondents == 5
    assert shown["practitioner"].suppressed
    assert shown["practitioner"].median is None
    assert shown["manager"].nobody
    assert results.groups[0].behaviours[0].gap is None  # one perspective shown: no gap
    # The two practitioners are in no figure at all: knowing the five residents' answers (the
    # link's holder could have sent them) must not let anyone read theirs back.
    spread = results.groups[0].behaviours[0].spread
    assert spread is not None
    assert spread.counts == (0, 0, 0, 0, 0, 0, 0, 5, 0, 0)
    assert results.headline.respondents == 7
    assert [g.median for g in results.headline.groups] == [8.0, 8.0, 8.0]
    health.round_close(health_round=health_round, by=world.personas.facilitator)
    html = page(
        verified_client(world.personas.manager_a).get(url("health_round", health_round.public_id))
    )
    assert "fewer than 5 answered" in html
    assert "nobody answered" in html
    # The two practitioners' number must not follow from the 7 in all minus the 5 residents:
    # a perspective of nobody is counted "fewer than 5" with them.
    counts = {p.perspective: shown for p, shown in results.answer_counts}
    assert counts == {
        "practitioner": "fewer",
        "manager": "fewer",
        "resident": "shown",
        "learning_partner": "nobody",
    }


def test_a_lone_small_perspective_takes_the_next_smallest_count_with_it(world):
    """No perspective of nobody to hide it with: the smallest other count is not given."""
    health_round, link, _token = with_link(world)
    residents_answer(link, 6, value=8)
    members_answer(health_round, members(world, 6, Membership.Role.PRACTITIONER), 6, "practitioner")
    members_answer(health_round, members(world, 5, Membership.Role.MANAGER), 5, "manager")
    partners = [world.personas.facilitator]
    members_answer(health_round, partners, 9, "learning_partner")
    health.round_close(health_round=health_round, by=world.personas.facilitator)

    counts = {p.perspective: shown for p, shown in health.round_results(health_round).answer_counts}
    assert counts == {
        "practitioner": "shown",
        "manager": "withheld",
        "resident": "shown",
        "learning_partner": "fewer",
    }
    html = page(
        verified_client(world.personas.manager_a).get(url("health_round", health_round.public_id))
    )
    assert re.search(r'data-answers="manager">not given, so that a smaller number', html)
    assert re.search(r'data-answers="resident">6<', html)
    assert "18 people have answered" in html


def test_seven_answers_in_perspectives_of_fewer_than_five_show_no_figures(world):
    health_round, link, _token = with_link(world)
    residents_answer(link, 4, value=8)
    members_answer(health_round, members(world, 3, Membership.Role.MANAGER), 3, "manager")
    HealthScore.objects.filter(response__perspective="manager").update(comment="Only us three")
    results = health.round_results(health_round)
    assert results.headline.respondents == 7
    assert results.suppressed
    assert all(g.median is None for g in results.headline.groups)
    assert all(b.comments == () for g in results.groups for b in g.behaviours)


def test_the_gap_between_perspectives_and_comments_without_names(world):
    health_round, link, _token = with_link(world)
    residents_answer(link, 5, value=8)
    managers = members(world, 5, Membership.Role.MANAGER)
    for person in managers:
        health.answer_save(
            health_round=health_round,
            by=person,
            perspective="manager",
            answers={**scores(3), "devolved": (5, f"Comment number {len(person.username)}")},
        )

    results = health.round_results(health_round)
    power = next(g for g in results.groups if g.figure.group == "power")
    devolved = next(b for b in power.behaviours if b.behaviour == "devolved")
    assert devolved.gap is not None
    assert (devolved.gap.size, devolved.gap.high.perspective, devolved.gap.low.perspective) == (
        3.0,
        "resident",
        "manager",
    )
    largest = results.headline.largest_gap
    assert largest is not None
    assert largest[1].size == 5.0
    assert len(devolved.comments) == 5
    health.round_close(health_round=health_round, by=world.personas.facilitator)
    html = page(
        verified_client(world.personas.practitioner_a).get(
            url("health_round", health_round.public_id)
        )
    )
    assert "Comment number" in html
    for person in managers:
        assert person.username not in html


def test_the_change_since_the_last_closed_round_of_the_same_scope(world):
    p = world.personas
    with time_machine.travel(datetime(2026, 1, 10, tzinfo=UTC)):
        first, link, _ = with_link(world, cycle=world.cycle_a)
        residents_answer(link, 5, value=4)
        health.round_close(health_round=first, by=p.facilitator)
        # Another scope's round is not "the last round" of this one.
        other = open_round(world, title="Engagement-wide")
        members_answer(other, members(world, 5, "manager"), 9, "manager")
    with time_machine.travel(datetime(2026, 4, 10, tzinfo=UTC)):
        second, link, _ = with_link(world, cycle=world.cycle_a)
        residents_answer(link, 5, value=7)

    results = health.round_results(second)
    assert results.headline.previous_title == first.title
    assert [g.change for g in results.headline.groups] == [3.0, 3.0, 3.0]
    assert {b.change for g in results.groups for b in g.behaviours} == {3.0}
    health.round_close(health_round=second, by=p.facilitator)
    html = page(verified_client(p.manager_a).get(url("health_round", second.public_id)))
    assert "Change since “With residents”" in html
    assert "+3" in html
    assert all(g.change is None for g in health.round_results(first).headline.groups)


def test_no_change_is_shown_against_a_round_with_fewer_than_five(world):
    p = world.personas
    with time_machine.travel(datetime(2026, 1, 10, tzinfo=UTC)):
        first, link, _ = with_link(world)
        residents_answer(link, 3, value=4)
        health.round_close(health_round=first, by=p.facilitator)
    second, link, _ = with_link(world)
    residents_answer(link, 5, value=7)
    headline = health.round_results(second).headline
    assert headline.previous_suppressed
    assert all(g.change is None for g in headline.groups)
    health.round_close(health_round=second, by=p.facilitator)
    client = verified_client(p.facilitator)
    html = page(client.get(url("health_round", second.public_id)))
    assert "fewer than 5 answered last time" in html
    html = page(client.get(url("health_round", first.public_id)))
    assert "Fewer than 5 people have answered, so no figures or comments are shown" in html


def test_results_take_the_same_queries_with_5_and_200_answers(world):
    health_round, link, _token = with_link(world)
    residents_answer(link, 5, value=5)
    health.round_close(health_round=health_round, by=world.personas.facilitator)
    client = verified_client(world.personas.facilitator)
    target = url("health_round", health_round.public_id)

    def counted() -> tuple[int, int, int]:
        with CaptureQueriesContext(connection) as results:
            health.round_results(health_round)
        with CaptureQueriesContext(connection) as trend:
            health.trends([world.engagement.pk])
        with CaptureQueriesContext(connection) as shown:
            assert client.get(target).status_code == 200
        return len(results), len(trend), len(shown)

    few = counted()
    _bulk_answers(health_round, 195)
    assert HealthResponse.objects.count() == 200
    assert counted() == few
    assert few[0] <= 3
    assert few[1] == 2


def _bulk_answers(health_round: HealthRound, count: int) -> None:
    perspectives = ["resident", "practitioner", "manager", "learning_partner"]
    made = HealthResponse.objects.bulk_create(
        [HealthResponse(round=health_round, perspective=perspectives[i % 4]) for i in range(count)]
    )
    HealthScore.objects.bulk_create(
        [
            HealthScore(response=r, behaviour=b, score=1 + (i + j) % 10, comment=f"c{i}")
            for i, r in enumerate(made)
            for j, b in enumerate(BEHAVIOURS)
        ]
    )


# --- the dashboard and the digest read the same figures -----------------------------------------


def test_trends_give_each_round_in_order_with_the_same_figures_as_its_page(world):
    p = world.personas
    with time_machine.travel(datetime(2026, 1, 10, tzinfo=UTC)):
        early, link, _ = with_link(world, cycle=world.cycle_a)
        residents_answer(link, 5, value=4)
        health.round_close(health_round=early, by=p.facilitator)
    with time_machine.travel(datetime(2026, 2, 10, tzinfo=UTC)):
        b_round = open_round(world, cycle=world.cycle_b, title="Warm spaces round")
        members_answer(b_round, [p.manager_b], 9, "manager")
        health.round_close(health_round=b_round, by=p.facilitator)
    late, link, _ = with_link(world)
    residents_answer(link, 6, value=6)
    assert [h.public_id for h in health.trends([world.engagement.pk])][-1] != late.public_id
    health.round_close(health_round=late, by=p.facilitator)

    found = health.trends([world.engagement.pk])
    assert [h.title for h in found] == ["With residents", "Warm spaces round", "With residents"]
    assert [h.public_id for h in found] == [early.public_id, b_round.public_id, late.public_id]
    assert found[1].suppressed
    assert all(g.median is None for g in found[1].groups)
    assert found[2].groups == health.round_results(late).headline.groups
    assert found[2].cycle_public_id is None
    assert found[0].cycle_title == world.cycle_a.title

    mine = health.trends([world.engagement.pk], cycle_ids=[world.cycle_a.pk])
    assert [h.public_id for h in mine] == [early.public_id, late.public_id]
    theirs = health.trends([world.engagement.pk], organisation_id=p.org_b.pk)
    assert [h.public_id for h in theirs] == [b_round.public_id]


def test_the_digest_reports_rounds_closed_in_its_period_with_the_same_figures(world):
    p = world.personas
    start = datetime(2026, 3, 2, tzinfo=UTC)
    end = start + timedelta(days=7)
    with time_machine.travel(start + timedelta(days=1)):
        shown, link, _ = with_link(world, cycle=world.cycle_a)
        residents_answer(link, 5, value=6)
        health.round_close(health_round=shown, by=p.facilitator)
        few = open_round(world, title="Few answers")
        members_answer(few, [p.manager_a], 8, "manager")
        health.round_close(health_round=few, by=p.facilitator)
    with time_machine.travel(end + timedelta(days=1)):
        later = open_round(world, cycle=world.cycle_b, title="Next week")
        health.round_close(health_round=later, by=p.facilitator)

    content = digests.compile_engagement_digest(world.engagement, start, end)
    items = content["health_checks"]
    assert [item["round"] for item in items] == [str(shown.public_id), str(few.public_id)]
    assert items[1]["suppressed"]
    assert items[1]["respondents"] == 1
    assert all(g["median"] is None for g in items[1]["groups"])
    assert json_safe(items)

    digest, _ = digests.store(
        scope="engagement",
        owner_id=world.engagement.pk,
        period=digests.latest_period("weekly", "Europe/London", end + timedelta(days=1)),
        content=content,
    )
    view = digests.present(digest)
    assert view.has_news
    assert view.health_checks[0].groups == health.round_results(shown).headline.groups
    text = [str(item) for item in view.health_checks]
    assert "With residents (Hospital discharge), closed 3 March 2026: 5 answered." in text[0]
    assert "Perspective 6" in text[0]
    assert "Fewer than 5 answered, so no figures are shown." in text[1]
    html = page(verified_client(p.facilitator).get(url("digest", digest.public_id)))
    assert "With residents (Hospital discharge)" in html

    # A reader who cannot see cycle A does not read its round in their own digest.
    reader_view = digests.present(digest, reader=p.manager_b)
    assert [h.title for h in reader_view.health_checks] == ["Few answers"]


def json_safe(value: Any) -> bool:
    import json

    return json.loads(json.dumps(value)) == value


def test_the_threshold_is_the_digests_one():
    assert health.MIN_RESPONDENTS == digests.MIN_CONTRIBUTORS == 5


# --- who gets in --------------------------------------------------------------------------------


def _health_urls(engagement_round: HealthRound, cycle_round: HealthRound, world: Any):
    e, c = world.engagement.public_id, world.cycle_a.public_id
    return {
        "engagement": [
            ("get", url("health_rounds", e), False),
            ("get", url("health_round", engagement_round.public_id), False),
            ("get", url("health_round", engagement_round.public_id), True),
            ("get", url("health_answer", engagement_round.public_id), False),
        ],
        "cycle": [
            ("get", url("cycle_health_rounds", c), False),
            ("get", url("health_round", cycle_round.public_id), False),
            ("get", url("health_round", cycle_round.public_id), True),
            ("get", url("health_answer", cycle_round.public_id), False),
            ("post", url("health_answer", cycle_round.public_id), False),
        ],
        "facilitators": [
            ("get", url("health_round_open", e), False),
            ("post", url("health_round_open", e), False),
            ("get", url("cycle_health_round_open", c), False),
            ("post", url("cycle_health_round_open", c), False),
            ("post", url("health_close", cycle_round.public_id), False),
            ("post", url("health_close", engagement_round.public_id), False),
        ],
    }


def test_outsiders_and_other_organisations_get_404_on_every_health_url(world):
    from engagements.models import AuditEvent

    p = world.personas
    engagement_round = open_round(world, title="Everyone")
    cycle_round = open_round(world, cycle=world.cycle_a, title="Cycle A only")
    urls = _health_urls(engagement_round, cycle_round, world)
    refused = {
        p.outsider: urls["engagement"] + urls["cycle"] + urls["facilitators"],
        p.manager_b: urls["cycle"] + urls["facilitators"],
        p.manager_a: urls["facilitators"],
    }
    for person, targets in refused.items():
        client = verified_client(person)
        for method, target, htmx in targets:
            headers = {"HX-Request": "true", "HX-Target": "health-results"} if htmx else {}
            response = getattr(client, method)(target, headers=headers)
            assert response.status_code == 404, (person, method, target)
        denied = AuditEvent.objects.filter(action="access.denied", actor=person).count()
        assert denied == len(targets), person
    for method, target, htmx in urls["engagement"]:
        headers = {"HX-Request": "true", "HX-Target": "health-results"} if htmx else {}
        assert (
            getattr(verified_client(p.manager_b), method)(target, headers=headers).status_code
            == 200
        )
    assert not HealthResponse.objects.exists()
    assert HealthRound.objects.filter(closed=None).count() == 2


def test_the_results_refresh_as_an_htmx_partial(world):
    health_round, link, _ = with_link(world)
    residents_answer(link, 2)
    response = verified_client(world.personas.manager_a).get(
        url("health_round", health_round.public_id),
        headers={"HX-Request": "true", "HX-Target": "health-results"},
    )
    assert response.status_code == 200
    html = page(response)
    assert html.lstrip().startswith('<section id="health-results"')
    assert "2 people have answered." in html
    assert "<html" not in html


def _score_table_captions(html: str) -> list[str]:
    """The captions of the per-behaviour score tables, as a screen reader's table list has them."""
    return [
        unescape(re.sub(r"\s+", " ", caption)).strip()
        for caption in re.findall(
            r'<table class="health-spread">\s*<caption>(.*?)</caption>', html, re.S
        )
    ]


def test_each_score_table_is_captioned_with_its_behaviour(world):
    # Nine tables called "How many gave each score" cannot be told apart in a screen reader's
    # list of tables (WCAG 1.3.1, 2.4.6): each caption names its behaviour.
    health_round, link, _ = with_link(world)
    residents_answer(link, 5)
    health.round_close(health_round=health_round, by=world.personas.facilitator)
    html = page(
        verified_client(world.personas.manager_a).get(url("health_round", health_round.public_id))
    )
    captions = _score_table_captions(html)
    assert len(captions) == len(BEHAVIOURS) == 9
    assert len(set(captions)) == 9, captions
    shown = [b.behaviour for g in health.round_results(health_round).groups for b in g.behaviours]
    for caption, behaviour in zip(captions, shown, strict=True):
        assert caption == f"How many gave each score: {Behaviour(behaviour).label}"
    assert html.count("<caption>How many gave each score</caption>") == 0


def _count_region(html: str) -> tuple[str, str]:
    """The attributes and the content of the element that holds the count of answers."""
    found = re.search(r'<span id="health-count"([^>]*)>(.*?)</span>', html, re.S)
    assert found, "the count has its container"
    return found.group(1), found.group(2)


def test_the_refreshed_count_is_announced_from_a_region_that_stays_in_the_page(world):
    # WCAG 4.1.3: the count the link refreshes is a status message. The live region must be on
    # the element that stays in the page (a region swapped in with the new content is not
    # announced), and the link must not be swapped away, or keyboard focus falls to the page.
    health_round, link, _ = with_link(world)
    residents_answer(link, 2)
    client = verified_client(world.personas.manager_a)
    html = page(client.get(url("health_round", health_round.public_id)))
    attributes, content = _count_region(html)
    assert 'role="status"' in attributes
    assert 'aria-atomic="true"' in attributes
    assert "2 people have answered." in content
    assert "Show the latest count" not in content  # the link is outside the region
    refresh = re.search(r'<a id="health-count-refresh"([^>]*)>Show the latest count</a>', html)
    assert refresh, "the refresh link is in the page, with an id"
    assert 'hx-target="#health-count"' in refresh.group(1)
    assert 'hx-swap="innerHTML"' in refresh.group(1)  # the region's content, never the region
    assert "hx-trigger" not in html  # refreshed when asked, never polled

    residents_answer(link, 1)
    response = client.get(
        url("health_round", health_round.public_id),
        headers={"HX-Request": "true", "HX-Target": "health-count"},
    )
    assert response.status_code == 200
    swapped = page(response)
    assert swapped.strip() == "3 people have answered."
    for attribute in ('id="health-count"', "role=", "aria-live", "aria-atomic", "<a "):
        assert attribute not in swapped

    # Answers closed since the page opened: the refreshed count says so and leads to the results.
    health.round_close(health_round=health_round, by=world.personas.facilitator)
    swapped = page(
        client.get(
            url("health_round", health_round.public_id),
            headers={"HX-Request": "true", "HX-Target": "health-count"},
        )
    )
    assert "3 people have answered. Answers have closed since this page opened." in swapped
    assert f'<a href="{url("health_round", health_round.public_id)}">Show the results</a>' in (
        swapped
    )
    # Once closed, the page has no refresh link and no live region: nothing changes any more.
    html = page(client.get(url("health_round", health_round.public_id)))
    attributes, content = _count_region(html)
    assert "role=" not in attributes
    assert "aria-atomic" not in attributes
    assert content.strip() == "3 people have answered."
    assert "health-count-refresh" not in html
    assert "hx-get" not in html


def test_the_pages_link_to_the_health_check(world):
    client = verified_client(world.personas.manager_a)
    assert url("health_rounds", world.engagement.public_id) in page(
        client.get(url("engagement", world.engagement.public_id))
    )
    assert url("cycle_health_rounds", world.cycle_a.public_id) in page(
        client.get(url("cycle", world.cycle_a.public_id))
    )


def test_round_pages_carry_no_inline_script_or_style(world):
    health_round, link, token = with_link(world)
    residents_answer(link, 5)
    client = verified_client(world.personas.facilitator)
    pages = [
        client.get(url("health_rounds", world.engagement.public_id)),
        client.get(url("health_round_open", world.engagement.public_id)),
        client.get(url("health_round", health_round.public_id)),
        client.get(url("health_answer", health_round.public_id)),
    ]
    resident = Client()
    resident.get(f"/r/{token}")
    pages.append(resident.get("/r/health/"))
    for response in pages:
        html = page(response)
        assert response.status_code == 200
        assert "style=" not in html
        assert "<script>" not in html


# --- in a browser -------------------------------------------------------------------------------


def _page(browser: Any, live_server: Any, errors: list[str], user: Any = None, **options: Any):
    """A page in a browser context of its own, signed in as ``user`` (second factor done) if
    given; script errors and CSP violations are collected in ``errors``."""
    context = browser.new_context(base_url=live_server.url, locale="en-GB", **options)
    context.set_default_timeout(10_000)
    if user is not None:
        session = verified_client(user).cookies["sessionid"].value
        context.add_cookies([{"name": "sessionid", "value": session, "url": live_server.url}])
    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    return page


def _choose_all(page: Any, score: int, *, skip: str = "") -> None:
    for behaviour in BEHAVIOURS:
        if behaviour != skip:
            page.locator(f'input[name="score_{behaviour}"][value="{score}"]').check()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_round_in_the_browser_from_opening_to_closing(browser, live_server, world):
    from playwright.sync_api import expect

    from tests.conftest import assert_accessible

    p = world.personas
    errors: list[str] = []
    facilitator = _page(browser, live_server, errors, p.facilitator)
    facilitator.goto(url("cycle", world.cycle_a.public_id))
    facilitator.get_by_role("link", name="System health check for this cycle").click()
    assert_accessible(facilitator, "round list, empty")
    facilitator.get_by_role("link", name="Open a round for this cycle").click()
    assert_accessible(facilitator, "opening form")
    facilitator.get_by_label("Title").fill("Spring round")
    facilitator.get_by_label("Residents can answer too, through a link").check()
    facilitator.get_by_role("button", name="Open the round").click()
    expect(facilitator.get_by_text("Round opened.")).to_be_visible()
    shown = facilitator.get_by_role("textbox", name="Link").input_value()
    resident_url = "/r/" + shown.rsplit("/r/", 1)[1]  # the site's address is SITE_URL's
    assert_accessible(facilitator, "round page with the new link")

    phone = _page(
        browser,
        live_server,
        errors,
        viewport={"width": 390, "height": 844},
        is_mobile=True,
        has_touch=True,
    )
    phone.goto(resident_url)
    expect(phone).to_have_url(re.compile(r"/r/health/$"))
    expect(phone.get_by_text("These scores are for discussion, never a target.")).to_be_visible()
    assert_accessible(phone, "resident form")
    _choose_all(phone, 8, skip="devolved")
    phone.get_by_label("Comment on “Accountability is mutual”").fill("Nobody answers to us.")
    phone.get_by_role("button", name="Send my answers").click()
    summary = phone.locator("[data-error-summary]")
    expect(summary).to_contain_text("Choose a score from 1 to 10 for “Decision-making is devolved”")
    expect(phone.get_by_label("Comment on “Accountability is mutual”")).to_have_value(
        "Nobody answers to us."
    )
    assert_accessible(phone, "resident form with an error")
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the resident form is {width}px wide on a 390px phone"
    phone.locator('input[name="score_devolved"][value="3"]').check()
    phone.get_by_role("button", name="Send my answers").click()
    expect(phone.get_by_role("heading", name="Thank you: your answers are saved")).to_be_visible()
    assert_accessible(phone, "resident thanks")

    manager = _page(browser, live_server, errors, p.manager_a)
    manager.goto(url("health_round", HealthRound.objects.get().public_id))
    manager.get_by_role("link", name="Answer the health check").click()
    assert_accessible(manager, "member answer form")
    _choose_all(manager, 5)
    manager.get_by_role("button", name="Save my answers").click()
    expect(manager.get_by_text("Thank you: your answers are saved.")).to_be_visible()
    expect(manager.locator("#health-results")).to_contain_text(
        "The results appear once answers close."
    )
    assert_accessible(manager, "a count only while answers come in")

    # Two more personas answer: a practitioner of the cycle's organisation and the facilitator.
    practitioner = _page(browser, live_server, errors, p.practitioner_a)
    for person, score in ((practitioner, 6), (facilitator, 7)):
        person.goto(url("health_round", HealthRound.objects.get().public_id))
        person.get_by_role("link", name="Answer the health check").click()
        _choose_all(person, score)
        person.get_by_role("button", name="Save my answers").click()
        expect(person.get_by_text("Thank you: your answers are saved.")).to_be_visible()
    assert_accessible(practitioner, "results for a practitioner")

    health_round = HealthRound.objects.get()
    residents_answer(SharedLink.objects.get(), 4, value=6)
    facilitator.goto(url("health_round", health_round.public_id))
    facilitator.evaluate("window.samePage = true")
    facilitator.get_by_role("link", name="Show the latest count").click()
    results = facilitator.locator("#health-results")
    expect(results).to_contain_text("8 people have answered.")
    assert facilitator.evaluate("window.samePage === true"), "htmx swapped the count in place"
    expect(results).to_contain_text("The results appear once answers close.")
    assert_accessible(facilitator, "count while answers come in")
    facilitator.get_by_role("button", name="Close the round now").click()
    expect(facilitator.get_by_text("Round closed.")).to_be_visible()
    results = facilitator.locator("#health-results")
    expect(results).to_contain_text("How many gave each score")
    expect(results.get_by_text("fewer than 5 answered").first).to_be_visible()
    expect(facilitator.get_by_role("heading", name="Results", exact=True)).to_be_visible()
    assert_accessible(facilitator, "closed round")
    facilitator.set_viewport_size({"width": 390, "height": 844})
    width = facilitator.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the results are {width}px wide on a 390px phone"
    facilitator.set_viewport_size({"width": 1280, "height": 900})

    # The partner dashboard shows the round: figures for the 8 who answered, the gap between
    # perspectives held back while no two perspectives have 5 answers.
    facilitator.goto(url("engagement_dashboard", world.engagement.public_id))
    panel = facilitator.locator("section[aria-labelledby=panel-health]")
    expect(panel).to_contain_text("Spring round")
    expect(panel.get_by_text("needs two perspectives with 5 answers or more").first).to_be_visible()
    assert_accessible(facilitator, "dashboard with the round")
    facilitator.evaluate("window.samePage = 'dashboard'")
    facilitator.locator("#id_organisation").select_option(label="Organisation B")
    facilitator.wait_for_url(re.compile(r"organisation="))
    expect(panel).to_contain_text("No health-check round was open in this period")
    assert facilitator.evaluate("window.samePage") == "dashboard", "filtered in place"
    assert_accessible(facilitator, "dashboard filtered to another organisation")
    shared = facilitator.url
    elsewhere = _page(browser, live_server, errors, p.facilitator)
    elsewhere.goto(shared)  # the link opened in another browser shows the same panels
    expect(elsewhere.locator("#id_organisation")).to_have_value(str(p.org_b.public_id))
    expect(elsewhere.locator("section[aria-labelledby=panel-health]")).to_contain_text(
        "No health-check round was open in this period"
    )
    for page_ in (facilitator, phone, manager, practitioner, elsewhere):
        page_.context.close()
    assert not errors, f"browser reported errors: {errors}"


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_latest_count_is_announced_and_keeps_focus_on_the_link(browser, live_server, world):
    from playwright.sync_api import expect

    from tests.conftest import assert_accessible

    health_round, link, _ = with_link(world)
    residents_answer(link, 2)
    errors: list[str] = []
    manager = _page(browser, live_server, errors, world.personas.manager_a)
    manager.goto(url("health_round", health_round.public_id))
    region = manager.get_by_role("status").filter(has_text="people have answered")
    expect(region).to_have_text("2 people have answered.")
    expect(region).to_have_attribute("aria-atomic", "true")
    manager.evaluate("window.samePage = true")
    manager.evaluate(
        "window.regionNode = document.getElementById('health-count');"
        "window.regionNode.dataset.kept = 'yes'"
    )
    residents_answer(link, 1)
    refresh = manager.get_by_role("link", name="Show the latest count")
    refresh.focus()
    manager.keyboard.press("Enter")
    expect(region).to_have_text("3 people have answered.")
    assert manager.evaluate("window.samePage === true"), "htmx swapped the count in place"
    assert manager.evaluate("document.getElementById('health-count') === window.regionNode"), (
        "the live region itself stays in the page, so screen readers announce its new text"
    )
    expect(manager.locator("#health-count")).to_have_attribute("data-kept", "yes")
    expect(refresh).to_be_focused()
    assert_accessible(manager, "the count after a refresh")
    manager.context.close()
    assert not errors, f"browser reported errors: {errors}"
