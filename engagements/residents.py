"""Resident links and what residents do through them (DESIGN.md §5): the services.

A link's token is 256 random bits; only its SHA-256 is kept, with a short prefix for support.
A receipt code is derived from the submission key the form carried (an HMAC under the secret
key), so a retried POST shows the same code while only its hash is stored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import time
import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext as _

from engagements.access import audit
from engagements.models import (
    LearningCycle,
    ModerationEvent,
    Outbox,
    Reflection,
    SharedLink,
    WithdrawnSubmission,
)
from engagements.services import Refused

log = logging.getLogger(__name__)

DEFAULT_DAYS = 30


class Withdrawn(Refused):
    def __init__(self) -> None:
        super().__init__(_("You withdrew this reflection, so it was not sent again."))


REDACTED = "[…]"


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


# --- links ----------------------------------------------------------------------------------


@transaction.atomic
def link_create(
    *,
    cycle: LearningCycle,
    by: User,
    label: str,
    days: int = DEFAULT_DAYS,
    max_submissions: int | None = None,
    moderation_mode: str = SharedLink.ModerationMode.HOLD,
    token: str | None = None,
) -> tuple[SharedLink, str]:
    """Make a link; the token is returned once, here, and never stored.

    ``token`` is only for the local demo, which keeps its link across restarts.
    """
    token = token or secrets.token_urlsafe(32)  # 256 bits
    link = SharedLink.objects.create(
        cycle=cycle,
        label=label,
        token_hash=_sha256(token),
        token_prefix=token[:6],
        created_by=by,
        expires=timezone.now() + timedelta(days=days),
        max_submissions=max_submissions,
        moderation_mode=moderation_mode,
    )
    audit(by, "shared_link.created", link, prefix=link.token_prefix)
    return link, token


@transaction.atomic
def link_revoke(*, link: SharedLink, by: User) -> None:
    SharedLink.objects.filter(pk=link.pk, revoked=None).update(
        revoked=timezone.now(), revoked_by=by
    )
    audit(by, "shared_link.revoked", link, prefix=link.token_prefix)


def link_by_token(token: str) -> SharedLink | None:
    """The link a token opens, found by its hash (the same single query whatever the token)."""
    digest = _sha256(token[:200])
    return (
        SharedLink.objects.select_related("cycle__engagement", "cycle__organisation")
        .filter(token_hash=digest)
        .first()
    )


# --- receipts -------------------------------------------------------------------------------


def receipt_code(submission_key: uuid.UUID) -> str:
    """Sixteen letters and digits in four groups, easy to copy from a phone screen."""
    digest = hmac.new(
        settings.SECRET_KEY.encode(), b"receipt:" + submission_key.bytes, hashlib.sha256
    ).digest()
    code = base64.b32encode(digest[:10]).decode()
    return "-".join(code[i : i + 4] for i in range(0, 16, 4))


# Cyrillic letters that look like Latin ones: a code typed on a Ukrainian keyboard still works.
# The code's alphabet has no 0, 1 or 8, so those are read as the letters they look like.
_LOOKALIKES = str.maketrans("АВЕКМНОРСТХІ018", "ABEKMHOPCTXIOIB")  # noqa: RUF001


def normalise_receipt(code: str) -> str:
    letters = "".join(ch for ch in code.upper().translate(_LOOKALIKES) if ch.isalnum())[:16]
    return "-".join(letters[i : i + 4] for i in range(0, len(letters), 4))


def reflection_by_receipt(code: str) -> Reflection | None:
    normalised = normalise_receipt(code)
    if len(normalised) != 19:
        return None
    return (
        Reflection.objects.select_related("cycle__engagement", "stage")
        .filter(receipt_hash=_sha256(normalised))
        .first()
    )


# --- submitting -----------------------------------------------------------------------------


def submit(
    *,
    link: SharedLink,
    submission_key: uuid.UUID,
    text: str,
    identity: str,
    first_name: str,
    better_or_worse: str,
    feeling: str,
    principles: list[str],
    follow_up_email: str,
    language: str,
) -> tuple[Reflection, bool]:
    """Save a resident's reflection once, whatever the number of clicks or retries.

    Returns the reflection and whether this call created it. Raises ``Refused`` when the link
    closed meanwhile (expired, revoked or full).
    """
    existing = Reflection.objects.filter(submission_key=submission_key).first()
    if existing is not None:
        return existing, False
    if WithdrawnSubmission.objects.filter(key=submission_key).exists():
        raise Withdrawn()
    receipt = receipt_code(submission_key)
    try:
        with transaction.atomic():
            now = timezone.now()
            counted = (
                SharedLink.objects.filter(pk=link.pk, revoked=None, expires__gt=now)
                .filter(Q(max_submissions=None) | Q(submissions__lt=F("max_submissions")))
                .update(submissions=F("submissions") + 1, last_used=now)
            )
            if not counted:
                raise Refused(_("This link has closed, so your reflection could not be sent."))
            cycle = link.cycle
            named = identity == Reflection.Identity.NAMED and first_name
            reflection = Reflection.objects.create(
                cycle=cycle,
                text=text,
                author=None,
                author_role=Reflection.AuthorRole.RESIDENT,
                identity=Reflection.Identity.NAMED if named else Reflection.Identity.ANONYMOUS,
                first_name=first_name if named else "",
                principles=principles,
                stage_id=cycle.stage_id,
                moderation=(
                    Reflection.Moderation.HELD
                    if link.moderation_mode == SharedLink.ModerationMode.HOLD
                    else Reflection.Moderation.PUBLISHED
                ),
                language=language,
                shared_link=link,
                better_or_worse=better_or_worse,
                feeling=feeling,
                consent=True,
                follow_up_email=follow_up_email,
                submission_key=submission_key,
                receipt_hash=_sha256(receipt),
            )
            jobs = []
            if follow_up_email:
                jobs.append(Outbox.objects.create(task=FOLLOW_UP, object_id=reflection.pk))
            audit(None, "resident.reflection_added", reflection, link=link.token_prefix)
            transaction.on_commit(lambda: dispatch([job.pk for job in jobs]))
    except IntegrityError:
        # The same submission arrived twice at once: the other one stored it.
        existing = Reflection.objects.filter(submission_key=submission_key).first()
        if existing is None:
            raise
        return existing, False
    return reflection, True


@transaction.atomic
def withdraw(*, reflection: Reflection) -> None:
    """Delete a resident's words at their request; the audit keeps only that it happened."""
    audit(None, "resident.reflection_withdrawn", reflection)
    if reflection.submission_key is not None:
        WithdrawnSubmission.objects.get_or_create(key=reflection.submission_key)
    Outbox.objects.filter(task=FOLLOW_UP, object_id=reflection.pk, done=None).update(
        done=timezone.now()
    )
    reflection.delete()


