"""Reflection sessions (DESIGN.md §6): their dates, the prompts before them and the reminders after.

A session is saved with its dates materialised as :class:`SessionOccurrence` rows in UTC, each
start computed from the local date and time in the session's own time zone, so a weekly 10:00
in Europe/London stays at 10:00 there when the clocks change.

Prompts and reminders are owed through the email ledger (``engagements.mail``): a periodic task
claims each due date (``UPDATE … WHERE prompted IS NULL``) and plans one email per invitee in the
same transaction; the ledger's unique key stops a second beat or a retry from owing another.
The builders here turn a batch of ledger rows into messages, rendering each date's text once per
language and time zone and reusing one calendar attachment, so the per-email work is small.

Resident link tokens are never stored (only their hash), so a prompt cannot carry the link
itself: it names the link by its label and asks the invitee to get it from the person who
scheduled the session.
"""

from __future__ import annotations

import calendar
import unicodedata
import zoneinfo
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from email.mime.base import MIMEBase
from email.mime.text import MIMEText
from email.utils import parseaddr
from functools import cache
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.core import signing
from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.formats import date_format
from django.utils.html import escape
from django.utils.translation import gettext as _

from engagements import mail
from engagements.access import audit
from engagements.forms import _timezones
from engagements.models import (
    Email,
    Engagement,
    EngagementPartner,
    LearningCycle,
    Membership,
    Profile,
    Reflection,
    ReflectionSession,
    SessionOccurrence,
    SharedLink,
    Stage,
)
from engagements.selectors import display_name
from engagements.services import Refused, _update_versioned

Recurrence = ReflectionSession.Recurrence

MAX_YEARS = 2
UNSUBSCRIBE_SALT = "hls.email.unsubscribe-reminders"

# --- the dates of a series ------------------------------------------------------------------


class NonexistentTime(Refused):
    """The local time falls in a daylight-saving gap on ``day``: the clocks skip it."""

    def __init__(self, day: date, at: time, zone: str) -> None:
        super().__init__(
            _(
                "There is no %(time)s on %(date)s in %(zone)s: the clocks go forward then. "
                "Choose another start time."
            )
            % {"time": at.strftime("%H:%M"), "date": _day(day), "zone": zone},
            field="start_time",
        )


@cache
def zone_names() -> frozenset[str]:
    """The zones the forms offer (``forms._timezones``, read from disk once per process)."""
    return frozenset(name for name, _label in _timezones())


def _day(day: date) -> str:
    return date_format(day, "j E Y")


def add_months(day: date, months: int) -> date:
    """The same day of the month ``months`` later, or the month's last day if it is shorter."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def add_years(day: date, years: int) -> date:
    return add_months(day, 12 * years)


def series_dates(first: date, recurrence: str, until: date | None) -> list[date]:
    """Every local date of a series, the first included, none after ``until``."""
    if recurrence == Recurrence.ONCE or until is None:
        return [first]
    if recurrence == Recurrence.MONTHLY:
        # Always counted from the first date, so a series on the 31st comes back to the 31st
        # after a short month instead of drifting to the 28th.
        days, months = [], 0
        while (day := add_months(first, months)) <= until:
            days.append(day)
            months += 1
        return days
    step = timedelta(days=14 if recurrence == Recurrence.FORTNIGHTLY else 7)
    days, day = [], first
    while day <= until:
        days.append(day)
        day += step
    return days


def local_start(day: date, at: time, zone: str) -> datetime:
    """``day`` at ``at`` on the wall clocks of ``zone``, as an aware datetime.

    A time the clocks skip (a spring-forward gap) raises :class:`NonexistentTime`; a time they
    pass twice (autumn) is the first of the two.
    """
    tz = zoneinfo.ZoneInfo(zone)
    naive = datetime.combine(day, at.replace(second=0, microsecond=0))
    aware = naive.replace(tzinfo=tz)
    if aware.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != naive:
        raise NonexistentTime(day, at, zone)
    return aware


@dataclass(frozen=True)
class Slot:
    day: date  # the local date
    starts_at: datetime  # UTC
    ends_at: datetime
    prompt_at: datetime
    reminder_at: datetime


def schedule(
    *,
    first_date: date,
    start_time: time,
    zone: str,
    recurrence: str,
    repeat_until: date | None,
    duration_minutes: int,
    prompt_lead_hours: int,
    reminder_after_hours: int,
) -> list[Slot]:
    """The session's dates in UTC, with when each prompt and reminder is due."""
    slots = []
    for day in series_dates(first_date, recurrence, repeat_until):
        starts = local_start(day, start_time, zone).astimezone(UTC)
        ends = starts + timedelta(minutes=duration_minutes)
        slots.append(
            Slot(
                day=day,
                starts_at=starts,
                ends_at=ends,
                prompt_at=starts - timedelta(hours=prompt_lead_hours),
                reminder_at=ends + timedelta(hours=reminder_after_hours),
            )
        )
    return slots


