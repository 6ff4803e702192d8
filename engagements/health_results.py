"""What the health check's rounds show (``engagements.health``): one source for every figure.

**Suppression.** A perspective with fewer than ``MIN_RESPONDENTS`` respondents shows no figures
("fewer than 5 answered"), and a round with fewer than that in all shows none at all, nor its
comments: with so few, a score could be traced to the person who gave it.

**Figures.** Every figure comes from one aggregate (:func:`_figures`: one GROUP BY with
grouping sets over the round's scores), whatever the number of answers: the round's page
(``health_round_page.round_results``), the dashboard (:func:`trends`) and the digest (:func:`digest_items`)
all read their headline figures from :class:`Headline`, so the numbers agree everywhere.

Reads only; ``engagements.health`` holds the writes and re-exports what pages call from here.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import F, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.formats import date_format, number_format
from django.utils.translation import gettext as _

from engagements import access
from engagements.models import (
    BEHAVIOUR_GROUPS,
    BehaviourGroup,
    HealthResponse,
    HealthRound,
    HealthScore,
    Reflection,
)

# The one threshold of DESIGN.md §4, shared with the digests and the dashboard.
MIN_RESPONDENTS = access.MIN_GROUP
SCORES = range(1, 11)

Perspective = Reflection.AuthorRole
PERSPECTIVES: tuple[str, ...] = tuple(Perspective.values)
GROUP_OF: dict[str, str] = {b: g for g, behaviours in BEHAVIOUR_GROUPS.items() for b in behaviours}


# --- figures ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Stat:
    respondents: int
    minimum: int
    maximum: int
    quartiles: tuple[float, float, float]
    counts: tuple[int, ...]

    @property
    def median(self) -> float:
        return self.quartiles[1]


@dataclass
class _Figures:
    """One round's aggregate: respondents, and stats per behaviour and group (overall, None,
    and per perspective)."""

    respondents: int = 0
    # Respondents of the perspectives with MIN_RESPONDENTS or more: the only ones any figure
    # is made from (see _figures).
    counted: int = 0
    by_perspective: dict[str, int] = field(default_factory=dict)
    behaviours: dict[tuple[str, str | None], _Stat] = field(default_factory=dict)
    groups: dict[tuple[str, str | None], _Stat] = field(default_factory=dict)


def _figures(round_ids: Iterable[int]) -> dict[int, _Figures]:
    """Every figure of these rounds in one statement, whatever the number of answers.

    One pass over the rounds' scores with grouping sets: respondents per round and per
    perspective, and per behaviour and per group of behaviours (overall and per perspective)
    the count of respondents, the lowest and highest score, the quartiles and median, and how
    many gave each score.

    Every figure is made only from the answers of perspectives with MIN_RESPONDENTS or more.
    Two practitioners' answers mixed into a round's overall spread with five residents' could
    be read back by anyone who knows the residents' answers (the link's holder could send
    five), so a perspective too small to show is left out of every figure, not only its own.
    """
    ids = sorted(set(round_ids))
    if not ids:
        return {}
    # Only the models' own choice values are formatted in; the round ids are a parameter.
    group_case = " ".join(f"WHEN '{b}' THEN '{g}'" for b, g in GROUP_OF.items())
    counts = ", ".join(f"count(*) FILTER (WHERE x.score = {n} AND x.counted)" for n in SCORES)
    sql = f"""
        SELECT x.round_id, GROUPING(x.behaviour), GROUPING(x.grp), x.behaviour, x.grp,
               x.perspective, GROUPING(x.perspective),
               count(DISTINCT x.response_id),
               count(DISTINCT x.response_id) FILTER (WHERE x.counted),
               min(x.score) FILTER (WHERE x.counted), max(x.score) FILTER (WHERE x.counted),
               percentile_cont(ARRAY[0.25, 0.5, 0.75]) WITHIN GROUP (ORDER BY x.score)
                   FILTER (WHERE x.counted),
               ARRAY[{counts}]
        FROM (
            SELECT r.round_id, r.perspective, s.response_id, s.behaviour, s.score,
                   CASE s.behaviour {group_case} END AS grp, p.n >= %s AS counted
            FROM {HealthScore._meta.db_table} s
            JOIN {HealthResponse._meta.db_table} r ON r.id = s.response_id
            JOIN (
                SELECT round_id, perspective, count(*) AS n
                FROM {HealthResponse._meta.db_table}
                WHERE round_id = ANY(%s)
                GROUP BY round_id, perspective
            ) p ON p.round_id = r.round_id AND p.perspective = r.perspective
            WHERE r.round_id = ANY(%s)
        ) x
        GROUP BY GROUPING SETS (
            (x.round_id), (x.round_id, x.perspective),
            (x.round_id, x.behaviour), (x.round_id, x.behaviour, x.perspective),
            (x.round_id, x.grp), (x.round_id, x.grp, x.perspective)
        )
    """  # noqa: S608
    found: dict[int, _Figures] = {round_id: _Figures() for round_id in ids}
    with connection.cursor() as cursor:
        cursor.execute(sql, [MIN_RESPONDENTS, ids, ids])
        rows = cursor.fetchall()
    for row in rows:
        round_id, no_b, no_g, behaviour, group, perspective, all_p, everyone, n = row[:9]
        lo, hi, qs, hist = row[9:]
        figures = found[round_id]
        if no_b and no_g:  # a round, overall or for one perspective
            if all_p:
                figures.respondents, figures.counted = everyone, n
            else:
                figures.by_perspective[perspective] = everyone
            continue
        if not n:
            continue  # made only of perspectives too small to show
        stat = _Stat(n, lo, hi, (qs[0], qs[1], qs[2]), tuple(hist))
        key = None if all_p else perspective
        if no_g:
            figures.behaviours[(behaviour, key)] = stat
        else:
            figures.groups[(group, key)] = stat
    return found


@dataclass(frozen=True)
class PerspectiveFigure:
    """One perspective's median, or why there is none: nobody, or fewer than 5, answered."""

    perspective: str
    respondents: int  # 0 when nobody answered; hidden (None) below MIN_RESPONDENTS otherwise
    median: float | None

    @property
    def label(self) -> str:
        return str(Perspective(self.perspective).label)

    @property
    def nobody(self) -> bool:
        return self.respondents == 0

    @property
    def suppressed(self) -> bool:
        return 0 < self.respondents < MIN_RESPONDENTS

    @property
    def shown_respondents(self) -> int | None:
        return self.respondents if not self.suppressed else None


