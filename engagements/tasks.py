"""Jobs for the engagements app. Each takes ids, loads, and calls a service."""

from __future__ import annotations

import smtplib
from typing import Any

from celery import shared_task
from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import translation

from engagements import services
from engagements.models import Invitation


@shared_task(
    name="engagements.send_invitation",
    autoretry_for=(smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError, ConnectionError),
    retry_backoff=30,
    retry_backoff_max=1800,
    max_retries=8,
)
def send_invitation(invitation_id: int) -> str:
    """Email an invitation (a link to set a password) or a note that a membership was added."""
    invitation = (
        Invitation.objects.select_related("organisation", "invited_by", "accepted_by")
        .filter(pk=invitation_id)
        .first()
    )
    if invitation is None or invitation.revoked is not None:
        return "skipped"
    added = invitation.accepted_by is not None
    if not added and not invitation.is_open:
        return "skipped"
    inviter = invitation.invited_by
    context = {
        "invitation": invitation,
        "organisation": invitation.organisation.name,
        "role": invitation.get_role_display(),
        "inviter": (inviter.get_full_name() or inviter.get_username()) if inviter else "",
        "site_url": settings.SITE_URL,
        "added": added,
        "LANGUAGE_CODE": invitation.language,
    }
    with translation.override(invitation.language):
        if not added:
            token = services.invitation_issue_token(invitation)
            context["link"] = (
                f"{settings.SITE_URL}{reverse('engagements:invitation_accept', args=[token])}"
            )
        subject = render_to_string("emails/invitation_subject.txt", context).strip()
        text = render_to_string("emails/invitation.txt", context)
        html = render_to_string("emails/invitation.html", context)
    message = EmailMultiAlternatives(subject, text, to=[invitation.email])
    message.attach_alternative(html, "text/html")
    message.send()
    return "sent"


@shared_task(name="engagements.run_outbox", ignore_result=True)
def run_outbox(outbox_id: int) -> str:
    """Run one outbox job, once: the row is locked and marked done in the same transaction."""
    from django.db import transaction
    from django.db.models import F
    from django.utils import timezone

    from engagements.exports import EXPORT
    from engagements.models import Outbox
    from engagements.residents import FOLLOW_UP

    try:
        with transaction.atomic():
            # Waits for any other holder (a second copy of this job, the sweeper's update):
            # skipping a locked row could leave the job undone.
            job = Outbox.objects.select_for_update().filter(pk=outbox_id).first()
            if job is None or job.done is not None:
                return "skipped"
            if job.task == EXPORT:
                # Marked done by the export's own job when it ends; until then the sweeper
                # hands it out again every quarter of an hour, in case this message is lost.
                _start_export(job.object_id)
                job.enqueued = timezone.now()
                job.save(update_fields=["enqueued"])
                return "started"
            if job.task == FOLLOW_UP:
                _send_follow_up(job.object_id)
            job.done = timezone.now()
            job.save(update_fields=["done"])
    except Exception:
        # Counted outside the rolled-back transaction; the sweeper gives up after a few.
        Outbox.objects.filter(pk=outbox_id).update(attempts=F("attempts") + 1)
        raise
    return "done"


def _send_follow_up(reflection_id: int) -> None:
    """Thank a resident who asked to hear back, in the language they wrote in."""
    from engagements.models import Reflection

    reflection = (
        Reflection.objects.select_related("cycle__engagement").filter(pk=reflection_id).first()
    )
    if reflection is None or not reflection.follow_up_email:
        return
    context = {
        "question": reflection.cycle.learning_question,
        "engagement": reflection.cycle.engagement.title,
        "site_url": settings.SITE_URL,
        "LANGUAGE_CODE": reflection.language or settings.LANGUAGE_CODE,
    }
    with translation.override(reflection.language or settings.LANGUAGE_CODE):
        subject = render_to_string("emails/resident_follow_up_subject.txt", context).strip()
        text = render_to_string("emails/resident_follow_up.txt", context)
    EmailMultiAlternatives(subject, text, to=[reflection.follow_up_email]).send()


MAX_ATTEMPTS = 8


