"""A worker process killed with SIGKILL in the middle of sending session prompts.

Two real worker processes (not threads: a thread cannot be killed) take the prompts from the
real broker and send them to a slow local SMTP server. One is killed mid-batch. The other, with
the sweeper as beat runs it, must leave every invitee with exactly one prompt.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timedelta
from datetime import time as clock
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import time_machine
from django.conf import settings as django_settings
from django.db import connection
from django.utils import timezone

from engagements import sessions
from engagements.models import Email, Membership, ReflectionSession, SessionOccurrence
from engagements.tasks import sweep_emails
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.worker

INVITEES = 40
BATCH = 10
STALE = 2  # seconds before the survivor may take over a claim left by the killed worker


def _database_url() -> str:
    parts = urlsplit(os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/x"))
    return urlunsplit(parts._replace(path="/" + connection.settings_dict["NAME"]))


def _worker(name: str, smtp_port: int, log: Path) -> subprocess.Popen[bytes]:
    from hls.celery import app

    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "REDIS_URL": django_settings.REDIS_URL,
        "EMAIL_URL": f"smtp://127.0.0.1:{smtp_port}",
        "HLS_EMAIL_BATCH": str(BATCH),
        "HLS_EMAIL_CLAIM_STALE_SECONDS": str(STALE),
        "DJANGO_DEBUG": "true",
    }
    return subprocess.Popen(
        [
            str(Path(sys.executable).parent / "celery"),
            "-A",
            "hls",
            "worker",
            "--pool",
            "solo",
            "-Q",
            app.conf.task_default_queue,
            "-n",
            f"{name}@test",
            "--without-gossip",
            "--without-mingle",
            "--loglevel",
            "INFO",
        ],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def _wait_until(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


def _occurrence(world) -> SessionOccurrence:
    people: list[Any] = [
        MembershipFactory(
            user=UserFactory(username=f"invitee{i}"),
            organisation=world.personas.org_a,
            role=Membership.Role.PRACTITIONER,
        ).user
        for i in range(INVITEES)
    ]
    session = ReflectionSession.objects.create(
        engagement=world.engagement,
        cycle=world.cycle_a,
        title="Weekly reflection",
        first_date=timezone.localdate() + timedelta(days=1),
        start_time=clock(10, 0),
        timezone="Europe/London",
        questions="What surprised you?",
        created_by=world.personas.facilitator,
    )
    session.invitees.set([person.pk for person in people])
    starts = timezone.make_aware(datetime.combine(session.first_date, session.start_time))
    return SessionOccurrence.objects.create(
        session=session,
        starts_at=starts,
        ends_at=starts + timedelta(hours=1),
        prompt_at=starts - timedelta(hours=24),
        reminder_at=starts + timedelta(hours=25),
    )


def test_a_worker_killed_mid_batch_leaves_every_invitee_one_prompt(
    world, transactional_db, smtp_sink, settings, tmp_path
):
    settings.HLS_EMAIL_BATCH = BATCH
    settings.HLS_EMAIL_CLAIM_STALE_SECONDS = STALE
    smtp_sink.rcpt_delay = 0.05
    occurrence = _occurrence(world)
    first = _worker("first", smtp_sink.port, tmp_path / "first.log")
    second = None
    try:
        sessions.plan_prompts(occurrence.pk)
        _wait_until(lambda: len(smtp_sink.messages) >= BATCH + 3)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        sent_when_killed = len(smtp_sink.messages)
        assert sent_when_killed < INVITEES, "the batch finished before the kill"
        # A claimed but unsent row, and the rest of the killed worker's batch, are left over.
        assert Email.objects.exclude(status=Email.Status.SENT).exists()

        second = _worker("second", smtp_sink.port, tmp_path / "second.log")

        def everyone_reached() -> bool:
            if Email.objects.filter(status=Email.Status.SENT).count() == INVITEES:
                return True
            # As beat would, every minute: what no worker is on is handed out again.
            with time_machine.travel(timezone.now() + timedelta(minutes=11)):
                sweep_emails()
            time.sleep(0.5)
            return False

        _wait_until(everyone_reached, timeout=90)
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(20)
    time.sleep(0.3)
    received = Counter(m["X-Envelope-To"] for m in smtp_sink.messages)
    assert received == Counter({f"invitee{i}@example.org": 1 for i in range(INVITEES)})
    assert not Email.objects.exclude(status=Email.Status.SENT).exists()


# A process that sends one ledger row and kills itself with SIGKILL at a chosen point of the
# SMTP exchange: right after the message's data; with the row marked handed over but the final
# "." not yet written; or once the "." is written (and the handover committed), before the
# server's reply is read.
_KILL_AT = r"""
import os, signal, smtplib, sys
import django
django.setup()
from django.core.mail import EmailMessage
from engagements import mail

