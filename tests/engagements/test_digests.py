"""Learning digests: what they hold, when they are due, once each, and who may read them."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, date, datetime, timedelta
from html import unescape

import pytest
import time_machine
from django.core.mail import EmailMultiAlternatives
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone, translation

from engagements import digests, health, selectors, services
from engagements.models import (
    Adaptation,
    AuditEvent,
    Behaviour,
    Digest,
    Email,
    LearningCycle,
    Membership,
    Profile,
    Reflection,
)
from engagements.tasks import digests_due
from tests.conftest import verified_client
from tests.factories import PASSWORD, MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def reflect(cycle, text, at, *, author=None, role="practitioner", **fields) -> Reflection:
    reflection = Reflection.objects.create(
        cycle=cycle,
        text=text,
        author=author,
        author_role=role,
        stage_id=cycle.stage_id,
        **fields,
    )
    Reflection.objects.filter(pk=reflection.pk).update(created=at, updated=at)
    return reflection


def subscribe(user, frequency="daily", tz="Europe/London", weekday=0, language="en") -> Profile:
    profile = digests.profile_for(user)
    profile.digest, profile.timezone, profile.digest_weekday = frequency, tz, weekday
    profile.language = language
    profile.save()
    return profile


START = utc(2026, 3, 9)
END = utc(2026, 3, 16)
IN_PERIOD = utc(2026, 3, 12, 10)


# --- what a digest holds ---------------------------------------------------------------------


def test_reflections_are_shown_as_the_journal_shows_them_and_held_or_hidden_never(world):
    p = world.personas
    cycle = world.cycle_a
    reflect(cycle, "Named words", IN_PERIOD, author=p.manager_a, role="manager")
    reflect(
        cycle, "Pseudonymous words", IN_PERIOD, author=p.practitioner_a, identity="pseudonymous"
    )
    reflect(cycle, "Anonymous words", IN_PERIOD, author=p.practitioner_a, identity="anonymous")
    reflect(cycle, "Ann's words", IN_PERIOD, role="resident", first_name="Ann")
    reflect(cycle, "Unnamed resident", IN_PERIOD, role="resident", identity="anonymous")
    reflect(cycle, "Held words", IN_PERIOD, role="resident", moderation="held")
    reflect(cycle, "Hidden words", IN_PERIOD, author=p.manager_a, moderation="hidden")
    reflect(cycle, "Too early", START - timedelta(seconds=1), author=p.manager_a)
    reflect(cycle, "Too late", END, author=p.manager_a)

    content = digests.compile_engagement_digest(world.engagement, START, END)

    stored = json.dumps(content)
    for absent in ("Held words", "Hidden words", "Too early", "Too late", "practitioner.a"):
        assert absent not in stored
    assert content["totals"]["reflections"] == 5
    # An anonymous or pseudonymous author is not kept in the digest in any form.
    authors = {item["text"]: item["author"] for item in content["reflections"]}
    assert authors["Pseudonymous words"] == {
        "kind": "pseudonymous",
        "name": digests.pseudonym_code(p.practitioner_a.pk, cycle.engagement_id),
    }
    assert authors["Anonymous words"] == {"kind": "anonymous", "name": ""}
    rows = Reflection.objects.filter(moderation="published").select_related(
        "author", "stage", "experiment"
    )
    digest = _stored(world.engagement, content)
    for language in ("en", "uk"):
        with translation.override(language):
            journal = {
                r.text: selectors.reflection_entry(
                    r, viewer=p.facilitator, engagement_id=cycle.engagement_id
                ).author_label
                for r in rows
            }
            shown = {entry.text: entry.author for entry in digests.present(digest).reflections}
            assert shown == {text: journal[text] for text in shown}, language
            assert len(shown) == 5
    with translation.override("en"):
        shown = {entry.text: entry.author for entry in digests.present(digest).reflections}
    assert shown["Named words"] == selectors.display_name(p.manager_a)
    assert shown["Pseudonymous words"] == selectors.pseudonym(
        p.practitioner_a.pk, cycle.engagement_id
    )
    assert shown["Anonymous words"] == "Anonymous"
    assert shown["Ann's words"] == "Ann"
    assert shown["Unnamed resident"] == "A resident"


def _stored(engagement, content, **fields) -> Digest:
    values = {
        "scope": "engagement",
        "engagement": engagement,
        "frequency": "weekly",
        "period_start": START,
        "period_end": END,
        "timezone": "Europe/London",
        "content": content,
    }
    values.update(fields)
    return Digest.objects.create(**values)


def test_a_kept_digest_drops_words_hidden_withdrawn_or_deleted_since_and_shows_a_redaction(
    world,
):
    p = world.personas
    cycle = world.cycle_a
    kept = reflect(cycle, "Families trust the nurses", IN_PERIOD, author=p.manager_a)
    hidden = reflect(cycle, "Names a neighbour, Mrs Jones", IN_PERIOD, role="resident")
    withdrawn = reflect(cycle, "Later withdrawn words", IN_PERIOD, role="resident")
    redacted = reflect(cycle, "The nurses were late and Mr Smith shouted", IN_PERIOD)
    digest = _stored(
        world.engagement, digests.compile_engagement_digest(world.engagement, START, END)
    )
    assert len(digests.present(digest).reflections) == 4

    Reflection.objects.filter(pk=hidden.pk).update(moderation="hidden")
    withdrawn.delete()
    Reflection.objects.filter(pk=redacted.pk).update(text="The nurses were late [removed]")

    view = digests.present(digest)
    shown = [entry.text for entry in view.reflections]
    assert sorted(shown) == sorted([kept.text, "The nurses were late [removed]"])
    quotes = [quote.text for theme in view.themes for quote in theme.quotes]
    assert not any("Jones" in q or "withdrawn" in q or "Smith" in q for q in quotes)


def test_a_personal_digest_holds_only_cycles_its_person_may_see(world):
    p = world.personas
    reflect(world.cycle_a, "About org A", IN_PERIOD, author=p.manager_a)
    reflect(world.cycle_b, "About org B", IN_PERIOD, author=p.manager_b)

    def texts(user) -> set[str]:
        content = digests.compile_user_digest(user, START, END)
        return {item["text"] for item in content["reflections"]}

    assert texts(p.manager_a) == {"About org A"}
    assert texts(p.manager_b) == {"About org B"}
    assert texts(p.facilitator) == {"About org A", "About org B"}
    assert texts(p.outsider) == set()
    # Once org B shares its cycle with the engagement, org A sees it too.
    LearningCycle.objects.filter(pk=world.cycle_b.pk).update(visibility="engagement")
    assert texts(p.manager_a) == {"About org A", "About org B"}


def test_a_kept_personal_digest_shows_only_what_its_reader_may_see_now(world):
    p = world.personas
    reflect(world.cycle_a, "About org A", IN_PERIOD, author=p.manager_a)
    reflect(world.cycle_b, "Shared by org B", IN_PERIOD, author=p.manager_b)
    LearningCycle.objects.filter(pk=world.cycle_b.pk).update(visibility="engagement")
    digest = Digest.objects.create(
        scope="user",
        user=p.manager_a,
        frequency="daily",
        period_start=START,
        period_end=START + timedelta(days=1),
        timezone="Europe/London",
        content=digests.compile_user_digest(p.manager_a, START, END),
    )
    url = reverse("engagements:digest", args=[digest.public_id])
    client = verified_client(p.manager_a)
    page = client.get(url).content.decode()
    assert "About org A" in page
    assert "Shared by org B" in page

    # Org B stops sharing its cycle: its words leave manager A's kept digest, page and email.
    LearningCycle.objects.filter(pk=world.cycle_b.pk).update(visibility="organisation")
    page = client.get(url).content.decode()
    assert "About org A" in page
    assert "Shared by org B" not in page
    row = Email.objects.create(
        kind="digest",
        object_id=digest.pk,
        recipient=p.manager_a.email,
        period="x",
        user=p.manager_a,
    )
    Profile.objects.update_or_create(user=p.manager_a, defaults={"digest": "daily"})
    message = digests.build_emails([row])[row.pk]
    assert message is not None
    text = message.body
    assert "About org A" in text
    assert "Shared by org B" not in text
    quotes = [q.text for theme in digests.present(digest, p.manager_a).themes for q in theme.quotes]
    assert not any("org B" in quote for quote in quotes)

    # Manager A leaves the organisation: their own digest still opens, with none of its words.
    Membership.objects.filter(user=p.manager_a).delete()
    page = client.get(url).content.decode()
    assert "About org A" not in page


def _members(organisation, n, role=Membership.Role.PRACTITIONER, prefix="m"):
    return [
        MembershipFactory(
            user=UserFactory(username=f"{prefix}{i}.{organisation.pk}"),
            organisation=organisation,
            role=role,
        ).user
        for i in range(n)
    ]


def test_breakdowns_are_suppressed_below_five_contributors(world):
    p = world.personas
    four = _members(p.org_a, 4)
    for i, person in enumerate(four):
        reflect(world.cycle_a, f"Note {i}", IN_PERIOD, author=person)
        reflect(world.cycle_a, f"More {i}", IN_PERIOD, author=person)

    content = digests.compile_engagement_digest(world.engagement, START, END)
    assert content["totals"]["contributors"] == 4
    assert content["totals"]["reflections"] == 8
    # Every role and organisation is listed, the empty ones too, and a lone small group is
    # hidden with an empty one: otherwise the totals would give its counts away.
    hidden = {"reflections": None, "contributors": None, "suppressed": True}
    nobody = {"reflections": 0, "contributors": 0, "suppressed": False}
    assert content["by_role"] == [
        {"role": "practitioner", **hidden},
        {"role": "manager", **hidden},
        {"role": "resident", **nobody},
        {"role": "learning_partner", **nobody},
    ]
    assert content["by_organisation"] == [
        {"organisation": "Organisation A", **hidden},
        {"organisation": "Organisation B", **hidden},
    ]

    # Five practitioners and five residents are shown; two managers are not, and then neither
    # is the next smallest group, or the managers' counts would follow from the totals.
    reflect(world.cycle_a, "Fifth", IN_PERIOD, author=_members(p.org_a, 1, prefix="x")[0])
    for i in range(5):
        reflect(world.cycle_b, f"Resident {i}", IN_PERIOD, role="resident")
    for person in _members(p.org_b, 2, Membership.Role.MANAGER, prefix="boss"):
        reflect(world.cycle_b, "A manager's view", IN_PERIOD, author=person, role="manager")
    content = digests.compile_engagement_digest(world.engagement, START, END)
    rows = {row["role"]: row for row in content["by_role"]}
    assert rows["manager"]["suppressed"]
    assert rows["manager"]["reflections"] is None
    assert sum(row["suppressed"] for row in rows.values()) == 2
    organisations = {row["organisation"]: row for row in content["by_organisation"]}
    assert organisations["Organisation A"] == {
        "organisation": "Organisation A",
        "reflections": 9,
        "contributors": 5,
        "suppressed": False,
    }
    assert organisations["Organisation B"]["contributors"] == 7

    client = verified_client(p.facilitator)
    digest = _stored(world.engagement, content)
    html = client.get(reverse("engagements:digest", args=[digest.public_id])).content.decode()
    assert "fewer than 5 people" in html
    assert "<caption>Reflections by author role</caption>" in html


def test_themes_are_the_most_frequent_words_with_quotes_behind_them(world):
    p = world.personas
    for i in range(6):
        reflect(
            world.cycle_a,
            f"The housing repairs really took {i} weeks because the bus never came.",
            IN_PERIOD + timedelta(minutes=i),
            author=p.manager_a,
        )
    for _ in range(3):
        reflect(world.cycle_b, "Transport to the clinic is hard.", IN_PERIOD, author=p.manager_b)
    for _ in range(4):
        reflect(world.cycle_b, "Житло потребує ремонту, житло холодне.", IN_PERIOD, role="resident")
    for _ in range(9):
        reflect(
            world.cycle_a, "Loneliness loneliness", IN_PERIOD, role="resident", moderation="held"
        )

    content = digests.compile_engagement_digest(world.engagement, START, END)
    terms = [theme["term"] for theme in content["themes"]]
    assert terms[:2] == ["housing", "repairs"]
    assert "житло" in terms
    assert "transport" in terms
    for absent in ("really", "because", "the", "bus", "never", "loneliness", "weeks", "0"):
        assert absent not in terms
    housing = content["themes"][0]
    assert housing["reflections"] == 6
    assert len(housing["quotes"]) == 2
    assert all("housing" in quote["excerpt"].lower() for quote in housing["quotes"])
    # The newest first, and a reflection quoted once is not quoted again for the next word.
    assert housing["quotes"][0]["created"] == (IN_PERIOD + timedelta(minutes=5)).isoformat()
    quoted = [q["reflection"] for theme in content["themes"][:2] for q in theme["quotes"]]
    assert len(set(quoted)) == 4
    zhytlo = next(theme for theme in content["themes"] if theme["term"] == "житло")
    assert zhytlo["reflections"] == 4
    assert zhytlo["mentions"] == 8
    assert zhytlo["quotes"][0]["author"] == {"kind": "resident", "name": ""}


def test_a_large_period_s_themes_come_from_an_even_sample_and_say_about(world, monkeypatch):
    p = world.personas
    monkeypatch.setattr(digests, "THEME_SAMPLE", 10)
    for i in range(40):
        # Every third differs, so whichever ids the every-4th sample lands on, both kinds are in
        # it and "housing", in every reflection, leads.
        text = "Housing waits again." if i % 3 else "Transport was late and housing cold."
        reflect(world.cycle_a, text, IN_PERIOD + timedelta(minutes=i), author=p.manager_a)

    content = digests.compile_engagement_digest(world.engagement, START, END)

    housing = content["themes"][0]
    assert housing["term"] == "housing"
    assert housing["approximate"] is True
    assert 30 <= housing["reflections"] <= 40  # every 4th by id: 10 read, counts times 4
    assert len(housing["quotes"]) == 2  # quotes come from the whole period
    html = verified_client(p.facilitator).get(
        reverse("engagements:digest", args=[_stored(world.engagement, content).public_id])
    )
    assert 'housing <span class="muted">in about' in html.content.decode()


def test_a_long_reflection_is_quoted_around_its_word():
    text = ("Words before the point. " * 30) + "Then the housing officer came. " + "After. " * 40
    quote = digests.excerpt(text, "housing")
    assert "housing officer" in quote
    assert quote.startswith("…")
    assert quote.endswith("…")
    assert len(quote) <= digests.EXCERPT_CHARS + 2


def test_quiet_cycles_stage_moves_and_adaptations(world, personas):
    now = timezone.now()
    end = now + timedelta(weeks=5)
    start = end - timedelta(days=7)
    reflect(world.cycle_a, "Long ago", now + timedelta(weeks=1), author=personas.manager_a)
    reflect(world.cycle_b, "Recent", now + timedelta(weeks=4), author=personas.manager_b)
    # Held words do not keep a cycle from going quiet.
    reflect(world.cycle_a, "Held", now + timedelta(weeks=4), role="resident", moderation="held")
    paused = services.cycle_start(
        engagement=world.engagement,
        organisation=personas.org_a,
        by=personas.manager_a,
        title="Paused work",
        learning_question="?",
        scale="team",
        status="paused",
    )
    stages = list(world.engagement.stages.all())
    with time_machine.travel(start + timedelta(days=2)):
        services.cycle_move_stage(
            cycle=world.cycle_b,
            to_stage=stages[1],
            note="Ready",
            version=None,
            by=personas.facilitator,
        )
        services.adaptation_record(
            cycle=world.cycle_a,
            by=personas.manager_a,
            what_changed="Visits on Saturdays",
            decided_by="The team",
            decided_on=date(2026, 3, 1),
        )
        new = services.cycle_start(
            engagement=world.engagement,
            organisation=personas.org_b,
            by=personas.manager_b,
            title="Brand new",
            learning_question="?",
            scale="team",
        )
    with time_machine.travel(start - timedelta(days=1)):
        services.cycle_move_stage(
            cycle=world.cycle_a, to_stage=stages[1], note="", version=None, by=personas.facilitator
        )

    content = digests.compile_engagement_digest(world.engagement, start, end)

    assert [item["cycle"]["title"] for item in content["quiet"]] == [world.cycle_a.title]
    assert content["quiet"][0]["last_reflection"] == (now + timedelta(weeks=1)).isoformat()
    assert paused.title not in json.dumps(content["quiet"])
    moves = {(m["cycle"]["title"], m["from"], m["to"]) for m in content["moves"]}
    assert moves == {
        (world.cycle_b.title, stages[0].name, stages[1].name),
        (new.title, None, stages[0].name),
    }
    assert content["totals"]["moves"] == 2
    [adaptation] = content["adaptations"]
    assert adaptation["what_changed"] == "Visits on Saturdays"
    assert adaptation["status"] == Adaptation.Status.PROPOSED
    assert content["health_checks"] == []

    view = digests.present(_stored(world.engagement, content, period_start=start, period_end=end))
    assert [entry.cycle["title"] for entry in view.quiet] == [world.cycle_a.title]


def test_a_quiet_cycle_alone_is_emailed_weekly_not_daily():
    quiet_only = {"totals": {"reflections": 0, "moves": 0, "adaptations": 0, "quiet": 2}}
    assert not digests.has_news(quiet_only)
    assert digests.worth_emailing(quiet_only, "weekly")
    assert not digests.worth_emailing(quiet_only, "daily")
    assert not digests.worth_emailing({"totals": {}}, "weekly")
    assert digests.worth_emailing({"totals": {"moves": 1}}, "daily")


def test_compiling_takes_the_same_few_queries_however_many_reflections(world):
    p = world.personas

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            digests.compile_engagement_digest(world.engagement, START, END)
        return len(captured)

    reflect(world.cycle_a, "housing first", IN_PERIOD, author=p.manager_a)
    reflect(world.cycle_a, "housing again", IN_PERIOD, author=p.manager_a)
    few = queries()
    for i in range(120):
        reflect(world.cycle_b, f"housing number {i} and transport", IN_PERIOD, author=p.manager_b)
    assert queries() == few <= 8


# --- when ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tz", "frequency", "weekday", "now", "first_day", "start", "end"),
    [
        # London: the spring day has 23 hours; 07:00 BST is 06:00 UTC.
        (
            "Europe/London",
            "daily",
            0,
            utc(2026, 3, 30, 5, 59),
            date(2026, 3, 28),
            utc(2026, 3, 28),
            utc(2026, 3, 29),
        ),
        (
            "Europe/London",
            "daily",
            0,
            utc(2026, 3, 30, 6),
            date(2026, 3, 29),
            utc(2026, 3, 29),
            utc(2026, 3, 29, 23),
        ),
        # ... and the autumn one 25.
        (
            "Europe/London",
            "daily",
            0,
            utc(2026, 10, 26, 7),
            date(2026, 10, 25),
            utc(2026, 10, 24, 23),
            utc(2026, 10, 26),
        ),
        (
            "Europe/London",
            "weekly",
            0,
            utc(2026, 3, 30, 6),
            date(2026, 3, 23),
            utc(2026, 3, 23),
            utc(2026, 3, 29, 23),
        ),
        # Kyiv: UTC+2 in winter, +3 in summer; the change is at 03:00 local.
        (
            "Europe/Kyiv",
            "daily",
            0,
            utc(2026, 3, 30, 3, 59),
            date(2026, 3, 28),
            utc(2026, 3, 27, 22),
            utc(2026, 3, 28, 22),
        ),
        (
            "Europe/Kyiv",
            "daily",
            0,
            utc(2026, 3, 30, 4),
            date(2026, 3, 29),
            utc(2026, 3, 28, 22),
            utc(2026, 3, 29, 21),
        ),
        (
            "Europe/Kyiv",
            "daily",
            0,
            utc(2026, 10, 26, 5),
            date(2026, 10, 25),
            utc(2026, 10, 24, 21),
            utc(2026, 10, 25, 22),
        ),
        (
            "Europe/Kyiv",
            "weekly",
            2,
            utc(2026, 4, 1, 4),
            date(2026, 3, 25),
            utc(2026, 3, 24, 22),
            utc(2026, 3, 31, 21),
        ),
        # Wednesday before 07:00 in Kyiv: last week's is still the latest.
        (
            "Europe/Kyiv",
            "weekly",
            2,
            utc(2026, 4, 1, 3, 59),
            date(2026, 3, 18),
            utc(2026, 3, 17, 22),
            utc(2026, 3, 24, 22),
        ),
        # Tbilisi: UTC+4 all year.
        (
            "Asia/Tbilisi",
            "daily",
            0,
            utc(2026, 3, 30, 3),
            date(2026, 3, 29),
            utc(2026, 3, 28, 20),
            utc(2026, 3, 29, 20),
        ),
        (
            "Asia/Tbilisi",
            "weekly",
            6,
            utc(2026, 3, 29, 2, 59),
            date(2026, 3, 15),
            utc(2026, 3, 14, 20),
            utc(2026, 3, 21, 20),
        ),
        (
            "Asia/Tbilisi",
            "weekly",
            6,
            utc(2026, 3, 29, 3),
            date(2026, 3, 22),
            utc(2026, 3, 21, 20),
            utc(2026, 3, 28, 20),
        ),
    ],
)
def test_the_latest_due_period_is_whole_local_days(
    tz, frequency, weekday, now, first_day, start, end
):
    period = digests.latest_period(frequency, tz, now, weekday)
    assert (period.first_day, period.start, period.end) == (first_day, start, end)
    assert period.due <= now < period.due + timedelta(days=1 if frequency == "daily" else 7)


def test_each_person_gets_their_own_local_day_across_the_dst_change(world):
    p = world.personas
    subscribe(p.manager_a, tz="Europe/London")
    subscribe(p.practitioner_a, tz="Europe/Kyiv")
    tbilisi = MembershipFactory(
        user=UserFactory(username="tbilisi.person"), organisation=p.org_a
    ).user
    subscribe(tbilisi, tz="Asia/Tbilisi")
    # 22:30 UTC on 29 March: 23:30 in London (29th), 01:30 in Kyiv and 02:30 in Tbilisi (30th).
    reflect(world.cycle_a, "Late on Sunday in London", utc(2026, 3, 29, 22, 30), author=p.manager_a)
    # 22:30 UTC on 28 March: 22:30 in London (28th), 00:30 in Kyiv and 02:30 in Tbilisi (29th).
    reflect(
        world.cycle_a, "Early on Sunday further east", utc(2026, 3, 28, 22, 30), author=p.manager_a
    )

    def run(now):
        with time_machine.travel(now, tick=False):
            for item in digests.due():
                digests.make_digest(*item.task_args())

    def texts(user) -> dict[date, set[str]]:
        found = {}
        for digest in Digest.objects.filter(user=user):
            first = timezone.localtime(digest.period_start, digests.zone(digest.timezone)).date()
            found[first] = {item["text"] for item in digest.content["reflections"]}
        return found

    # 05:30 UTC on Monday: 08:30 in Kyiv and 09:30 in Tbilisi, but 06:30 in London.
    run(utc(2026, 3, 30, 5, 30))
    assert texts(p.manager_a) == {date(2026, 3, 28): {"Early on Sunday further east"}}
    assert texts(p.practitioner_a) == {date(2026, 3, 29): {"Early on Sunday further east"}}
    assert texts(tbilisi) == {date(2026, 3, 29): {"Early on Sunday further east"}}
    run(utc(2026, 3, 30, 6, 0))
    assert texts(p.manager_a)[date(2026, 3, 29)] == {"Late on Sunday in London"}
    london = Digest.objects.get(user=p.manager_a, period_start=utc(2026, 3, 29))
    assert london.period_end - london.period_start == timedelta(hours=23)
    # Running again, and again later the same day, makes nothing new.
    run(utc(2026, 3, 30, 6, 0))
    run(utc(2026, 3, 30, 21, 0))
    assert Digest.objects.filter(scope="user").count() == 4
    # One email per digest with something in it (the engagement's week before had nothing).
    assert sorted(Email.objects.values_list("user__username", "period")) == [
        ("manager.a", "daily:2026-03-28"),
        ("manager.a", "daily:2026-03-29"),
        ("practitioner.a", "daily:2026-03-29"),
        ("tbilisi.person", "daily:2026-03-29"),
    ]


def test_a_digest_compiled_twice_at_once_is_kept_and_emailed_once(transactional_db, world):
    p = world.personas
    subscribe(p.manager_a)
    reflect(world.cycle_a, "Something to say", utc(2026, 3, 29, 12), author=p.manager_a)
    period = digests.latest_period("daily", "Europe/London", utc(2026, 3, 30, 8))
    barrier = threading.Barrier(2)
    real_compile = digests.compile_user_digest
    results = []

    def racing_compile(*args, **kwargs):
        barrier.wait(timeout=10)  # both found no digest; both compile, then both store
        return real_compile(*args, **kwargs)

    def one() -> None:
        try:
            results.append(
                digests.make_digest(
                    "user", p.manager_a.pk, "daily", period.first_day.isoformat(), period.timezone
                )
            )
        finally:
            connection.close()

    with time_machine.travel(utc(2026, 3, 30, 8), tick=True):
        digests.compile_user_digest = racing_compile
        try:
            threads = [threading.Thread(target=one) for _ in range(2)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(20)
        finally:
            digests.compile_user_digest = real_compile
    assert len({digest.pk for digest in results if digest is not None}) == 1
    assert Digest.objects.count() == 1
    assert Email.objects.filter(kind="digest").count() == 1


@pytest.mark.worker
def test_the_digest_job_twice_sends_one_email_per_recipient(
    world, celery_worker, smtp_sink, settings
):
    p = world.personas
    subscribe(p.manager_a, "daily")
    subscribe(p.facilitator, "weekly", tz="Asia/Tbilisi", weekday=0, language="uk")
    subscribe(p.manager_b, "off")
    reflect(world.cycle_a, "Housing repairs again", utc(2026, 3, 29, 12), author=p.manager_a)
    reflect(world.cycle_b, "Warm rooms, warm housing", utc(2026, 3, 25, 12), author=p.manager_b)

    # Monday 30 March 2026, 09:00 in London: a daily digest for manager_a (the 29th), the
    # facilitator's weekly one (Tbilisi) and the engagement's week (Europe/London).
    with time_machine.travel(utc(2026, 3, 30, 8), tick=True):
        digests_due.delay()
        digests_due.delay()
        messages = smtp_sink.wait_for(3, timeout=20)
        assert len(messages) == 3
        # Nothing more comes: every ledger row is sent, and there are three.
        for _ in range(100):
            if Email.objects.filter(status="sent").count() == 3:
                break
            smtp_sink.wait_for(4, timeout=0.1)
    assert len(smtp_sink.messages) == 3
    assert Digest.objects.count() == 3
    assert Email.objects.count() == 3
    by_recipient: dict[str, list] = {}
    for message in smtp_sink.messages:
        by_recipient.setdefault(message["To"], []).append(message)
    assert sorted((to, len(found)) for to, found in by_recipient.items()) == [
        (p.facilitator.email, 2),
        (p.manager_a.email, 1),
    ]
    [daily] = by_recipient[p.manager_a.email]
    digest = Digest.objects.get(user=p.manager_a)
    text = daily.get_payload()[0].get_payload(decode=True).decode()
    html = daily.get_payload()[1].get_payload(decode=True).decode()
    assert f"/digests/{digest.public_id}/" in text
    assert "Housing repairs again" in text
    assert "Warm rooms" not in text
    assert daily["Subject"] == "Your daily learning digest, 29 March 2026"
    assert '<html lang="en">' in html
    for message in by_recipient[p.facilitator.email]:
        html = message.get_payload()[1].get_payload(decode=True).decode()
        assert '<html lang="uk">' in html


def _make_due_for(user) -> list[Digest]:
    made = []
    for item in digests.due():
        if item.owner_id == user.pk and item.scope == "user":
            digest = digests.make_digest(*item.task_args())
            assert digest is not None
            made.append(digest)
    return made


def test_a_new_time_zone_neither_repeats_nor_skips_part_of_a_digest(world):
    p = world.personas
    profile = subscribe(p.manager_a, "daily")
    # 29 March in London (BST from 01:00 UTC) is 29 Mar 00:00 UTC to 29 Mar 23:00 UTC.
    reflect(world.cycle_a, "Before the move", utc(2026, 3, 29, 12), author=p.manager_a)
    # After London's 29 March, within Auckland's 30 March (UTC+13): no digest has it yet.
    reflect(world.cycle_a, "Between the two", utc(2026, 3, 30, 2), author=p.manager_a)

    def texts(digest: Digest) -> set[str]:
        return {item["text"] for item in digest.content["reflections"]}

    with time_machine.travel(utc(2026, 3, 30, 8), tick=False):
        [london] = _make_due_for(p.manager_a)
        assert texts(london) == {"Before the move"}
        # They move to Auckland at once: its latest day, 29 March there, is already covered.
        profile.timezone = "Pacific/Auckland"
        profile.save()
        assert _make_due_for(p.manager_a) == []
        made = digests.make_digest("user", p.manager_a.pk, "daily", "2026-03-29", profile.timezone)
        assert made is None
    with time_machine.travel(utc(2026, 3, 31, 8), tick=False):
        # Auckland's 30 March began before London's 29 March ended: it starts where that ended.
        [auckland] = _make_due_for(p.manager_a)
        assert auckland.period_start == london.period_end
        assert texts(auckland) == {"Between the two"}
    assert Email.objects.filter(kind="digest", user=p.manager_a).count() == 2


def test_digests_are_not_made_before_they_are_due_or_for_the_wrong_frequency(world):
    p = world.personas
    subscribe(p.manager_a, "daily")
    with time_machine.travel(utc(2026, 3, 30, 8), tick=False):
        # Today's period is not over yet, and a weekly period is not what manager_a chose.
        assert (
            digests.make_digest("user", p.manager_a.pk, "daily", "2026-03-30", "Europe/London")
            is None
        )
        assert (
            digests.make_digest("user", p.manager_a.pk, "weekly", "2026-03-23", "Europe/London")
            is None
        )
        assert (
            digests.make_digest("user", p.manager_a.pk, "hourly", "2026-03-29", "Europe/London")
            is None
        )
        assert (
            digests.make_digest("user", p.manager_a.pk, "daily", "not a day", "Europe/London")
            is None
        )
        assert (
            digests.make_digest("user", p.manager_b.pk, "daily", "2026-03-29", "Europe/London")
            is None
        )
        assert Digest.objects.count() == 0
        assert digests.make_digest("user", p.manager_a.pk, "daily", "2026-03-29", "Europe/London")
        assert (
            digests.make_digest("user", p.manager_a.pk, "daily", "2026-03-29", "Europe/London")
            is None
        )


def test_an_email_no_longer_wanted_is_skipped(world):
    p = world.personas
    subscribe(p.manager_a)
    subscribe(p.facilitator, "weekly")
    reflect(world.cycle_a, "Something", utc(2026, 3, 29, 12), author=p.manager_a)
    with time_machine.travel(utc(2026, 3, 30, 8), tick=False):
        for item in digests.due():
            digests.make_digest(*item.task_args())
    rows = list(Email.objects.select_related("user").order_by("id"))
    assert len(rows) == 3
    assert all(digests.build_emails(rows).values())
    Profile.objects.filter(user=p.manager_a).update(digest="off")
    # The facilitator left the learning partner: no engagement digest, still their own.
    Membership.objects.filter(user=p.facilitator).delete()
    built = digests.build_emails(rows)
    scopes = dict(Digest.objects.values_list("pk", "scope"))
    assert {
        (row.user and row.user.username, scopes[row.object_id]): built[row.pk] is not None
        for row in rows
    } == {
        ("manager.a", "user"): False,
        ("facilitator", "user"): True,
        ("facilitator", "engagement"): False,
    }


def test_both_email_formats_report_health_check_rounds_as_the_page_does(world):
    """The rounds closed in the period, in the text and the HTML email alike: the same
    sentence as on the digest's page (``health.Headline``), suppression kept."""
    p = world.personas

    def scored(value: int) -> dict[str, tuple[int, str]]:
        return dict.fromkeys(Behaviour.values, (value, ""))

    with time_machine.travel(utc(2026, 3, 10, 11), tick=False):
        counted, made = health.round_open(
            engagement=world.engagement,
            cycle=world.cycle_a,
            by=p.facilitator,
            title="Spring check",
            resident_link=True,
        )
        assert made is not None
        for _ in range(5):
            health.resident_answer_submit(
                link_id=made[0].pk, submission_key=uuid.uuid4(), answers=scored(4)
            )
        for person in _members(p.org_a, 5, Membership.Role.MANAGER, prefix="h"):
            health.answer_save(
                health_round=counted, by=person, perspective="manager", answers=scored(8)
            )
        health.round_close(health_round=counted, by=p.facilitator)
        few, _link = health.round_open(
            engagement=world.engagement, by=p.facilitator, title="Few answered"
        )
        health.answer_save(
            health_round=few, by=p.manager_a, perspective="manager", answers=scored(9)
        )
        health.round_close(health_round=few, by=p.facilitator)
    digest, _created = digests.store(
        scope="engagement",
        owner_id=world.engagement.pk,
        period=digests.latest_period("weekly", "Europe/London", END + timedelta(hours=12)),
        content=digests.compile_engagement_digest(world.engagement, START, END),
    )
    subscribe(p.facilitator, "weekly")
    row = Email.objects.create(
        kind="digest",
        object_id=digest.pk,
        recipient=p.facilitator.email,
        period="x",
        user=p.facilitator,
    )
    message = digests.build_emails([row])[row.pk]
    assert isinstance(message, EmailMultiAlternatives)
    text = message.body
    html = unescape(str(message.alternatives[0][0]))
    page = unescape(
        verified_client(p.facilitator)
        .get(reverse("engagements:digest", args=[digest.public_id]))
        .content.decode()
    )

    with translation.override("en"), timezone.override(digests.zone(digest.timezone)):
        sentences = [str(item) for item in digests.present(digest).health_checks]
    assert len(sentences) == 2
    shown, hidden = sentences
    assert shown.startswith("Spring check (Hospital discharge), closed 10 March 2026: 10 answered.")
    assert "Medians: Perspective 6; Participation 6; Power 6." in shown
    assert "Largest gap between perspectives: Perspective, Manager 8 and Resident 4." in shown
    assert hidden == (
        f"Few answered ({world.engagement.title}), closed 10 March 2026: 1 answered. "
        "Fewer than 5 answered, so no figures are shown."
    )
    for body in (text, html, page):
        assert "Health-check changes" in body
        assert "No health-check changes." not in body
        for sentence in sentences:
            assert sentence in body
    assert f"- {shown}\n- {hidden}\n" in text
    # Below the threshold no figure reaches either format, not even the managers' 9.
    for body in (text, html):
        after = body[body.index("Few answered") :]
        assert "Medians" not in after[: after.index("shown.")]
        assert " 9" not in after[: after.index("shown.")]


