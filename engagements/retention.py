"""Keeping personal data no longer than needed (DESIGN.md §6): retention and account erasure.

**Retention** (the nightly job ``tasks.run_retention``). For each engagement, resident
reflections (``author_role`` resident) created more than ``engagement.retention_days`` ago:

- are deleted, whatever their moderation state;
- except those an adaptation cites (``Adaptation.reflections``): the adaptation is the
  engagement's accountability trail ("we changed this because residents told us that"), so the
  words stay, and everything that could lead back to the resident goes: the first name, the
  follow-up email, the receipt code's hash, the submission key and the link it came through are
  cleared and the reflection becomes anonymous.

Residents' health-check answers (``models.HealthResponse`` with the resident perspective)
follow the same period, counted from when they were sent: their comments are blanked and the
link and submission key they came through are cleared. Their scores stay as they are: nine
numbers from 1 to 10, counted under "resident" with no name, link or words beside them, cannot
lead back to anyone, and keeping them keeps every round's figures, its change since the round
before and the digests that reported it the same as the day the round closed.

Staff reflections and staff health-check answers are not resident input and are kept. Export
files past their expiry are deleted and their exports marked expired (``exports.expire_due``).
The job works in batches, is idempotent (a second run the same night finds nothing to do, so
two beats do no harm) and writes one audit event per engagement it changed, with counts only.

**Account erasure** (``erase_account``). A person's personal fields go (username replaced by
``deleted-<random>``, names and email blanked, password unusable, account inactive), with
their two-factor devices, sessions, memberships, facilitations, session invitations, personal
digests, exports and sign-in records; their contributions stay, shown as "deleted participant"
(``selectors.display_name``). Their health-check scores stay in the rounds' figures, under the
perspective they counted as, and nothing else of theirs does: the answers no longer point at
the account, and their comments (free text that may name them or others) are blanked, as a
resident's are after the retention period. Erasure is refused, with the reason, while the
person is the only facilitator of an engagement or the only administrator of an organisation
that has other members: either would leave people without anyone who can manage their work.
They hand over first (add a facilitator, make someone an administrator), then erase.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.db import transaction
from django.db.models import CharField, Count, Exists, OuterRef, Q, Value
from django.db.models.functions import Cast, Concat
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from engagements import exports
from engagements.access import audit
from engagements.models import (
    Digest,
    Email,
    Engagement,
    Export,
    HealthResponse,
    HealthScore,
    Invitation,
    Membership,
    Organisation,
    Outbox,
    Profile,
    Reflection,
    ReflectionSession,
)
from engagements.residents import FOLLOW_UP
from engagements.selectors import ERASED_PREFIX
from engagements.services import Refused
from hls.lib.sql import try_advisory_lock

log = logging.getLogger(__name__)

BATCH = 1000
# Stop starting new batches after this long; the next night carries on (tasks time out at 540).
TIME_BUDGET_SECONDS = 420
_LOCK = (0x52455445, 1)  # "RETE": one retention run at a time


# --- retention ------------------------------------------------------------------------------


@dataclass
class Outcome:
    deleted: int = 0
    anonymised: int = 0
    health_anonymised: int = 0
    exports_expired: int = 0
    engagements: int = 0
    finished: bool = True

    def as_dict(self) -> dict[str, int]:
        return {
            "deleted": self.deleted,
            "anonymised": self.anonymised,
            "health_anonymised": self.health_anonymised,
            "exports_expired": self.exports_expired,
            "engagements": self.engagements,
            "finished": int(self.finished),
        }


def _past_retention(engagement: Engagement, now: datetime) -> Any:
    cutoff = now - timedelta(days=engagement.retention_days)
    return Reflection.objects.filter(
        cycle__engagement_id=engagement.pk,
        author_role=Reflection.AuthorRole.RESIDENT,
        created__lt=cutoff,
    )


def _identifying() -> Q:
    """Reflections that still hold something that could lead back to the resident."""
    return (
        ~Q(first_name="")
        | ~Q(follow_up_email="")
        | ~Q(receipt_hash="")
        | Q(submission_key__isnull=False)
        | Q(shared_link__isnull=False)
        | ~Q(identity=Reflection.Identity.ANONYMOUS)
    )


def purge_engagement(
    engagement: Engagement, *, now: datetime, deadline: float
) -> tuple[int, int, bool]:
    """Delete or anonymise one engagement's resident input past retention, batch by batch.

    Returns (deleted, anonymised, finished). Each batch is its own transaction.
    """
    deleted = anonymised = 0
    old = _past_retention(engagement, now)
    cited = Q(adaptations__isnull=False)
    while True:
        if time.monotonic() > deadline:
            return deleted, anonymised, False
        ids = list(old.filter(cited).filter(_identifying()).values_list("pk", flat=True)[:BATCH])
        if not ids:
            break
        with transaction.atomic():
            anonymised += Reflection.objects.filter(pk__in=ids).update(
                first_name="",
                follow_up_email="",
                receipt_hash="",
                submission_key=None,
                shared_link=None,
                identity=Reflection.Identity.ANONYMOUS,
                updated=timezone.now(),
            )
    while True:
        if time.monotonic() > deadline:
            return deleted, anonymised, False
        ids = list(old.exclude(cited).values_list("pk", flat=True).distinct()[:BATCH])
        if not ids:
            break
        with transaction.atomic():
            # Asked again at delete time: an adaptation may have cited one a moment ago.
            doomed = Reflection.objects.filter(pk__in=ids).exclude(cited)
            doomed_ids = list(doomed.values_list("pk", flat=True))
            Outbox.objects.filter(task=FOLLOW_UP, object_id__in=doomed_ids, done=None).update(
                done=timezone.now()
            )
            Reflection.objects.filter(pk__in=doomed_ids).delete()
            deleted += len(doomed_ids)
            if not doomed_ids:
                break
    return deleted, anonymised, True


def _health_identifying() -> Q:
    """Health-check answers that still hold a comment, the link or key they came through, or
    the receipt code that opens them."""
    commented = HealthScore.objects.filter(response=OuterRef("pk")).exclude(comment="")
    return (
        Q(shared_link__isnull=False)
        | Q(submission_key__isnull=False)
        | ~Q(receipt_hash="")
        | Q(Exists(commented))
    )


def anonymise_health_answers(
    engagement: Engagement, *, now: datetime, deadline: float
) -> tuple[int, bool]:
    """Strip residents' health-check answers past retention down to their scores.

    Returns (answers anonymised, finished). Each batch is its own transaction; an answer
    already stripped is not counted again.
    """
    anonymised = 0
    cutoff = now - timedelta(days=engagement.retention_days)
    old = HealthResponse.objects.filter(
        round__engagement_id=engagement.pk,
        perspective=Reflection.AuthorRole.RESIDENT,
        created__lt=cutoff,
    ).filter(_health_identifying())
    while True:
        if time.monotonic() > deadline:
            return anonymised, False
        ids = list(old.values_list("pk", flat=True)[:BATCH])
        if not ids:
            return anonymised, True
        with transaction.atomic():
            HealthScore.objects.filter(response_id__in=ids).exclude(comment="").update(comment="")
            anonymised += HealthResponse.objects.filter(pk__in=ids).update(
                shared_link=None, submission_key=None, receipt_hash=""
            )


def run(now: datetime | None = None) -> dict[str, int]:
    """The nightly job: every engagement's resident input, then expired exports."""
    now = now or timezone.now()
    outcome = Outcome()
    with try_advisory_lock(_LOCK) as got:
        if not got:
            return {"busy": 1}
        deadline = time.monotonic() + TIME_BUDGET_SECONDS
        engagements = Engagement.objects.only("id", "public_id", "retention_days").order_by("id")
        for engagement in engagements.iterator(chunk_size=500):
            deleted, anonymised, finished = purge_engagement(engagement, now=now, deadline=deadline)
            health_anonymised = 0
            if finished:
                health_anonymised, finished = anonymise_health_answers(
                    engagement, now=now, deadline=deadline
                )
            outcome.engagements += 1
            if deleted or anonymised or health_anonymised:
                outcome.deleted += deleted
                outcome.anonymised += anonymised
                outcome.health_anonymised += health_anonymised
                audit(
                    None,
                    "retention.applied",
                    engagement,
                    deleted=deleted,
                    anonymised=anonymised,
                    health_anonymised=health_anonymised,
                    retention_days=engagement.retention_days,
                )
            if not finished:
                outcome.finished = False
                break
        outcome.exports_expired = exports.expire_due(now)
        if outcome.exports_expired:
            audit(
                None,
                "retention.exports_expired",
                object_type="export",
                count=outcome.exports_expired,
            )
    if not outcome.finished:
        log.warning("retention stopped at its time budget; the next run carries on")
    return outcome.as_dict()


