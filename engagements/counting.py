"""The one count of reflections (DESIGN.md §8, "numbers agree").

:func:`reflection_counts` counts reflections, and the people behind them, for a set of cycles
and a period: the dashboard (``engagements.dashboard``), the learning digest's totals and
breakdowns (``digests._counts``) and the export's row count (``exports.count_rows``) all call
it, so a figure is the same on every page that shows it. "Waiting for review" is the review
queue's own query (:func:`held_for_moderation`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import Exists, OuterRef, Q, QuerySet

from engagements import access, selectors
from engagements.models import LearningCycle, Reflection

AnyUser = access.AnyUser

ROLE_ORDER = tuple(Reflection.AuthorRole.values)


@dataclass(frozen=True)
class Group:
    """Reflections and the people behind them, in one role or one organisation."""

    key: Any  # an author role, or an organisation's id
    reflections: int
    contributors: int


def every_group(groups: Sequence[Group], keys: Iterable[Any]) -> list[Group]:
    """One group per key, in the keys' order, those nobody was in counted as nought.

    Suppression needs the empty groups too: a lone small group is hidden with one of them
    (``digests._suppress``).
    """
    found = {group.key: group for group in groups}
    return [found.get(key, Group(key, 0, 0)) for key in keys]


@dataclass(frozen=True)
class ReflectionCounts:
    reflections: int = 0
    # People behind them: each signed-in author once, each resident reflection as one person
    # (residents have no account to tell them apart).
    contributors: int = 0
    cycles: int = 0
    by_role: tuple[Group, ...] = ()
    by_organisation: tuple[Group, ...] = ()


CycleScope = QuerySet[LearningCycle] | Sequence[int]


def _visible(viewer: AnyUser | None) -> Q:
    """Published reflections; with a ``viewer``, also the viewer's own whatever their state
    (the journal's rule, ``selectors.reflection_visibility``, which the export follows)."""
    if viewer is None:
        return Q(moderation=Reflection.Moderation.PUBLISHED)
    return selectors.reflection_visibility(viewer)


def _in_period(start: datetime | None, end: datetime | None) -> Q:
    found = Q()
    if start is not None:
        found &= Q(created__gte=start)
    if end is not None:
        found &= Q(created__lt=end)
    return found


def _cycle_ids(cycles: CycleScope) -> Any:
    return cycles.order_by().values("id") if isinstance(cycles, QuerySet) else list(cycles)


def counted_reflections(
    cycles: CycleScope,
    start: datetime | None = None,
    end: datetime | None = None,
    viewer: AnyUser | None = None,
) -> QuerySet[Reflection]:
    """The reflections every count is made of: in ``cycles``, created in [start, end), and
    published or, with a ``viewer``, also the viewer's own (see :func:`_visible`)."""
    return Reflection.objects.filter(
        _visible(viewer), _in_period(start, end), cycle_id__in=_cycle_ids(cycles)
    ).order_by()


def reflection_counts(
    *,
    cycles: CycleScope,
    start: datetime | None = None,
    end: datetime | None = None,
    viewer: AnyUser | None = None,
    breakdown: bool = False,
) -> ReflectionCounts:
    """Reflections, contributors and cycles with reflections, in one query.

    With ``breakdown``, the same statement also counts by author role and by organisation
    (GROUPING SETS). The groups are raw: whoever shows them suppresses small ones
    (``digests._suppress``).
    """
    inner, params = (
        counted_reflections(cycles, start, end, viewer)
        .values("author_id", "author_role", "cycle_id")
        .query.sql_with_params()
    )
    # Each signed-in author once, each resident reflection (no author) as one person. Read
    # from the columns an index can cover, so the count need not visit the table.
    people = "count(DISTINCT r.author_id) + count(*) FILTER (WHERE r.author_id IS NULL)"
    with connection.cursor() as cursor:
        if not breakdown:
            cursor.execute(
                f"SELECT count(*), {people}, count(DISTINCT r.cycle_id) FROM ({inner}) r",  # noqa: S608 (Django's own SQL; values are parameters)
                params,
            )
            reflections, contributors, with_reflections = cursor.fetchone()
            return ReflectionCounts(reflections, contributors, with_reflections)
        # Across many engagements a period holds hundreds of thousands of reflections, and a
        # DISTINCT count in each grouping set sorts them all, once per set. So the reflections
        # are first hashed down to one row per author, role and organisation (residents: one
        # row of their count), and only those rows are grouped; the cycles with reflections
        # are found by an index probe per cycle rather than a third sort.
        cycles_sql, cycles_params = (
            LearningCycle.objects.filter(pk__in=_cycle_ids(cycles))
            .filter(
                Exists(
                    Reflection.objects.filter(
                        _visible(viewer), _in_period(start, end), cycle_id=OuterRef("pk")
                    )
                )
            )
            .order_by()
            .values("pk")
            .query.sql_with_params()
        )
        cursor.execute(
            f"""
            WITH authors AS MATERIALIZED (
                SELECT r.author_role, c.organisation_id, r.author_id, count(*) AS n
                FROM ({inner}) r JOIN {LearningCycle._meta.db_table} c ON c.id = r.cycle_id
                GROUP BY 1, 2, 3
            )
            SELECT GROUPING(author_role), GROUPING(organisation_id), author_role,
                   organisation_id, sum(n),
                   count(DISTINCT author_id) + coalesce(sum(n) FILTER (WHERE author_id IS NULL), 0),
                   (SELECT count(*) FROM ({cycles_sql}) w)
            FROM authors
            GROUP BY GROUPING SETS ((), (author_role), (organisation_id))
            """,  # noqa: S608
            (*params, *cycles_params),
        )
        rows = cursor.fetchall()
    totals = (0, 0, 0)
    by_role, by_organisation = [], []
    for role_set, org_set, role, organisation_id, n, people_n, n_cycles in rows:
        n, people_n = int(n or 0), int(people_n or 0)  # sums arrive as Decimal, or None
        if role_set and org_set:
            totals = (n, people_n, n_cycles)
        elif not role_set:
            by_role.append(Group(role, n, people_n))
        else:
            by_organisation.append(Group(organisation_id, n, people_n))
    order = {role: i for i, role in enumerate(ROLE_ORDER)}
    by_role.sort(key=lambda group: order.get(group.key, len(order)))
    return ReflectionCounts(*totals, by_role=tuple(by_role), by_organisation=tuple(by_organisation))


def held_for_moderation(user: AnyUser) -> QuerySet[Reflection]:
    """Resident reflections waiting for this person's review: the review queue's own query."""
    return Reflection.objects.filter(
        author_role=Reflection.AuthorRole.RESIDENT,
        moderation=Reflection.Moderation.HELD,
        cycle__in=access.managed_cycles(user),
    )
