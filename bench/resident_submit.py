"""Residents sending reflections through one shared link, served by gunicorn as in production.

gunicorn serves the product on loopback with production settings (DEBUG off, collected static
files, JSON logs, access log through the redacting logger) as it runs behind the documented TLS
proxy: ``DJANGO_BEHIND_PROXY=true`` and the load generator sends ``X-Forwarded-Proto: https``
and one ``X-Forwarded-For`` address per resident, the way the proxy would. Production always
marks session and CSRF cookies ``Secure`` (no setting turns that off), so plain http is not
how the product is served; the proxy headers make the requests the secure ones it expects.

32 residents (threads, each with its own connection and cookie jar) open the link
(GET /r/<token>), load the form (GET /r/) and then send it again and again, each time with a
fresh submission key and a follow-up email, so every submission also writes an outbox row and
tries to enqueue its job. Phases, each on a fresh gunicorn:

1. as shipped: the per-link limit of submissions per minute answers most POSTs with 429;
2. capacity: the same with that limit raised (HLS_RESIDENT_SUBMIT_LIMIT, a documented setting),
   then the floor: POST to a bare view that inserts one reflection row (bench/_floor_urls.py);
3. Redis down: REDIS_URL points at a closed port, so cache, rate limits and the Celery broker
   are unreachable; afterwards every thank-you page must have its reflection and outbox row.

The BENCH line reports phases 2 and 3 (phase 1 measures the limit, not the code). Environment:
BENCH_WORKERS (default 4), BENCH_WORKER_CLASS (sync), BENCH_RESIDENTS (32), BENCH_WARMUP (10 s),
BENCH_SECONDS (15 s).
"""

from __future__ import annotations

import _harness

_harness.setup("resident_submit")

import contextlib  # noqa: E402
import http.client  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections import Counter  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from urllib.parse import urlencode  # noqa: E402

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402

from engagements import residents, services  # noqa: E402
from engagements.models import (  # noqa: E402
    EngagementPartner,
    Organisation,
    Outbox,
    Reflection,
    SharedLink,
)

BASE_DIR = _harness.BASE_DIR
BIN = Path(sys.executable).parent
WORKERS = int(os.environ.get("BENCH_WORKERS", "4"))
WORKER_CLASS = os.environ.get("BENCH_WORKER_CLASS", "sync")
RESIDENTS = int(os.environ.get("BENCH_RESIDENTS", "32"))
WARMUP = float(os.environ.get("BENCH_WARMUP", "10"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "15"))
SHIPPED_SECONDS = 10.0  # phase 1 only shows what the limit does; it needs no long run
DEAD_REDIS = "redis://127.0.0.1:1/0"  # nothing listens on port 1: connections are refused
BENCH_REDIS_DB = 14  # the bench's queue and rate-limit keys stay out of the everyday database

TEXT = (
    "The bus to the clinic stopped running in March, so my mother now takes two buses and "
    "waits outside in the cold. The new community transport helped for a few weeks, but the "
    "booking line is always busy in the morning."
)


# --- the gunicorn under test ----------------------------------------------------------------