point, email_id = sys.argv[1], int(sys.argv[2])
mail.BUILDER_MODULES = ()
mail.BUILDERS["prompt"] = lambda rows: {r.pk: EmailMessage("Hello", "Body", to=[]) for r in rows}
real_send, real_getreply = smtplib.SMTP.send, smtplib.SMTP.getreply
dot_written = []

def send(self, data):
    data = data if isinstance(data, bytes) else data.encode()
    last = data == b".\r\n"
    if point == "before_dot" and last:
        os.kill(os.getpid(), signal.SIGKILL)
    real_send(self, data)
    if point == "after_data" and b"Body" in data:
        os.kill(os.getpid(), signal.SIGKILL)
    if last:
        dot_written.append(True)

def getreply(self):
    if point == "after_dot" and dot_written:
        os.kill(os.getpid(), signal.SIGKILL)
    return real_getreply(self)

smtplib.SMTP.send, smtplib.SMTP.getreply = send, getreply
mail.deliver([email_id])
"""


@pytest.mark.parametrize(
    ("point", "left_as", "arrived_before_sweep"),
    [
        ("after_data", Email.Status.SENDING, 0),
        # Marked handed over, killed before the "." went: the mark dies with the worker's
        # transaction. (Committed before the ".", it would stay and the email would be lost.)
        ("before_dot", Email.Status.SENDING, 0),
        ("after_dot", Email.Status.HANDED, 1),
    ],
)
def test_a_worker_killed_either_side_of_the_final_dot_leaves_exactly_one_email(
    transactional_db, smtp_sink, monkeypatch, point, left_as, arrived_before_sweep
):
    from django.core.mail import EmailMessage

    # The same plain message as the killed process's (the session's builder needs a session).
    monkeypatch.setattr(sessions.mail, "BUILDER_MODULES", ())
    monkeypatch.setitem(
        sessions.mail.BUILDERS,
        Email.Kind.PROMPT,
        lambda rows: {r.pk: EmailMessage("Hello", "Body", to=[]) for r in rows},
    )
    [email_id] = sessions.mail.plan(
        Email.Kind.PROMPT, 1, "p", [sessions.mail.Recipient("person@example.org")], send=False
    )
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "EMAIL_URL": f"smtp://127.0.0.1:{smtp_sink.port}",
        "DJANGO_SETTINGS_MODULE": "hls.settings",
        "DJANGO_DEBUG": "true",
    }
    killed = subprocess.run(
        [sys.executable, "-c", _KILL_AT, point, str(email_id)],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    # A connection dropped inside DATA makes the server throw the message away; once it has
    # the ".", the message is its to deliver.
    # The sink's own thread records what it took (waiting long enough to see none come, too).
    smtp_sink.wait_for(1, timeout=10 if arrived_before_sweep else 1)
    assert len(smtp_sink.messages) == arrived_before_sweep
    row = Email.objects.get(pk=email_id)
    assert row.status == left_as
    # Once the claim is stale, the sweeper settles the row: sent again, or counted as sent.
    with time_machine.travel(timezone.now() + timedelta(minutes=6)):
        sweeps = sessions.mail.settle_handed()
        owed = sessions.mail.owed()
        assert sessions.mail.deliver(owed).sent == (1 if left_as == Email.Status.SENDING else 0)
    assert sweeps == (1 if left_as == Email.Status.HANDED else 0)
    assert Email.objects.get(pk=email_id).status == Email.Status.SENT
    assert [m["X-Envelope-To"] for m in smtp_sink.messages] == ["person@example.org"]
