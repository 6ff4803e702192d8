"""Session prompts to 10,000 invitees through two real Celery workers and a local SMTP server.

Run 1 measures emails per second from planning the prompts to the last one accepted by the
SMTP server. Run 2 sends the next date's prompts and kills one worker with SIGKILL halfway;
the other worker and the sweeper (called here as beat would call it, with the stale-claim and
grace periods shortened from minutes to seconds) must still give every invitee exactly one
email. Duplicates and missing emails are counted over both runs.

The floor: the same number of ready-made messages sent straight to the same SMTP server by two
processes with smtplib, one connection each: no database, no templates, no Celery.

    make bench NAME=fanout
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness

INVITEES = int(os.environ.get("BENCH_INVITEES", "10000"))
BENCH_REDIS_DB = 15
QUEUE = "bench-fanout"
# Production waits minutes before it treats a claim as lost; the bench compresses that.
STALE_SECONDS = 3
os.environ["REDIS_URL"] = _harness.redis_url_for_db(
    os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"), BENCH_REDIS_DB
)
os.environ["HLS_EMAIL_CLAIM_STALE_SECONDS"] = str(STALE_SECONDS)
os.environ["HLS_EMAIL_PENDING_GRACE_SECONDS"] = str(STALE_SECONDS)
_harness.setup("fanout")

import signal  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from datetime import datetime, timedelta  # noqa: E402
from datetime import time as clock  # noqa: E402

from aiosmtpd.controller import Controller  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.contrib.auth.hashers import make_password  # noqa: E402
from django.utils import timezone  # noqa: E402

from engagements import services, sessions  # noqa: E402
from engagements.models import (  # noqa: E402
    Email,
    EngagementPartner,
    Membership,
    Organisation,
    Profile,
    ReflectionSession,
    SessionOccurrence,
)
from hls.celery import app  # noqa: E402


class Sink:
    """Counts what the SMTP server accepted: one recipient per message."""

    def __init__(self) -> None:
        self.received: list[str] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        with self.lock:
            self.received.extend(envelope.rcpt_tos)
        return "250 OK"


def seed() -> list[SessionOccurrence]:
    User = get_user_model()
    facilitator = User.objects.create_user("bench-facilitator", "facilitator@example.org")
    partner = Organisation.objects.create(
        name="Learning Partners", kind=Organisation.Kind.LEARNING_PARTNER, city="Leeds"
    )
    council = Organisation.objects.create(
        name="Leeds City Council", kind=Organisation.Kind.LOCAL_AUTHORITY, city="Leeds"
    )
    Membership.objects.create(user=facilitator, organisation=partner, role=Membership.Role.MANAGER)
    engagement = services.engagement_create(
        learning_partner=partner, by=facilitator, title="Leaving hospital well", purpose="To learn."
    )
    EngagementPartner.objects.create(
        engagement=engagement, organisation=council, joined=timezone.localdate()
    )
    cycle = services.cycle_start(
        engagement=engagement,
        organisation=council,
        by=facilitator,
        title="Hospital discharge",
        learning_question="What helps people settle at home after hospital?",
        scale="team",
    )
    password = make_password(None)
    users = User.objects.bulk_create(
        [
            User(
                username=f"invitee{i}",
                email=f"invitee{i}@example.org",
                first_name=f"Person {i}",
                password=password,
            )
            for i in range(INVITEES)
        ],
        batch_size=2000,
    )
    Membership.objects.bulk_create(
        [
            Membership(user=u, organisation=council, role=Membership.Role.PRACTITIONER)
            for u in users
        ],
        batch_size=2000,
    )
    Profile.objects.bulk_create(
        [Profile(user=u, language="uk" if i % 4 == 0 else "en") for i, u in enumerate(users)],
        batch_size=2000,
    )
    today = timezone.localdate()
    session = ReflectionSession.objects.create(
        engagement=engagement,
        cycle=cycle,
        title="Monthly reflection",
        first_date=today + timedelta(days=7),
        start_time=clock(10, 0),
        timezone="Europe/London",
        recurrence=ReflectionSession.Recurrence.WEEKLY,
        repeat_until=today + timedelta(days=21),
        questions="What surprised you this week?\nWhat would you do differently?",
        created_by=facilitator,
    )
    session.invitees.through.objects.bulk_create(
        [session.invitees.through(reflectionsession=session, user=u) for u in users],
        batch_size=2000,
    )
    occurrences = []
    for week in range(2):
        starts = timezone.make_aware(
            datetime.combine(session.first_date + timedelta(weeks=week), session.start_time)
        )
        occurrences.append(
            SessionOccurrence.objects.create(
                session=session,
                starts_at=starts,
                ends_at=starts + timedelta(hours=1),
                prompt_at=starts - timedelta(hours=24),
                reminder_at=starts + timedelta(hours=25),
            )
        )
    return occurrences


def worker_env(smtp_port: int) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("DJANGO_LOG_LEVEL", None)
    env.update(
        DATABASE_URL=_harness.bench_database_url(),
        EMAIL_URL=f"smtp://127.0.0.1:{smtp_port}",
        DJANGO_SITE_URL="https://hls.example.org",
    )
    return env


def start_worker(name: str, env: dict[str, str], log_dir: Path) -> subprocess.Popen[bytes]:
    log = (log_dir / f"{name}.log").open("wb")
    return subprocess.Popen(
        [
            str(Path(sys.executable).parent / "celery"),
            "-A",
            "hls",
            "worker",
            "--pool",
            "solo",
            "-Q",
            QUEUE,
            "-n",
            f"{name}@bench",
            "--without-gossip",
            "--without-mingle",
            "--loglevel",
            "WARNING",
        ],
        cwd=_harness.BASE_DIR,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def wait_for_workers(count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        replies = app.control.ping(timeout=1.0) or []
        if len(replies) >= count:
            return
    raise SystemExit(f"{count} workers did not start; see their logs")


def sent(occurrence: SessionOccurrence) -> int:
    return Email.objects.filter(
        object_id=occurrence.pk, kind=Email.Kind.PROMPT, status=Email.Status.SENT
    ).count()


def settle(
    occurrence: SessionOccurrence, *, kill: subprocess.Popen[bytes] | None
) -> tuple[int | None, int]:
    """Wait until every invitee's prompt is sent; kill ``kill`` halfway; sweep when stalled."""
    from engagements.tasks import sweep_emails

    killed_at = None
    last, last_change, sweeps = -1, time.monotonic(), 0
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        done = sent(occurrence)
        if done >= INVITEES:
            break
        if kill is not None and killed_at is None and done >= INVITEES // 2:
            kill.send_signal(signal.SIGKILL)
            kill.wait()
            killed_at = done
            print(f"    killed worker pid {kill.pid} with SIGKILL after {done} sent", flush=True)
        if done != last:
            last, last_change = done, time.monotonic()
        elif time.monotonic() - last_change > STALE_SECONDS + 1:
            sweeps += 1
            handed = sweep_emails()
            print(f"    stalled at {done} sent: the sweeper handed out {handed} emails", flush=True)
            last_change = time.monotonic()
        time.sleep(0.1)
    return killed_at, sweeps