def server_env(port: int, *, redis_url: str, static_root: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    # The harness relaxes these for in-process benches; gunicorn gets production's defaults.
    for name in ("DJANGO_SECURE_SSL_REDIRECT", "DJANGO_LOG_LEVEL", "DJANGO_ALLOWED_HOSTS"):
        env.pop(name, None)
    env.update(
        DJANGO_SETTINGS_MODULE="hls.settings",
        DJANGO_DEBUG="false",
        DJANGO_SECRET_KEY=os.environ["DJANGO_SECRET_KEY"],
        DJANGO_ALLOWED_HOSTS="127.0.0.1",
        DJANGO_SITE_URL=f"https://127.0.0.1:{port}",
        DJANGO_BEHIND_PROXY="true",
        DJANGO_STATIC_ROOT=static_root,
        DATABASE_URL=_harness.bench_database_url(),
        REDIS_URL=redis_url,
        EMAIL_URL="dummy://",
        **extra,
    )
    return env


class Gunicorn:
    def __init__(self, name: str, port: int, env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.port = port
        self.log_path = log_dir / f"gunicorn-{name}.log"
        command = [
            str(BIN / "gunicorn"),
            "_floor_urls:application",
            "--pythonpath",
            str(BASE_DIR / "bench"),
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(WORKERS),
            "--worker-class",
            WORKER_CLASS,
            "--backlog",
            "1024",
            "--graceful-timeout",
            "10",
            "--access-logfile",
            "-",
            "--logger-class",
            "hls.lib.gunicorn_logger.RedactingLogger",
        ]
        if WORKER_CLASS == "gthread":
            command += ["--threads", "4"]
        self.log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            command, cwd=BASE_DIR, env=env, stdout=self.log, stderr=subprocess.STDOUT
        )

    def wait_until_serving(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            with contextlib.suppress(OSError, http.client.HTTPException):
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/robots.txt", headers=proxy_headers(self.port, "10.9.9.9"))
                status = conn.getresponse().status
                conn.close()
                if status == 200:
                    return
            time.sleep(0.2)
        self.stop()
        tail = self.log_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"gunicorn ({self.name}) did not start; its log ends:\n{tail}")

    def pids(self) -> set[int]:
        return {self.process.pid, *descendants(self.process.pid)}

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()

    def log_problems(self) -> Counter[str]:
        """Warnings and errors in its log (the app's JSON lines and gunicorn's own), counted."""
        found: Counter[str] = Counter()
        for line in self.log_path.read_text(errors="replace").splitlines():
            record = None
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    record = json.loads(line)
            if isinstance(record, dict) and record.get("level") in PROBLEMS:
                message = str(record.get("message", "")).strip().split("\n")[0]
                message = re.sub(r"\d+", "N", message)  # one line per kind, not per job id
                found[f"{record['level']} {record.get('logger', '')}: {message[:90]}"] += 1
            elif match := re.search(r"\[(WARNING|ERROR|CRITICAL)\] (.*)", line):
                found[f"{match.group(1)} gunicorn: {match.group(2)[:90]}"] += 1
        return found


PROBLEMS = {"WARNING", "ERROR", "CRITICAL"}


@contextlib.contextmanager
def serving(name: str, port: int, env: dict[str, str], log_dir: Path) -> Iterator[Gunicorn]:
    server = Gunicorn(name, port, env, log_dir)
    try:
        server.wait_until_serving()
        yield server
    finally:
        server.stop()


# --- CPU accounting from /proc (Linux), to see where two cores go ---------------------------


def _proc_stats() -> dict[int, tuple[str, int, float]]:
    """pid -> (command name, parent pid, CPU seconds) for every process we can read."""
    ticks = os.sysconf("SC_CLK_TCK")
    stats = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        comm = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        stats[int(entry)] = (comm, int(fields[1]), (int(fields[11]) + int(fields[12])) / ticks)
    return stats


def _machine_busy_seconds() -> float:
    """CPU seconds spent on anything but idle and iowait, all cores together."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(values[:8]) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> set[int]:
    stats = _proc_stats() if Path("/proc").is_dir() else {}
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {p for p, (_c, ppid, _t) in stats.items() if ppid in frontier} - found
        found |= frontier
    return found


def service_pids(redis_url: str) -> dict[str, set[int]]:
    """The processes of this run's PostgreSQL and Redis, when they run on this machine."""
    found: dict[str, set[int]] = {"postgres": set(), "redis": set()}
    with contextlib.suppress(Exception), connection.cursor() as cursor:
        cursor.execute("SHOW data_directory")
        pidfile = Path(cursor.fetchone()[0]) / "postmaster.pid"
        postmaster = int(pidfile.read_text().split()[0])
        found["postgres"] = {postmaster, *descendants(postmaster)}
    with contextlib.suppress(Exception):
        import redis

        pid = int(redis.Redis.from_url(redis_url, socket_timeout=5).info("server")["process_id"])
        if Path(f"/proc/{pid}/comm").read_text().startswith("redis-server"):
            found["redis"] = {pid}
    return found


def cpu_snapshot(
    server_pids: set[int], services: dict[str, set[int]]
) -> dict[int, tuple[str, float]]:
    """pid -> (role, CPU seconds) for our processes; pid 0 holds the whole machine's busy time."""
    if not Path("/proc").is_dir():
        return {}
    found = {0: ("machine", _machine_busy_seconds())}
    for pid, (_comm, ppid, seconds) in _proc_stats().items():
        if pid in server_pids:
            found[pid] = ("gunicorn", seconds)
        elif pid in services["postgres"] or ppid in services["postgres"]:
            found[pid] = ("postgres", seconds)
        elif pid in services["redis"]:
            found[pid] = ("redis", seconds)
        elif pid == os.getpid():
            found[pid] = ("load generator", seconds)
    return found


def cpu_by_role(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]
) -> dict[str, float]:
    """CPU seconds each role used between two snapshots (processes that exited meanwhile are
    left out), and what other programs on the machine used."""
    if not after:
        return {}
    totals = dict.fromkeys(("gunicorn", "postgres", "redis", "load generator"), 0.0)
    for pid, (role, seconds) in after.items():
        if pid:
            totals[role] += seconds - before.get(pid, (role, 0.0))[1]
    machine = after[0][1] - before[0][1]
    totals["other programs"] = max(0.0, machine - sum(totals.values()))
    return totals


