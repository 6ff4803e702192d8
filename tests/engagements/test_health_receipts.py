"""A resident's receipt for a health-check answer: see, download or withdraw it (DESIGN.md §5).

The receipt works as a reflection's does (tests/residents): one code form at ``/r/receipt/``,
the code shown once on the thanks page. Withdrawing deletes the whole answer while the round
takes answers, and only the comments once answers have closed (the scores are in results
people have read by then).
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client

from engagements import health, residents
from engagements.models import (
    AuditEvent,
    Behaviour,
    HealthResponse,
    HealthRound,
    HealthScore,
    SharedLink,
    WithdrawnSubmission,
)
from tests.engagements.test_health import answers, with_link
from tests.residents.helpers import form_data, make_link, opened

pytestmark = pytest.mark.django_db

CODE = re.compile(r"[A-Z2-7]{4}(-[A-Z2-7]{4}){3}")
NOT_FOUND = "We found nothing sent with this code."
COMMENT = "Nobody asks us before deciding."
WITHDRAWN_WORDS = "You withdrew these answers, so they were not sent again."


def page(response: Any) -> str:
    return response.content.decode()


def resident_answers(token: str, **overrides: Any) -> tuple[Client, dict[str, Any], Any]:
    """A resident's browser that opened the round's link and sent its form: (the browser,
    what it posted, the thanks page)."""
    resident = Client()
    assert resident.get(f"/r/{token}")["Location"] == "/r/health/"
    initial = resident.get("/r/health/").context["form"].initial
    data = answers(
        6,
        **{
            "submission_key": str(initial["submission_key"]),
            "link_ref": initial["link_ref"],
            "score_devolved": 3,
            "comment_devolved": COMMENT,
            **overrides,
        },
    )
    thanks = resident.post("/r/health/", data)
    assert thanks.status_code == 200
    return resident, data, thanks


def cyrillic(code: str) -> str:
    """The code as typed on a Ukrainian keyboard: Cyrillic look-alikes, lower case, spaces."""
    return code.translate(str.maketrans("ABEKMHOPCTX", "АВЕКМНОРСТХ")).lower().replace("-", " ")


def answer_count(world: Any, health_round: HealthRound) -> int:
    [found] = [
        r
        for r in health.rounds_for(user=world.personas.facilitator, engagement=world.engagement)
        if r.pk == health_round.pk
    ]
    return int(found.answers)  # type: ignore[attr-defined]


def answers_closed(health_round: HealthRound) -> None:
    """The round's last day for answers is past; the round itself is still open."""
    yesterday = health.local_today(health_round.engagement) - timedelta(days=1)
    HealthRound.objects.filter(pk=health_round.pk).update(closes_on=yesterday)


@pytest.fixture
def link(world: Any) -> Any:
    """A reflection link for cycle A, its token on ``link.token`` (as in tests/residents)."""
    return make_link(world.cycle_a, world.personas.manager_a)


# --- the code --------------------------------------------------------------------------------


def test_a_resident_answers_and_gets_a_receipt_code_once(world):
    _round, link, token = with_link(world)
    resident, data, thanks = resident_answers(token)
    code = thanks.context["receipt"]
    assert CODE.fullmatch(code)
    assert code in page(thanks)
    assert "this is the only time we show it" in page(thanks)
    answer = HealthResponse.objects.get()
    assert answer.receipt_hash == hashlib.sha256(code.encode()).hexdigest()
    assert answer.receipt_hash != code
    assert answer.submission_key is not None
    assert code == residents.receipt_code(answer.submission_key)  # as a reflection's

    # A retry (a double click, a refresh) is thanked with the same code and stores nothing.
    again = resident.post("/r/health/", data)
    assert again.context["receipt"] == code
    assert HealthResponse.objects.count() == 1
    assert SharedLink.objects.get(pk=link.pk).submissions == 1

    # Another browser replaying the same key is not given the code.
    stranger = Client()
    stranger.get(f"/r/{token}")
    replayed = stranger.post("/r/health/", data)
    assert replayed.status_code == 200
    assert code not in page(replayed)
    assert stranger.get("/r/receipt/yours/").status_code == 302
    assert HealthResponse.objects.count() == 1


