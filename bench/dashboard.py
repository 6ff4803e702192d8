"""The partner dashboard at national scale, against its own SQL run alone.

Seeds, with COPY (psycopg 3 ``cursor.copy``) and bulk inserts, 20 engagements (Europe/London,
the default four stages), 200 partner organisations (10 per engagement), 20,000 people (100
per organisation, one in five a manager), 2,000 learning cycles (10 per organisation, across
stages and scales, a third shared with the engagement) and 20,000 adaptations; then
reflections over the 52 weeks before now: first 10,000, then 990,000 more (1,000,000), each
a random cycle's, by one of its organisation's people or (15%) a resident, of whose words 5%
wait for review and 3% are hidden.

At 10,000 and again at 1,000,000 reflections, signed in as a facilitator of one engagement
(two-factor done, as after a real sign-in), through the Django test client with production
settings and the whole middleware stack:

- **page**: GET ``/engagements/<id>/dashboard/`` (the default: last 12 weeks, everything);
- **htmx**: the filter update, GET of the same URL with an organisation and 26 weeks and the
  ``HX-Request`` / ``HX-Target`` headers, which renders only the ``#dashboard`` partial;
- **floor**: the very statements each request ran (captured from it), executed alone on a
  plain psycopg connection and fetched: what any server of this page must pay the database.

Each is warmed up, then timed request by request (``BENCH_RUNS``, default 200). The query
counts at both sizes must be equal. The cross-engagement dashboard of a facilitator of all 20
engagements (``/dashboard/``, a fifth of all reflections in its 12 weeks) is timed too, with its
own floor, and reported in the same line (``everywhere_*``); the goals are the engagement's.

The indexes the dashboard reads (published reflections by cycle and time with the author
columns, so the counts read the index alone; held resident reflections by cycle, for "waiting
for review"; adaptations by cycle and time) are the models' own (migration 0008), so the
loading below keeps them up to date as the application would.

Goals (reported, not asserted): p95 <= 150 ms at 1,000,000; <= 3 x the floor; 1,000,000 vs
10,000 <= 2 x; the same number of queries.
"""

from __future__ import annotations

import _harness

_harness.setup("dashboard")

import os  # noqa: E402
import random  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from datetime import date, datetime, timedelta  # noqa: E402
from typing import Any  # noqa: E402

import psycopg  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.contrib.auth.hashers import make_password  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.utils import timezone  # noqa: E402
from django_otp.plugins.otp_totp.models import TOTPDevice  # noqa: E402

from engagements import services  # noqa: E402
from engagements.models import (  # noqa: E402
    Adaptation,
    Engagement,
    EngagementPartner,
    LearningCycle,
    Membership,
    Organisation,
    Reflection,
)

ENGAGEMENTS = 20
ORGANISATIONS_PER_ENGAGEMENT = 10
PEOPLE_PER_ORGANISATION = 100
CYCLES_PER_ORGANISATION = 10
ADAPTATIONS = 20_000
SMALL, LARGE = 10_000, 1_000_000
WEEKS = 52
RUNS = int(os.environ.get("BENCH_RUNS", "200"))
WARMUP = 10
GOAL_P95_MS = 150.0
GOAL_RATIO = 3.0
GOAL_SCALE = 2.0
HTMX = {"HX-Request": "true", "HX-Target": "dashboard-body"}
TEXTS = [
    "We listened to {n} people at the hub this week and changed how we book visits.",
    "Families told us the letters were confusing; we rewrote them with {n} of them.",
    "The ward called {n} people the day after discharge. Most wanted a named person.",
    "Trust between the teams is growing; {n} of us met without an agenda for once.",
    "Nothing much happened this week. We are waiting on {n} referrals to come back.",
]


def copy_rows(table: str, columns: str, rows: Iterator[tuple[object, ...]]) -> int:
    n = 0
    with connection.cursor() as cursor, cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
            n += 1
    return n


@dataclass
class World:
    facilitator: Any  # facilitates Engagement 00
    everywhere: Any  # facilitates all 20
    engagement: Engagement
    cycles: list[LearningCycle]
    people: dict[int, list[int]]  # user ids by organisation id
    adaptations: int
    now: datetime


@dataclass
class Size:
    """What one size measured: milliseconds per request (or per floor run), and the SQL."""

    page: list[float]
    htmx: list[float]
    page_floor: list[float]
    htmx_floor: list[float]
    everywhere: list[float]
    everywhere_floor: list[float]
    page_sql: list[str]
    htmx_sql: list[str]