# --- the load generator ---------------------------------------------------------------------


def proxy_headers(port: int, ip: str) -> dict[str, str]:
    """What the TLS proxy in front of gunicorn adds to each request."""
    return {
        "Host": f"127.0.0.1:{port}",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-For": ip,
        "User-Agent": "Mozilla/5.0 (Linux; Android 14) bench/resident_submit",
        "Accept-Language": "en-GB,en;q=0.8",
    }


HIDDEN = re.compile(r'<input[^>]*\bname="(csrfmiddlewaretoken|submission_key|link_ref)"[^>]*>')
VALUE = re.compile(r'\bvalue="([^"]*)"')
RECEIPT = b'id="receipt-code"'


@dataclass
class Sample:
    finished: float
    ms: float
    outcome: str  # saved, busy (429), other:<status>, error:<exception>
    key: str = ""


@dataclass
class Client:
    port: int
    ip: str
    cookies: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def request(
        self, method: str, path: str, form: dict[str, str | list[str]] | None = None
    ) -> tuple[int, bytes]:
        headers = proxy_headers(self.port, self.ip)
        body = None
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if form is not None:
            body = urlencode(form, doseq=True).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            headers["Origin"] = f"https://127.0.0.1:{self.port}"
        try:
            self.conn.request(method, path, body=body, headers=headers)
            response = self.conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()  # the next request reconnects
            raise
        for cookie in response.headers.get_all("Set-Cookie") or []:
            name, _sep, rest = cookie.partition("=")
            value = rest.split(";", 1)[0]
            if value and "max-age=0" not in cookie.lower():
                self.cookies[name.strip()] = value
            else:
                self.cookies.pop(name.strip(), None)
        return response.status, data

    def close(self) -> None:
        self.conn.close()


def open_form(client: Client, token: str) -> dict[str, str]:
    status, _body = client.request("GET", f"/r/{token}")
    assert status == 302, f"GET /r/<token> answered {status}"
    status, body = client.request("GET", "/r/")
    assert status == 200, f"GET /r/ answered {status}"
    fields = {}
    for match in HIDDEN.finditer(body.decode()):
        value = VALUE.search(match.group(0))
        fields[match.group(1)] = value.group(1) if value else ""
    assert set(fields) == {"csrfmiddlewaretoken", "submission_key", "link_ref"}, fields
    uuid.UUID(fields["submission_key"])
    return fields