def test_the_code_typed_in_lower_case_or_cyrillic_finds_the_answer(world):
    _round, _link, token = with_link(world)
    _resident, _data, thanks = resident_answers(token)
    code = thanks.context["receipt"]
    for typed in (code.lower(), code.replace("-", ""), cyrillic(code)):
        other = Client()
        found = other.post("/r/receipt/", {"code": typed})
        assert found.status_code == 302, typed
        assert found["Location"] == "/r/receipt/yours/"
        assert COMMENT in page(other.get("/r/receipt/yours/"))


def test_the_receipt_shows_the_round_the_scores_and_comments_and_no_results(world):
    health_round, _link, token = with_link(world)
    _resident, _data, thanks = resident_answers(token)
    other = Client()
    other.post("/r/receipt/", {"code": thanks.context["receipt"]})
    view = other.get("/r/receipt/yours/")
    assert view.status_code == 200
    html = page(view)
    assert "With residents" in html
    assert world.engagement.title in html
    assert "This health check still takes answers." in html
    assert COMMENT in html
    assert str(Behaviour.DEVOLVED.label) in html
    assert "Your score: 3 out of 10" in html
    assert html.count("Your score: 6 out of 10") == 8
    assert "median" not in html.lower()
    for header, value in [
        ("Referrer-Policy", "no-referrer"),
        ("X-Robots-Tag", "noindex, nofollow"),
    ]:
        assert view[header] == value
    assert "no-store" in view["Cache-Control"]

    health.round_close(health_round=health_round, by=world.personas.facilitator)
    closed = page(other.get("/r/receipt/yours/"))
    assert "This health check closed on" in closed
    assert COMMENT in closed  # the receipt still opens the answer after the round closed


def test_the_thanks_page_leads_to_the_answer(world):
    _round, _link, token = with_link(world)
    resident, _data, _thanks = resident_answers(token)
    assert COMMENT in page(resident.get("/r/receipt/yours/"))


def test_an_unknown_code_gets_the_same_answer_as_for_reflections(world, link):
    _round, _link, token = with_link(world)
    _resident, _data, thanks = resident_answers(token)
    unknown = Client().post("/r/receipt/", {"code": "AAAA-BBBB-CCCC-DDDD"})
    assert unknown.status_code == 200
    assert NOT_FOUND in page(unknown)

    withdrawing = Client()
    withdrawing.post("/r/receipt/", {"code": thanks.context["receipt"]})
    withdrawing.post("/r/receipt/yours/withdraw/", {"withdrawal": "answer"})
    gone = Client().post("/r/receipt/", {"code": thanks.context["receipt"]})
    assert gone.status_code == 200
    assert gone.context["form"].errors == unknown.context["form"].errors


def test_wrong_codes_are_limited_per_ip_for_health_answers_too(world):
    _round, _link, token = with_link(world)
    _resident, _data, thanks = resident_answers(token)
    guesser = Client(REMOTE_ADDR="192.0.2.77")
    for n in range(20):
        assert guesser.post("/r/receipt/", {"code": f"AAAA-BBBB-CCCC-{n:04d}"}).status_code == 200
    assert guesser.post("/r/receipt/", {"code": thanks.context["receipt"]}).status_code == 429


# --- download --------------------------------------------------------------------------------


