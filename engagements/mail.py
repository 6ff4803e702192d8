"""The email ledger (DESIGN.md §6): every job email goes through here, exactly once.

A job that owes people an email calls :func:`plan` with the kind, the object, the period and
the recipients. That writes one :class:`~engagements.models.Email` row per recipient; the
unique constraint on (kind, object, recipient, period) means a second beat, a retried job or a
redelivered message adds nothing. After the commit the rows are handed, in batches, to
:func:`deliver`, which for each row:

1. claims it (``pending`` → ``sending``) in its own short transaction;
2. builds the message with the kind's builder and sends it over one SMTP connection, up to
   the last line of its data;
3. marks it ``handed`` in a transaction left open while it sends the final ``.`` that asks
   the server to take the message, commits, and reads the server's reply;
4. marks it ``sent`` (in the same statement as the next row's claim), or ``failed`` for a
   permanent refusal (5xx), or puts it back to ``pending`` with a backoff for a temporary one
   (4xx, a dropped connection).

A worker killed before the ``.`` is written leaves a ``sending`` row: its open transaction
dies with its database connection, and the server has not taken the message (a connection
that drops in the middle of DATA makes it throw the message away), so once the claim is stale
the sweeper hands the row out again. A worker killed once the ``COMMIT`` after the ``.`` is
written leaves a ``handed`` row, and the server has the message (a mail server takes it when
it reads the ``.``, whether or not the client stays for the reply), so the sweeper counts it
sent (RFC 1047 describes this case). Committing *before* the ``.`` would not do: a worker
killed while waiting for that commit's reply leaves the row committed as handed although the
``.`` was never written, and the message would be lost. What is left is the time between
writing the ``.`` and writing the ``COMMIT``, two writes to local sockets a few microseconds
apart; a worker killed exactly there sends the message again, and the deterministic
Message-ID lets receiving servers that recognise it drop the copy.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import re
import smtplib
import socket
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.core.mail.message import sanitize_address
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from engagements.models import Email

log = logging.getLogger(__name__)

Builder = Callable[[Sequence[Email]], dict[int, EmailMessage | None]]
BUILDERS: dict[str, Builder] = {}
# The modules whose builders a worker must know; deliver() imports them first.
BUILDER_MODULES: tuple[str, ...] = ("engagements.sessions", "engagements.digests")


def load_builders() -> None:
    for name in BUILDER_MODULES:
        importlib.import_module(name)


def builder(kind: str) -> Callable[[Builder], Builder]:
    """Register the function that turns ledger rows of ``kind`` into messages.

    It receives the batch's rows (with ``user`` loaded) and returns, by row id, the message to
    send, or None when the email is no longer needed (the row is marked ``skipped``).
    """

    def register(func: Builder) -> Builder:
        BUILDERS[kind] = func
        return func

    return register


@dataclass(frozen=True)
class Recipient:
    email: str
    user_id: int | None = None


# --- planning -------------------------------------------------------------------------------


def plan(
    kind: str,
    object_id: int,
    period: str,
    recipients: Iterable[Recipient],
    *,
    engagement_id: int | None = None,
    send: bool = True,
) -> list[int]:
    """Owe each recipient one email of ``kind`` about ``object_id`` for ``period``.

    Returns the ids of this planning's rows that are still waiting to be sent (new or left
    over from an earlier run); with ``send`` they are enqueued once the transaction commits.
    """
    seen: set[str] = set()
    rows = []
    for recipient in recipients:
        address = normalise_address(recipient.email)
        if not address or address in seen:
            continue
        seen.add(address)
        rows.append(
            Email(
                kind=kind,
                object_id=object_id,
                period=period,
                recipient=address,
                user_id=recipient.user_id,
                engagement_id=engagement_id,
            )
        )
    Email.objects.bulk_create(rows, ignore_conflicts=True, batch_size=1000)
    ids = list(
        Email.objects.filter(
            kind=kind, object_id=object_id, period=period, status=Email.Status.PENDING
        )
        .order_by("id")
        .values_list("id", flat=True)
    )
    if send and ids:
        transaction.on_commit(lambda: enqueue(ids))
    return ids


def normalise_address(address: str) -> str:
    """The address as the ledger keys it: trimmed, one line, the domain in lower case."""
    address = (address or "").strip()
    if not address or any(ch in address for ch in "\r\n\0") or "@" not in address:
        return ""
    local, _, domain = address.rpartition("@")
    return f"{local}@{domain.lower()}"


def enqueue(ids: Sequence[int], *, countdown: float = 0) -> int:
    """Send the ledger rows to the workers in batches; if the broker is down, the sweeper will."""
    from engagements.tasks import deliver_emails

    size = settings.HLS_EMAIL_BATCH
    batches = 0
    for start in range(0, len(ids), size):
        batch = list(ids[start : start + size])
        try:
            deliver_emails.apply_async(args=(batch,), countdown=countdown, retry=False)
        except Exception:
            log.warning("broker unreachable; %d emails left for the sweeper", len(ids) - start)
            break
        batches += 1
    return batches


# --- delivering -----------------------------------------------------------------------------


class TemporaryFailure(Exception):
    """The server said try later (4xx) or the connection failed: retry with backoff."""


class PermanentFailure(Exception):
    """The server refused for good (5xx): stop, and show it to the facilitator."""


def classify(exc: BaseException) -> type[TemporaryFailure] | type[PermanentFailure] | None:
    """Which kind of SMTP failure ``exc`` is, or None if it is not an SMTP failure at all."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        return PermanentFailure if codes and min(codes) >= 500 else TemporaryFailure
    if isinstance(exc, smtplib.SMTPResponseException):
        return PermanentFailure if exc.smtp_code >= 500 else TemporaryFailure
    if isinstance(exc, smtplib.SMTPException | ConnectionError | socket.timeout | OSError):
        return TemporaryFailure
    return None