def session_schedule(session: ReflectionSession) -> list[Slot]:
    return schedule(
        first_date=session.first_date,
        start_time=session.start_time,
        zone=session.timezone,
        recurrence=session.recurrence,
        repeat_until=session.repeat_until,
        duration_minutes=session.duration_minutes,
        prompt_lead_hours=session.prompt_lead_hours,
        reminder_after_hours=session.reminder_after_hours,
    )


# --- checks shared by the form and the services ---------------------------------------------


def single_line(value: str) -> bool:
    """No line breaks or control characters: the text goes into email subjects and calendars."""
    return not any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in value)


def check_schedule(
    *,
    first_date: date,
    start_time: time,
    zone: str,
    recurrence: str,
    repeat_until: date | None,
    current: ReflectionSession | None = None,
    now: datetime | None = None,
) -> None:
    """Refuse a schedule that cannot be kept, naming the field to fix (the first problem)."""
    problems = schedule_problems(
        first_date=first_date,
        start_time=start_time,
        zone=zone,
        recurrence=recurrence,
        repeat_until=repeat_until,
        current=current,
        now=now,
    )
    if problems:
        raise problems[0]


def schedule_problems(
    *,
    first_date: date,
    start_time: time,
    zone: str,
    recurrence: str,
    repeat_until: date | None,
    current: ReflectionSession | None = None,
    now: datetime | None = None,
) -> list[Refused]:
    """Every reason the schedule cannot be kept, so a form can show them all at once."""
    now = now or timezone.now()
    if zone not in zone_names():
        return [Refused(_("Choose a time zone from the list."), "timezone")]
    problems = []
    today = now.astimezone(zoneinfo.ZoneInfo(zone)).date()
    # Dates far outside the calendar the product works in stop here: nothing later could be
    # worked out for them (year 9999 has no "two years later").
    if first_date > add_years(today, MAX_YEARS):
        return [Refused(_("Choose a date within the next two years."), "first_date")]
    if first_date < today - timedelta(days=400) and (
        current is None or current.first_date != first_date
    ):
        message = _("This date and time has already passed. Choose a time in the future.")
        return [Refused(message, "first_date")]
    message = ""
    if recurrence != Recurrence.ONCE:
        if repeat_until is None:
            message = _(
                "Say until when the session repeats: a repeating session needs an end date."
            )
        elif repeat_until < first_date:
            message = _("The last date must be on or after the first date.")
        elif repeat_until > add_years(first_date, MAX_YEARS):
            message = _(
                "A series can run for at most two years. Choose an earlier end date, and "
                "schedule a new series nearer the time."
            )
    until_ok = not message
    if message:
        problems.append(Refused(message, "repeat_until"))
    days = series_dates(first_date, recurrence, repeat_until if until_ok else None)
    try:
        starts = [local_start(day, start_time, zone) for day in days]
    except NonexistentTime as gap:  # a time the clocks skip, on the first date or later
        return [*problems, gap]
    moved = current is None or (
        (current.first_date, current.start_time.replace(second=0, microsecond=0), current.timezone)
        != (first_date, start_time.replace(second=0, microsecond=0), zone)
    )
    if moved and starts[0] <= now:
        message = _("This date and time has already passed. Choose a time in the future.")
        problems.insert(0, Refused(message, "first_date"))
    elif until_ok and starts[-1] <= now:
        message = _("All the dates of this session have passed. Choose dates in the future.")
        field = "repeat_until" if recurrence != Recurrence.ONCE else "first_date"
        problems.append(Refused(message, field))
    return problems