def test_the_answer_downloads_as_json_and_text(world):
    _round, _link, token = with_link(world)
    resident, _data, _thanks = resident_answers(token)
    download = resident.get("/r/receipt/yours/download.json")
    assert download.status_code == 200
    assert download["Content-Type"] == "application/json; charset=utf-8"
    assert "attachment" in download["Content-Disposition"]
    data = json.loads(download.content.decode("utf-8"))
    assert data["health_check"] == "With residents"
    assert data["engagement"] == world.engagement.title
    assert data["status"] == "This health check still takes answers."
    assert len(data["answers"]) == len(Behaviour.values)
    devolved = next(a for a in data["answers"] if a["behaviour"] == Behaviour.DEVOLVED.label)
    assert (devolved["score"], devolved["comment"]) == (3, COMMENT)
    assert {a["score"] for a in data["answers"]} == {3, 6}
    assert [a["comment"] for a in data["answers"]].count(None) == 8

    text = resident.get("/r/receipt/yours/download.txt")
    assert text["Content-Type"] == "text/plain; charset=utf-8"
    body = text.content.decode("utf-8")
    assert f"{Behaviour.DEVOLVED.label}: 3\n{COMMENT}\n" in body
    assert "health_check: With residents" in body
    assert resident.get("/r/receipt/yours/download.exe").status_code == 404


# --- withdrawing -----------------------------------------------------------------------------


def test_withdrawing_while_the_round_takes_answers_deletes_the_whole_answer(world):
    health_round, link, token = with_link(world)
    resident_answers(token, comment_devolved="Someone else's words.")
    resident, data, thanks = resident_answers(token)
    assert answer_count(world, health_round) == 2

    confirm = resident.get("/r/receipt/yours/withdraw/")
    assert confirm.status_code == 200
    assert "deletes your whole answer for good" in page(confirm)
    done = resident.post("/r/receipt/yours/withdraw/", {"withdrawal": "answer"})
    assert done.status_code == 200
    assert "Your answers are deleted" in page(done)

    assert answer_count(world, health_round) == 1
    assert not HealthScore.objects.filter(comment=COMMENT).exists()
    assert HealthScore.objects.filter(comment="Someone else's words.").exists()
    assert WithdrawnSubmission.objects.filter(key=data["submission_key"]).exists()
    event = AuditEvent.objects.get(action="resident.health_answer_withdrawn")
    assert event.actor_id is None
    assert event.object_id == str(health_round.public_id)
    assert COMMENT not in json.dumps(event.detail)

    # The receipt pages of this browser now send it back to the code form.
    assert resident.get("/r/receipt/yours/")["Location"] == "/r/receipt/"
    assert resident.get("/r/receipt/yours/download.json")["Location"] == "/r/receipt/"
    assert NOT_FOUND in page(Client().post("/r/receipt/", {"code": thanks.context["receipt"]}))
    assert SharedLink.objects.get(pk=link.pk).submissions == 2


def test_a_retried_post_after_withdrawal_stores_nothing(world):
    health_round, _link, token = with_link(world)
    resident, data, _thanks = resident_answers(token)
    resident.post("/r/receipt/yours/withdraw/", {"withdrawal": "answer"})

    replay = resident.post("/r/health/", data)
    assert replay.status_code == 200
    assert WITHDRAWN_WORDS in page(replay)
    assert "receipt" not in replay.context
    # From a fresh browser (no session): the form comes back, then is still refused.
    stranger = Client()
    assert stranger.post("/r/health/", data).status_code == 200
    refused = stranger.post("/r/health/", data)
    assert WITHDRAWN_WORDS in page(refused)
    assert not HealthResponse.objects.filter(round=health_round).exists()
    with pytest.raises(health.AnswerWithdrawn):
        health.resident_answer_submit(
            link_id=_link.pk,
            submission_key=uuid.UUID(data["submission_key"]),
            answers=dict.fromkeys(Behaviour.values, (5, "")),
        )


