"""One engagement's weekly digest over 50,000 reflections, against its own SQL run alone.

Seeds an engagement with 20 partner organisations, one learning cycle each, 400 people and,
in one week, 50,000 published reflections (plus 2,500 held or hidden ones, which must not
count, and 10,000 from the weeks before, which must not either) loaded with COPY. The texts are
sentences of 15-120 words drawn from a public-service vocabulary with Zipf-like word
frequencies, about one in ten in Ukrainian; authors are named, pseudonymous, anonymous or
residents. Three cycles have had nothing to say for five weeks (they are quiet); some cycles
moved stage and recorded adaptations during the week.

Then:

- **compile**: ``digests.compile_engagement_digest`` for the week (not stored, not emailed),
  the median of ``RUNS`` runs after one warm-up, and its peak Python memory (tracemalloc);
- **floor**: the very statements one compile runs (captured from it), executed alone on a
  plain psycopg connection and fetched, the median of as many runs: what any compiler of this
  digest must pay the database.

The costliest statement is ``ts_stat`` (the themes): parsing text into words is what it spends
its time on (about 1.5 s for 50,000 reflections of this length), so it reads an even sample of
at most ``digests.THEME_SAMPLE`` reflections of the period (every n-th by id) and scales its
counts; the per-statement lines show each statement's share. Goal (reported, not asserted):
<= 2 s and <= 3 x the floor.
"""

from __future__ import annotations

import _harness

_harness.setup("digest")

import itertools  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from datetime import UTC, date, datetime, timedelta  # noqa: E402

import psycopg  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.contrib.auth.hashers import make_password  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from engagements import digests, services  # noqa: E402
from engagements.models import (  # noqa: E402
    Adaptation,
    Engagement,
    EngagementPartner,
    LearningCycle,
    Membership,
    Organisation,
    Reflection,
    StageMove,
)

REFLECTIONS = 50_000
HIDDEN = 2_500  # held or hidden, in the period: never counted
BEFORE = 10_000  # published, in the four weeks before: not in this digest
ORGANISATIONS = 20
PEOPLE_PER_ORGANISATION = 20
QUIET = 3  # cycles with nothing for five weeks
RUNS = int(os.environ.get("BENCH_RUNS", "7"))
GOAL_SECONDS = 2.0
GOAL_RATIO = 3.0
ZIPF_S = 1.05
UKRAINIAN_SHARE = 0.1

START = datetime(2026, 3, 9, tzinfo=UTC)
END = datetime(2026, 3, 16, tzinfo=UTC)