# --- account erasure ------------------------------------------------------------------------


def erasure_blockers(user: Any) -> list[tuple[str, str]]:
    """Why the person cannot erase their account yet: (message, the page to fix it), or none."""
    blockers: list[tuple[str, str]] = []
    sole = (
        Engagement.objects.filter(
            pk__in=Engagement.facilitators.through.objects.filter(user_id=user.pk).values(
                "engagement_id"
            )
        )
        .annotate(n=Count("facilitators", distinct=True))
        .filter(n=1)
        .order_by("title")
    )
    for engagement in sole:
        blockers.append(
            (
                _(
                    "You are the only facilitator of “%(engagement)s”. Add another facilitator "
                    "first, so someone can still manage it."
                )
                % {"engagement": engagement.title},
                reverse("engagements:facilitators", args=[engagement.public_id]),
            )
        )
    admin_of = Membership.objects.filter(user=user, role=Membership.Role.ADMIN).select_related(
        "organisation"
    )
    for membership in admin_of:
        others = Membership.objects.filter(organisation_id=membership.organisation_id).exclude(
            user=user
        )
        if others.exists() and not others.filter(role=Membership.Role.ADMIN).exists():
            blockers.append(
                (
                    _(
                        "You are the only administrator of %(organisation)s. Make one of its "
                        "members an administrator first."
                    )
                    % {"organisation": membership.organisation.name},
                    reverse("engagements:members", args=[membership.organisation.public_id]),
                )
            )
    return blockers


