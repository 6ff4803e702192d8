"""Resident links and what residents do through them (DESIGN.md §5): the services.

A link's token is 256 random bits; only its SHA-256 is kept, with a short prefix for support.
A receipt code is derived from the submission key the form carried (an HMAC under the secret
key), so a retried POST shows the same code while only its hash is stored. Reflections and
residents' health-check answers (``engagements.health``) get their codes the same way, and one
lookup (``by_receipt``) finds either.
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
from typing import Any, NamedTuple

from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from engagements.access import audit
from engagements.models import (
    AuditEvent,
    HealthResponse,
    HealthRound,
    LearningCycle,
    ModerationEvent,
    Outbox,
    Reflection,
    SharedLink,
    WithdrawnSubmission,
)
from engagements.services import Refused
from hls.lib.sql import insert_parts

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
    cycle: LearningCycle | None = None,
    health_round: HealthRound | None = None,
    by: User,
    label: str,
    days: int = DEFAULT_DAYS,
    max_submissions: int | None = None,
    moderation_mode: str = SharedLink.ModerationMode.HOLD,
    token: str | None = None,
) -> tuple[SharedLink, str]:
    """Make a link; the token is returned once, here, and never stored.

    A link is for reflections on a ``cycle`` or for answers to a ``health_round``
    (``engagements.health``), never both. ``token`` is only for the local demo, which keeps
    its link across restarts.
    """
    token = token or secrets.token_urlsafe(32)  # 256 bits
    link = SharedLink.objects.create(
        cycle=cycle,
        health_round=health_round,
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
        SharedLink.objects.select_related(
            "cycle__engagement", "cycle__organisation", "health_round__engagement"
        )
        .filter(token_hash=digest)
        .first()
    )


def token_matches(link: SharedLink, token: str) -> bool:
    return hmac.compare_digest(link.token_hash, _sha256(token[:200]))


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


def receipt_hash(code: str) -> str:
    """What is stored of a receipt code (``receipt_code``): its SHA-256, never the code."""
    return _sha256(code)


def by_receipt(code: str) -> Reflection | HealthResponse | None:
    """The reflection or the health-check answer a resident's receipt code opens, or None.

    Both kinds are looked up whatever the first finds, so every code costs the same two index
    probes, found or not (the receipt page answers an unknown code with the same words).
    """
    normalised = normalise_receipt(code)
    if len(normalised) != 19:
        return None
    digest = receipt_hash(normalised)
    reflection = (
        Reflection.objects.select_related("cycle__engagement", "stage")
        .filter(receipt_hash=digest)
        .first()
    )
    answer = (
        HealthResponse.objects.select_related("round__engagement")
        .filter(receipt_hash=digest, perspective=Reflection.AuthorRole.RESIDENT)
        .first()
    )
    return reflection or answer


# --- submitting -----------------------------------------------------------------------------


def submit(
    *,
    link_id: int,
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

    Returns the reflection and whether this call created it. Raises ``Withdrawn`` when the
    resident withdrew this very submission, and ``Refused`` when the link closed meanwhile
    (expired, revoked or full). The link is read inside the statement that stores the
    reflection, so a link closed a moment ago takes nothing in.
    """
    named = identity == Reflection.Identity.NAMED and first_name
    reflection = Reflection(
        text=text,
        author=None,
        author_role=Reflection.AuthorRole.RESIDENT,
        identity=Reflection.Identity.NAMED if named else Reflection.Identity.ANONYMOUS,
        first_name=first_name if named else "",
        principles=principles,
        language=language,
        shared_link_id=link_id,
        better_or_worse=better_or_worse,
        feeling=feeling,
        consent=True,
        follow_up_email=follow_up_email,
        submission_key=submission_key,
        receipt_hash=receipt_hash(receipt_code(submission_key)),
    )
    added = _insert_once(reflection, link_id=link_id, follow_up=bool(follow_up_email))
    if added is None:
        existing = (
            Reflection.objects.select_related("shared_link")
            .filter(submission_key=submission_key)
            .first()
        )
        if existing is not None:
            return existing, False  # a double click, a retry, or the same POST twice at once
        if WithdrawnSubmission.objects.filter(key=submission_key).exists():
            raise Withdrawn()
        raise Refused(_("This link has closed, so your reflection could not be sent."))
    reflection.pk = added.id
    reflection.cycle_id = added.cycle_id
    reflection.stage_id = added.stage_id
    reflection.moderation = added.moderation
    reflection._state.adding = False
    # The link as far as the statement read it; any other field loads if something asks.
    reflection.shared_link = SharedLink.from_db(
        "default", ["id", "public_id", "cycle_id"], [link_id, added.link_public_id, added.cycle_id]
    )
    if added.outbox_id is not None:
        job = added.outbox_id
        transaction.on_commit(lambda: dispatch([job]))
    return reflection, True


