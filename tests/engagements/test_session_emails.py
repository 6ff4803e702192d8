"""Session prompts and reminders: once per invitee, in their language, with a calendar invitation.

The worker tests send through a real Celery worker to a real SMTP server; the others deliver
the ledger rows in the test (``mail.deliver``) to Django's in-memory outbox.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from email.message import Message
from typing import Any
from urllib.parse import urlsplit

import pytest
import time_machine
from django.core import mail as django_mail
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from icalendar import Calendar

from engagements import mail, residents, services, sessions
from engagements.models import Email, Profile, ReflectionSession, SessionOccurrence
from engagements.selectors import display_name
from engagements.tasks import send_session_prompts, send_session_reminders

NOW = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
STARTS = datetime(2027, 3, 2, 10, 0, tzinfo=UTC)  # 10:00 in London, the day after NOW


@pytest.fixture(autouse=True)
def _only_session_builders(monkeypatch, settings):
    """Deliver with this module's builders alone, to a site with a known address."""
    monkeypatch.setattr(mail, "BUILDER_MODULES", ("engagements.sessions",))
    settings.SITE_URL = "https://hls.example.org"
    settings.HLS_EMAIL_RETRY_SECONDS = 0


def _session(world, **fields) -> ReflectionSession:
    p = world.personas
    values = {
        "title": "Ward reflection",
        "first_date": date(2027, 3, 2),
        "start_time": clock(10, 0),
        "timezone": "Europe/London",
        "questions": "What surprised you?\nWhat will you change?",
        "location": "Room 4",
    }
    values.update(fields)
    return sessions.session_create(
        engagement=world.engagement,
        cycle=world.cycle_a,
        by=p.facilitator,
        invitees=[p.facilitator, p.manager_a, p.practitioner_a],
        **values,
    )


def _deliver(ids) -> list:
    """Send ledger rows here, as a worker would, to Django's in-memory outbox."""
    django_mail.outbox.clear()
    mail.deliver(ids)
    return list(django_mail.outbox)


def _parts(message) -> dict[str, str]:
    """An in-memory message as the recipient's client sees it: text, html and calendar."""
    from email import message_from_bytes

    parsed = message_from_bytes(message.message().as_bytes())
    return _mime_parts(parsed)


def _mime_parts(parsed: Message) -> dict[str, str]:
    found: dict[str, str] = {}
    for part in parsed.walk():
        kind = part.get_content_type()
        if kind in ("text/plain", "text/html", "text/calendar"):
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            found[kind] = payload.decode(part.get_content_charset() or "utf-8")
    return found


# --- prompts --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_prompt_holds_the_questions_the_links_and_an_invitation(world):
    with time_machine.travel(NOW, tick=False):
        link, _token = residents.link_create(
            cycle=world.cycle_a, by=world.personas.manager_a, label="Library"
        )
        session = _session(world, shared_link=link)
    occurrence = session.occurrences.get()
    with time_machine.travel(occurrence.prompt_at + timedelta(minutes=1), tick=False):
        assert sessions.prompts_due() == [occurrence.pk]
        ids = sessions.plan_prompts(occurrence.pk, send=False)
        assert len(ids) == 3
        sent = _deliver(ids)

    assert sorted(m.to[0] for m in sent) == [
        "facilitator@example.org",
        "manager.a@example.org",
        "practitioner.a@example.org",
    ]
    message = next(m for m in sent if m.to == ["practitioner.a@example.org"])
    assert message.subject == "Reflection session: Ward reflection, Tuesday 2 March 2027, 10:00"
    parts = _parts(message)
    text, html, ics = parts["text/plain"], parts["text/html"], parts["text/calendar"]
    for body in (text, html):
        assert "What surprised you?" in body
        assert "What will you change?" in body
        assert f"/cycles/{world.cycle_a.public_id}/reflection/new/" in body
        assert "Library" in body
        assert f"ask {display_name(world.personas.facilitator)}, who scheduled" in body
        assert f"Hello {world.personas.practitioner_a.first_name}" in body
    # The resident link's token is never stored, so it cannot be in the email.
    assert "/r/" not in text
    assert "/r/" not in html
    assert "<li>What surprised you?</li>" in html

    unsubscribe = message.extra_headers["List-Unsubscribe"]
    assert unsubscribe.startswith("<https://hls.example.org/email/unsubscribe/")
    assert message.extra_headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert unsubscribe.strip("<>") in text
    assert unsubscribe.strip("<>") in html

    calendar = Calendar.from_ical(ics)
    assert str(calendar["METHOD"]) == "REQUEST"
    event = calendar.walk("VEVENT")[0]
    assert event["DTSTART"].params["TZID"] == "Europe/London"
    assert event.decoded("DTSTART") == STARTS.astimezone(
        sessions.zoneinfo.ZoneInfo("Europe/London")
    )
    assert str(event["UID"]) == f"{session.public_id}-20270302T100000Z@hls.example.org"
    assert str(event["SUMMARY"]) == "Ward reflection"
    # The same UID in the series download, so a calendar keeps one event.
    series = Calendar.from_ical(sessions.calendar_bytes(session, [occurrence]))
    assert series.walk("VEVENT")[0]["UID"] == event["UID"]