@dataclass
class Run:
    samples: list[Sample]
    measured_from: float
    measured_to: float
    cpu: dict[str, float]

    def window(self) -> list[Sample]:
        return [s for s in self.samples if self.measured_from <= s.finished <= self.measured_to]

    @property
    def seconds(self) -> float:
        return self.measured_to - self.measured_from

    def rate(self, outcome: str) -> float:
        return sum(s.outcome == outcome for s in self.window()) / self.seconds

    def latencies(self, outcome: str | None = None) -> list[float]:
        return [s.ms for s in self.window() if outcome is None or s.outcome == outcome]

    def outcomes(self) -> Counter[str]:
        return Counter(s.outcome for s in self.window())

    def timeline(self) -> str:
        """Saved per second from the start of the warm-up, "|" where the measurement starts."""
        start = self.measured_from - WARMUP
        seconds = int(self.measured_to - start + 0.999)
        counts = [0] * seconds
        for sample in self.samples:
            second = int(sample.finished - start)
            if sample.outcome == "saved" and 0 <= second < seconds:
                counts[second] += 1
        marks = [str(c) for c in counts]
        marks.insert(int(WARMUP), "|")
        return " ".join(marks)


def drive(
    server: Gunicorn,
    work: str,
    *,
    services: dict[str, set[int]],
    token: str = "",
    measure: float = SECONDS,
) -> Run:
    """RESIDENTS threads send requests without pause; samples from the measured window count."""
    samples: list[Sample] = []
    lock = threading.Lock()
    ready = threading.Barrier(RESIDENTS + 1)
    stop_at = [0.0]
    failures: list[BaseException] = []

    def resident(n: int) -> None:
        client = Client(server.port, f"10.{n // 250}.{n % 250}.{(n * 7) % 250 + 1}")
        mine: list[Sample] = []
        try:
            fields = open_form(client, token) if work == "submit" else {}
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)
            ready.abort()
            return
        try:
            ready.wait()
        except threading.BrokenBarrierError:
            return
        sent = 0
        while time.perf_counter() < stop_at[0]:
            key = ""
            form: dict[str, str | list[str]] = {"text": "floor"}
            path = "/bench-floor/"
            if work == "submit":
                key = str(uuid.uuid4())
                sent += 1
                path = "/r/"
                form = {
                    **fields,
                    "submission_key": key,
                    "text": TEXT,
                    "better_or_worse": "worse",
                    "feeling": "frustrated",
                    "principles": ["human", "systems"],
                    "identity": "anonymous",
                    "consent": "on",
                    "follow_up": "on",
                    "email": f"resident{n}.{sent}@example.org",
                }
            started = time.perf_counter()
            try:
                status, body = client.request("POST", path, form)
                if work == "submit":
                    outcome = (
                        "saved"
                        if status == 200 and RECEIPT in body
                        else "busy"
                        if status == 429
                        else f"other:{status}"
                    )
                else:
                    outcome = "saved" if status == 200 and body == b"ok" else f"other:{status}"
            except (OSError, http.client.HTTPException) as exc:
                outcome = f"error:{type(exc).__name__}"
            finished = time.perf_counter()
            mine.append(Sample(finished, (finished - started) * 1000, outcome, key))
        client.close()
        with lock:
            samples.extend(mine)

    threads = [threading.Thread(target=resident, args=(n,), daemon=True) for n in range(RESIDENTS)]
    for thread in threads:
        thread.start()
    try:
        ready.wait(timeout=120)
    except threading.BrokenBarrierError:
        raise RuntimeError(f"a resident could not open the form: {failures[:1]}") from None
    start = time.perf_counter()
    measured_from = start + WARMUP
    stop_at[0] = measured_from + measure
    time.sleep(max(0.0, measured_from - time.perf_counter()))
    cpu_before = cpu_snapshot(server.pids(), services)
    time.sleep(max(0.0, stop_at[0] - time.perf_counter()))
    cpu_after = cpu_snapshot(server.pids(), services)
    for thread in threads:
        thread.join(timeout=60)
    cpu = cpu_by_role(cpu_before, cpu_after)
    return Run(samples, measured_from, stop_at[0], cpu)