# --- who may be invited ---------------------------------------------------------------------


def invitee_candidates(
    engagement: Engagement, cycle: LearningCycle | None = None
) -> QuerySet[User]:
    """People who can see the cycle (or the engagement) through the access rules.

    The same rules as ``access.cycles_for`` and ``access.engagements_for``: facilitators who are
    still members of the learning partner, members of the owning organisation, and members of
    every partner organisation when the cycle is shared with the engagement (or for a session
    of the whole engagement).
    """
    facilitators = Engagement.facilitators.through.objects.filter(
        engagement_id=engagement.pk,
        user__memberships__organisation_id=engagement.learning_partner_id,
    ).values("user_id")
    partners = EngagementPartner.objects.filter(engagement_id=engagement.pk).values(
        "organisation_id"
    )
    if cycle is None:
        organisations = Q(organisation_id__in=partners)
    elif cycle.visibility == LearningCycle.Visibility.ENGAGEMENT:
        organisations = Q(organisation_id__in=partners) | Q(organisation_id=cycle.organisation_id)
    else:
        organisations = Q(organisation_id=cycle.organisation_id)
    members = Membership.objects.filter(organisations).values("user_id")
    return (
        get_user_model()
        .objects.filter(Q(pk__in=facilitators) | Q(pk__in=members), is_active=True)
        .order_by("first_name", "last_name", "username")
    )


def active_links(cycle: LearningCycle | None) -> QuerySet[SharedLink]:
    if cycle is None:
        return SharedLink.objects.none()
    return SharedLink.objects.filter(
        Q(max_submissions=None) | Q(submissions__lt=F("max_submissions")),
        cycle=cycle,
        revoked=None,
        expires__gt=timezone.now(),
    )


def default_questions(engagement: Engagement, cycle: LearningCycle | None) -> str:
    """The current stage's questions; for the whole engagement, those of its busiest stage."""
    if cycle is not None:
        return cycle.stage.questions
    from django.db.models import Count

    stage = (
        Stage.objects.filter(engagement=engagement)
        .annotate(active=Count("cycles", filter=Q(cycles__status=LearningCycle.Status.ACTIVE)))
        .order_by("-active", "position", "id")
        .first()
    )
    return stage.questions if stage is not None else ""


def _check(
    *,
    engagement: Engagement,
    cycle: LearningCycle | None,
    fields: dict[str, Any],
    invitees: Sequence[Any] | None,
    current: ReflectionSession | None = None,
) -> None:
    """What the form checks, kept here too so no caller can save a session that cannot work."""
    if cycle is not None and cycle.engagement_id != engagement.pk:
        raise Refused(_("Choose one of this engagement's cycles."))
    for name in ("title", "location"):
        if name in fields and not single_line(fields[name] or ""):
            raise Refused(_("Use a single line, without line breaks or control characters."), name)
    if not (fields.get("title") or (current.title if current else "")).strip():
        raise Refused(_("Give the session a title."), "title")

    def value(name: str) -> Any:
        return fields[name] if name in fields else getattr(current, name, None)

    first_date, start_time = value("first_date"), value("start_time")
    if first_date is None:
        raise Refused(_("Enter the date of the session."), "first_date")
    if start_time is None:
        raise Refused(_("Enter the start time."), "start_time")
    check_schedule(
        first_date=first_date,
        start_time=start_time,
        zone=value("timezone") or engagement.timezone,
        recurrence=value("recurrence") or Recurrence.ONCE,
        repeat_until=value("repeat_until"),
        current=current,
    )
    link = fields.get("shared_link")
    if link is not None and not active_links(cycle).filter(pk=link.pk).exists():
        raise Refused(_("Choose one of this cycle's open resident links."), "shared_link")
    if invitees is not None:
        people = list(invitees)
        if not people:
            raise Refused(_("Choose at least one person to invite."), "invitees")
        allowed = set(
            invitee_candidates(engagement, cycle)
            .filter(pk__in=[p.pk for p in people])
            .values_list("pk", flat=True)
        )
        if any(p.pk not in allowed for p in people):
            raise Refused(_("Invite only people who can see this cycle or engagement."), "invitees")
        no_email = [display_name(p) for p in people if not (p.email or "").strip()]
        if no_email:
            raise Refused(no_email_message(no_email), "invitees")