# --- reading ---------------------------------------------------------------------------------


def test_only_its_person_or_the_engagements_facilitators_may_read_a_digest(world, client):
    p = world.personas
    reflect(world.cycle_a, "Only for the right eyes", IN_PERIOD, author=p.manager_a)
    personal = Digest.objects.create(
        scope="user",
        user=p.manager_a,
        frequency="daily",
        period_start=START,
        period_end=START + timedelta(days=1),
        timezone="Europe/London",
        content=digests.compile_user_digest(p.manager_a, START, END),
    )
    engagement = _stored(
        world.engagement, digests.compile_engagement_digest(world.engagement, START, END)
    )
    expected = {
        personal: {"manager_a": 200, "facilitator": 404, "practitioner_a": 404, "outsider": 404},
        engagement: {"facilitator": 200, "manager_a": 404, "manager_b": 404, "outsider": 404},
    }
    for digest, who in expected.items():
        url = reverse("engagements:digest", args=[digest.public_id])
        for name, status in who.items():
            response = verified_client(getattr(p, name)).get(url)
            assert response.status_code == status, (name, digest.scope)
            if status == 200:
                html = response.content.decode()
                assert "Only for the right eyes" in html
                assert 'href="/static/css/print.css" media="print"' in html
                assert "style=" not in html
                assert "<script>" not in html
        assert client.get(url).status_code == 302  # to sign in
    assert AuditEvent.objects.filter(action="access.denied", object_type="digest").count() == 6
    assert (
        verified_client(p.manager_a).get(f"/digests/{personal.public_id.hex[:8]}/").status_code
        == 404
    )

    with CaptureQueriesContext(connection) as captured:
        listing = verified_client(p.manager_a).get(reverse("engagements:digests")).content.decode()
    selects = [q["sql"].split(" FROM ")[0] for q in captured.captured_queries]
    assert not any('"engagements_digest"."content",' in sql for sql in selects), selects
    assert "<td>1</td>" in listing  # its new reflections
    assert str(personal.public_id) in listing
    assert str(engagement.public_id) not in listing
    listing = verified_client(p.facilitator).get(reverse("engagements:digests")).content.decode()
    assert str(engagement.public_id) in listing
    assert str(personal.public_id) not in listing
    only = reverse("engagements:digests") + f"?engagement={world.engagement.public_id}"
    assert verified_client(p.facilitator).get(only).status_code == 200
    assert verified_client(p.manager_a).get(only).status_code == 404
    for junk in ("?engagement=nope", "?page=9999", "?page=-1", "?page=%00"):
        assert (
            verified_client(p.manager_a).get(reverse("engagements:digests") + junk).status_code
            == 200
        )