def describe(title: str, run: Run, unit: str = "submissions") -> None:
    ok = run.latencies("saved")
    everything = run.latencies()
    print(
        f"{title}: {run.rate('saved'):.1f} {unit}/s over {run.seconds:.0f} s "
        f"({RESIDENTS} concurrent, {WORKERS} {WORKER_CLASS} workers)",
        flush=True,
    )
    if ok:
        print(
            f"    latency: p50 {_harness.p50(ok):.1f} ms, "
            f"p95 {_harness.p95(ok):.1f} ms, max {max(ok):.1f} ms",
            flush=True,
        )
    slowest = max((s.ms for s in run.samples), default=0.0)
    if slowest > 5 * (_harness.p95(everything) if everything else 0.0):
        print(f"    slowest request of the whole run (warm-up included): {slowest:.0f} ms")
    if not everything:
        whole_run = Counter(s.outcome for s in run.samples)
        print(f"    no request finished in the measured window; whole run: {dict(whole_run)}")
    elif len(everything) != len(ok):
        print(
            f"    all POSTs: {len(everything) / run.seconds:.1f}/s, p95 "
            f"{_harness.p95(everything):.1f} ms; outcomes {dict(run.outcomes())}",
            flush=True,
        )
    if run.cpu and everything:
        per = ", ".join(
            f"{role} {seconds / run.seconds * 100:.0f}%"
            + (f" ({seconds * 1000 / len(everything):.2f} ms/request)" if role in MINE else "")
            for role, seconds in run.cpu.items()
        )
        print(f"    CPU (100% = one core of {os.cpu_count()}): {per}", flush=True)


MINE = {"gunicorn", "postgres", "redis", "load generator"}


# --- seed and orchestration -----------------------------------------------------------------


def seed() -> tuple[SharedLink, str]:
    user = get_user_model().objects.create_user(
        "bench-facilitator", "facilitator@example.org", "bench-password-123"
    )
    partner = Organisation.objects.create(
        name="Learning Partners", kind=Organisation.Kind.LEARNING_PARTNER, city="Leeds"
    )
    council = Organisation.objects.create(
        name="Leeds City Council", kind=Organisation.Kind.LOCAL_AUTHORITY, city="Leeds"
    )
    engagement = services.engagement_create(
        learning_partner=partner, by=user, title="Leaving hospital well", purpose="To learn."
    )
    EngagementPartner.objects.create(
        engagement=engagement, organisation=council, joined=timezone.localdate()
    )
    cycle = services.cycle_start(
        engagement=engagement,
        organisation=council,
        by=user,
        title="Hospital discharge",
        learning_question="What helps people settle at home after hospital?",
        scale="team",
    )
    return residents.link_create(
        cycle=cycle,
        by=user,
        label="Tenants meeting",
        max_submissions=None,
        moderation_mode=SharedLink.ModerationMode.HOLD,
    )


def collect_static(static_root: str, env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, str(BASE_DIR / "manage.py"), "collectstatic", "--noinput", "-v", "0"],
        cwd=BASE_DIR,
        env=env,
        check=True,
    )


def clear_bench_redis(url: str, had_keys: int) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=5)
    if had_keys == 0:
        client.flushdb()  # everything in it came from this run: queued jobs, rate-limit keys
    else:
        print(f"Redis database {BENCH_REDIS_DB} held {had_keys} keys before; left as it is.")