def _end_sessions(user_id: int) -> None:
    """Delete the person's stored sessions (their password change ends them anyway)."""
    if settings.SESSION_ENGINE not in (
        "django.contrib.sessions.backends.db",
        "django.contrib.sessions.backends.cached_db",
    ):
        return
    from django.contrib.sessions.models import Session

    mine = []
    live = Session.objects.filter(expire_date__gt=timezone.now())
    for session in live.iterator(chunk_size=500):
        if str(session.get_decoded().get(SESSION_KEY)) == str(user_id):
            mine.append(session.pk)
    Session.objects.filter(pk__in=mine).delete()


@transaction.atomic
def erase_account(*, user: Any) -> None:
    """Remove a person's personal data and keep their contributions (see the module's notes).

    Raises ``Refused`` with the first reason while ``erasure_blockers`` finds any.
    """
    from axes.models import AccessAttempt, AccessFailureLog, AccessLog
    from django_otp.plugins.otp_static.models import StaticDevice
    from django_otp.plugins.otp_totp.models import TOTPDevice

    # Facilitators and memberships are changed one at a time: two people handing over to
    # each other cannot both leave.
    list(
        Engagement.objects.select_for_update(of=("self",))
        .filter(facilitators=user)
        .values_list("pk", flat=True)
    )
    list(
        Organisation.objects.select_for_update(of=("self",))
        .filter(memberships__user=user, memberships__role=Membership.Role.ADMIN)
        .values_list("pk", flat=True)
    )
    blockers = erasure_blockers(user)
    if blockers:
        raise Refused(blockers[0][0])
    now = timezone.now()
    old_username, old_email = user.get_username(), user.email
    audit(user, "account.erased", object_type="user", object_id=str(user.pk))

    TOTPDevice.objects.filter(user=user).delete()
    StaticDevice.objects.filter(user=user).delete()
    Membership.objects.filter(user=user).delete()
    Engagement.facilitators.through.objects.filter(user_id=user.pk).delete()
    ReflectionSession.invitees.through.objects.filter(user_id=user.pk).delete()
    # Health-check answers: the scores stay, counted as before; nothing ties them to the person.
    HealthScore.objects.filter(response__respondent=user).exclude(comment="").update(comment="")
    HealthResponse.objects.filter(respondent=user).update(respondent=None)
    Digest.objects.filter(user=user).delete()
    for export in Export.objects.filter(requested_by=user).only("id", "file_name"):
        exports.delete_file(export)
    Export.objects.filter(requested_by=user).delete()
    Email.objects.filter(user=user, status__in=[Email.Status.PENDING, Email.Status.SENDING]).update(
        status=Email.Status.SKIPPED
    )
    # The ledger keeps that an email went, not to which address.
    Email.objects.filter(user=user).update(
        recipient=Concat(Value("erased-"), Cast("id", output_field=CharField()))
    )
    invitations = Invitation.objects.filter(Q(accepted_by=user) | Q(email__iexact=old_email))
    invitations.filter(accepted=None, revoked=None).update(revoked=now)
    invitations.update(email="")
    AccessAttempt.objects.filter(username=old_username).delete()
    AccessFailureLog.objects.filter(username=old_username).delete()
    AccessLog.objects.filter(username=old_username).delete()
    _end_sessions(user.pk)

    Profile.objects.update_or_create(
        user=user,
        defaults={"erased": now, "digest": Profile.DigestFrequency.OFF, "reminders": False},
    )
    user.username = f"{ERASED_PREFIX}{secrets.token_hex(8)}"
    user.first_name = ""
    user.last_name = ""
    user.email = ""
    user.is_active = False
    user.is_staff = False
    user.is_superuser = False
    user.set_unusable_password()
    user.save()
    user.groups.clear()
    user.user_permissions.clear()