def no_email_message(names: list[str]) -> str:
    return _(
        "%(names)s: no email address, so the prompt could not reach them. Untick them, or ask "
        "them to add an email address first."
    ) % {"names": ", ".join(names)}


# --- services -------------------------------------------------------------------------------


@transaction.atomic
def session_create(
    *,
    engagement: Engagement,
    by: Any,
    invitees: Iterable[Any],
    cycle: LearningCycle | None = None,
    **fields: Any,
) -> ReflectionSession:
    """Schedule a session and materialise all its dates.

    ``fields`` are ReflectionSession fields: title, first_date, start_time, and optionally
    duration_minutes, timezone (default the engagement's), recurrence, repeat_until, location,
    questions, shared_link, prompt_lead_hours, reminder_after_hours.
    """
    people = list(invitees)
    fields.setdefault("timezone", engagement.timezone)
    if fields.get("recurrence", Recurrence.ONCE) == Recurrence.ONCE:
        fields["repeat_until"] = None
    _check(engagement=engagement, cycle=cycle, fields=fields, invitees=people)
    session = ReflectionSession.objects.create(
        engagement=engagement, cycle=cycle, created_by=by, **fields
    )
    session.invitees.set(people)
    occurrences_sync(session)
    audit(by, "session.created", session, invitees=len(people))
    return session


@transaction.atomic
def session_update(
    *,
    session: ReflectionSession,
    version: int | None,
    by: Any,
    invitees: Iterable[Any] | None = None,
    **fields: Any,
) -> ReflectionSession:
    """Save changes made on ``version``; future dates not yet prompted follow the new schedule."""
    if session.cancelled is not None:
        raise Refused(_("This session was cancelled, so it can no longer be changed."))
    people = list(invitees) if invitees is not None else None
    if fields.get("recurrence", session.recurrence) == Recurrence.ONCE:
        fields["repeat_until"] = None
    _check(
        engagement=session.engagement,
        cycle=session.cycle,
        fields=fields,
        invitees=people,
        current=session,
    )
    if people is not None:
        fields["invitees"] = people
    _update_versioned(session, version, fields)
    occurrences_sync(session)
    audit(by, "session.updated", session, fields=sorted(fields))
    return session


@transaction.atomic
def session_cancel(*, session: ReflectionSession, by: Any) -> None:
    """No more prompts or reminders; the dates stay listed as cancelled."""
    ReflectionSession.objects.filter(pk=session.pk, cancelled=None).update(
        cancelled=timezone.now(), version=F("version") + 1
    )
    session.refresh_from_db()
    audit(by, "session.cancelled", session)


def occurrences_sync(session: ReflectionSession, *, now: datetime | None = None) -> None:
    """Make the session's future, not yet prompted dates match its schedule.

    Dates already prompted or past stay as they were (people have the invitation); a new date
    is not added on a local day that already has one of those.
    """
    now = now or timezone.now()
    zone = zoneinfo.ZoneInfo(session.timezone)
    wanted = {slot.starts_at: slot for slot in session_schedule(session)}
    kept_days: set[date] = set()
    open_rows: dict[datetime, SessionOccurrence] = {}
    # Locked, in the caller's transaction: the beat that claims a date to prompt it either
    # goes first (the date is then kept as prompted) or waits and sees the dates as changed.
    for occurrence in SessionOccurrence.objects.select_for_update().filter(session=session):
        if occurrence.prompted is not None or occurrence.starts_at <= now:
            kept_days.add(occurrence.starts_at.astimezone(zone).date())
        else:
            open_rows[occurrence.starts_at] = occurrence
    gone = [o.pk for start, o in open_rows.items() if start not in wanted]
    SessionOccurrence.objects.filter(pk__in=gone, prompted=None).delete()
    changed, new = [], []
    for start, slot in wanted.items():
        if start <= now or slot.day in kept_days:
            continue
        row = open_rows.get(start)
        if row is None:
            new.append(
                SessionOccurrence(
                    session=session,
                    starts_at=slot.starts_at,
                    ends_at=slot.ends_at,
                    prompt_at=slot.prompt_at,
                    reminder_at=slot.reminder_at,
                )
            )
        elif (row.ends_at, row.prompt_at, row.reminder_at) != (
            slot.ends_at,
            slot.prompt_at,
            slot.reminder_at,
        ):
            row.ends_at, row.prompt_at, row.reminder_at = (
                slot.ends_at,
                slot.prompt_at,
                slot.reminder_at,
            )
            changed.append(row)
    SessionOccurrence.objects.bulk_create(new)
    SessionOccurrence.objects.bulk_update(changed, ["ends_at", "prompt_at", "reminder_at"])