def main() -> None:
    link, token = seed()
    cycle = link.cycle
    assert cycle is not None  # a reflection link
    live_redis = _harness.redis_url_for_db(
        os.environ.get("REDIS_URL", settings.REDIS_URL), BENCH_REDIS_DB
    )
    import redis

    keys_before = int(redis.Redis.from_url(live_redis, socket_timeout=5).dbsize())
    floor_ids = {
        "BENCH_FLOOR_CYCLE_ID": str(cycle.pk),
        "BENCH_FLOOR_STAGE_ID": str(cycle.stage_id),
    }
    lifted = {"HLS_RESIDENT_SUBMIT_LIMIT": "1000000000", **floor_ids}
    services = service_pids(live_redis)
    if Path("/proc/stat").exists():
        before = _machine_busy_seconds()
        time.sleep(3)
        busy = (_machine_busy_seconds() - before) / 3 * 100
        print(f"before start, other programs kept the machine {busy:.0f}% busy", flush=True)
    print(
        f"gunicorn: {WORKERS} {WORKER_CLASS} workers on {os.cpu_count()} cores; "
        f"{RESIDENTS} residents; warm-up {WARMUP:.0f} s, measured {SECONDS:.0f} s",
        flush=True,
    )
    work_dir = Path(tempfile.mkdtemp(prefix="bench-resident-submit-"))
    static_root = str(work_dir / "static")
    try:
        port = _harness.free_port()
        collect_static(static_root, server_env(port, redis_url=live_redis, static_root=static_root))

        env = server_env(port, redis_url=live_redis, static_root=static_root, **floor_ids)
        with serving("shipped", port, env, work_dir) as server:
            shipped = drive(
                server, "submit", services=services, token=token, measure=SHIPPED_SECONDS
            )
        describe("1. as shipped (default per-link flood guard, Redis up)", shipped)

        port = _harness.free_port()
        env = server_env(port, redis_url=live_redis, static_root=static_root, **lifted)
        with serving("capacity", port, env, work_dir) as server:
            capacity = drive(server, "submit", services=services, token=token)
            floor = drive(server, "floor", services=services)
        describe("2. capacity (per-link limit lifted, Redis up)", capacity)
        print(f"    saved per second, warm-up | measured: {capacity.timeline()}", flush=True)
        describe("   floor (bare view inserting one reflection row)", floor, unit="inserts")

        port = _harness.free_port()
        env = server_env(port, redis_url=DEAD_REDIS, static_root=static_root, **lifted)
        with serving("redis-down", port, env, work_dir) as server:
            down = drive(server, "submit", services={**services, "redis": set()}, token=token)
            logged = server.log_problems()
        describe("3. Redis down (cache, rate limits and broker unreachable)", down)
        print(f"    saved per second, warm-up | measured: {down.timeline()}", flush=True)
        for line, count in logged.most_common(6):
            print(f"    logged {count}x: {line}", flush=True)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
        with contextlib.suppress(Exception):
            clear_bench_redis(live_redis, keys_before)

    saved_keys = [s.key for s in down.samples if s.outcome == "saved"]
    stored = Reflection.objects.filter(submission_key__in=saved_keys)
    stored_ids = list(stored.values_list("pk", flat=True))
    outbox = Outbox.objects.filter(task=residents.FOLLOW_UP, object_id__in=stored_ids)
    lost = len(saved_keys) - len(stored_ids)
    missing_jobs = len(stored_ids) - outbox.count()
    not_saved = Counter(s.outcome for s in down.samples if s.outcome != "saved")
    print(
        f"    thank-you pages while Redis was down: {len(saved_keys)}; reflections stored: "
        f"{len(stored_ids)} (lost {lost}); outbox rows: {outbox.count()} (missing "
        f"{missing_jobs}, enqueued {outbox.exclude(enqueued=None).count()}); other answers: "
        f"{dict(not_saved) or 'none'}",
        flush=True,
    )

    throughput = capacity.rate("saved")
    floor_rate = floor.rate("saved")
    p95 = _harness.p95(capacity.latencies("saved"))
    down_rate = down.rate("saved")
    print(
        f"goal: >= 300/s ({throughput:.0f}), >= 0.6 x floor ({throughput / floor_rate:.2f}), "
        f"p95 <= 50 ms ({p95:.0f}), Redis down within 20% ({down_rate / throughput - 1:+.0%}), "
        f"nothing lost ({lost}); as shipped {shipped.rate('saved'):.1f} accepted/s",
        flush=True,
    )
    _harness.report(
        "resident_submit",
        throughput_per_s=throughput,
        floor_per_s=floor_rate,
        ratio_to_floor=throughput / floor_rate,
        p95_ms=p95,
        throughput_redis_down_per_s=down_rate,
        lost_with_redis_down=lost,
    )


if __name__ == "__main__":
    main()