class _Added(NamedTuple):
    id: int
    outbox_id: int | None
    cycle_id: int
    stage_id: int
    moderation: str
    link_public_id: uuid.UUID


def _insert_once(reflection: Reflection, *, link_id: int, follow_up: bool) -> _Added | None:
    """Store a resident's reflection in one statement, or nothing.

    One statement is one transaction: the link row is locked while its limits are checked
    (open, not expired, not full), the reflection goes to the link's cycle at the cycle's
    current stage, held or published as the link says, unless its submission key is already
    stored or was withdrawn; only then are the link's count, the follow-up's outbox row and
    the audit event written. A concurrent copy of the same POST waits for the lock, finds the
    key taken and writes nothing. One round trip instead of eight, and no page read of the
    link first, keeps a busy link fast (bench/resident_submit.py).
    """
    now = timezone.now()
    audit_event = AuditEvent(
        action="resident.reflection_added",
        object_type="reflection",
        object_id=str(reflection.public_id),
    )  # its detail (the link's prefix) comes from the link row, in the statement
    outbox = Outbox(task=FOLLOW_UP, object_id=0)  # its object_id is the new reflection's
    hold = SharedLink.ModerationMode.HOLD
    held, published = Reflection.Moderation.HELD, Reflection.Moderation.PUBLISHED
    r_columns, r_values, r_params = insert_parts(
        reflection,
        cycle_id="gate.cycle_id",
        stage_id="gate.stage_id",
        moderation=f"CASE gate.moderation_mode WHEN '{hold}' THEN '{held}' ELSE '{published}' END",
    )
    o_columns, o_values, o_params = insert_parts(outbox, object_id="added.id")
    a_columns, a_values, a_params = insert_parts(
        audit_event, detail="jsonb_build_object('link', gate.token_prefix)"
    )
    link_table = SharedLink._meta.db_table
    # Only table and column names and the models' own choice values are formatted in; the
    # resident's values are all parameters.
    sql = f"""
        WITH gate AS (
            SELECT link.id, link.public_id, link.token_prefix, link.moderation_mode,
                   link.cycle_id, cycle.stage_id
            FROM {link_table} link
            JOIN {LearningCycle._meta.db_table} cycle ON cycle.id = link.cycle_id
            WHERE link.id = %s AND link.revoked IS NULL AND link.expires > %s
              AND (link.max_submissions IS NULL OR link.submissions < link.max_submissions)
              AND NOT EXISTS (
                  SELECT 1 FROM {WithdrawnSubmission._meta.db_table} WHERE key = %s
              )
            FOR UPDATE OF link
        ), added AS (
            INSERT INTO {Reflection._meta.db_table} ({r_columns})
            SELECT {r_values} FROM gate
            ON CONFLICT (submission_key) DO NOTHING
            RETURNING id, cycle_id, stage_id, moderation
        ), counted AS (
            UPDATE {link_table} SET submissions = submissions + 1, last_used = %s
            WHERE id = %s AND EXISTS (SELECT 1 FROM added)
        ), queued AS (
            INSERT INTO {Outbox._meta.db_table} ({o_columns})
            SELECT {o_values} FROM added WHERE %s
            RETURNING id
        ), audited AS (
            INSERT INTO {AuditEvent._meta.db_table} ({a_columns})
            SELECT {a_values} FROM added, gate
        )
        SELECT added.id, (SELECT id FROM queued), added.cycle_id, added.stage_id,
               added.moderation, gate.public_id
        FROM added, gate
    """  # noqa: S608
    params = [
        link_id,
        now,
        reflection.submission_key,
        *r_params,
        now,
        link_id,
        *o_params,
        follow_up,
        *a_params,
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return _Added(*row) if row else None


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