@pytest.mark.parametrize("how", ["answers closed", "round closed"])
def test_withdrawing_after_answers_closed_removes_the_comments_and_keeps_the_scores(world, how):
    health_round, _link, token = with_link(world)
    resident, data, thanks = resident_answers(token)
    if how == "answers closed":
        answers_closed(health_round)
    else:
        health.round_close(health_round=health_round, by=world.personas.facilitator)
    scores_before = sorted(HealthScore.objects.values_list("behaviour", "score"))

    confirm = resident.get("/r/receipt/yours/withdraw/")
    assert confirm.status_code == 200
    html = page(confirm)
    assert "deletes your comments but keeps your scores" in html
    assert "anyone comparing the results before and after could work out what you scored" in html
    assert 'name="withdrawal" value="comments"' in html

    done = resident.post("/r/receipt/yours/withdraw/", {"withdrawal": "comments"})
    assert done.status_code == 200
    assert "Your comments are deleted" in page(done)
    answer = HealthResponse.objects.get()
    assert sorted(answer.scores.values_list("behaviour", "score")) == scores_before
    assert not answer.scores.exclude(comment="").exists()
    assert (answer.receipt_hash, answer.submission_key, answer.shared_link) == ("", None, None)
    assert answer_count(world, health_round) == 1
    assert WithdrawnSubmission.objects.filter(key=data["submission_key"]).exists()
    assert AuditEvent.objects.filter(action="resident.health_comments_withdrawn").count() == 1

    # The code no longer opens anything, and a replayed form stores nothing.
    assert NOT_FOUND in page(Client().post("/r/receipt/", {"code": thanks.context["receipt"]}))
    replay = resident.post("/r/health/", data)
    assert replay.status_code in (200, 410)
    assert "receipt" not in replay.context
    assert HealthResponse.objects.count() == 1
    assert not HealthScore.objects.exclude(comment="").exists()


def test_withdrawing_twice_is_a_clear_page(world):
    _round, _link, token = with_link(world)
    resident, _data, _thanks = resident_answers(token)
    other_tab = Client()
    other_tab.cookies = resident.cookies  # the same browser, another tab
    assert resident.post("/r/receipt/yours/withdraw/", {"withdrawal": "answer"}).status_code == 200
    for tab in (resident, other_tab):
        again = tab.post("/r/receipt/yours/withdraw/", {"withdrawal": "answer"})
        assert again.status_code == 200
        assert "Your answers were already withdrawn" in page(again)
    assert resident.get("/r/receipt/yours/withdraw/")["Location"] == "/r/receipt/"
    assert Client().post("/r/receipt/yours/withdraw/").status_code == 200  # no receipt at all


def test_withdrawing_twice_after_answers_closed_is_a_clear_page(world):
    health_round, _link, token = with_link(world)
    resident, _data, _thanks = resident_answers(token)
    health.round_close(health_round=health_round, by=world.personas.facilitator)
    resident.post("/r/receipt/yours/withdraw/", {"withdrawal": "comments"})
    again = resident.post("/r/receipt/yours/withdraw/", {"withdrawal": "comments"})
    assert again.status_code == 200
    assert "Your answers were already withdrawn" in page(again)
    assert AuditEvent.objects.filter(action="resident.health_comments_withdrawn").count() == 1


def test_a_stale_confirmation_page_is_shown_again_when_answers_closed_meanwhile(world):
    health_round, _link, token = with_link(world)
    resident, _data, _thanks = resident_answers(token)
    confirm = resident.get("/r/receipt/yours/withdraw/")
    assert 'name="withdrawal" value="answer"' in page(confirm)
    health.round_close(health_round=health_round, by=world.personas.facilitator)

    stale = resident.post("/r/receipt/yours/withdraw/", {"withdrawal": "answer"})
    assert stale.status_code == 409
    html = page(stale)
    assert "closed after you opened this page" in html
    assert 'name="withdrawal" value="comments"' in html
    assert HealthScore.objects.filter(comment=COMMENT).exists()  # nothing changed yet
    assert HealthResponse.objects.count() == 1

    # A post without a choice (an odd or old page) shows the page again and changes nothing.
    assert resident.post("/r/receipt/yours/withdraw/", {}).status_code == 200
    assert HealthScore.objects.filter(comment=COMMENT).exists()

    done = resident.post("/r/receipt/yours/withdraw/", {"withdrawal": "comments"})
    assert "Your comments are deleted" in page(done)
    assert HealthResponse.objects.count() == 1