@pytest.mark.django_db
def test_a_prompt_comes_in_the_invitees_language_and_time_zone(world):
    Profile.objects.create(user=world.personas.manager_a, language="uk", timezone="Asia/Tbilisi")
    with time_machine.travel(NOW, tick=False):
        session = _session(world)
        ids = sessions.plan_prompts(session.occurrences.get().pk, send=False)
        sent = {m.to[0]: m for m in _deliver(ids)}
    ukrainian = _parts(sent["manager.a@example.org"])["text/plain"]
    assert "березня" in ukrainian  # March, in Ukrainian, as dates are written there
    assert "14:00" in ukrainian
    assert "Asia/Tbilisi" in ukrainian
    english = _parts(sent["practitioner.a@example.org"])["text/plain"]
    assert "March" in english
    assert "Asia/Tbilisi" not in english
    # Someone without a profile gets one, in the engagement's language.
    assert Profile.objects.get(user=world.personas.practitioner_a).language == "en"


@pytest.mark.django_db
def test_a_title_with_a_line_break_cannot_inject_a_header(world):
    with time_machine.travel(NOW, tick=False):
        session = _session(world)
        # Saved past the form and the service, as an old row or a bug might.
        ReflectionSession.objects.filter(pk=session.pk).update(
            title="Ward\r\nBcc: everyone@example.org"
        )
        ids = sessions.plan_prompts(session.occurrences.get().pk, send=False)
        sent = _deliver(ids)
    assert len(sent) == 3
    raw = sent[0].message().as_bytes().decode()
    assert "\nBcc:" not in raw
    assert sent[0].subject.startswith("Reflection session: Ward Bcc: everyone@example.org,")


@pytest.mark.django_db
def test_a_prompt_found_after_the_session_ended_is_not_sent(world):
    with time_machine.travel(NOW, tick=False):
        session = _session(world)
    occurrence = session.occurrences.get()
    with time_machine.travel(occurrence.ends_at + timedelta(minutes=1), tick=False):
        assert sessions.plan_prompts(occurrence.pk) == []
        occurrence.refresh_from_db()
        assert occurrence.prompted is not None
        assert occurrence.reminded is not None
        assert sessions.reminders_due() == []
    assert not Email.objects.exists()


@pytest.mark.django_db
def test_people_who_can_no_longer_see_the_cycle_are_not_prompted(world):
    from engagements.models import Membership

    with time_machine.travel(NOW, tick=False):
        session = _session(world)
        occurrence = session.occurrences.get()
        ids = sessions.plan_prompts(occurrence.pk, send=False)
        # practitioner_a leaves organisation A between the planning and the sending.
        Membership.objects.filter(user=world.personas.practitioner_a).delete()
        sent = _deliver(ids)
    assert sorted(m.to[0] for m in sent) == ["facilitator@example.org", "manager.a@example.org"]
    assert Email.objects.get(recipient="practitioner.a@example.org").status == Email.Status.SKIPPED


@pytest.mark.django_db
def test_building_a_batch_takes_a_fixed_number_of_queries(world, django_assert_max_num_queries):
    from engagements.models import Membership
    from tests.factories import MembershipFactory, UserFactory

    people: list[Any] = [
        MembershipFactory(
            user=UserFactory(username=f"person.{i}"),
            organisation=world.personas.org_a,
            role=Membership.Role.PRACTITIONER,
        ).user
        for i in range(40)
    ]
    for i, person in enumerate(people[:20]):
        Profile.objects.create(user=person, language="uk" if i % 2 else "en")
    with time_machine.travel(NOW, tick=False):
        session = _session(world)
        session.invitees.add(*people)
        ids = sessions.plan_prompts(session.occurrences.get().pk, send=False)
        rows = list(Email.objects.filter(pk__in=ids).select_related("user"))
        assert len(rows) == 43
        with django_assert_max_num_queries(4):
            built = sessions.build_prompts(rows)
    assert all(message is not None for message in built.values())