ENGLISH = """
people community care support council home young services learning health families local staff
work change hospital team residents needs children relationships system trust practice approach
housing partners time help school lives outcomes funding mental public social workers adults
money commissioning experience data working wellbeing village neighbourhood group process
together listening conversation voluntary sector police officers doctors nurses carers parents
volunteers leaders managers frontline budget contract providers charity network projects
programme pilot trial evidence learned asked reflection meetings weekly review plan goals
purpose strengths assets trauma poverty debt benefits employment jobs skills training college
library transport buses clinic surgery pharmacy discharge ward beds waiting lists referrals
assessment eligibility thresholds forms paperwork targets measures performance accountability
autonomy trusting responsive flexible personal human systems complexity experiment adaptation
coordination collaboration kindness dignity respect belonging loneliness isolation older
disabled homeless refugees teenagers students teachers coaches mentors navigators connectors
circles hubs centres cafes kitchens gardens parks streets estates towns rural urban district
county region government department agency board governance funders grants foundation investment
savings costs prevention intervention crisis recovery resilience addiction alcohol offending
prison probation courts justice victims abuse safeguarding protection fostering adoption
placements education exclusion attendance literacy digital broadband phones online records
privacy consent advocacy rights tenants landlords repairs damp heating energy food banks pantry
meals nutrition exercise walking swimming music theatre heritage culture faith befriending
visiting phoning shopping cleaning gardening cooking sharing stories journeys pathways
transitions settling bereavement grief hospice dementia stroke diabetes
""".split()  # noqa: SIM905
UKRAINIAN = """
люди громада допомога рада дім молодь послуги навчання здоров'я родини місцеві працівники робота
зміни лікарня команда мешканці потреби діти стосунки система довіра практика підхід житло
партнери час школа життя результати фінансування психічне соціальні дорослі гроші досвід дані
добробут село сусіди група процес разом слухати розмова волонтери лікарі медсестри батьки
керівники бюджет проєкт програма пілот докази рефлексія зустрічі план цілі мета бідність борги
робота навички транспорт автобус клініка аптека виписка черга направлення оцінка форми показники
відповідальність гідність повага самотність літні переселенці вчителі центри кухні парки вулиці
громади уряд
""".split()  # noqa: SIM905 (Ukrainian on purpose)
FUNCTION_EN = """
the a of and to in with for on by from as at that this their our we they it is was were are be
been has have had more less not only also but or so when where which who really because
""".split()  # noqa: SIM905
FUNCTION_UK = """
і та в у на з до від для про що як це ми вони він вона не але так вже ще тому
""".split()  # noqa: SIM905, RUF001 (Ukrainian on purpose)
OPENINGS_EN = [
    "This week",
    "Today",
    "After the meeting",
    "Talking to residents",
    "On the ward",
    "At the hub",
    "In our team",
]
OPENINGS_UK = ["Цього тижня", "Сьогодні", "Після зустрічі", "У нашій команді", "На виїзді"]  # noqa: RUF001
FIRST_NAMES = ["Ann", "Olena", "Sam", "Priya", "Taras", "Mariam", "Joe", "Iryna", "Dev", "Kate"]


def sampler(rng: random.Random, words: list[str]) -> Callable[[int], list[str]]:
    weights = list(itertools.accumulate(1 / rank**ZIPF_S for rank in range(1, len(words) + 1)))
    return lambda n: rng.choices(words, cum_weights=weights, k=n)


def prose(
    rng: random.Random,
    content: Callable[[int], list[str]],
    function: list[str],
    openings: list[str],
    n_words: int,
) -> str:
    sentences = [rng.choice(openings) + " " + " ".join(content(3)) + "."]
    left = n_words
    while left > 0:
        length = min(left, rng.randint(6, 16))
        tokens = [
            w if rng.random() < 0.55 else f"{rng.choice(function)} {w}" for w in content(length)
        ]
        sentence = " ".join(tokens)
        sentences.append(sentence[:1].upper() + sentence[1:] + ".")
        left -= length
    return " ".join(sentences)