@dataclass(frozen=True)
class Gap:
    """The distance between the highest and the lowest median of the perspectives shown."""

    size: float
    high: PerspectiveFigure
    low: PerspectiveFigure


def _perspectives(
    stats: Mapping[tuple[str, str | None], _Stat], key: str, figures: _Figures
) -> tuple[PerspectiveFigure, ...]:
    shown = []
    for perspective in PERSPECTIVES:
        n = figures.by_perspective.get(perspective, 0)
        stat = stats.get((key, perspective))
        median = stat.median if stat is not None and n >= MIN_RESPONDENTS else None
        shown.append(PerspectiveFigure(perspective, n, median))
    return tuple(shown)


def _gap(perspectives: Sequence[PerspectiveFigure]) -> Gap | None:
    shown = [p for p in perspectives if p.median is not None]
    if len(shown) < 2:
        return None
    high = max(shown, key=lambda p: (p.median, -PERSPECTIVES.index(p.perspective)))
    low = min(shown, key=lambda p: (p.median, PERSPECTIVES.index(p.perspective)))
    return Gap(float(high.median or 0) - float(low.median or 0), high, low)


def _change(
    stats: Mapping[tuple[str, str | None], _Stat],
    before: _Figures | None,
    key: str,
    kind: str,
) -> float | None:
    """The median now minus the median in the previous round, when both may be shown."""
    now = stats.get((key, None))
    if now is None or before is None or before.counted < MIN_RESPONDENTS:
        return None
    then: _Stat | None = getattr(before, kind).get((key, None))
    return None if then is None else now.median - then.median