@shared_task(name="engagements.sweep_outbox", ignore_result=True)
def sweep_outbox() -> int:
    """Enqueue outbox jobs the request could not (broker down) or that were lost."""
    from datetime import timedelta

    from django.db.models import Q
    from django.utils import timezone

    from engagements.models import Outbox

    now = timezone.now()
    stale = (
        Outbox.objects.filter(
            done=None, created__lt=now - timedelta(seconds=20), attempts__lt=MAX_ATTEMPTS
        )
        .filter(Q(enqueued=None) | Q(enqueued__lt=now - timedelta(minutes=15)))
        .values_list("pk", flat=True)[:500]
    )
    ids = list(stale)
    for outbox_id in ids:
        Outbox.objects.filter(pk=outbox_id).update(enqueued=timezone.now())
        run_outbox.apply_async(args=(outbox_id,))
    return len(ids)


# --- the email ledger (engagements/mail.py) -------------------------------------------------

# Jobs that send or plan a batch: limits far below the broker's visibility timeout. The rest
# run under the global limits in settings (CELERY_TASK_TIME_LIMIT), also below it.
SHORT_JOB: dict[str, Any] = {"soft_time_limit": 240, "time_limit": 300}


@shared_task(
    name="engagements.deliver_emails",
    ignore_result=True,
    **SHORT_JOB,
)
def deliver_emails(email_ids: list[int]) -> dict[str, int]:
    """Send one batch of ledger rows; after a temporary failure, the rest go again later."""
    from engagements import mail

    outcome = mail.deliver(email_ids)
    if outcome.retry:
        mail.enqueue(outcome.retry, countdown=outcome.retry_in)
    return {"sent": outcome.sent, "failed": outcome.failed, "skipped": outcome.skipped}


@shared_task(name="engagements.sweep_emails", ignore_result=True)
def sweep_emails() -> int:
    """Hand out again the ledger rows no worker is on (broker was down, a worker was lost)."""
    from engagements import mail

    mail.settle_handed()
    ids = mail.owed()
    mail.enqueue(ids)
    return len(ids)


# --- exports and retention (engagements/exports.py, engagements/retention.py) ---------------


def _start_export(export_id: int) -> None:
    """Hand an export to its own job, outside the outbox's transaction, so its progress shows."""
    build_export.apply_async(args=(export_id,), retry=False)


@shared_task(
    name="engagements.build_export",
    ignore_result=True,
)
def build_export(export_id: int) -> str:
    """Write one export's file; a second copy waits for nothing and does nothing."""
    from engagements import exports

    return exports.build(export_id)


@shared_task(
    name="engagements.run_retention",
    ignore_result=True,
)
def run_retention() -> dict[str, int]:
    """The nightly clean-up: resident input past its retention period, expired exports."""
    from engagements import retention

    return retention.run()


# --- reflection sessions (engagements/sessions.py) ------------------------------------------


@shared_task(
    name="engagements.send_session_prompts",
    ignore_result=True,
    **SHORT_JOB,
)
def send_session_prompts() -> int:
    """Claim each session date whose prompt is due and owe its invitees one email each."""
    from engagements import sessions

    return sessions.prompts_send_due()


@shared_task(
    name="engagements.send_session_reminders",
    ignore_result=True,
    **SHORT_JOB,
)
def send_session_reminders() -> int:
    """Claim each session date whose reminder is due; only those who did not reflect get one."""
    from engagements import sessions

    return sessions.reminders_send_due()


# --- learning digests (engagements/digests.py) ----------------------------------------------


@shared_task(
    name="engagements.digests_due",
    ignore_result=True,
    **SHORT_JOB,
)
def digests_due() -> int:
    """Find each subscriber's and engagement's due digest not made yet; a job each."""
    from engagements import digests

    return digests.enqueue_due()


@shared_task(
    name="engagements.compile_digest",
    ignore_result=True,
    **SHORT_JOB,
)
def compile_digest(
    scope: str, owner_id: int, frequency: str, first_day: str, timezone_name: str
) -> str:
    """Compile, keep and email one digest, once: a second copy finds it made and stops."""
    from engagements import digests

    digest = digests.make_digest(scope, owner_id, frequency, first_day, timezone_name)
    return "made" if digest is not None else "skipped"
