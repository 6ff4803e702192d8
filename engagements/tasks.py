"""Jobs for the engagements app. Each takes ids, loads, and calls a service."""

from __future__ import annotations

import smtplib

from celery import shared_task
from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string
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
            context["link"] = (
                f"{settings.SITE_URL}/invitations/{services.invitation_issue_token(invitation)}/"
            )
        subject = render_to_string("emails/invitation_subject.txt", context).strip()
        text = render_to_string("emails/invitation.txt", context)
        html = render_to_string("emails/invitation.html", context)
    message = EmailMultiAlternatives(subject, text, to=[invitation.email])
    message.attach_alternative(html, "text/html")
    message.send()
    return "sent"