# --- prompts and reminders ------------------------------------------------------------------


def _period(occurrence: SessionOccurrence) -> str:
    return occurrence.starts_at.astimezone(UTC).isoformat()


def _invitees(session: ReflectionSession) -> QuerySet[User]:
    """The session's invitees who can still see it and have an address to write to."""
    return (
        invitee_candidates(session.engagement, session.cycle)
        .filter(reflection_sessions=session)
        .exclude(email="")
        .exclude(profile__erased__isnull=False)
        .order_by()
    )


def _ensure_profiles(rows: Iterable[tuple[int, str, int | None]], engagement: Engagement) -> None:
    """Profiles for people who have none yet, in the engagement's language and time zone."""
    missing = [
        Profile(user_id=user_id, language=engagement.language, timezone=engagement.timezone)
        for user_id, _email, profile_id in rows
        if profile_id is None
    ]
    Profile.objects.bulk_create(missing, ignore_conflicts=True, batch_size=1000)


def _load(occurrence_id: int) -> SessionOccurrence:
    return SessionOccurrence.objects.select_related("session__engagement", "session__cycle").get(
        pk=occurrence_id
    )


def plan_prompts(
    occurrence_id: int, *, send: bool = True, now: datetime | None = None
) -> list[int]:
    """Claim one date's prompt and owe each invitee one email; ``[]`` if it was claimed before.

    The claim (``prompted IS NULL`` → now) and the ledger rows are written in one transaction:
    a crash undoes both, and a second caller waits for the first and then finds it claimed.
    Returns the ids of the ledger rows still to send; with ``send`` they are enqueued on commit.
    """
    now = now or timezone.now()
    with transaction.atomic():
        # Only the row's own columns in the WHERE: a join would turn it into "id IN (subquery)",
        # which PostgreSQL does not re-check after waiting for a concurrent claim to commit.
        claimed = SessionOccurrence.objects.filter(pk=occurrence_id, prompted=None).update(
            prompted=now
        )
        if not claimed:
            return []
        occurrence = _load(occurrence_id)
        session = occurrence.session
        if session.cancelled is not None:
            return []
        if occurrence.ends_at <= now:
            # Found too late (the scheduler was down): a prompt, or a reminder, for a session
            # that is over would only confuse.
            SessionOccurrence.objects.filter(pk=occurrence_id).update(reminded=now)
            return []
        people = list(_invitees(session).values_list("pk", "email", "profile__id"))
        _ensure_profiles(people, session.engagement)
        return mail.plan(
            Email.Kind.PROMPT,
            occurrence.pk,
            _period(occurrence),
            [mail.Recipient(email, user_id) for user_id, email, _profile in people],
            engagement_id=session.engagement_id,
            send=send,
        )


def _reflected_since(session: ReflectionSession, since: datetime) -> QuerySet[Reflection]:
    scope = (
        Q(cycle_id=session.cycle_id)
        if session.cycle_id
        else Q(cycle__engagement_id=session.engagement_id)
    )
    return Reflection.objects.filter(scope, created__gte=since, author__isnull=False)


def plan_reminders(
    occurrence_id: int, *, send: bool = True, now: datetime | None = None
) -> list[int]:
    """Claim one date's reminder and owe it to invitees who have not reflected since the prompt."""
    now = now or timezone.now()
    with transaction.atomic():
        claimed = SessionOccurrence.objects.filter(
            pk=occurrence_id, reminded=None, prompted__isnull=False
        ).update(reminded=now)
        if not claimed:
            return []
        occurrence = _load(occurrence_id)
        session = occurrence.session
        if session.cancelled is not None:
            return []
        assert occurrence.prompted is not None
        reflected = _reflected_since(session, occurrence.prompted).values("author_id")
        people = list(
            _invitees(session)
            .filter(Q(profile=None) | Q(profile__reminders=True))
            .exclude(pk__in=reflected)
            .values_list("pk", "email", "profile__id")
        )
        _ensure_profiles(people, session.engagement)
        return mail.plan(
            Email.Kind.REMINDER,
            occurrence.pk,
            _period(occurrence),
            [mail.Recipient(email, user_id) for user_id, email, _profile in people],
            engagement_id=session.engagement_id,
            send=send,
        )