def describe(exc: BaseException) -> str:
    """A short, content-free account of a failure for the ledger and the facilitator's page."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        code, reply = next(iter(exc.recipients.values()))
        return f"{code} {_text(reply)}"[:300]
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{exc.smtp_code} {_text(exc.smtp_error)}"[:300]
    return f"{type(exc).__name__}: {exc}"[:300]


def _text(reply: bytes | str) -> str:
    return reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)


def backoff(attempt: int) -> int:
    """Seconds before the next try after ``attempt`` temporary failures: doubling, to 30 min.

    The cap stays below the broker's visibility timeout, so a waiting retry is not handed out
    twice.
    """
    base = settings.HLS_EMAIL_RETRY_SECONDS
    return int(min(base * 2 ** max(attempt - 1, 0), 1800))


@dataclass
class Outcome:
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    retry: list[int] | None = None  # ids to try again later, after a temporary failure
    retry_in: int = 0


def _claimable() -> Q:
    return Q(status=Email.Status.PENDING) | Q(status=Email.Status.SENDING, claimed__lt=_stale())


def _stale() -> Any:
    return timezone.now() - timedelta(seconds=settings.HLS_EMAIL_CLAIM_STALE_SECONDS)


# The three steps every email takes are single-row UPDATEs by primary key, written out in SQL:
# at hundreds of emails a second the ORM's building of each statement cost more than running it.
# Only the model's own table name is put into the text; every value goes as a parameter.
_TABLE = Email._meta.db_table
_CLAIM_SQL = f"""
    UPDATE {_TABLE}
       SET status = 'sending', claimed = %(now)s, attempts = attempts + 1, next_try = NULL
     WHERE id = %(claim)s
       AND (status = 'pending' OR (status = 'sending' AND claimed < %(stale)s))
"""  # noqa: S608
_SENT_SQL = f"""
    UPDATE {_TABLE}
       SET status = 'sent', sent = %(now)s, next_try = NULL, error = ''
     WHERE id = %(sent)s AND status IN ('sending', 'handed')