# --- preferences -----------------------------------------------------------------------------


def test_preferences_are_saved_and_the_chosen_language_follows(personas):
    client = verified_client(personas.practitioner_a)
    url = reverse("accounts:preferences")
    assert client.get(url).status_code == 200
    assert Profile.objects.get(user=personas.practitioner_a).digest == "off"
    response = client.post(
        url,
        {
            "language": "uk",
            "timezone": "Europe/Kyiv",
            "digest": "weekly",
            "digest_weekday": "4",
            "reminders": "",
        },
    )
    assert response.status_code == 302
    assert response.cookies["django_language"].value == "uk"
    profile = Profile.objects.get(user=personas.practitioner_a)
    assert (profile.language, profile.timezone, profile.digest, profile.digest_weekday) == (
        "uk",
        "Europe/Kyiv",
        "weekly",
        4,
    )
    assert profile.reminders is False
    assert '<html lang="uk">' in client.get(url).content.decode()

    # Signing in on another browser brings the chosen language with it.
    elsewhere = Client(HTTP_ACCEPT_LANGUAGE="en")
    signed_in = elsewhere.post(
        reverse("accounts:login"),
        {"username": personas.practitioner_a.username, "password": PASSWORD},
    )
    assert signed_in.status_code == 302
    assert signed_in.cookies["django_language"].value == "uk"