def prompts_due(*, now: datetime | None = None, limit: int = 200) -> list[int]:
    now = now or timezone.now()
    return list(
        SessionOccurrence.objects.filter(prompted=None, prompt_at__lte=now, session__cancelled=None)
        .order_by("prompt_at", "id")
        .values_list("pk", flat=True)[:limit]
    )


def reminders_due(*, now: datetime | None = None, limit: int = 200) -> list[int]:
    now = now or timezone.now()
    return list(
        SessionOccurrence.objects.filter(
            reminded=None,
            prompted__isnull=False,
            reminder_at__lte=now,
            session__cancelled=None,
        )
        .order_by("reminder_at", "id")
        .values_list("pk", flat=True)[:limit]
    )


def prompts_send_due() -> int:
    """The beat's job: prompt every date that is due. Returns how many dates it looked at."""
    due = prompts_due()
    for occurrence_id in due:
        plan_prompts(occurrence_id)
    return len(due)


def reminders_send_due() -> int:
    """The beat's job: remind for every date whose reminder is due."""
    due = reminders_due()
    for occurrence_id in due:
        plan_reminders(occurrence_id)
    return len(due)


# --- unsubscribing from reminders -----------------------------------------------------------


def unsubscribe_token(user_id: int) -> str:
    """A per-person token for the one-click link; the signature is the authority, no login."""
    return signing.Signer(salt=UNSUBSCRIBE_SALT).sign(str(user_id))


def unsubscribe_user_id(token: str) -> int | None:
    """The person a token names, or None when it is garbled, tampered or names nobody."""
    if not token or len(token) > 200:
        return None
    try:
        value = signing.Signer(salt=UNSUBSCRIBE_SALT).unsign(token)
    except signing.BadSignature:
        return None
    if not value.isdigit():
        return None
    user_id = int(value)
    if not get_user_model().objects.filter(pk=user_id, is_active=True).exists():
        return None
    return user_id


def unsubscribe_url(user_id: int) -> str:
    return f"{settings.SITE_URL}{reverse('engagements:unsubscribe', args=[unsubscribe_token(user_id)])}"


@transaction.atomic
def reminders_set(*, user_id: int, on: bool) -> Profile:
    """Turn a person's session reminders on or off."""
    profile, _created = Profile.objects.get_or_create(user_id=user_id)
    if profile.reminders != on:
        profile.reminders = on
        profile.save(update_fields=["reminders"])
        audit(
            None,
            "profile.reminders_on" if on else "profile.reminders_off",
            object_type="user",
            object_id=str(user_id),
        )
    return profile


# --- calendars ------------------------------------------------------------------------------


def occurrence_uid(session: ReflectionSession, starts_at: datetime) -> str:
    """The same for a date in the invitation and in the series download, so calendars merge."""
    return f"{session.public_id}-{starts_at.astimezone(UTC):%Y%m%dT%H%M%SZ}@{mail.site_domain()}"


def _session_url(session: ReflectionSession) -> str:
    return f"{settings.SITE_URL}{reverse('engagements:session', args=[session.public_id])}"


