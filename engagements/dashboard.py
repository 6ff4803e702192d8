"""The partner dashboard's figures (DESIGN.md §8): every number is computed once, here.

A dashboard reads one **scope** of learning cycles:

- an engagement's, for its facilitators (``engagement_scope``);
- every engagement a person facilitates (``facilitator_scope``);
- an organisation's own cycles plus those other partners share with the engagements it takes
  part in, for its managers and admins (``organisation_scope``), as ``access.cycles_for``
  allows.

``Filters`` narrow it (organisation, stage, system scale) and set the period; ``dashboard``
then builds every panel in a fixed number of queries, whatever the number of reflections:
counts are made in SQL (GROUP BY, GROUPING SETS, ``width_bucket``, FILTER), never by looping
over reflections in Python.

**Numbers agree.** ``counting.reflection_counts`` is the one count of reflections (and the
people behind them) for a set of cycles and a period: the dashboard, the learning digest and
the export all call it. Cycles gone quiet follow the digest's rule (``digests.QUIET_WEEKS``),
and "waiting for review" is the review queue's own query (``counting.held_for_moderation``).

These are learning conditions, not targets: organisations are listed by name, never ranked,
and no figure is coloured as good or bad.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from django.db import connection
from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Subquery, Window
from django.utils import timezone

# digests imports this module: only its names' values at call time are read here.
from engagements import access, counting, digests, health
from engagements.counting import (
    ROLE_ORDER,
    ReflectionCounts,
    counted_reflections,
    held_for_moderation,
    reflection_counts,
)
from engagements.models import (
    Adaptation,
    Digest,
    Engagement,
    EngagementPartner,
    LearningCycle,
    Organisation,
    Profile,
    Reflection,
    Scale,
    Stage,
)

AnyUser = access.AnyUser

PERIOD_WEEKS = (4, 12, 26, 52)
DEFAULT_WEEKS = 12
# A chosen period is at most about two years: a weekly chart of 105 columns, and a bounded
# amount of reading whatever the engagement's age.
MAX_DAYS = 731
# Dates a person may type: far enough back for any engagement, and never near the calendar's
# ends, where a day more or less would not exist.
EARLIEST = date(2000, 1, 1)
LATEST = date(2099, 12, 31)
MAX_QUIET = 50  # quiet cycles listed; the count covers them all
ADAPTATION_BUCKETS = 4  # cycles with 0, 1, 2, 3 and "4 or more" adaptations


# --- scopes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scope:
    """The cycles one dashboard reads, before filters, and how its pages are named."""

    kind: str  # "engagement", "facilitator" or "organisation"
    cycles: QuerySet[LearningCycle]
    timezone: str
    engagement: Engagement | None = None
    organisation: Organisation | None = None
    # The engagements of a facilitator's dashboard, by title (to link to each one's own).
    engagements: tuple[Engagement, ...] = ()

    @property
    def one_engagement(self) -> bool:
        return self.engagement is not None


def engagement_scope(engagement: Engagement) -> Scope:
    """Every cycle of an engagement, for a facilitator (``access.engagement_to_manage``)."""
    return Scope(
        kind="engagement",
        cycles=LearningCycle.objects.filter(engagement_id=engagement.pk),
        timezone=engagement.timezone,
        engagement=engagement,
    )


def _person_zone(user: AnyUser) -> str:
    found = (
        Profile.objects.filter(user_id=int(user.pk or 0)).values_list("timezone", flat=True).first()
    )
    return digests.zone(found or "").key


def facilitator_scope(user: AnyUser) -> Scope:
    """Every cycle of the engagements the person facilitates; 404 if they facilitate none."""
    engagements = tuple(
        Engagement.objects.filter(id__in=access._facilitated_engagement_ids(user)).order_by(
            "title", "id"
        )
    )
    if not engagements:
        access.deny(user, "dashboard", "facilitator")
    return Scope(
        kind="facilitator",
        cycles=LearningCycle.objects.filter(engagement_id__in=[e.pk for e in engagements]),
        timezone=_person_zone(user),
        engagements=engagements,
    )


def organisation_scope(user: AnyUser, organisation: Organisation) -> Scope:
    """The organisation's own cycles, and those other partners share with its engagements.

    For its managers and admins (the caller checks the role). Only what the person may see
    (``access.cycles_for``) is read.
    """
    shared_with = EngagementPartner.objects.filter(organisation_id=organisation.pk).values(
        "engagement_id"
    )
    cycles = access.cycles_for(user).filter(
        Q(organisation_id=organisation.pk)
        | Q(visibility=LearningCycle.Visibility.ENGAGEMENT, engagement_id__in=shared_with)
    )
    return Scope(
        kind="organisation",
        cycles=cycles,
        timezone=_person_zone(user),
        organisation=organisation,
    )


# --- filters --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    """An organisation or a stage a filter may choose, named by its public id."""

    public_id: uuid.UUID
    pk: int
    name: str
    group: str = ""  # a stage's engagement, when the dashboard spans several
    position: int = 0


@dataclass(frozen=True)
class Choices:
    organisations: tuple[Option, ...]
    stages: tuple[Option, ...]


def filter_choices(scope: Scope) -> Choices:
    """The organisations and stages this dashboard's filters offer; nothing else is accepted.

    Organisations: the engagement's partners and any organisation owning a cycle in scope (an
    organisation's dashboard: itself and those sharing with it). Stages: those of the
    engagements in scope. Two queries.
    """
    in_scope = scope.cycles.order_by().values("organisation_id")
    if scope.kind == "organisation":
        assert scope.organisation is not None
        organisations = Organisation.objects.filter(
            Q(pk=scope.organisation.pk) | Q(pk__in=in_scope)
        )
        engagement_ids: Any = scope.cycles.order_by().values("engagement_id")
    else:
        engagement_ids = (
            [scope.engagement.pk] if scope.engagement else [e.pk for e in scope.engagements]
        )
        organisations = Organisation.objects.filter(
            Q(
                pk__in=EngagementPartner.objects.filter(engagement_id__in=engagement_ids).values(
                    "organisation_id"
                )
            )
            | Q(pk__in=in_scope)
        )
    stages = (
        Stage.objects.filter(engagement_id__in=engagement_ids)
        .order_by("engagement__title", "engagement_id", "position", "id")
        .values_list("public_id", "pk", "name", "engagement__title", "position")
    )
    return Choices(
        organisations=tuple(
            Option(public_id, pk, name)
            for public_id, pk, name in organisations.order_by("name", "id").values_list(
                "public_id", "pk", "name"
            )
        ),
        stages=tuple(
            Option(public_id, pk, name, "" if scope.engagement else title, position)
            for public_id, pk, name, title, position in stages
        ),
    )


@dataclass(frozen=True)
class Filters:
    """What a dashboard shows: a period of whole local days, and optional narrowing."""

    first_day: date
    last_day: date  # included
    timezone: str
    weeks: int | None = DEFAULT_WEEKS  # None: the person chose the dates
    organisation: Option | None = None
    stage: Option | None = None
    scale: str = ""

    @property
    def start(self) -> datetime:
        return _local_midnight(self.first_day, self.timezone)

    @property
    def end(self) -> datetime:
        return _local_midnight(self.last_day + timedelta(days=1), self.timezone)

    @property
    def scale_label(self) -> str:
        return str(dict(Scale.choices).get(self.scale, "")) if self.scale else ""


def _local_midnight(day: date, timezone_name: str) -> datetime:
    return datetime.combine(day, time(0), tzinfo=digests.zone(timezone_name))


def local_today(timezone_name: str, now: datetime | None = None) -> date:
    return (now or timezone.now()).astimezone(digests.zone(timezone_name)).date()


def period(
    timezone_name: str,
    *,
    weeks: int | None = None,
    first_day: date | None = None,
    last_day: date | None = None,
    now: datetime | None = None,
) -> tuple[date, date, int | None]:
    """(first day, last day, weeks) of a period: chosen dates, or the last ``weeks`` weeks.

    The last N weeks are whole local weeks, Monday to Sunday, this one included. One date
    alone runs to today (a start) or covers the default number of weeks before it (an end).
    The caller (the filter form) has checked the dates are in order and not too far apart.
    """
    today = local_today(timezone_name, now)
    if first_day is None and last_day is None:
        weeks = weeks if weeks in PERIOD_WEEKS else DEFAULT_WEEKS
        monday = today - timedelta(days=today.weekday())
        return monday - timedelta(weeks=weeks - 1), monday + timedelta(days=6), weeks
    if last_day is None:
        assert first_day is not None
        last_day = max(first_day, today)
    if first_day is None:
        first_day = last_day - timedelta(weeks=DEFAULT_WEEKS) + timedelta(days=1)
    return first_day, last_day, None


def filtered_cycles(scope: Scope, filters: Filters) -> QuerySet[LearningCycle]:
    cycles = scope.cycles
    if filters.organisation is not None:
        cycles = cycles.filter(organisation_id=filters.organisation.pk)
    if filters.stage is not None:
        cycles = cycles.filter(stage_id=filters.stage.pk)
    if filters.scale:
        cycles = cycles.filter(scale=filters.scale)
    return cycles.order_by()


# --- panels ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class MatrixRow:
    organisation: str
    cells: tuple[int, ...]
    total: int


@dataclass(frozen=True)
class StageMatrix:
    """Cycles by organisation (rows, by name) and stage (columns, in the stages' order)."""

    stages: tuple[str, ...]
    rows: tuple[MatrixRow, ...]
    stage_totals: tuple[int, ...]
    total: int


@dataclass(frozen=True)
class Week:
    monday: date
    reflections: int


@dataclass(frozen=True)
class Voice:
    """One author role's reflections; ``None`` counts when fewer than 5 people are behind it."""

    role: str
    label: str
    reflections: int | None
    contributors: int | None
    suppressed: bool


@dataclass(frozen=True)
class QuietCycle:
    public_id: uuid.UUID
    title: str
    organisation: str
    engagement: str
    last_reflection: datetime | None
    since: datetime


@dataclass(frozen=True)
class AdaptationSpread:
    """How many cycles recorded 0, 1, 2, 3 or 4+ adaptations in the period, and in all."""

    buckets: tuple[tuple[str, int], ...]
    adaptations: int
    cycles: int

    @property
    def per_cycle(self) -> float:
        return self.adaptations / self.cycles if self.cycles else 0.0


@dataclass
class Dashboard:
    scope: Scope
    filters: Filters
    matrix: StageMatrix
    counts: ReflectionCounts
    rhythm: list[Week]
    voice: list[Voice]
    quiet: list[QuietCycle]
    quiet_total: int
    quiet_since: datetime
    adaptations: AdaptationSpread
    latest_digest: Digest | None
    latest_digest_title: str
    moderation_waiting: int
    # Too few people behind a narrowed selection's reflections to count them
    # (see too_few_to_count).
    withheld: bool = False
    # The health check's rounds in the period, oldest first (see health_trend).
    health: list[HealthTrend] = field(default_factory=list)

    @property
    def min_contributors(self) -> int:
        return digests.MIN_CONTRIBUTORS

    @property
    def quiet_weeks(self) -> int:
        return digests.QUIET_WEEKS


def stage_matrix(scope: Scope, filters: Filters, choices: Choices) -> StageMatrix:
    """One query: cycles grouped by organisation and stage (by name across engagements)."""
    cycles = filtered_cycles(scope, filters)
    organisations = [o for o in choices.organisations if filters.organisation in (None, o)]
    stages = [s for s in choices.stages if filters.stage in (None, s)]
    if scope.one_engagement:
        columns = [s.name for s in stages]
        column_of = {s.pk: i for i, s in enumerate(stages)}
        key = "stage_id"
    else:
        # Engagements may name their stages alike: one column per name, in template order.
        names: dict[str, int] = {}
        for s in sorted(stages, key=lambda s: s.position):
            names.setdefault(s.name, len(names))
        columns = list(names)
        column_of = names  # type: ignore[assignment]
        key = "stage__name"
    counts = {
        (organisation_id, column_of.get(stage)): n
        for organisation_id, stage, n in cycles.values_list("organisation_id", key).annotate(
            n=Count("id")
        )
    }
    rows = []
    for organisation in organisations:
        cells = tuple(counts.get((organisation.pk, i), 0) for i in range(len(columns)))
        rows.append(MatrixRow(organisation.name, cells, sum(cells)))
    stage_totals = tuple(sum(row.cells[i] for row in rows) for i in range(len(columns)))
    return StageMatrix(tuple(columns), tuple(rows), stage_totals, sum(stage_totals))


def rhythm(cycles: QuerySet[LearningCycle], filters: Filters) -> list[Week]:
    """Reflections per local week (Monday first), every week of the period, empty ones too.

    The weeks' first instants are worked out here, in the dashboard's time zone, and each
    reflection falls in one by a binary search (``width_bucket``): no time-zone arithmetic on
    every row.
    """
    monday = filters.first_day - timedelta(days=filters.first_day.weekday())
    mondays = []
    while monday <= filters.last_day:
        mondays.append(monday)
        monday += timedelta(weeks=1)
    starts = [_local_midnight(day, filters.timezone) for day in mondays]
    inner, params = (
        counted_reflections(cycles, filters.start, filters.end)
        .values("created")
        .query.sql_with_params()
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT width_bucket(r.created, %s::timestamptz[]), count(*) FROM ({inner}) r GROUP BY 1",  # noqa: S608 (Django's own SQL; values are parameters)
            (starts, *params),
        )
        counted = dict(cursor.fetchall())
    # Bucket i (from 1) is the week that starts at starts[i - 1].
    return [Week(day, counted.get(i, 0)) for i, day in enumerate(mondays, start=1)]


def voice_balance(counts: ReflectionCounts, *, withheld: bool = False) -> list[Voice]:
    """Every author role, with groups of fewer than 5 people suppressed (digests' rule).

    Every role goes to the rule, the empty ones too, so a lone small group is hidden with a
    partner; ``withheld`` (see :func:`too_few_to_count`) hides them all.
    """
    labels = dict(Reflection.AuthorRole.choices)
    present = digests._suppress(
        [
            {"role": g.key, "reflections": g.reflections, "contributors": g.contributors}
            for g in counting.every_group(counts.by_role, ROLE_ORDER)
        ]
    )
    return [
        Voice(role, str(labels[role]), None, None, True)
        if withheld
        else Voice(
            role, str(labels[role]), row["reflections"], row["contributors"], row["suppressed"]
        )
        for role, row in zip(ROLE_ORDER, present, strict=True)
    ]


def too_few_to_count(filters: Filters, counts: ReflectionCounts) -> bool:
    """Whether a narrowed selection's reflection counts must not be shown at all.

    Narrowed to one organisation, stage or scale, the dashboard's totals are a breakdown, the
    kind the digest hides when fewer than 5 people stand behind it: then the totals, the
    weekly rhythm and the voice balance (which add up to them) are not shown either.
    """
    narrowed = filters.organisation is not None or filters.stage is not None or bool(filters.scale)
    return narrowed and 0 < counts.contributors < digests.MIN_CONTRIBUTORS


def quiet_cycles(
    cycles: QuerySet[LearningCycle], as_of: datetime
) -> tuple[list[QuietCycle], int, datetime]:
    """Active cycles with no published reflection for ``digests.QUIET_WEEKS`` before ``as_of``.

    The digest's rule (``digests._compile``): started before then, and nothing published since.
    Listed by organisation and title; one query gives the list and the count.
    """
    since = as_of - timedelta(weeks=digests.QUIET_WEEKS)
    published = Reflection.objects.filter(
        cycle_id=OuterRef("pk"), moderation=Reflection.Moderation.PUBLISHED, created__lt=as_of
    )
    rows = list(
        cycles.filter(status=LearningCycle.Status.ACTIVE, created__lt=since)
        .filter(~Exists(published.filter(created__gte=since)))
        .annotate(
            last_reflection=Subquery(published.order_by("-created").values("created")[:1]),
            total=Window(Count("id")),
        )
        .order_by("organisation__name", "title", "id")
        .values_list(
            "public_id",
            "title",
            "organisation__name",
            "engagement__title",
            "last_reflection",
            "created",
            "total",
        )[:MAX_QUIET]
    )
    return [QuietCycle(*row[:6]) for row in rows], (rows[0][6] if rows else 0), since


def adaptation_spread(cycles: QuerySet[LearningCycle], filters: Filters) -> AdaptationSpread:
    """Cycles by the number of adaptations recorded in the period.

    The period's adaptations are counted by cycle first (GROUP BY), then every cycle in scope
    falls in a bucket, those with none included (LEFT JOIN): one query.
    """
    scope_sql, scope_params = cycles.values("id").query.sql_with_params()
    recorded_sql, recorded_params = (
        Adaptation.objects.filter(
            cycle_id__in=cycles.values("id"),
            created__gte=filters.start,
            created__lt=filters.end,
        )
        .order_by()
        .values("cycle_id")
        .annotate(n=Count("*"))
        .values("cycle_id", "n")
        .query.sql_with_params()
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT least(coalesce(t.n, 0), {ADAPTATION_BUCKETS}), count(*), sum(coalesce(t.n, 0))
            FROM ({scope_sql}) c LEFT JOIN ({recorded_sql}) t ON t.cycle_id = c.id
            GROUP BY 1
            """,  # noqa: S608 (Django's own SQL; values are parameters)
            (*scope_params, *recorded_params),
        )
        found = {bucket: (n_cycles, total) for bucket, n_cycles, total in cursor.fetchall()}
    labels = [str(n) for n in range(ADAPTATION_BUCKETS)] + [f"{ADAPTATION_BUCKETS}+"]
    buckets = tuple((labels[i], found.get(i, (0, 0))[0]) for i in range(ADAPTATION_BUCKETS + 1))
    return AdaptationSpread(
        buckets,
        adaptations=sum(int(total or 0) for _n, total in found.values()),
        cycles=sum(n for n, _total in found.values()),
    )


def latest_digest(user: AnyUser, scope: Scope) -> Digest | None:
    """The newest digest the person may read (``digests.digests_for``) for this dashboard."""
    found = digests.digests_for(user).select_related("engagement").defer("content")
    if scope.engagement is not None:
        found = found.filter(scope=Digest.Scope.ENGAGEMENT, engagement_id=scope.engagement.pk)
    return found.order_by("-period_end", "-id").first()


@dataclass(frozen=True)
class HealthTrend:
    """One health-check round as the dashboard shows it: the round page's own headline."""

    headline: health.Headline
    min_respondents: int = health.MIN_RESPONDENTS


def health_trend(scope: Scope, filters: Filters) -> list[HealthTrend]:
    """The closed health-check rounds of the dashboard's cycles and engagements that ran
    during the period, oldest first, with the figures their own page shows
    (``health.trends``: medians per group, change, perspective gaps, suppressed below 5).

    A round of a whole engagement is kept whatever the stage or scale chosen, as it is about
    no one cycle; choosing an organisation keeps only its cycles' rounds. Two queries.
    """
    if scope.engagement is not None:
        engagement_ids = [scope.engagement.pk]
    elif scope.engagements:
        engagement_ids = [engagement.pk for engagement in scope.engagements]
    else:
        engagement_ids = list(
            scope.cycles.order_by().values_list("engagement_id", flat=True).distinct()
        )
    rounds = health.trends(
        engagement_ids,
        cycle_ids=filtered_cycles(scope, filters).values("pk"),
        organisation_id=filters.organisation.pk if filters.organisation is not None else None,
        closed_from=filters.start,
        opened_before=filters.end,
    )
    return [HealthTrend(headline) for headline in rounds]


def dashboard(
    *,
    user: AnyUser,
    scope: Scope,
    filters: Filters,
    choices: Choices,
    now: datetime | None = None,
) -> Dashboard:
    """Every panel, in the same number of queries whatever the amount of data."""
    now = now or timezone.now()
    cycles = filtered_cycles(scope, filters)
    counts = reflection_counts(cycles=cycles, start=filters.start, end=filters.end, breakdown=True)
    held_back = too_few_to_count(filters, counts)
    quiet, quiet_total, quiet_since = quiet_cycles(cycles, min(filters.end, now))
    digest = latest_digest(user, scope)
    return Dashboard(
        scope=scope,
        filters=filters,
        matrix=stage_matrix(scope, filters, choices),
        counts=counts,
        rhythm=rhythm(cycles, filters),
        voice=voice_balance(counts, withheld=held_back),
        quiet=quiet,
        quiet_total=quiet_total,
        quiet_since=quiet_since,
        adaptations=adaptation_spread(cycles, filters),
        latest_digest=digest,
        latest_digest_title=digests.digest_title(digest) if digest is not None else "",
        moderation_waiting=held_for_moderation(user).count(),
        health=health_trend(scope, filters),
        withheld=held_back,
    )
