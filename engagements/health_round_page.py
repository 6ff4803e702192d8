"""One health-check round's results page: per behaviour, the spread, the change since the last
closed round of the same scope, the medians per perspective with the largest gap, and the
comments, without names.

Made from the same aggregate and :class:`~engagements.health_results.Headline` as the
dashboard's and the digest's figures (``engagements.health_results``), with the same
suppression below ``MIN_RESPONDENTS``; ``engagements.health`` re-exports
:func:`round_results` for the views.
"""

from __future__ import annotations

from dataclasses import dataclass

from engagements.health_results import (
    MIN_RESPONDENTS,
    PERSPECTIVES,
    SCORES,
    Gap,
    GroupFigure,
    Headline,
    PerspectiveFigure,
    _change,
    _figures,
    _gap,
    _headline,
    _perspectives,
    _rounds,
)
from engagements.models import BEHAVIOUR_GROUPS, Behaviour, HealthRound, HealthScore


@dataclass(frozen=True)
class Spread:
    counts: tuple[int, ...]  # how many gave each score, 1 to 10
    minimum: int
    lower_quartile: float
    median: float
    upper_quartile: float
    maximum: int

    @property
    def bars(self) -> list[tuple[int, int]]:
        return list(zip(SCORES, self.counts, strict=True))


@dataclass(frozen=True)
class BehaviourResult:
    behaviour: str
    spread: Spread | None  # None when the round has fewer than MIN_RESPONDENTS answers
    change: float | None
    perspectives: tuple[PerspectiveFigure, ...]
    gap: Gap | None
    comments: tuple[str, ...]

    @property
    def label(self) -> str:
        return str(Behaviour(self.behaviour).label)


@dataclass(frozen=True)
class GroupResult:
    figure: GroupFigure
    behaviours: tuple[BehaviourResult, ...]


@dataclass(frozen=True)
class RoundResults:
    headline: Headline
    groups: tuple[GroupResult, ...]
    min_respondents: int = MIN_RESPONDENTS

    @property
    def suppressed(self) -> bool:
        return self.headline.suppressed

    @property
    def perspectives(self) -> tuple[PerspectiveFigure, ...]:
        """Respondents per perspective (the same for every behaviour)."""
        return self.groups[0].figure.perspectives if self.groups else ()

    @property
    def answer_counts(self) -> list[tuple[PerspectiveFigure, str]]:
        """Each perspective with how its number of answers is shown: "shown", "nobody",
        "fewer" (fewer than 5) or "withheld".

        When exactly one perspective has fewer than 5, the next smallest is not given either,
        or the small one's number would follow from the total minus the rest; a perspective of
        nobody taken with it reads "fewer than 5", which is true of it.
        """
        found = self.perspectives
        small = [p for p in found if p.suppressed]
        partner = None
        if len(small) == 1 and len(found) > 1:
            partner = min(
                (p for p in found if p is not small[0]),
                key=lambda p: (p.respondents, PERSPECTIVES.index(p.perspective)),
            )
        counts = []
        for p in found:
            if p.suppressed or (p is partner and p.respondents < MIN_RESPONDENTS):
                counts.append((p, "fewer"))
            elif p is partner:
                counts.append((p, "withheld"))
            else:
                counts.append((p, "nobody" if p.nobody else "shown"))
        return counts


def round_results(health_round: HealthRound) -> RoundResults:
    """Per behaviour: the spread, the change since the last closed round of the same scope, and
    the medians per perspective with the largest gap; comments without names. Three queries,
    whatever the number of answers; nothing but the count below MIN_RESPONDENTS answers."""
    [row] = _rounds(HealthRound.objects.filter(pk=health_round.pk))
    figures = _figures([row.id] + ([row.previous_id] if row.previous_id else []))
    headline = _headline(row, figures)
    mine = figures[row.id]
    before = figures.get(row.previous_id) if row.previous_id else None
    comments: dict[str, list[str]] = {}
    if not headline.suppressed:
        # In the order of their words, not of their arrival, so nobody is known by when.
        for behaviour, comment in (
            HealthScore.objects.filter(
                response__round_id=row.id,
                response__perspective__in=[
                    p for p, n in mine.by_perspective.items() if n >= MIN_RESPONDENTS
                ],
            )
            .exclude(comment="")
            .order_by("behaviour", "comment")
            .values_list("behaviour", "comment")
        ):
            comments.setdefault(behaviour, []).append(comment)
    groups = []
    for figure in headline.groups:
        results = []
        for behaviour in BEHAVIOUR_GROUPS[figure.group]:
            stat = mine.behaviours.get((behaviour, None))
            perspectives = _perspectives(mine.behaviours, behaviour, mine)
            shown = stat is not None and not headline.suppressed
            results.append(
                BehaviourResult(
                    behaviour,
                    Spread(stat.counts, stat.minimum, *stat.quartiles, stat.maximum)
                    if shown and stat
                    else None,
                    _change(mine.behaviours, before, behaviour, "behaviours") if shown else None,
                    perspectives,
                    _gap(perspectives),
                    tuple(comments.get(behaviour, ())),
                )
            )
        groups.append(GroupResult(figure, tuple(results)))
    return RoundResults(headline, tuple(groups))