GOOD = {
    "language": "en",
    "timezone": "Europe/London",
    "digest": "daily",
    "digest_weekday": "0",
    "reminders": "on",
}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        (
            "timezone",
            "Mars/Olympus_Mons",
            "Choose a time zone from the list, for example Europe/Kyiv.",
        ),
        ("timezone", "", "Choose a time zone."),
        ("timezone", "localtime", "Choose a time zone from the list"),
        ("timezone", "Europe/London\x00", "Choose a time zone from the list"),
        ("digest_weekday", "9", "Choose a day of the week from the list."),
        ("digest_weekday", "monday", "Choose a day of the week from the list."),
        ("digest_weekday", "-1", "Choose a day of the week from the list."),
        ("digest_weekday", "1" * 5000, "Choose a day of the week from the list."),
        ("digest", "hourly", "Choose how often you want a digest, or Off."),
        ("digest", "<script>alert(1)</script>", "Choose how often you want a digest, or Off."),
        ("language", "fr", "Choose English or Ukrainian."),
    ],
)
def test_bad_preferences_get_a_clear_message_not_a_500(personas, field, value, message):
    client = verified_client(personas.practitioner_a)
    response = client.post(reverse("accounts:preferences"), {**GOOD, field: value})
    assert response.status_code == 200
    html = response.content.decode()
    assert "There is a problem" in html
    assert message in html
    assert "<script>alert(1)</script>" not in html
    assert Profile.objects.get(user=personas.practitioner_a).digest == "off"