FLOOR_SENDER = """
import smtplib, sys
from email.message import EmailMessage
port, count, offset = map(int, sys.argv[1:4])
message = EmailMessage()
message["Subject"] = "Reflection session"
message["From"] = "noreply@example.org"
message.set_content("What surprised you this week?\\n" * 20)
message.add_alternative("<p>What surprised you this week?</p>" * 20, subtype="html")
with smtplib.SMTP("127.0.0.1", port) as client:
    for i in range(offset, offset + count):
        del message["To"], message["Message-ID"]
        message["To"] = f"floor{i}@example.org"
        message["Message-ID"] = f"<hls-0-floor{i}@example.org>"
        client.send_message(message)
"""


def floor(port: int) -> float:
    """Ready-made messages per second, two sender processes, no database or templates."""
    per_process = INVITEES // 2
    started = time.perf_counter()
    senders = [
        subprocess.Popen(
            [sys.executable, "-c", FLOOR_SENDER, str(port), str(per_process), str(n * per_process)]
        )
        for n in range(2)
    ]
    for process in senders:
        process.wait()
    seconds = time.perf_counter() - started
    print(f"floor: {2 * per_process} ready-made messages in {seconds:.1f} s", flush=True)
    return 2 * per_process / seconds


def main() -> None:
    app.conf.task_default_queue = QUEUE
    occurrences = seed()
    sink = Sink()
    port = _harness.free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    log_dir = Path(tempfile.mkdtemp(prefix="bench-fanout-"))
    env = worker_env(port)
    workers = [start_worker(f"w{n}", env, log_dir) for n in (1, 2)]
    runs: list[tuple[str, Counter[str]]] = []
    try:
        wait_for_workers(2)
        print(f"{INVITEES} invitees, 2 solo workers on {os.cpu_count()} cores", flush=True)

        started = time.perf_counter()
        sessions.plan_prompts(occurrences[0].pk)
        settle(occurrences[0], kill=None)
        seconds = time.perf_counter() - started
        rate = INVITEES / seconds
        print(f"run 1: {INVITEES} prompts in {seconds:.1f} s = {rate:.0f} emails/s", flush=True)
        runs.append(("run 1", Counter(sink.received)))
        received_before = len(sink.received)

        started = time.perf_counter()
        sessions.plan_prompts(occurrences[1].pk)
        killed_at, sweeps = settle(occurrences[1], kill=workers[0])
        seconds_killed = time.perf_counter() - started
        print(
            f"run 2: {INVITEES} prompts in {seconds_killed:.1f} s with a worker killed after "
            f"{killed_at}; {sweeps} sweeps",
            flush=True,
        )
        runs.append(("run 2", Counter(sink.received[received_before:])))
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.terminate()
                worker.wait(20)
    time.sleep(0.5)  # the last message's 250 reply reaches the sink's list

    expected = {f"invitee{i}@example.org" for i in range(INVITEES)}
    duplicates = missing = 0
    for occurrence, (name, counts) in zip(occurrences, runs, strict=True):
        dup = sum(c - 1 for c in counts.values() if c > 1)
        miss = len(expected - set(counts))
        duplicates += dup
        missing += miss
        print(f"{name}: {len(counts)} invitees reached, {dup} duplicates, {miss} missing")
        for row in Email.objects.filter(
            recipient__in=sorted(expected - set(counts)), object_id=occurrence.pk
        ).values("recipient", "status", "attempts", "claimed", "sent", "error")[:10]:
            print(f"    missing: {row}")
    failed = Email.objects.filter(status=Email.Status.FAILED).count()
    print(f"ledger rows failed: {failed}", flush=True)

    sink.received.clear()
    floor_rate = floor(port)
    controller.stop()
    print(
        f"goal: >= 200 emails/s ({rate:.0f}); exactly one each over both runs "
        f"({duplicates} duplicates, {missing} missing)",
        flush=True,
    )
    _harness.report(
        "fanout",
        emails_per_s=rate,
        duplicates=duplicates,
        missing=missing,
        floor_emails_per_s=floor_rate,
        ratio_to_floor=rate / floor_rate,
        emails_per_s_with_kill=INVITEES / seconds_killed,
    )


if __name__ == "__main__":
    main()