def export(reflection: Reflection) -> dict[str, Any]:
    """A resident's own words and choices, as they may download them."""
    return {
        "reflection": reflection.text,
        "submitted": reflection.created.isoformat(),
        "learning_question": reflection.cycle.learning_question,
        "shown_as": reflection.first_name or _("Anonymous"),
        "better_or_worse": reflection.get_better_or_worse_display()
        if reflection.better_or_worse
        else None,
        "feeling": reflection.get_feeling_display() if reflection.feeling else None,
        "principles": list(reflection.principles),
        "follow_up_email": reflection.follow_up_email or None,
        "status": reflection.get_moderation_display(),
    }


# --- moderation -----------------------------------------------------------------------------


@transaction.atomic
def moderate(*, reflection: Reflection, action: str, by: User, remove: str = "") -> None:
    locked = Reflection.objects.select_for_update().filter(pk=reflection.pk).first()
    if locked is None:
        raise Refused(_("The resident withdrew this reflection, so it no longer exists."))
    if action == ModerationEvent.Action.APPROVE:
        locked.moderation = Reflection.Moderation.PUBLISHED
    elif action == ModerationEvent.Action.HIDE:
        locked.moderation = Reflection.Moderation.HIDDEN
    elif action == ModerationEvent.Action.REDACT:
        if not remove or remove not in locked.text:
            raise Refused(_("Copy the words to remove exactly as they appear in the reflection."))
        locked.text = locked.text.replace(remove, REDACTED)
    else:
        raise Refused(_("Choose approve, hide or remove part."))
    locked.save(update_fields=["moderation", "text", "updated"])
    ModerationEvent.objects.create(
        reflection=locked, cycle_id=locked.cycle_id, actor=by, action=action
    )
    audit(by, f"moderation.{action}", locked)


# --- the outbox -----------------------------------------------------------------------------

FOLLOW_UP = "engagements.resident_follow_up"
_broker_down_until = 0.0


def dispatch(outbox_ids: list[int]) -> None:
    """Enqueue outbox rows now; if the broker is unreachable, the sweeper does it later.

    Never raises and never waits long: a resident's confirmation must not depend on Redis.
    """
    global _broker_down_until
    if not outbox_ids or time.monotonic() < _broker_down_until:
        return
    from engagements.tasks import run_outbox

    for outbox_id in outbox_ids:
        try:
            run_outbox.apply_async(args=(outbox_id,), retry=False)
        except Exception:
            _broker_down_until = time.monotonic() + 15
            log.warning("broker unreachable; outbox job %s left for the sweeper", outbox_id)
            return
        # No write here: the row stays "not enqueued" until done, so if this message is lost
        # the sweeper sends it again; run_outbox does each job once whatever the copies.