def test_every_health_receipt_page_keeps_the_resident_headers(world):
    _round, _link, token = with_link(world)
    resident, _data, thanks = resident_answers(token)
    seen = [
        thanks,
        resident.get("/r/receipt/yours/"),
        resident.get("/r/receipt/yours/download.json"),
        resident.get("/r/receipt/yours/download.txt"),
        resident.get("/r/receipt/yours/withdraw/"),
        resident.post("/r/receipt/yours/withdraw/", {"withdrawal": "answer"}),
        resident.post("/r/receipt/yours/withdraw/", {"withdrawal": "answer"}),
    ]
    for response in seen:
        assert response["Referrer-Policy"] == "no-referrer"
        assert response["X-Robots-Tag"] == "noindex, nofollow"
        assert "no-store" in response["Cache-Control"]
        if response["Content-Type"].startswith("text/html"):
            assert "<script>" not in page(response)
            assert " style=" not in page(response)


def test_a_reflection_code_after_a_health_code_shows_the_reflection(world, link):
    """One browser, both kinds of code: each opens its own, never the other."""
    _round, _link, token = with_link(world)
    resident, _data, health_thanks = resident_answers(token)
    reflecting = opened(link)
    reflection_code = reflecting.post("/r/", form_data(reflecting)).context["receipt"]

    assert resident.post("/r/receipt/", {"code": reflection_code}).status_code == 302
    view = page(resident.get("/r/receipt/yours/"))
    assert "The bus to the clinic stopped running." in view
    assert COMMENT not in view
    assert (
        resident.post("/r/receipt/", {"code": health_thanks.context["receipt"]}).status_code == 302
    )
    view = page(resident.get("/r/receipt/yours/"))
    assert COMMENT in view
    assert "The bus to the clinic" not in view


# --- in a browser ----------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_resident_on_a_phone_keeps_their_code_looks_at_their_answer_and_withdraws_it(
    browser, live_server, world
):
    """From the link to a withdrawn answer, typing the code in again on the way; axe clean."""
    from playwright.sync_api import expect

    from tests.conftest import assert_accessible

    health_round, _link, token = with_link(world)
    context = browser.new_context(
        base_url=live_server.url,
        locale="en-GB",
        viewport={"width": 390, "height": 844},
        is_mobile=True,
        has_touch=True,
    )
    context.set_default_timeout(10_000)
    phone = context.new_page()
    errors: list[str] = []
    phone.on("pageerror", lambda exc: errors.append(str(exc)))
    phone.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)

    phone.goto(f"/r/{token}")
    for behaviour in Behaviour.values:
        phone.locator(f'input[name="score_{behaviour}"][value="7"]').check()
    phone.get_by_label("Comment on “Decision-making is devolved”").fill(COMMENT)
    phone.get_by_role("button", name="Send my answers").click()
    code = phone.locator("#receipt-code")
    expect(code).to_have_text(CODE)
    receipt = code.inner_text()
    assert_accessible(phone, "thanks with the receipt code")

    # Later, from the code alone (as typed on a Ukrainian keyboard).
    phone.context.clear_cookies()
    phone.goto("/r/receipt/")
    phone.get_by_label("Receipt code").fill(cyrillic(receipt))
    phone.get_by_role("button", name="Continue").click()
    expect(phone.get_by_role("heading", level=1)).to_have_text("Your health-check answers")
    expect(phone.get_by_text(COMMENT)).to_be_visible()
    expect(phone.get_by_text("This health check still takes answers.")).to_be_visible()
    assert_accessible(phone, "the resident's own answer")
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the receipt page is {width}px wide on a 390px phone"

    phone.get_by_role("link", name="Withdraw my answers").click()
    expect(phone.get_by_role("heading", level=1)).to_have_text("Withdraw your answers?")
    assert_accessible(phone, "withdrawal confirmation")
    phone.get_by_role("button", name="Yes, delete my answers").click()
    expect(phone.get_by_role("heading", level=1)).to_have_text("Your answers are deleted")
    assert_accessible(phone, "answers withdrawn")
    assert not HealthResponse.objects.filter(round=health_round).exists()
    assert errors == []
    context.close()