# --- reminders ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_reminder_goes_only_to_those_who_have_not_reflected_or_unsubscribed(world):
    p = world.personas
    with time_machine.travel(NOW, tick=False):
        session = _session(world)
    occurrence = session.occurrences.get()
    with time_machine.travel(occurrence.prompt_at, tick=False):
        sessions.plan_prompts(occurrence.pk, send=False)
    with time_machine.travel(occurrence.ends_at, tick=False):
        services.reflection_add(
            cycle=world.cycle_a, by=p.manager_a, author_role="manager", text="Calls helped."
        )
    sessions.reminders_set(user_id=p.facilitator.pk, on=False)
    with time_machine.travel(occurrence.reminder_at - timedelta(minutes=1), tick=False):
        assert sessions.reminders_due() == []
    with time_machine.travel(occurrence.reminder_at + timedelta(minutes=1), tick=False):
        assert sessions.reminders_due() == [occurrence.pk]
        ids = sessions.plan_reminders(occurrence.pk, send=False)
        assert sessions.plan_reminders(occurrence.pk, send=False) == []  # claimed once
        sent = _deliver(ids)
    assert [m.to[0] for m in sent] == ["practitioner.a@example.org"]
    message = sent[0]
    assert message.subject == "Your reflection after Ward reflection"
    assert message.extra_headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    text = _parts(message)["text/plain"]
    assert f"/cycles/{world.cycle_a.public_id}/reflection/new/" in text
    assert "text/calendar" not in _parts(message)


@pytest.mark.django_db
def test_a_reminder_is_skipped_for_someone_who_reflects_or_unsubscribes_before_it_goes(world):
    p = world.personas
    with time_machine.travel(NOW, tick=False):
        session = _session(world)
    occurrence = session.occurrences.get()
    with time_machine.travel(occurrence.prompt_at, tick=False):
        sessions.plan_prompts(occurrence.pk, send=False)
    with time_machine.travel(occurrence.reminder_at + timedelta(minutes=1), tick=False):
        ids = sessions.plan_reminders(occurrence.pk, send=False)
        assert len(ids) == 3
        services.reflection_add(
            cycle=world.cycle_a, by=p.manager_a, author_role="manager", text="Late words."
        )
        sessions.reminders_set(user_id=p.practitioner_a.pk, on=False)
        sent = _deliver(ids)
    assert [m.to[0] for m in sent] == ["facilitator@example.org"]
    skipped = Email.objects.filter(kind=Email.Kind.REMINDER, status=Email.Status.SKIPPED)
    assert set(skipped.values_list("recipient", flat=True)) == {
        "manager.a@example.org",
        "practitioner.a@example.org",
    }