"""  # noqa: S608
# The previous row's "sent" goes with the next row's claim: one statement, one commit.
_SENT_THEN_CLAIM_SQL = f"WITH finished AS ({_SENT_SQL}) {_CLAIM_SQL}"
_HAND_OVER_SQL = f"UPDATE {_TABLE} SET status = 'handed' WHERE id = %s AND status = 'sending'"  # noqa: S608


def _claim(email_id: int, *, sent: int | None = None) -> bool:
    """Claim ``email_id`` (``pending`` → ``sending``), first marking ``sent`` as sent."""
    params = {"now": timezone.now(), "claim": email_id, "stale": _stale(), "sent": sent}
    with connection.cursor() as cursor:
        cursor.execute(_CLAIM_SQL if sent is None else _SENT_THEN_CLAIM_SQL, params)
        return cursor.rowcount == 1


def _mark_sent(email_id: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute(_SENT_SQL, {"now": timezone.now(), "sent": email_id})


@contextlib.contextmanager
def _handing_over(email_id: int) -> Iterator[None]:
    """Mark the row ``handed``, committed only once the block (writing the final ``.``) is done.

    See the module's docstring: killed inside the block, the worker leaves the row ``sending``.
    """
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(_HAND_OVER_SQL, [email_id])
        yield


def _finish(email_id: int, status: str, error: str = "", next_try: Any = None) -> None:
    now = timezone.now()
    Email.objects.filter(
        pk=email_id, status__in=(Email.Status.SENDING, Email.Status.HANDED)
    ).update(
        status=status,
        sent=now if status == Email.Status.SENT else None,
        claimed=None if status == Email.Status.PENDING else F("claimed"),
        next_try=next_try,
        error=error,
    )


def deliver(ids: Sequence[int]) -> Outcome:
    """Send the ledger rows ``ids`` that are still owed, each at most once."""
    load_builders()
    rows = list(
        Email.objects.filter(_claimable(), pk__in=ids)
        .filter(Q(next_try=None) | Q(next_try__lte=timezone.now()))
        .select_related("user")
        .order_by("id")
    )
    by_kind: dict[str, list[Email]] = {}
    for row in rows:
        by_kind.setdefault(row.kind, []).append(row)
    messages: dict[int, EmailMessage | None] = {}
    for kind, kind_rows in by_kind.items():
        messages.update(BUILDERS[kind](kind_rows))
    unneeded = [row.pk for row in rows if messages.get(row.pk) is None]
    outcome = Outcome(
        skipped=Email.objects.filter(_claimable(), pk__in=unneeded).update(
            status=Email.Status.SKIPPED, claimed=None
        )
        if unneeded
        else 0
    )
    wanted = [(row, msg) for row in rows if (msg := messages.get(row.pk)) is not None]

    connection_ = get_connection(fail_silently=False)
    # The last row the server accepted, to be marked sent along with the next claim. If this
    # worker dies first, the row is left handed over, which the sweeper counts as sent.
    accepted: int | None = None
    try:
        for index, (row, message) in enumerate(wanted):
            claimed, accepted = _claim(row.pk, sent=accepted), None
            if not claimed:
                continue  # another worker has it, or it went meanwhile
            try:
                _send_one(connection_, message, row)
            except Exception as exc:
                failure, reason = classify(exc), describe(exc)
                if failure is None:
                    _finish(row.pk, Email.Status.PENDING, reason)
                    raise
                if (
                    failure is PermanentFailure
                    or row.attempts + 1 >= settings.HLS_EMAIL_MAX_ATTEMPTS
                ):
                    _finish(row.pk, Email.Status.FAILED, reason)
                    outcome.failed += 1
                    log.warning("email %s not sent: %s", row.pk, reason)
                    continue
                # The server asked us to wait: the rest of the batch waits with this one.
                outcome.retry = [r.pk for r, _ in wanted[index:]]
                outcome.retry_in = _defer(outcome.retry, row.attempts + 1, reason)
                return outcome
            accepted = row.pk
            outcome.sent += 1
    finally:
        if accepted is not None:
            _mark_sent(accepted)
        connection_.close()
    return outcome


def _defer(ids: list[int], attempts: int, reason: str) -> int:
    """Put the failed row (the first of ``ids``) and the rest back until its backoff ends."""
    wait = backoff(attempts)
    later = timezone.now() + timedelta(seconds=wait)
    _finish(ids[0], Email.Status.PENDING, reason, next_try=later)
    Email.objects.filter(pk__in=ids[1:], status=Email.Status.PENDING).update(next_try=later)
    log.info("email %s deferred %ss: %s", ids[0], wait, reason)
    return wait


def _send_one(connection: Any, message: EmailMessage, row: Email) -> None:
    message.to = [row.recipient]
    message.extra_headers.setdefault("Message-ID", f"<hls-{row.pk}-{row.kind}@{site_domain()}>")
    message.connection = connection
    # A connection the server dropped (421 closes it) is opened again for the next message.
    if getattr(connection, "connection", None) is None:
        connection.open()
    smtp = getattr(connection, "connection", None)
    if isinstance(smtp, smtplib.SMTP):
        try:
            _transmit(smtp, message, lambda: _handing_over(row.pk))
        except Exception:
            if smtp.sock is None:  # the server closed it (a 421, a drop): a new one next time
                connection.close()
            raise
        return
    # Not SMTP (the console or memory backends of development and tests): one step.
    with _handing_over(row.pk):
        sent = message.send()
    if not sent:
        raise smtplib.SMTPServerDisconnected("the connection closed before the message was sent")


def _transmit(
    smtp: smtplib.SMTP,
    message: EmailMessage,
    handing_over: Callable[[], contextlib.AbstractContextManager[None]],
) -> None:
    """``smtplib.SMTP.sendmail`` for one message, writing the ``.`` inside ``handing_over``.

    Until the ``.`` the server holds nothing it would deliver; after its 250 reply it has taken
    the message. Keeping the two apart is what lets a killed worker's row say which it was.
    """
    encoding = message.encoding or settings.DEFAULT_CHARSET
    sender = sanitize_address(message.from_email, encoding)
    recipients = [sanitize_address(address, encoding) for address in message.recipients()]
    data = message.message().as_bytes(linesep="\r\n")
    if smtp.sock is not None:
        # The "." goes in a write of its own: without this, Nagle's algorithm holds it until
        # the server acknowledges the data, which a delayed ACK puts off by up to 40 ms a
        # message (ten times slower on loopback).
        smtp.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    smtp.ehlo_or_helo_if_needed()
    code, reply = smtp.mail(sender)
    if code != 250:
        _reset(smtp, code)
        raise smtplib.SMTPSenderRefused(code, reply, sender)
    refused = {}
    for recipient in recipients:
        code, reply = smtp.rcpt(recipient)
        if code not in (250, 251):
            refused[recipient] = (code, reply)
            if code == 421:
                break
    if refused:
        _reset(smtp, max(code for code, _ in refused.values()))
        raise smtplib.SMTPRecipientsRefused(refused)
    code, reply = smtp.docmd("DATA")
    if code != 354:
        _reset(smtp, code)
        raise smtplib.SMTPDataError(code, reply)
    # Dot-stuffing (RFC 5321 4.5.2), and the data's last line ended, as sendmail does.
    body = re.sub(rb"(?m)^\.", b"..", data)
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    smtp.send(body)
    with handing_over():
        smtp.send(b".\r\n")
    code, reply = smtp.getreply()
    if code != 250:
        if code == 421:
            smtp.close()
        raise smtplib.SMTPDataError(code, reply)


def _reset(smtp: smtplib.SMTP, code: int) -> None:
    """Abandon the transaction after a refusal; a 421 means the server is closing."""
    if code == 421:
        smtp.close()
        return
    with contextlib.suppress(smtplib.SMTPException, OSError):
        smtp.rset()


def site_domain() -> str:
    """The site's host name, for Message-IDs and calendar UIDs."""
    from urllib.parse import urlsplit

    return urlsplit(settings.SITE_URL).hostname or "localhost"