def seed(rng: random.Random) -> Engagement:
    user_model = get_user_model()
    password = make_password("bench-password-123")
    lp = Organisation.objects.create(
        name="Learning Partner", kind=Organisation.Kind.LEARNING_PARTNER
    )
    facilitator = user_model.objects.create(
        username="facilitator@example.org", email="facilitator@example.org", password=password
    )
    Membership.objects.create(user=facilitator, organisation=lp, role=Membership.Role.MANAGER)
    engagement = services.engagement_create(
        learning_partner=lp, by=facilitator, title="Learning together", purpose="To learn."
    )
    stages = list(engagement.stages.all())
    organisations = Organisation.objects.bulk_create(
        Organisation(name=f"Partner {i:02d}", kind=Organisation.Kind.LOCAL_AUTHORITY, city="Leeds")
        for i in range(ORGANISATIONS)
    )
    EngagementPartner.objects.bulk_create(
        EngagementPartner(engagement=engagement, organisation=o, joined=date(2026, 1, 5))
        for o in organisations
    )
    people = user_model.objects.bulk_create(
        user_model(
            username=f"person{o}.{n}@example.org",
            email=f"person{o}.{n}@example.org",
            first_name=rng.choice(FIRST_NAMES),
            last_name=f"Surname{o}{n}",
            password=password,
        )
        for o in range(ORGANISATIONS)
        for n in range(PEOPLE_PER_ORGANISATION)
    )
    Membership.objects.bulk_create(
        Membership(
            user=person,
            organisation=organisations[i // PEOPLE_PER_ORGANISATION],
            role=Membership.Role.MANAGER if i % 5 == 0 else Membership.Role.PRACTITIONER,
        )
        for i, person in enumerate(people)
    )
    cycles = LearningCycle.objects.bulk_create(
        LearningCycle(
            engagement=engagement,
            organisation=organisation,
            title=f"Cycle of {organisation.name}",
            learning_question="What helps people settle at home?",
            scale="team",
            stage=stages[i % len(stages)],
            created_by=facilitator,
        )
        for i, organisation in enumerate(organisations)
    )
    LearningCycle.objects.filter(engagement=engagement).update(
        created=datetime(2026, 1, 5, tzinfo=UTC)
    )
    quiet = cycles[:QUIET]
    talking = cycles[QUIET:]

    english = sampler(rng, ENGLISH)
    ukrainian = sampler(rng, UKRAINIAN)
    members = {
        c.pk: people[i * PEOPLE_PER_ORGANISATION : (i + 1) * PEOPLE_PER_ORGANISATION]
        for i, c in enumerate(cycles)
    }
    columns = (
        "public_id, cycle_id, text, author_id, author_role, identity, principles, stage_id, "
        "moderation, language, first_name, better_or_worse, feeling, consent, follow_up_email, "
        "receipt_hash, created, updated, version"
    )

    def rows() -> Iterator[tuple[object, ...]]:
        week = (END - START).total_seconds()
        plan = (
            [(talking, START, week, "published")] * REFLECTIONS
            + [(talking, START, week, "held")] * (HIDDEN // 2)
            + [(talking, START, week, "hidden")] * (HIDDEN - HIDDEN // 2)
        )
        plan += [(cycles, START - timedelta(weeks=5), 4 * week, "published")] * BEFORE
        for pool, base, span, moderation in plan:
            cycle = rng.choice(pool)
            if pool is cycles and cycle in quiet:
                at = base + timedelta(seconds=rng.uniform(0, week))  # five weeks ago, then silence
            else:
                at = base + timedelta(seconds=rng.uniform(0, span))
            uk = rng.random() < UKRAINIAN_SHARE
            text = (
                prose(rng, ukrainian, FUNCTION_UK, OPENINGS_UK, rng.randint(15, 90))
                if uk
                else prose(rng, english, FUNCTION_EN, OPENINGS_EN, rng.randint(15, 120))
            )
            if rng.random() < 0.15:
                author, role, identity = None, "resident", rng.choice(["named", "anonymous"])
                first_name = rng.choice(FIRST_NAMES) if identity == "named" else ""
            else:
                person = rng.choice(members[cycle.pk])
                author, first_name = person.pk, ""
                role = rng.choice(["practitioner", "practitioner", "manager"])
                identity = rng.choices(
                    ["named", "pseudonymous", "anonymous"], weights=[60, 25, 15]
                )[0]
            yield (
                uuid.UUID(int=rng.getrandbits(128), version=4),
                cycle.pk,
                text,
                author,
                role,
                identity,
                "{}",
                cycle.stage_id,
                moderation,
                "uk" if uk else "en",
                first_name,
                "",
                "",
                False,
                "",
                "",
                at,
                at,
                1,
            )

    with (
        connection.cursor() as cursor,
        cursor.copy(f"COPY {Reflection._meta.db_table} ({columns}) FROM STDIN") as copy,
    ):
        for row in rows():
            copy.write_row(row)
    # Moves and adaptations during the week.
    position = {stage.pk: i for i, stage in enumerate(stages)}
    moves = StageMove.objects.bulk_create(
        StageMove(
            cycle=cycle,
            from_stage_id=cycle.stage_id,
            to_stage=stages[(position[cycle.stage_id] + 1) % len(stages)],
            moved_by=facilitator,
            note="Ready to move on",
        )
        for cycle in talking[:8]
    )
    for i, move in enumerate(moves):
        StageMove.objects.filter(pk=move.pk).update(moved_at=START + timedelta(hours=7 + 13 * i))
    adaptations = Adaptation.objects.bulk_create(
        Adaptation(
            cycle=rng.choice(talking),
            what_changed=prose(rng, english, FUNCTION_EN, OPENINGS_EN, 25),
            because=prose(rng, english, FUNCTION_EN, OPENINGS_EN, 20),
            decided_by="The team",
            decided_on=date(2026, 3, 10),
        )
        for _ in range(120)
    )
    for i, adaptation in enumerate(adaptations):
        Adaptation.objects.filter(pk=adaptation.pk).update(
            created=START + timedelta(minutes=80 * i)
        )
    with connection.cursor() as cursor:
        for model in (Reflection, LearningCycle, StageMove, Adaptation):
            cursor.execute(f"VACUUM ANALYZE {model._meta.db_table}")
    return engagement


def main() -> None:
    rng = random.Random(20260316)
    started = time.perf_counter()
    engagement = seed(rng)
    in_period = Reflection.objects.filter(
        cycle__engagement=engagement, created__gte=START, created__lt=END
    )
    print(
        f"seeded {Reflection.objects.count()} reflections ({in_period.filter(moderation='published').count()} "
        f"published in the week, {in_period.exclude(moderation='published').count()} held or hidden) "
        f"in {ORGANISATIONS} organisations' cycles in {time.perf_counter() - started:.1f} s",
        flush=True,
    )

    def compile_once() -> dict:
        return digests.compile_engagement_digest(engagement, START, END)

    with CaptureQueriesContext(connection) as captured:
        content = compile_once()
    statements = [query["sql"] for query in captured.captured_queries]
    assert content["totals"]["reflections"] == REFLECTIONS, content["totals"]
    assert len(content["reflections"]) == digests.MAX_ITEMS
    assert len(content["quiet"]) == QUIET, content["quiet"]
    assert content["themes"], "no themes"
    print(
        f"digest: {content['totals']} ; themes {[t['term'] for t in content['themes']]} ; "
        f"{len(statements)} SQL statements",
        flush=True,
    )

    timings = []
    for _ in range(RUNS):
        began = time.perf_counter()
        compile_once()
        timings.append(time.perf_counter() - began)
    seconds = statistics.median(timings)

    tracemalloc.start()
    compile_once()
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    # The floor: the same statements alone, on a plain psycopg connection.
    with psycopg.connect(_harness.bench_database_url(), autocommit=True) as raw:
        per_statement: list[list[float]] = [[] for _ in statements]

        def floor_once() -> float:
            began = time.perf_counter()
            for index, sql in enumerate(statements):
                one = time.perf_counter()
                with raw.cursor() as cursor:
                    cursor.execute(sql.encode())
                    cursor.fetchall()
                per_statement[index].append(time.perf_counter() - one)
            return time.perf_counter() - began

        floor_once()  # warm-up, as the compile had
        for timing in per_statement:
            timing.clear()
        floor_timings = [floor_once() for _ in range(RUNS)]
    floor_seconds = statistics.median(floor_timings)

    print(
        f"compile: median {seconds * 1000:.0f} ms (min {min(timings) * 1000:.0f}, max "
        f"{max(timings) * 1000:.0f}) over {RUNS} runs; peak Python memory {peak / 2**20:.2f} MB"
    )
    print(
        f"floor (its {len(statements)} statements alone, psycopg): median "
        f"{floor_seconds * 1000:.0f} ms"
    )
    for sql, timing in zip(statements, per_statement, strict=True):
        head = " ".join(sql.split())[:90]
        print(f"  {statistics.median(timing) * 1000:8.1f} ms  {head}")
    ratio = seconds / floor_seconds
    verdict = "meets" if seconds <= GOAL_SECONDS and ratio <= GOAL_RATIO else "misses"
    print(
        f"goal (<= {GOAL_SECONDS:.0f} s and <= {GOAL_RATIO:.0f} x floor): {seconds:.2f} s, "
        f"{ratio:.2f} x floor: {verdict}"
    )
    _harness.report(
        "digest",
        seconds=seconds,
        floor_seconds=floor_seconds,
        ratio_to_floor=ratio,
        peak_mb=peak / 2**20,
    )


if __name__ == "__main__":
    main()