@pytest.mark.django_db
def test_the_unsubscribe_link_in_a_prompt_stops_the_reminders(world):
    p = world.personas
    with time_machine.travel(NOW, tick=False):
        session = _session(world)
    occurrence = session.occurrences.get()
    with time_machine.travel(occurrence.prompt_at, tick=False):
        sent = _deliver(sessions.plan_prompts(occurrence.pk, send=False))
    message = next(m for m in sent if m.to == ["practitioner.a@example.org"])
    url = urlsplit(message.extra_headers["List-Unsubscribe"].strip("<>")).path
    # What a mail provider sends for RFC 8058: a POST with this body, no cookie, no CSRF token.
    response = Client(enforce_csrf_checks=True).post(
        url, "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 200
    assert Profile.objects.get(user=p.practitioner_a).reminders is False
    with time_machine.travel(occurrence.reminder_at + timedelta(minutes=1), tick=False):
        sent = _deliver(sessions.plan_reminders(occurrence.pk, send=False))
    assert sorted(m.to[0] for m in sent) == ["facilitator@example.org", "manager.a@example.org"]


@pytest.mark.django_db
def test_an_engagement_session_reminds_those_who_reflected_on_no_cycle(world):
    p = world.personas
    with time_machine.travel(NOW, tick=False):
        session = sessions.session_create(
            engagement=world.engagement,
            by=p.facilitator,
            invitees=[p.manager_a, p.manager_b],
            title="All partners",
            first_date=date(2027, 3, 2),
            start_time=clock(10, 0),
        )
    occurrence = session.occurrences.get()
    with time_machine.travel(occurrence.prompt_at, tick=False):
        sent = _deliver(sessions.plan_prompts(occurrence.pk, send=False))
    body = _parts(sent[0])["text/plain"]
    assert f"/engagements/{world.engagement.public_id}/" in body
    with time_machine.travel(occurrence.ends_at, tick=False):
        services.reflection_add(
            cycle=world.cycle_b, by=p.manager_b, author_role="manager", text="Warm words."
        )
    with time_machine.travel(occurrence.reminder_at, tick=False):
        sent = _deliver(sessions.plan_reminders(occurrence.pk, send=False))
    assert [m.to[0] for m in sent] == ["manager.a@example.org"]


# --- with a real worker and a real SMTP server ----------------------------------------------


def _wait_until(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


def _settled() -> bool:
    return not Email.objects.filter(
        status__in=[Email.Status.PENDING, Email.Status.SENDING, Email.Status.HANDED]
    ).exists()


def _due_now(world) -> SessionOccurrence:
    """A session tomorrow whose prompt is already due: no time travel while the worker runs."""
    tomorrow = timezone.localdate() + timedelta(days=1)
    session = _session(world, first_date=tomorrow, prompt_lead_hours=72)
    return session.occurrences.get()


@pytest.mark.worker
def test_prompts_arrive_once_per_invitee_even_when_the_task_runs_twice(
    world, celery_worker, smtp_sink
):
    occurrence = _due_now(world)
    assert send_session_prompts() == 1
    assert send_session_prompts() == 0  # the next beat finds nothing due
    assert sessions.plan_prompts(occurrence.pk) == []  # a retried task: already claimed
    _wait_until(lambda: len(smtp_sink.messages) >= 3 and _settled())
    time.sleep(0.3)  # anything extra would have arrived by now

    received = Counter(m["X-Envelope-To"] for m in smtp_sink.messages)
    assert received == Counter(
        {
            "facilitator@example.org": 1,
            "manager.a@example.org": 1,
            "practitioner.a@example.org": 1,
        }
    )
    message = smtp_sink.messages[0]
    assert message["Subject"].startswith("Reflection session: Ward reflection,")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    parts = _mime_parts(message)
    assert set(parts) == {"text/plain", "text/html", "text/calendar"}
    event = Calendar.from_ical(parts["text/calendar"]).walk("VEVENT")[0]
    assert event["DTSTART"].params["TZID"] == "Europe/London"
    assert event.decoded("DTSTART").astimezone(UTC) == occurrence.starts_at
    assert set(Email.objects.values_list("status", flat=True)) == {Email.Status.SENT}


@pytest.mark.worker
def test_two_beats_at_once_prompt_each_invitee_once(world, celery_worker, smtp_sink):
    occurrence = _due_now(world)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def beat() -> None:
        try:
            barrier.wait()
            send_session_prompts()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=beat) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    _wait_until(lambda: len(smtp_sink.messages) >= 3 and _settled())
    time.sleep(0.3)
    assert sorted(m["X-Envelope-To"] for m in smtp_sink.messages) == [
        "facilitator@example.org",
        "manager.a@example.org",
        "practitioner.a@example.org",
    ]
    assert Email.objects.filter(object_id=occurrence.pk, kind=Email.Kind.PROMPT).count() == 3


@pytest.mark.worker
def test_a_refused_address_shows_on_the_session_page(world, celery_worker, smtp_sink):
    from tests.conftest import verified_client

    smtp_sink.refuse["practitioner.a@example.org"] = "550 5.1.1 No such mailbox"
    occurrence = _due_now(world)
    send_session_prompts()
    _wait_until(lambda: len(smtp_sink.messages) >= 2 and _settled())
    failed = Email.objects.get(recipient="practitioner.a@example.org")
    assert failed.status == Email.Status.FAILED
    url = reverse("engagements:session", args=[occurrence.session.public_id])
    page = verified_client(world.personas.facilitator).get(url).content.decode()
    assert "550 5.1.1 No such mailbox" in page
    assert "practitioner.a@example.org" in page


@pytest.mark.worker
def test_the_reminder_task_reminds_through_the_worker(world, celery_worker, smtp_sink):
    occurrence = _due_now(world)
    # As if the prompt went out and the session is long over.
    SessionOccurrence.objects.filter(pk=occurrence.pk).update(
        prompted=timezone.now() - timedelta(days=2),
        reminder_at=timezone.now() - timedelta(minutes=1),
    )
    services.reflection_add(
        cycle=world.cycle_a, by=world.personas.manager_a, author_role="manager", text="Words."
    )
    assert send_session_reminders() == 1
    assert send_session_reminders() == 0
    _wait_until(lambda: len(smtp_sink.messages) >= 2 and _settled())
    time.sleep(0.3)
    assert sorted(m["X-Envelope-To"] for m in smtp_sink.messages) == [
        "facilitator@example.org",
        "practitioner.a@example.org",
    ]
    assert all(m["Subject"] == "Your reflection after Ward reflection" for m in smtp_sink.messages)