# --- sweeping -------------------------------------------------------------------------------


def owed(limit: int = 5000) -> list[int]:
    """Rows no worker is on: pending past their grace or backoff, or claimed by a lost worker."""
    now = timezone.now()
    grace = now - timedelta(seconds=settings.HLS_EMAIL_PENDING_GRACE_SECONDS)
    stale = now - timedelta(seconds=settings.HLS_EMAIL_CLAIM_STALE_SECONDS)
    return list(
        Email.objects.filter(
            Q(status=Email.Status.PENDING, next_try=None, created__lt=grace)
            | Q(status=Email.Status.PENDING, next_try__lte=now)
            | Q(status=Email.Status.SENDING, claimed__lt=stale)
        )
        .order_by("id")
        .values_list("id", flat=True)[:limit]
    )


def settle_handed() -> int:
    """Count as sent the rows a lost worker had handed over (see the module's docstring)."""
    stale = timezone.now() - timedelta(seconds=settings.HLS_EMAIL_CLAIM_STALE_SECONDS)
    settled = Email.objects.filter(status=Email.Status.HANDED, claimed__lt=stale).update(
        status=Email.Status.SENT,
        sent=F("claimed"),
        error="worker lost after handing it to the server; counted as sent",
    )
    if settled:
        log.warning("%d emails handed over by a lost worker counted as sent", settled)
    return settled


def failures_for(engagement_id: int, limit: int = 50) -> list[Email]:
    """Emails of an engagement that could not be sent, newest first, for its facilitators."""
    return list(
        Email.objects.filter(engagement_id=engagement_id, status=Email.Status.FAILED)
        .select_related("user")
        .order_by("-created", "-id")[:limit]
    )