def seed_world(rng: random.Random) -> World:
    user_model = get_user_model()
    password = make_password("bench-password-123")
    lp = Organisation.objects.create(
        name="Learning Partner", kind=Organisation.Kind.LEARNING_PARTNER
    )
    facilitator = user_model.objects.create(
        username="facilitator@example.org", email="facilitator@example.org", password=password
    )
    everywhere = user_model.objects.create(
        username="everywhere@example.org", email="everywhere@example.org", password=password
    )
    for person in (facilitator, everywhere):
        Membership.objects.create(user=person, organisation=lp, role=Membership.Role.MANAGER)
        TOTPDevice.objects.create(user=person, name="phone", confirmed=True)
    engagements = [
        services.engagement_create(
            learning_partner=lp,
            by=everywhere,
            title=f"Engagement {e:02d}",
            purpose="To learn together.",
        )
        for e in range(ENGAGEMENTS)
    ]
    engagements[0].facilitators.add(facilitator)
    organisations = Organisation.objects.bulk_create(
        Organisation(name=f"Partner {i:03d}", kind=Organisation.Kind.LOCAL_AUTHORITY, city="Leeds")
        for i in range(ENGAGEMENTS * ORGANISATIONS_PER_ENGAGEMENT)
    )
    EngagementPartner.objects.bulk_create(
        EngagementPartner(
            engagement=engagements[i // ORGANISATIONS_PER_ENGAGEMENT],
            organisation=organisation,
            joined=date(2025, 1, 6),
        )
        for i, organisation in enumerate(organisations)
    )
    table = user_model._meta.db_table
    copy_rows(
        table,
        "username, email, password, first_name, last_name, is_staff, is_active, "
        "is_superuser, date_joined",
        (
            (
                f"p{o}.{n}@example.org",
                f"p{o}.{n}@example.org",
                password,
                rng.choice(["Ann", "Olena", "Sam", "Priya", "Taras", "Joe"]),
                f"Surname{n}",
                False,
                True,
                False,
                timezone.now(),
            )
            for o in range(len(organisations))
            for n in range(PEOPLE_PER_ORGANISATION)
        ),
    )
    people: dict[int, list[int]] = {}
    for pk, username in user_model.objects.filter(username__startswith="p").values_list(
        "pk", "username"
    ):
        people.setdefault(int(username[1:].split(".")[0]), []).append(pk)
    copy_rows(
        Membership._meta.db_table,
        "user_id, organisation_id, public_id, role, created",
        (
            (
                pk,
                organisations[o].pk,
                uuid.uuid4(),
                "manager" if i % 5 == 0 else "practitioner",
                timezone.now(),
            )
            for o, pks in people.items()
            for i, pk in enumerate(pks)
        ),
    )
    stages = {e.pk: list(e.stages.order_by("position")) for e in engagements}
    scales = ["person", "team", "team", "organisation", "place", "region"]
    cycles = LearningCycle.objects.bulk_create(
        LearningCycle(
            engagement=engagements[o // ORGANISATIONS_PER_ENGAGEMENT],
            organisation=organisation,
            title=f"Cycle {c} of {organisation.name}",
            learning_question="What helps people settle at home?",
            scale=scales[(o + c) % len(scales)],
            stage=stages[engagements[o // ORGANISATIONS_PER_ENGAGEMENT].pk][(o + c) % 4],
            visibility="engagement" if c % 3 == 0 else "organisation",
            status="paused" if c == 9 else "active",
            created_by=everywhere,
        )
        for o, organisation in enumerate(organisations)
        for c in range(CYCLES_PER_ORGANISATION)
    )
    started = timezone.now() - timedelta(weeks=WEEKS + 4)
    LearningCycle.objects.update(created=started)
    now = timezone.now()
    adaptations = Adaptation.objects.bulk_create(
        Adaptation(
            cycle=rng.choice(cycles),
            what_changed="We call everyone the day after.",
            decided_by="The team",
            decided_on=now.date(),
        )
        for _ in range(ADAPTATIONS)
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {Adaptation._meta.db_table} SET created = %s - random() * interval '364 days'",
            [now],
        )
    return World(
        facilitator=facilitator,
        everywhere=everywhere,
        engagement=engagements[0],
        cycles=cycles,
        people={o.pk: people[i] for i, o in enumerate(organisations)},
        adaptations=len(adaptations),
        now=now,
    )


def reflection_rows(rng: random.Random, world: World, count: int) -> Iterator[tuple[object, ...]]:
    cycles, people, now = world.cycles, world.people, world.now
    span = WEEKS * 7 * 86400
    for _ in range(count):
        cycle = cycles[rng.randrange(len(cycles))]
        at = now - timedelta(seconds=rng.random() * span)
        moderation = "published"
        if rng.random() < 0.15:
            author, role, identity = None, "resident", "anonymous"
            # Resident words may wait for review, or be hidden (only theirs are moderated).
            roll = rng.random()
            moderation = "held" if roll < 0.05 else "hidden" if roll < 0.08 else "published"
        else:
            author = rng.choice(people[cycle.organisation_id])
            role, identity = rng.choice(["practitioner", "practitioner", "manager"]), "named"
        yield (
            uuid.UUID(int=rng.getrandbits(128), version=4),
            cycle.pk,
            rng.choice(TEXTS).format(n=rng.randint(2, 40)),
            author,
            role,
            identity,
            "{}",
            cycle.stage_id,
            moderation,
            "en",
            "",
            "",
            "",
            False,
            "",
            "",
            at,
            at,
            1,
        )


def add_reflections(rng: random.Random, world: World, count: int) -> float:
    began = time.perf_counter()
    copy_rows(
        Reflection._meta.db_table,
        "public_id, cycle_id, text, author_id, author_role, identity, principles, stage_id, "
        "moderation, language, first_name, better_or_worse, feeling, consent, "
        "follow_up_email, receipt_hash, created, updated, version",
        reflection_rows(rng, world, count),
    )
    with connection.cursor() as cursor:
        for model in (Reflection, LearningCycle, Adaptation):
            cursor.execute(f"VACUUM ANALYZE {model._meta.db_table}")
    return time.perf_counter() - began


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    session = client.session
    session["otp_device_id"] = TOTPDevice.objects.get(user=user).persistent_id
    session.save()
    return client


def request(client: Client, url: str, headers: dict[str, str]) -> Callable[[], None]:
    def once() -> None:
        response = client.get(url, headers=headers)
        assert response.status_code == 200, (url, response.status_code)

    return once


def statements(once: Callable[[], None]) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        once()
    return [query["sql"] for query in captured.captured_queries]


def floor(sqls: list[str], runs: int) -> list[float]:
    """Milliseconds of the statements alone on a plain psycopg connection, per run."""
    with psycopg.connect(_harness.bench_database_url(), autocommit=True) as raw:

        def once() -> None:
            for sql in sqls:
                with raw.cursor() as cursor:
                    cursor.execute(sql.encode())
                    if cursor.description is not None:
                        cursor.fetchall()

        return _harness.measure(once, runs=runs, warmup=WARMUP)


def measure_all(world: World, label: str) -> Size:
    engagement = world.engagement
    url = f"/engagements/{engagement.public_id}/dashboard/"
    partner = EngagementPartner.objects.filter(engagement=engagement).select_related(
        "organisation"
    )[0]
    filtered = f"{url}?organisation={partner.organisation.public_id}&weeks=26"
    client = signed_in(world.facilitator)
    page = request(client, url, {})
    htmx = request(client, filtered, HTMX)
    page()  # a first request for the session and caches
    page_sql, htmx_sql = statements(page), statements(htmx)
    everywhere = request(signed_in(world.everywhere), "/dashboard/", {})
    everywhere()
    everywhere_sql = statements(everywhere)
    slow_runs = max(20, RUNS // 5)
    size = Size(
        page=_harness.measure(page, runs=RUNS, warmup=WARMUP),
        htmx=_harness.measure(htmx, runs=RUNS, warmup=WARMUP),
        page_floor=floor(page_sql, RUNS),
        htmx_floor=floor(htmx_sql, RUNS),
        everywhere=_harness.measure(everywhere, runs=slow_runs, warmup=3),
        everywhere_floor=floor(everywhere_sql, slow_runs),
        page_sql=page_sql,
        htmx_sql=htmx_sql,
    )
    for name in ("page", "htmx", "page_floor", "htmx_floor", "everywhere", "everywhere_floor"):
        timings: list[float] = getattr(size, name)
        print(
            f"  {label} {name:16s}: p50 {_harness.p50(timings):7.2f} ms, "
            f"p95 {_harness.p95(timings):7.2f} ms",
            flush=True,
        )
    print(f"  {label} queries: page {len(page_sql)}, htmx {len(htmx_sql)}", flush=True)
    return size


def explain(sqls: list[str]) -> None:
    """Each statement's share of the floor, once (BENCH_EXPLAIN=1 adds the plans)."""
    with psycopg.connect(_harness.bench_database_url(), autocommit=True) as raw:
        for sql in sqls:
            began = time.perf_counter()
            with raw.cursor() as cursor:
                cursor.execute(sql.encode())
                if cursor.description is not None:
                    cursor.fetchall()
            ms = (time.perf_counter() - began) * 1000
            print(f"    {ms:7.2f} ms  {' '.join(sql.split())[:110]}")
            if os.environ.get("BENCH_EXPLAIN") and ms > 1:
                with raw.cursor() as cursor:
                    cursor.execute(b"EXPLAIN (ANALYZE, BUFFERS) " + sql.encode())
                    for (line,) in cursor.fetchall():
                        print(f"        {line}")


def main() -> None:
    rng = random.Random(20260318)
    began = time.perf_counter()
    world = seed_world(rng)
    print(
        f"seeded {ENGAGEMENTS} engagements, {Organisation.objects.count() - 1} organisations, "
        f"{LearningCycle.objects.count()} cycles, {get_user_model().objects.count()} people, "
        f"{world.adaptations} adaptations in {time.perf_counter() - began:.1f} s",
        flush=True,
    )
    seconds = add_reflections(rng, world, SMALL)
    print(f"{SMALL:,} reflections loaded in {seconds:.1f} s", flush=True)
    small = measure_all(world, "10k")

    seconds = add_reflections(rng, world, LARGE - SMALL)
    print(f"{LARGE:,} reflections loaded in {seconds:.1f} s", flush=True)
    large = measure_all(world, "1m ")
    print("  1m statements of the page, one run each:")
    explain(large.page_sql)

    p50, p95 = _harness.p50(large.page), _harness.p95(large.page)
    floor_ms = _harness.p50(large.page_floor)
    ratio = p50 / floor_ms
    scale = p50 / _harness.p50(small.page)
    htmx50, htmx95 = _harness.p50(large.htmx), _harness.p95(large.htmx)
    print(
        f"htmx filter update at 1m: p50 {htmx50:.2f} ms, p95 {htmx95:.2f} ms, "
        f"{htmx50 / _harness.p50(large.htmx_floor):.2f} x its floor, "
        f"{htmx50 / _harness.p50(small.htmx):.2f} x at 10k"
    )
    every50, every95 = _harness.p50(large.everywhere), _harness.p95(large.everywhere)
    every_ratio = every50 / _harness.p50(large.everywhere_floor)
    print(
        f"cross-engagement dashboard (20 engagements) at 1m: p50 {every50:.2f} ms, "
        f"p95 {every95:.2f} ms, {every_ratio:.2f} x its floor, "
        f"{every50 / _harness.p50(small.everywhere):.2f} x at 10k"
    )
    queries_10k, queries_1m = len(small.page_sql), len(large.page_sql)
    queries_equal = (queries_10k, len(small.htmx_sql)) == (queries_1m, len(large.htmx_sql))
    meets = (
        p95 <= GOAL_P95_MS
        and ratio <= GOAL_RATIO
        and scale <= GOAL_SCALE
        and htmx95 <= GOAL_P95_MS
        and queries_equal
    )
    print(
        f"goals (page and htmx p95 <= {GOAL_P95_MS:.0f} ms, <= {GOAL_RATIO:.0f} x floor, "
        f"1m/10k <= {GOAL_SCALE:.0f} x, equal query counts): p95 {p95:.1f} ms, "
        f"{ratio:.2f} x floor, {scale:.2f} x, queries {'equal' if queries_equal else 'differ'}: "
        f"{'meets' if meets else 'misses'}; total {time.perf_counter() - began:.0f} s"
    )
    _harness.report(
        "dashboard",
        p50_ms=p50,
        p95_ms=p95,
        floor_ms=floor_ms,
        ratio_to_floor=ratio,
        scale_ratio=scale,
        queries_10k=queries_10k,
        queries_1m=queries_1m,
        everywhere_p50_ms=every50,
        everywhere_p95_ms=every95,
        everywhere_ratio_to_floor=every_ratio,
    )


if __name__ == "__main__":
    main()