def test_preferences_need_a_signed_in_person(client):
    response = client.get(reverse("accounts:preferences"))
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


# --- in a browser ----------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_digest_and_the_preferences_in_a_browser_are_accessible_and_print(page, world):
    from playwright.sync_api import expect

    from tests.conftest import assert_accessible
    from tests.factories import PASSWORD

    p = world.personas
    for i in range(6):
        reflect(world.cycle_a, f"Housing repairs took weeks, {i}.", IN_PERIOD, author=p.manager_a)
    for _ in range(5):
        reflect(world.cycle_a, "A resident's housing worry.", IN_PERIOD, role="resident")
    digest = Digest.objects.create(
        scope="user",
        user=p.manager_a,
        frequency="weekly",
        period_start=START,
        period_end=END,
        timezone="Europe/London",
        content=digests.compile_user_digest(p.manager_a, START, END),
    )

    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(p.manager_a.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("navigation", name="Your account").get_by_role("link", name="Digests").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Your learning digests")
    assert_accessible(page, "on the list of digests")
    page.get_by_role(
        "link", name="Your weekly learning digest, 9 March 2026 to 15 March 2026"
    ).click()
    expect(page).to_have_url(f"{page.url.split('/digests/')[0]}/digests/{digest.public_id}/")
    expect(page.get_by_role("heading", name="Themes")).to_be_visible()
    expect(page.get_by_role("table", name="Reflections by author role")).to_be_visible()
    assert_accessible(page, "on a digest")
    page.emulate_media(media="print")
    expect(page.locator(".site-header")).to_be_hidden()
    expect(page.locator(".breadcrumb")).to_be_hidden()
    expect(page.get_by_role("heading", name="Themes")).to_be_visible()
    page.emulate_media(media="screen")

    page.get_by_role("navigation", name="Your account").get_by_role(
        "link", name="Preferences"
    ).click()
    assert_accessible(page, "on the preferences")
    page.get_by_role("radio", name="Weekly").check()
    page.get_by_label("Time zone").select_option("Asia/Tbilisi")
    page.get_by_label("Day for the weekly digest").select_option(label="Friday")
    page.get_by_role("button", name="Save preferences").click()
    expect(page.get_by_text("Your preferences are saved.")).to_be_visible()
    profile = Profile.objects.get(user=p.manager_a)
    assert (profile.digest, profile.timezone, profile.digest_weekday) == (
        "weekly",
        "Asia/Tbilisi",
        4,
    )
