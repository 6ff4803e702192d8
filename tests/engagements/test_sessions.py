"""Reflection sessions: their dates across time zones, scheduling, the pages and who sees them."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, time, timedelta

import pytest
import time_machine
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from icalendar import Calendar

from engagements import residents, services, sessions
from engagements.models import (
    Adaptation,
    AuditEvent,
    Email,
    Profile,
    ReflectionSession,
    SessionOccurrence,
)
from tests.conftest import verified_client
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db

# A fixed "now" before the spring clock change of 2027 (Sunday 28 March in the EU and the UK).
NOW = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def now():
    with time_machine.travel(NOW, tick=False):
        yield NOW


def _utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def _session(world, *, cycle="a", by=None, invitees=None, **fields) -> ReflectionSession:
    p = world.personas
    values = {
        "title": "Monthly reflection",
        "first_date": date(2027, 3, 21),
        "start_time": time(10, 0),
        "timezone": "Europe/London",
    }
    values.update(fields)
    return sessions.session_create(
        engagement=world.engagement,
        cycle={"a": world.cycle_a, "b": world.cycle_b, None: None}[cycle],
        by=by or p.facilitator,
        invitees=invitees if invitees is not None else [p.manager_a, p.practitioner_a],
        **values,
    )


def _starts(session: ReflectionSession) -> list[datetime]:
    return list(session.occurrences.order_by("starts_at").values_list("starts_at", flat=True))


# --- the dates of a series ------------------------------------------------------------------


def test_it_repeats_weekly_fortnightly_and_monthly_up_to_the_end_date():
    first = date(2027, 1, 31)
    assert sessions.series_dates(first, "once", date(2027, 6, 1)) == [first]
    assert sessions.series_dates(first, "weekly", date(2027, 2, 21)) == [
        date(2027, 1, 31),
        date(2027, 2, 7),
        date(2027, 2, 14),
        date(2027, 2, 21),
    ]
    assert sessions.series_dates(first, "fortnightly", date(2027, 2, 27)) == [
        date(2027, 1, 31),
        date(2027, 2, 14),
    ]
    # The 31st is clamped to each month's end and comes back to the 31st after a short month.
    assert sessions.series_dates(first, "monthly", date(2027, 5, 31)) == [
        date(2027, 1, 31),
        date(2027, 2, 28),
        date(2027, 3, 31),
        date(2027, 4, 30),
        date(2027, 5, 31),
    ]
    assert sessions.add_months(date(2027, 12, 29), 2) == date(2028, 2, 29)  # a leap year


@pytest.mark.parametrize(
    ("zone", "before", "after"),
    [
        # Wall-clock 10:00 before and after the spring change, in UTC.
        ("Europe/London", _utc(2027, 3, 21, 10), _utc(2027, 3, 28, 9)),
        ("Europe/Kyiv", _utc(2027, 3, 21, 8), _utc(2027, 3, 28, 7)),
        ("Asia/Tbilisi", _utc(2027, 3, 21, 6), _utc(2027, 3, 28, 6)),  # no clock changes
    ],
)
def test_a_weekly_session_stays_at_ten_local_across_the_clock_change(
    world, now, zone, before, after
):
    session = _session(world, timezone=zone, recurrence="weekly", repeat_until=date(2027, 4, 4))
    starts = _starts(session)
    assert starts[:2] == [before, after]
    assert len(starts) == 3
    for occurrence in session.occurrences.all():
        local = occurrence.starts_at.astimezone(sessions.zoneinfo.ZoneInfo(zone))
        assert (local.hour, local.minute) == (10, 0)
        assert occurrence.ends_at - occurrence.starts_at == timedelta(minutes=60)
        assert occurrence.prompt_at == occurrence.starts_at - timedelta(hours=24)
        assert occurrence.reminder_at == occurrence.ends_at + timedelta(hours=24)


@pytest.mark.parametrize(
    ("zone", "utc_hours"),
    [("Europe/London", [9, 10]), ("Europe/Kyiv", [7, 8]), ("Asia/Tbilisi", [6, 6])],
)
def test_the_autumn_change_moves_the_utc_start_back(world, zone, utc_hours):
    with time_machine.travel(_utc(2027, 10, 1, 12), tick=False):
        session = _session(
            world,
            first_date=date(2027, 10, 24),
            timezone=zone,
            recurrence="weekly",
            repeat_until=date(2027, 10, 31),
        )
    assert [start.hour for start in _starts(session)] == utc_hours


@pytest.mark.parametrize(
    ("zone", "at"),
    [("Europe/London", time(1, 30)), ("Europe/Kyiv", time(3, 30))],
)
def test_a_time_the_clocks_skip_is_refused(world, now, zone, at):
    with pytest.raises(sessions.NonexistentTime) as refused:
        _session(world, first_date=date(2027, 3, 28), start_time=at, timezone=zone)
    assert refused.value.field == "start_time"
    assert "the clocks go forward" in refused.value.message


def test_a_skipped_time_later_in_the_series_is_refused_with_its_date(world, now):
    with pytest.raises(sessions.NonexistentTime) as refused:
        _session(
            world,
            start_time=time(1, 30),
            recurrence="weekly",
            repeat_until=date(2027, 4, 4),
        )
    assert "28 March 2027" in refused.value.message
    assert not ReflectionSession.objects.exists()


def test_tbilisi_has_no_gap_and_an_autumn_time_passed_twice_is_the_first(world, now):
    session = _session(
        world, first_date=date(2027, 3, 28), start_time=time(2, 30), timezone="Asia/Tbilisi"
    )
    assert _starts(session) == [_utc(2027, 3, 27, 22, 30)]
    # 01:30 happens twice in London on 31 October 2027: the first, still in summer time.
    start = sessions.local_start(date(2027, 10, 31), time(1, 30), "Europe/London")
    assert start.astimezone(UTC) == _utc(2027, 10, 31, 0, 30)


# --- scheduling -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"first_date": date(2027, 2, 28)}, "first_date", "already passed"),
        (
            {"start_time": time(11, 0), "first_date": date(2027, 3, 1)},
            "first_date",
            "already passed",
        ),
        ({"recurrence": "weekly"}, "repeat_until", "needs an end date"),
        ({"recurrence": "monthly", "repeat_until": date(2029, 3, 22)}, "repeat_until", "two years"),
        (
            {"recurrence": "weekly", "repeat_until": date(2027, 3, 20)},
            "repeat_until",
            "on or after",
        ),
        ({"first_date": date(2030, 1, 1)}, "first_date", "next two years"),
        ({"title": "Reflect\nBcc: everyone@example.org"}, "title", "single line"),
        ({"location": "Room 4\r\nX-Header: 1"}, "location", "single line"),
        ({"timezone": "Mars/Olympus"}, "timezone", "time zone"),
    ],
)
def test_a_schedule_that_cannot_work_is_refused(world, now, fields, field, words):
    with pytest.raises(services.Refused) as refused:
        _session(world, **fields)
    assert refused.value.field == field
    assert words in refused.value.message
    assert not ReflectionSession.objects.exists()


def test_invitees_must_see_the_cycle_and_have_an_email_address(world, now):
    p = world.personas
    with pytest.raises(services.Refused, match="Invite only people"):
        _session(world, invitees=[p.manager_a, p.manager_b])  # cycle_a is private to org A
    no_address = MembershipFactory(
        user=UserFactory(username="no.address", email="", first_name="Olena", last_name="Koval"),
        organisation=p.org_a,
    ).user
    with pytest.raises(services.Refused, match="Olena Koval: no email address") as refused:
        _session(world, invitees=[p.manager_a, no_address])
    assert refused.value.field == "invitees"
    with pytest.raises(services.Refused, match="at least one"):
        _session(world, invitees=[])


def test_the_people_who_may_be_invited_are_those_who_see_it(world):
    p = world.personas
    in_cycle = set(sessions.invitee_candidates(world.engagement, world.cycle_a))
    assert in_cycle == {p.facilitator, p.manager_a, p.practitioner_a}
    whole = set(sessions.invitee_candidates(world.engagement))
    assert whole == {p.facilitator, p.manager_a, p.practitioner_a, p.manager_b}
    world.cycle_a.visibility = "engagement"
    world.cycle_a.save(update_fields=["visibility"])
    assert p.manager_b in set(sessions.invitee_candidates(world.engagement, world.cycle_a))


def test_a_monthly_session_on_the_31st_is_clamped(world, now):
    session = _session(
        world,
        first_date=date(2027, 3, 31),
        recurrence="monthly",
        repeat_until=date(2027, 6, 30),
        timezone="Asia/Tbilisi",
    )
    assert [s.date() for s in _starts(session)] == [
        date(2027, 3, 31),
        date(2027, 4, 30),
        date(2027, 5, 31),
        date(2027, 6, 30),
    ]


def test_editing_moves_future_dates_not_yet_prompted_only(world, now):
    session = _session(world, recurrence="weekly", repeat_until=date(2027, 4, 11))
    first = session.occurrences.order_by("starts_at")[0]
    SessionOccurrence.objects.filter(pk=first.pk).update(prompted=timezone.now())
    kept_ids = set(session.occurrences.values_list("pk", flat=True))

    sessions.session_update(
        session=session,
        version=session.version,
        by=world.personas.facilitator,
        start_time=time(11, 0),
    )

    starts = _starts(session)
    assert starts[0] == _utc(2027, 3, 21, 10)  # prompted: invitees have this time
    assert starts[1:] == [_utc(2027, 3, 28, 10), _utc(2027, 4, 4, 10), _utc(2027, 4, 11, 10)]
    assert kept_ids & set(session.occurrences.values_list("pk", flat=True)) == {first.pk}
    with pytest.raises(services.StaleEdit):
        sessions.session_update(
            session=session, version=1, by=world.personas.facilitator, title="Again"
        )


def test_editing_a_running_series_keeps_its_first_date(world):
    with time_machine.travel(NOW, tick=False):
        session = _session(world, recurrence="weekly", repeat_until=date(2027, 4, 18))
    with time_machine.travel(_utc(2027, 4, 1), tick=False):
        sessions.session_update(
            session=session,
            version=session.version,
            by=world.personas.facilitator,
            title="Weekly reflection",
        )
        session.refresh_from_db()
        assert session.title == "Weekly reflection"
        with pytest.raises(services.Refused, match="already passed"):
            sessions.session_update(
                session=session,
                version=session.version,
                by=world.personas.facilitator,
                first_date=date(2027, 3, 14),
            )


@pytest.mark.django_db(transaction=True)
def test_an_edit_racing_the_beat_for_a_date_neither_loses_nor_doubles_its_prompt(
    world, monkeypatch
):
    with time_machine.travel(NOW, tick=False):
        session = _session(world, recurrence="weekly", repeat_until=date(2027, 4, 4))
    first = session.occurrences.order_by("starts_at")[0]
    claimed, go = threading.Event(), threading.Event()
    real_invitees = sessions._invitees

    def held_invitees(of: ReflectionSession):
        claimed.set()  # the beat has claimed the date and not yet committed
        go.wait(10)
        return real_invitees(of)

    monkeypatch.setattr(sessions, "_invitees", held_invitees)
    errors: list[BaseException] = []

    def in_thread(work) -> threading.Thread:
        def run() -> None:
            try:
                work()
            except BaseException as exc:  # reported below
                errors.append(exc)
            finally:
                connection.close()

        thread = threading.Thread(target=run)
        thread.start()
        return thread

    with time_machine.travel(first.prompt_at + timedelta(minutes=1), tick=True):
        beat = in_thread(lambda: sessions.plan_prompts(first.pk, send=False))
        assert claimed.wait(10)
        # Moving the series to 11:00 while the beat prompts the first date at 10:00.
        edit = in_thread(
            lambda: sessions.session_update(
                session=ReflectionSession.objects.get(pk=session.pk),
                version=session.version,
                by=world.personas.facilitator,
                start_time=time(11, 0),
            )
        )
        edit.join(0.5)  # the edit waits for the beat's claim to commit
        go.set()
        beat.join(10)
        edit.join(10)
    assert errors == []
    # The prompted date stays as invitees were told; no second date that day to prompt again.
    assert _starts(session) == [_utc(2027, 3, 21, 10), _utc(2027, 3, 28, 10), _utc(2027, 4, 4, 10)]
    assert SessionOccurrence.objects.get(pk=first.pk).prompted is not None
    prompts = Email.objects.filter(kind="prompt")
    assert set(prompts.values_list("object_id", flat=True)) == {first.pk}
    assert prompts.count() == 2


def test_a_cancelled_session_is_prompted_no_more(world, now):
    session = _session(world)
    sessions.session_cancel(session=session, by=world.personas.facilitator)
    with time_machine.travel(_utc(2027, 3, 21, 9), tick=False):
        assert sessions.prompts_due() == []
    assert AuditEvent.objects.filter(action="session.cancelled").exists()


# --- pages ----------------------------------------------------------------------------------


def _form(world, **overrides) -> dict[str, object]:
    data: dict[str, object] = {
        "title": "Spring reflection",
        "first_date": "2027-03-21",
        "start_time": "10:00",
        "duration_minutes": "90",
        "timezone": "Europe/London",
        "recurrence": "once",
        "repeat_until": "",
        "location": "https://meet.example.org/abc",
        "invitees": [world.personas.manager_a.username, world.personas.practitioner_a.username],
        "questions": "What surprised you?\nWhat will you change?",
        "shared_link": "",
        "prompt_lead_hours": "24",
        "reminder_after_hours": "24",
    }
    data.update(overrides)
    return data


def test_the_form_starts_with_the_stage_questions_and_the_engagement_time_zone(world, now):
    world.engagement.timezone = "Europe/Kyiv"
    world.engagement.save(update_fields=["timezone"])
    client = verified_client(world.personas.facilitator)
    response = client.get(
        reverse("engagements:cycle_session_create", args=[world.cycle_a.public_id])
    )
    assert response.status_code == 200
    form = response.context["form"]
    assert form.initial["timezone"] == "Europe/Kyiv"
    assert form.initial["questions"] == world.cycle_a.stage.questions
    assert "manager.a" in response.content.decode()
    assert "manager.b" not in response.content.decode()  # cannot see cycle_a


def test_a_facilitator_schedules_a_session_and_its_page_opens_with_open_adaptations(world, now):
    p = world.personas
    services.adaptation_record(
        cycle=world.cycle_a,
        by=p.manager_a,
        what_changed="We call everyone the day after.",
        decided_by="The ward team",
        decided_on=date(2027, 2, 20),
    )
    services.adaptation_record(
        cycle=world.cycle_a,
        by=p.manager_a,
        what_changed="Already done.",
        decided_by="The ward team",
        decided_on=date(2027, 2, 20),
        status=Adaptation.Status.IN_PLACE,
    )
    link, _token = residents.link_create(cycle=world.cycle_a, by=p.manager_a, label="Library")
    Profile.objects.create(user=p.facilitator, timezone="Europe/Kyiv")
    client = verified_client(p.facilitator)
    url = reverse("engagements:cycle_session_create", args=[world.cycle_a.public_id])

    response = client.post(url, _form(world, shared_link=str(link.public_id)))

    session = ReflectionSession.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("engagements:session", args=[session.public_id])
    assert session.cycle == world.cycle_a
    assert session.shared_link == link
    assert set(session.invitees.all()) == {p.manager_a, p.practitioner_a}
    assert _starts(session) == [_utc(2027, 3, 21, 10)]

    page = client.get(response["Location"]).content.decode()
    assert page.index("Adaptations still open") < page.index("About the session")
    assert "We call everyone the day after." in page
    assert "Already done." not in page
    assert "Sunday 21 March 2027, 10:00 (Europe/London)" in page
    assert "12:00 in your time zone (Europe/Kyiv)" in page
    assert "Library" in page
    assert "What will you change?" in page
    assert "Emails that could not be sent" in page


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"first_date": "2027-02-01"}, "already passed"),
        ({"recurrence": "weekly"}, "needs an end date"),
        ({"recurrence": "weekly", "repeat_until": "2029-06-01"}, "at most two years"),
        ({"recurrence": "weekly", "repeat_until": "2027-03-01"}, "on or after the first date"),
        ({"title": "Spring\nBcc: all@example.org"}, "Use a single line"),
        ({"location": "Room 4\x07"}, "Use a single line"),
        ({"start_time": "01:30", "first_date": "2027-03-28"}, "the clocks go forward"),
        ({"first_date": "2027-02-30"}, "Enter a real date"),
        ({"start_time": "25:99"}, "Enter a time of day"),
        ({"timezone": "Nowhere/Atlantis"}, "Select a valid choice"),
        ({"invitees": ["manager.b"]}, "Choose people from the list"),
        ({"invitees": []}, "Choose at least one person"),
        ({"duration_minutes": "99999"}, "less than or equal to 720"),
        ({"prompt_lead_hours": "-1"}, "greater than or equal to 0"),
        ({"shared_link": "00000000-0000-0000-0000-000000000000"}, "Select a valid choice"),
        ({"title": "x" * 300}, "at most 200 characters"),
        ({"title": "Nul\x00byte"}, "Null characters are not allowed"),
    ],
)
def test_bad_input_is_answered_on_the_page_with_the_words_kept(world, now, overrides, words):
    client = verified_client(world.personas.facilitator)
    url = reverse("engagements:cycle_session_create", args=[world.cycle_a.public_id])
    data = _form(world, questions="Keep these words, please.", **overrides)
    response = client.post(url, data)
    page = response.content.decode()
    assert response.status_code == 200
    assert words in page
    assert "Keep these words, please." in page
    assert "There is a problem" in page
    assert not ReflectionSession.objects.exists()


def test_an_invitee_without_an_email_address_is_named(world, now):
    MembershipFactory(
        user=UserFactory(username="no.address", email="", first_name="Olena", last_name="Koval"),
        organisation=world.personas.org_a,
    )
    client = verified_client(world.personas.facilitator)
    url = reverse("engagements:cycle_session_create", args=[world.cycle_a.public_id])
    response = client.post(url, _form(world, invitees=["manager.a", "no.address"]))
    assert response.status_code == 200
    assert "Olena Koval: no email address" in response.content.decode()
    assert "Olena Koval (no email address)" in response.content.decode()  # the checkbox says so


def test_editing_through_the_page_checks_the_version(world, now):
    session = _session(world)
    client = verified_client(world.personas.manager_a)  # manages cycle_a
    url = reverse("engagements:session_edit", args=[session.public_id])
    form = client.get(url).context["form"]
    assert form.initial["version"] == "1"
    assert client.post(url, _form(world, title="Renamed", version="1")).status_code == 302
    stale = client.post(url, _form(world, title="Stale copy", version="1"))
    assert stale.status_code == 200
    assert "Someone else changed this" in stale.content.decode()
    assert "Stale copy" in stale.content.decode()
    session.refresh_from_db()
    assert session.title == "Renamed"


def test_cancelling_through_the_page(world, now):
    session = _session(world)
    client = verified_client(world.personas.facilitator)
    response = client.post(reverse("engagements:session_cancel", args=[session.public_id]))
    assert response.status_code == 302
    session.refresh_from_db()
    assert session.cancelled is not None
    page = client.get(reverse("engagements:session", args=[session.public_id])).content.decode()
    assert "This session was cancelled" in page
    assert "Not sent: cancelled" in page


def test_the_calendar_file_holds_every_date_with_its_time_zone(world, now):
    session = _session(world, recurrence="weekly", repeat_until=date(2027, 4, 4), location="Room 4")
    client = verified_client(world.personas.practitioner_a)
    response = client.get(reverse("engagements:session_calendar", args=[session.public_id]))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/calendar")
    calendar = Calendar.from_ical(response.content)
    events = calendar.walk("VEVENT")
    assert len(events) == 3
    assert [e["DTSTART"].params["TZID"] for e in events] == ["Europe/London"] * 3
    assert [e.decoded("DTSTART").hour for e in events] == [10, 10, 10]
    assert [e.decoded("DTSTART").astimezone(UTC).hour for e in events] == [10, 9, 9]
    assert len({str(e["UID"]) for e in events}) == 3
    assert str(events[0]["LOCATION"]) == "Room 4"
    assert calendar.walk("VTIMEZONE")


def test_the_lists_show_the_sessions_a_person_may_see(world, now):
    p = world.personas
    cycle_session = _session(world, title="Ward reflection")
    whole = _session(world, cycle=None, title="Engagement gathering", invitees=[p.manager_b])
    other = _session(world, cycle="b", title="Warm spaces check-in", invitees=[p.manager_b])
    engagement_list = reverse("engagements:sessions", args=[world.engagement.public_id])
    engagement_page = reverse("engagements:engagement", args=[world.engagement.public_id])
    assert engagement_list in verified_client(p.manager_b).get(engagement_page).content.decode()

    page = verified_client(p.manager_b).get(engagement_list).content.decode()
    assert "Engagement gathering" in page
    assert "Warm spaces check-in" in page
    assert "Ward reflection" not in page
    page = verified_client(p.facilitator).get(engagement_list).content.decode()
    assert all(s.title in page for s in (cycle_session, whole, other))
    cycle_list = reverse("engagements:cycle_sessions", args=[world.cycle_a.public_id])
    page = verified_client(p.practitioner_a).get(cycle_list).content.decode()
    assert "Ward reflection" in page
    assert "Engagement gathering" not in page
    assert "Schedule a session" not in page  # practitioner_a does not manage cycle_a


# --- access ---------------------------------------------------------------------------------


def _session_urls(session: ReflectionSession) -> list[tuple[str, str]]:
    gets = ["session", "session_edit", "session_calendar"]
    return [("get", reverse(f"engagements:{name}", args=[session.public_id])) for name in gets] + [
        ("post", reverse("engagements:session_cancel", args=[session.public_id]))
    ]


def test_outsiders_and_other_organisations_get_404_on_every_cycle_session_url(world, now):
    session = _session(world)
    p = world.personas
    urls = [
        *_session_urls(session),
        ("get", reverse("engagements:cycle_sessions", args=[world.cycle_a.public_id])),
        ("get", reverse("engagements:cycle_session_create", args=[world.cycle_a.public_id])),
        ("post", reverse("engagements:cycle_session_create", args=[world.cycle_a.public_id])),
    ]
    for person in (p.outsider, p.manager_b):
        client = verified_client(person)
        for method, url in urls:
            assert getattr(client, method)(url).status_code == 404, (person, url)
    assert AuditEvent.objects.filter(
        action="access.denied", actor=p.outsider, object_id=str(session.public_id)
    ).exists()
    session.refresh_from_db()
    assert session.cancelled is None


def test_engagement_sessions_are_seen_in_the_engagement_and_managed_by_facilitators(world, now):
    p = world.personas
    session = _session(world, cycle=None, invitees=[p.manager_b])
    outsider = verified_client(p.outsider)
    for method, url in [
        *_session_urls(session),
        ("get", reverse("engagements:sessions", args=[world.engagement.public_id])),
        ("get", reverse("engagements:session_create", args=[world.engagement.public_id])),
    ]:
        assert getattr(outsider, method)(url).status_code == 404, url
    for person in (p.manager_a, p.manager_b, p.practitioner_a):
        client = verified_client(person)
        assert (
            client.get(reverse("engagements:session", args=[session.public_id])).status_code == 200
        )
        assert (
            client.get(reverse("engagements:session_edit", args=[session.public_id])).status_code
            == 404
        )
        create = reverse("engagements:session_create", args=[world.engagement.public_id])
        assert client.get(create).status_code == 404
    page = verified_client(p.manager_b).get(
        reverse("engagements:session", args=[session.public_id])
    )
    assert "Emails that could not be sent" not in page.content.decode()


def test_a_member_who_does_not_manage_the_cycle_reads_but_does_not_change(world, now):
    session = _session(world)
    client = verified_client(world.personas.practitioner_a)
    assert client.get(reverse("engagements:session", args=[session.public_id])).status_code == 200
    for method, url in _session_urls(session)[1:]:
        expected = 200 if url.endswith(".ics") else 404
        assert getattr(client, method)(url).status_code == expected, url
    create = reverse("engagements:cycle_session_create", args=[world.cycle_a.public_id])
    assert client.get(create).status_code == 404


def test_signed_out_visitors_are_sent_to_sign_in(world, now):
    session = _session(world)
    for method, url in _session_urls(session):
        response = getattr(Client(), method)(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("accounts:login"))


def test_failed_emails_are_listed_for_those_who_manage_the_session(world, now):
    session = _session(world)
    occurrence = session.occurrences.get()
    Email.objects.create(
        kind=Email.Kind.PROMPT,
        object_id=occurrence.pk,
        period="p",
        recipient="practitioner.a@example.org",
        user=world.personas.practitioner_a,
        engagement=world.engagement,
        status=Email.Status.FAILED,
        error="550 5.1.1 No such mailbox",
    )
    url = reverse("engagements:session", args=[session.public_id])
    page = verified_client(world.personas.manager_a).get(url).content.decode()
    assert "550 5.1.1 No such mailbox" in page
    page = verified_client(world.personas.practitioner_a).get(url).content.decode()
    assert "No such mailbox" not in page


# --- unsubscribing --------------------------------------------------------------------------


def test_unsubscribing_takes_one_button_and_can_be_undone(world):
    p = world.personas
    url = reverse("engagements:unsubscribe", args=[sessions.unsubscribe_token(p.practitioner_a.pk)])
    client = Client(enforce_csrf_checks=True)  # no sign-in, no CSRF token: the link is the key

    page = client.get(url)
    assert page.status_code == 200
    assert "Stop reminders" in page.content.decode()
    assert page["Referrer-Policy"] == "no-referrer"
    assert not Profile.objects.filter(user=p.practitioner_a).exists()  # GET changes nothing

    done = client.post(url, {"List-Unsubscribe": "One-Click"})
    assert done.status_code == 200
    assert "Reminders stopped" in done.content.decode()
    assert "/accounts/preferences/" in done.content.decode()
    assert Profile.objects.get(user=p.practitioner_a).reminders is False

    again = client.post(url, {"reminders": "on"})
    assert "Reminders are on" in again.content.decode()
    assert Profile.objects.get(user=p.practitioner_a).reminders is True


@pytest.mark.parametrize(
    "token",
    ["nonsense", "12:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "x" * 500, "%00", "999999:"],
)
def test_a_bad_unsubscribe_token_gets_a_clear_page_not_an_error(world, token):
    url = reverse("engagements:unsubscribe", args=[token])
    for method in ("get", "post"):
        response = getattr(Client(), method)(url)
        assert response.status_code == 400
        assert "This link does not work" in response.content.decode()
    assert not Profile.objects.exists()


def test_a_tampered_token_for_someone_else_does_not_work(world):
    p = world.personas
    token = sessions.unsubscribe_token(p.practitioner_a.pk)
    forged = f"{p.manager_a.pk}:{token.split(':', 1)[1]}"
    url = reverse("engagements:unsubscribe", args=[forged])
    assert Client().post(url).status_code == 400
    assert not Profile.objects.filter(user=p.manager_a).exists()


# --- in the browser -------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_manager_schedules_a_session_in_the_browser_and_every_page_is_accessible(page, world):
    from playwright.sync_api import expect

    from tests.conftest import assert_accessible
    from tests.factories import PASSWORD

    p = world.personas
    # A name of its own: the factory's random first names can coincide.
    p.practitioner_a.first_name = "Taras"
    p.practitioner_a.save(update_fields=["first_name"])
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(p.manager_a.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.goto(reverse("engagements:cycle", args=[world.cycle_a.public_id]))
    page.get_by_role("link", name="Reflection sessions for this cycle").click()
    page.get_by_role("link", name="Schedule a session for this cycle").click()
    assert_accessible(page, "on the empty session form")

    page.get_by_label("Title").fill("Ward reflection")
    page.get_by_label("Date").fill("2020-01-06")  # in the past
    page.get_by_label("Start time").fill("10:00")
    page.get_by_label("Weekly").check()
    page.get_by_label("Taras").check()
    page.get_by_role("button", name="Schedule session").click()
    expect(page.get_by_role("alert")).to_contain_text("already passed")
    expect(page.get_by_label("Title")).to_have_value("Ward reflection")
    assert_accessible(page, "on the form with its errors")

    next_week = timezone.localdate() + timedelta(days=7)
    page.get_by_label("Date").fill(next_week.isoformat())
    page.get_by_label("Repeat until").fill((next_week + timedelta(days=14)).isoformat())
    page.get_by_role("button", name="Schedule session").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Ward reflection")
    expect(
        page.get_by_role("heading", name="Adaptations still open from last time")
    ).to_be_visible()
    expect(page.get_by_role("row")).to_have_count(4)  # a header and three dates
    assert_accessible(page, "on the session page")

    token = sessions.unsubscribe_token(p.practitioner_a.pk)
    page.goto(reverse("engagements:unsubscribe", args=[token]))
    page.get_by_role("button", name="Stop reminders").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Reminders stopped")
    assert_accessible(page, "on the unsubscribe confirmation")
    assert Profile.objects.get(user=p.practitioner_a).reminders is False


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"first_date": "9999-01-01", "recurrence": "weekly", "repeat_until": "9999-12-31"},
            "within the next two years",
        ),
        (
            {"first_date": "9999-12-31", "start_time": "23:30", "timezone": "America/New_York"},
            "two years",
        ),
        (
            {"first_date": "0001-01-01", "start_time": "00:30", "timezone": "Asia/Tbilisi"},
            "already passed",
        ),
        ({"first_date": "0001-01-01", "timezone": "Europe/Kyiv"}, "already passed"),
    ],
)
def test_dates_at_the_ends_of_the_calendar_get_a_message_not_a_500(world, now, overrides, message):
    client = verified_client(world.personas.facilitator)
    url = reverse("engagements:cycle_session_create", args=[world.cycle_a.public_id])
    response = client.post(url, _form(world, **overrides))
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not ReflectionSession.objects.exists()