@dataclass(frozen=True)
class GroupFigure:
    group: str
    median: float | None  # None when the round has fewer than MIN_RESPONDENTS answers
    change: float | None
    perspectives: tuple[PerspectiveFigure, ...]
    gap: Gap | None

    @property
    def label(self) -> str:
        return str(BehaviourGroup(self.group).label)


@dataclass(frozen=True)
class Headline:
    """A round's headline figures: the one source for its page, the dashboard and the digest.

    ``groups`` are in ``BehaviourGroup`` order; with fewer than MIN_RESPONDENTS answers in all,
    ``suppressed`` is true and no group has figures.
    """

    public_id: uuid.UUID
    title: str
    engagement_public_id: uuid.UUID
    engagement_title: str
    cycle_public_id: uuid.UUID | None
    cycle_title: str
    organisation: str
    opened: datetime
    closed: datetime | None
    respondents: int
    groups: tuple[GroupFigure, ...]
    previous_title: str = ""  # the last closed round of the same scope, if any
    previous_suppressed: bool = False
    # Respondents of the perspectives large enough to show (see _figures); None: all of them.
    counted: int | None = None

    @property
    def suppressed(self) -> bool:
        counted = self.respondents if self.counted is None else self.counted
        return counted < MIN_RESPONDENTS

    @property
    def largest_gap(self) -> tuple[GroupFigure, Gap] | None:
        gaps = [(group, group.gap) for group in self.groups if group.gap is not None]
        if not gaps:
            return None
        return max(gaps, key=lambda item: item[1].size)

    def as_json(self) -> dict[str, Any]:
        """Language-neutral, as a digest keeps it (codes, numbers, ISO times)."""
        return {
            "round": str(self.public_id),
            "title": self.title,
            "engagement": {"id": str(self.engagement_public_id), "title": self.engagement_title},
            "cycle": {
                "id": str(self.cycle_public_id),
                "title": self.cycle_title,
                "organisation": self.organisation,
            }
            if self.cycle_public_id
            else None,
            "opened": self.opened.isoformat(),
            "closed": self.closed.isoformat() if self.closed else None,
            "respondents": self.respondents,
            "counted": self.counted,
            "suppressed": self.suppressed,
            "previous": {"title": self.previous_title, "suppressed": self.previous_suppressed}
            if self.previous_title
            else None,
            "groups": [
                {
                    "group": g.group,
                    "median": g.median,
                    "change": g.change,
                    "perspectives": [
                        {
                            "perspective": p.perspective,
                            "respondents": p.shown_respondents,
                            "median": p.median,
                            "suppressed": p.suppressed,
                        }
                        for p in g.perspectives
                    ],
                }
                for g in self.groups
            ],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Headline:
        """Back from a digest's content; hidden counts stay hidden (as 1, "fewer than 5")."""

        def perspective(item: Mapping[str, Any]) -> PerspectiveFigure:
            n = item.get("respondents")
            n = 1 if item.get("suppressed") else int(n or 0)
            return PerspectiveFigure(str(item.get("perspective", "")), n, item.get("median"))

        groups = []
        for item in data.get("groups", []):
            if item.get("group") not in BehaviourGroup.values:
                continue
            perspectives = tuple(
                perspective(p)
                for p in item.get("perspectives", [])
                if p.get("perspective") in PERSPECTIVES
            )
            groups.append(
                GroupFigure(
                    item["group"],
                    item.get("median"),
                    item.get("change"),
                    perspectives,
                    _gap(perspectives),
                )
            )
        cycle = data.get("cycle") or {}
        engagement = data.get("engagement") or {}
        previous = data.get("previous") or {}
        return cls(
            public_id=uuid.UUID(str(data.get("round"))),
            title=str(data.get("title", "")),
            engagement_public_id=uuid.UUID(str(engagement.get("id"))),
            engagement_title=str(engagement.get("title", "")),
            cycle_public_id=uuid.UUID(cycle["id"]) if cycle.get("id") else None,
            cycle_title=str(cycle.get("title", "")),
            organisation=str(cycle.get("organisation", "")),
            opened=datetime.fromisoformat(data["opened"]),
            closed=datetime.fromisoformat(data["closed"]) if data.get("closed") else None,
            respondents=int(data.get("respondents") or 0),
            groups=tuple(groups),
            previous_title=str(previous.get("title", "")),
            previous_suppressed=bool(previous.get("suppressed")),
            counted=data.get("counted"),
        )

    def __str__(self) -> str:
        """One sentence for a digest, in the active language."""
        scope = self.cycle_title or self.engagement_title
        when = timezone.localtime(self.closed or self.opened)
        start = _("%(title)s (%(scope)s), closed %(date)s: %(count)s answered.") % {
            "title": self.title,
            "scope": scope,
            "date": date_format(when, "j E Y"),
            "count": self.respondents,
        }
        if self.suppressed:
            if self.respondents < MIN_RESPONDENTS:
                why = _("Fewer than 5 answered, so no figures are shown.")
            else:
                why = _("No perspective had 5 answers or more, so no figures are shown.")
            return " ".join([start, why])
        parts = []
        for group in self.groups:
            median = _number(group.median)
            if group.change is not None:
                parts.append(
                    _("%(group)s %(median)s (%(change)s since the last round)")
                    % {"group": group.label, "median": median, "change": _signed(group.change)}
                )
            else:
                parts.append(_("%(group)s %(median)s") % {"group": group.label, "median": median})
        sentence = [start, _("Medians: %(list)s.") % {"list": "; ".join(parts)}]
        largest = self.largest_gap
        if largest is not None and largest[1].size > 0:
            group, gap = largest
            sentence.append(
                _(
                    "Largest gap between perspectives: %(group)s, %(high)s %(high_median)s and "
                    "%(low)s %(low_median)s."
                )
                % {
                    "group": group.label,
                    "high": gap.high.label,
                    "high_median": _number(gap.high.median),
                    "low": gap.low.label,
                    "low_median": _number(gap.low.median),
                }
            )
        return " ".join(sentence)


def _number(value: float | None) -> str:
    if value is None:
        return "–"  # noqa: RUF001 (a dash for "no figure")
    return number_format(value, 0 if float(value).is_integer() else 1)


def _signed(value: float) -> str:
    if value == 0:
        return _("no change")
    return ("+" if value > 0 else "−") + _number(abs(value))  # noqa: RUF001 (a minus sign)


@dataclass(frozen=True)
class _RoundRow:
    """What a headline needs of a round, as :func:`_rounds` reads it in one query."""

    id: int
    public_id: uuid.UUID
    title: str
    engagement__public_id: uuid.UUID
    engagement__title: str
    cycle__public_id: uuid.UUID | None
    cycle__title: str | None
    cycle__organisation__name: str | None
    opened: datetime
    closed: datetime | None
    previous_id: int | None
    previous_title: str | None


def _rounds(found: QuerySet[HealthRound]) -> list[_RoundRow]:
    """The rounds with what their headlines show, each with the last closed round before it of
    the same scope (the same engagement, and the same cycle or none), in one query."""
    scope = Coalesce(F("cycle_id"), Value(0))
    earlier = (
        HealthRound.objects.annotate(scope=scope)
        .filter(
            engagement_id=OuterRef("engagement_id"),
            scope=Coalesce(OuterRef("cycle_id"), Value(0)),
            closed__isnull=False,
            opened__lt=OuterRef("opened"),
        )
        .order_by("-opened", "-id")
    )
    rows = found.annotate(
        previous_id=Subquery(earlier.values("id")[:1]),
        previous_title=Subquery(earlier.values("title")[:1]),
    ).values(
        "id",
        "public_id",
        "title",
        "engagement__public_id",
        "engagement__title",
        "cycle__public_id",
        "cycle__title",
        "cycle__organisation__name",
        "opened",
        "closed",
        "previous_id",
        "previous_title",
    )
    return [_RoundRow(**row) for row in rows]


def _headline(row: _RoundRow, figures: Mapping[int, _Figures]) -> Headline:
    mine = figures.get(row.id) or _Figures()
    before = figures.get(row.previous_id) if row.previous_id else None
    suppressed = mine.counted < MIN_RESPONDENTS
    groups = []
    for group in BehaviourGroup.values:
        stat = mine.groups.get((group, None))
        perspectives = _perspectives(mine.groups, group, mine)
        groups.append(
            GroupFigure(
                group,
                None if suppressed or stat is None else stat.median,
                None if suppressed else _change(mine.groups, before, group, "groups"),
                perspectives,
                _gap(perspectives),
            )
        )
    return Headline(
        public_id=row.public_id,
        title=row.title,
        engagement_public_id=row.engagement__public_id,
        engagement_title=row.engagement__title,
        cycle_public_id=row.cycle__public_id,
        cycle_title=row.cycle__title or "",
        organisation=row.cycle__organisation__name or "",
        opened=row.opened,
        closed=row.closed,
        respondents=mine.respondents,
        groups=tuple(groups),
        previous_title=row.previous_title or "",
        previous_suppressed=before is not None and before.counted < MIN_RESPONDENTS,
        counted=mine.counted,
    )


def headlines(found: QuerySet[HealthRound]) -> list[Headline]:
    """The headline figures of these rounds (in the queryset's order), in two queries."""
    rows = _rounds(found)
    figures = _figures([r.id for r in rows] + [r.previous_id for r in rows if r.previous_id])
    return [_headline(row, figures) for row in rows]


def trends(
    engagement_ids: Iterable[int],
    *,
    cycle_ids: Iterable[int] | QuerySet[Any] | None = None,
    organisation_id: int | None = None,
    closed_from: datetime | None = None,
    opened_before: datetime | None = None,
) -> list[Headline]:
    """For the dashboard: each closed round of these engagements, oldest first, with its
    headline figures (median per group of behaviours, change, perspective medians and gaps; the
    same suppression). Two queries, whatever the number of rounds or answers.

    Open rounds are left out: figures that move as each person answers would tell anyone
    watching what that person said (the round page shows only a count until answers close).
    ``closed_from`` and ``opened_before`` keep the rounds that ran during a period.

    ``cycle_ids`` (ids, or a queryset of them) keeps only the rounds of those cycles and of
    whole engagements (pass the cycles the reader may see: ``access.cycles_for``); ``organisation_id`` keeps only the rounds
    of that organisation's cycles (a round of a whole engagement belongs to no organisation).
    The caller has checked the reader may see these engagements.
    """
    found = HealthRound.objects.filter(engagement_id__in=list(engagement_ids), closed__isnull=False)
    if closed_from is not None:
        found = found.filter(closed__gte=closed_from)
    if opened_before is not None:
        found = found.filter(opened__lt=opened_before)
    if cycle_ids is not None:
        # A queryset stays a subquery: the reader's cycles are not fetched to be sent back.
        chosen = cycle_ids if isinstance(cycle_ids, QuerySet) else list(cycle_ids)
        found = found.filter(Q(cycle=None) | Q(cycle_id__in=chosen))
    if organisation_id is not None:
        found = found.filter(cycle__organisation_id=organisation_id)
    return headlines(found.order_by("opened", "id"))


def digest_items(
    *, cycle_ids: Sequence[int], engagement_ids: Iterable[int], start: datetime, end: datetime
) -> list[dict[str, Any]]:
    """The rounds closed in [start, end) of these cycles or of these whole engagements, as a
    digest keeps them (:meth:`Headline.as_json`, suppression kept). One query when none."""
    found = HealthRound.objects.filter(
        Q(cycle_id__in=list(cycle_ids)) | Q(cycle=None, engagement_id__in=list(engagement_ids)),
        closed__gte=start,
        closed__lt=end,
    ).order_by("closed", "id")
    rows = _rounds(found)
    if not rows:
        return []
    figures = _figures([r.id for r in rows] + [r.previous_id for r in rows if r.previous_id])
    return [_headline(row, figures).as_json() for row in rows]