def calendar_bytes(
    session: ReflectionSession,
    occurrences: Sequence[SessionOccurrence],
    *,
    method: str = "PUBLISH",
    stamp: datetime | None = None,
) -> bytes:
    """An iCalendar file with one event per date, DTSTART in the session's zone (with TZID)."""
    from icalendar import Calendar, Event

    zone = zoneinfo.ZoneInfo(session.timezone)
    stamp = stamp or timezone.now()
    cal = Calendar()
    cal.add("prodid", "-//HLS Learning Partner//Reflection sessions//EN")
    cal.add("version", "2.0")
    cal.add("method", method)
    organiser = parseaddr(settings.DEFAULT_FROM_EMAIL)[1]
    title = " ".join(session.title.split())
    description = "\n".join(
        [
            *(line.strip() for line in session.questions.splitlines() if line.strip()),
            "",
            _session_url(session),
        ]
    ).strip()
    for occurrence in occurrences:
        event = Event()
        event.add("uid", occurrence_uid(session, occurrence.starts_at))
        event.add("dtstamp", stamp.astimezone(UTC))
        event.add("dtstart", occurrence.starts_at.astimezone(zone))
        event.add("dtend", occurrence.ends_at.astimezone(zone))
        event.add("summary", title)
        event.add("sequence", max(session.version - 1, 0))
        if session.location:
            event.add("location", " ".join(session.location.split()))
        if description:
            event.add("description", description)
        event.add("url", _session_url(session))
        if organiser:
            event.add("organizer", f"mailto:{organiser}", parameters={"CN": "HLS Learning Partner"})
        if session.cancelled is not None:
            event.add("status", "CANCELLED")
        cal.add_component(event)
    if occurrences:
        cal.add_missing_timezones(
            first_date=occurrences[0].starts_at.date() - timedelta(days=366),
            last_date=occurrences[-1].starts_at.date() + timedelta(days=366),
        )
    return bytes(cal.to_ical())


def _invitation_part(occurrence: SessionOccurrence) -> MIMEBase:
    """The .ics attachment of a prompt: built once per date, shared by every message."""
    ics = calendar_bytes(
        occurrence.session,
        [occurrence],
        method="REQUEST",
        stamp=occurrence.prompted or timezone.now(),
    ).decode()
    part = MIMEText(ics, "calendar", "utf-8")
    part.set_param("method", "REQUEST")
    part.add_header("Content-Disposition", "attachment", filename="invitation.ics")
    return part


# --- the emails -----------------------------------------------------------------------------

# Stand-ins rendered once per (date, language, time zone) and swapped per recipient.
NAME_MARK = "HLS-RECIPIENT-NAME-3c9e"
UNSUBSCRIBE_MARK = "HLS-UNSUBSCRIBE-URL-3c9e"


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


def _language(profile: Profile | None, engagement: Engagement) -> str:
    codes = {code for code, _name in settings.LANGUAGES}
    for candidate in (profile.language if profile else "", engagement.language):
        if candidate in codes:
            return candidate
    return settings.LANGUAGE_CODE


def _zone(profile: Profile | None, session: ReflectionSession) -> str:
    name = profile.timezone if profile else ""
    return name if name in zone_names() else session.timezone


def _render(
    kind: str, occurrence: SessionOccurrence, language: str, zone: str, organiser: bool
) -> Rendered:
    session = occurrence.session
    engagement = session.engagement
    cycle = session.cycle
    if cycle is not None:
        reflect_url = reverse("engagements:child_add", args=[cycle.public_id, "reflection"])
    else:
        reflect_url = reverse("engagements:engagement", args=[engagement.public_id])
    link = session.shared_link
    with translation.override(language):
        local = occurrence.starts_at.astimezone(zoneinfo.ZoneInfo(session.timezone))
        theirs = occurrence.starts_at.astimezone(zoneinfo.ZoneInfo(zone))
        context = {
            "LANGUAGE_CODE": language,
            "session": session,
            "title": " ".join(session.title.split()),
            "place": engagement.title if cycle is None else cycle.title,
            "when": date_format(local, "l j E Y, H:i"),
            "zone": session.timezone,
            "when_theirs": date_format(theirs, "l j E Y, H:i") if zone != session.timezone else "",
            "their_zone": zone,
            "minutes": session.duration_minutes,
            "location": " ".join(session.location.split()),
            "questions": [q.strip() for q in session.questions.splitlines() if q.strip()],
            "reflect_url": f"{settings.SITE_URL}{reflect_url}",
            "session_url": _session_url(session),
            "link_label": link.label if link is not None and link.is_active else "",
            "organiser": display_name(session.created_by) if session.created_by else "",
            "is_organiser": organiser,
            "name": NAME_MARK,
            "unsubscribe_url": UNSUBSCRIBE_MARK,
        }
        subject = render_to_string(f"emails/session_{kind}_subject.txt", context)
        return Rendered(
            # One line whatever the title held: a newline in a header would be injection.
            subject=" ".join(subject.split()),
            text=render_to_string(f"emails/session_{kind}.txt", context),
            html=render_to_string(f"emails/session_{kind}.html", context),
        )


def _message(
    rendered: Rendered, name: str, unsubscribe: str, attachment: MIMEBase | None
) -> EmailMessage:
    message = EmailMultiAlternatives(
        rendered.subject,
        rendered.text.replace(NAME_MARK, name).replace(UNSUBSCRIBE_MARK, unsubscribe),
        headers={
            "List-Unsubscribe": f"<{unsubscribe}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            "Auto-Submitted": "auto-generated",
        },
    )
    html = rendered.html.replace(NAME_MARK, escape(name)).replace(UNSUBSCRIBE_MARK, unsubscribe)
    message.attach_alternative(html, "text/html")
    if attachment is not None:
        message.attach(attachment)
    return message


def _build(rows: Sequence[Email], kind: str) -> dict[int, EmailMessage | None]:
    """Messages for one batch of ledger rows: a fixed number of queries whatever its size."""
    out: dict[int, EmailMessage | None] = {row.pk: None for row in rows}
    occurrences = {
        o.pk: o
        for o in SessionOccurrence.objects.filter(
            pk__in={row.object_id for row in rows}
        ).select_related(
            "session__engagement", "session__cycle", "session__shared_link", "session__created_by"
        )
    }
    user_ids = {row.user_id for row in rows if row.user_id is not None}
    profiles = {p.user_id: p for p in Profile.objects.filter(user_id__in=user_ids)}
    still_invited: dict[int, set[int]] = {}
    reflected: dict[int, set[int]] = {}
    for occurrence in occurrences.values():
        session = occurrence.session
        still_invited[occurrence.pk] = set(
            _invitees(session).filter(pk__in=user_ids).values_list("pk", flat=True)
        )
        if kind == "reminder" and occurrence.prompted is not None:
            reflected[occurrence.pk] = set(
                _reflected_since(session, occurrence.prompted)
                .filter(author_id__in=user_ids)
                .values_list("author_id", flat=True)
            )
    rendered: dict[tuple[int, str, str, bool], Rendered] = {}
    attachments: dict[int, MIMEBase] = {}
    for row in rows:
        found = occurrences.get(row.object_id)
        user = row.user
        if found is None or user is None or found.session.cancelled is not None:
            continue
        occurrence = found
        if user.pk not in still_invited[occurrence.pk]:
            continue
        profile = profiles.get(user.pk)
        if kind == "reminder" and (
            (profile is not None and not profile.reminders)
            or user.pk in reflected.get(occurrence.pk, set())
        ):
            continue  # unsubscribed, or reflected since the reminder was planned
        session = occurrence.session
        key = (
            occurrence.pk,
            _language(profile, session.engagement),
            _zone(profile, session),
            user.pk == session.created_by_id,
        )
        if key not in rendered:
            rendered[key] = _render(kind, occurrence, key[1], key[2], key[3])
        attachment = None
        if kind == "prompt":
            if occurrence.pk not in attachments:
                attachments[occurrence.pk] = _invitation_part(occurrence)
            attachment = attachments[occurrence.pk]
        out[row.pk] = _message(
            rendered[key], display_name(user), unsubscribe_url(user.pk), attachment
        )
    return out


@mail.builder(Email.Kind.PROMPT)
def build_prompts(rows: Sequence[Email]) -> dict[int, EmailMessage | None]:
    return _build(rows, "prompt")


@mail.builder(Email.Kind.REMINDER)
def build_reminders(rows: Sequence[Email]) -> dict[int, EmailMessage | None]:
    return _build(rows, "reminder")


# --- reads for the pages --------------------------------------------------------------------


def failed_emails(session: ReflectionSession, limit: int = 50) -> list[Email]:
    """Prompts and reminders of this session the mail server refused for good."""
    return list(
        Email.objects.filter(
            engagement_id=session.engagement_id,
            status=Email.Status.FAILED,
            kind__in=[Email.Kind.PROMPT, Email.Kind.REMINDER],
            object_id__in=SessionOccurrence.objects.filter(session=session).values("pk"),
        )
        .select_related("user")
        .order_by("-created", "-id")[:limit]
    )
