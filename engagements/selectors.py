"""Reads for pages. Each returns what one page needs, in a fixed number of queries.

Reflections leave here as ``ReflectionEntry`` values, never as model instances, so a template
cannot reach the author of an anonymous or pseudonymous reflection (DESIGN.md §4).
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Count, Max, Prefetch, Q, QuerySet
from django.utils.translation import gettext as _

from engagements import access
from engagements.models import (
    CycleLink,
    Engagement,
    EngagementPartner,
    Experiment,
    Invitation,
    LearningCycle,
    Membership,
    Principle,
    Reflection,
    Stage,
    StageMove,
)

AnyUser = AbstractBaseUser | AnonymousUser
PRINCIPLE_LABELS = dict(Principle.choices)


def memberships_for_user(*, user: AnyUser) -> list[Membership]:
    if not user.is_authenticated:
        return []
    return list(Membership.objects.filter(user_id=user.pk).select_related("organisation"))


# The username of an erased account (engagements.retention.erase_account): this, then random
# hex; never an email address, which is what people's usernames are.
ERASED_PREFIX = "deleted-"


def display_name(user: Any) -> str:
    if user is None:
        return _("a former participant")
    # An erased account is known by its username, or by its profile when that is already
    # loaded, so this never costs a query.
    username = user.get_username()
    profile = user._state.fields_cache.get("profile")
    if (username.startswith(ERASED_PREFIX) and "@" not in username) or (
        profile is not None and profile.erased
    ):
        return _("deleted participant")
    return str(user.get_full_name() or username)


# --- engagements ----------------------------------------------------------------------------


def my_engagements(*, user: AnyUser) -> list[Engagement]:
    engagements: list[Engagement] = list(
        access.engagements_for(user)
        .select_related("learning_partner")
        .annotate(partner_count=Count("partners", distinct=True))
        .order_by("-starts_on", "title")
    )
    facilitated = set(Engagement.objects.filter(facilitators=user.pk).values_list("pk", flat=True))
    for engagement in engagements:
        engagement.i_facilitate = engagement.pk in facilitated  # type: ignore[attr-defined]
    return engagements


@dataclass
class StageCount:
    stage: Stage
    count: int


@dataclass
class EngagementOverview:
    partners: list[EngagementPartner]
    facilitators: list[Any]
    stages: list[StageCount]
    visible_cycles: int


def engagement_overview(*, user: AnyUser, engagement: Engagement) -> EngagementOverview:
    partners = list(engagement.partners.select_related("organisation"))
    facilitators = list(engagement.facilitators.order_by("first_name", "username"))
    counts = dict(
        access.cycles_for(user)
        .filter(engagement=engagement)
        .values_list("stage_id")
        .annotate(n=Count("id"))
        .values_list("stage_id", "n")
    )
    stages = [StageCount(s, counts.get(s.pk, 0)) for s in engagement.stages.all()]
    return EngagementOverview(partners, facilitators, stages, sum(counts.values()))


@dataclass(frozen=True)
class CycleFilters:
    organisation: uuid.UUID | None = None
    stage: uuid.UUID | None = None
    scale: str = ""
    status: str = ""

    @property
    def active(self) -> bool:
        return bool(self.organisation or self.stage or self.scale or self.status)


def cycle_list(
    *, user: AnyUser, engagement: Engagement, filters: CycleFilters
) -> list[LearningCycle]:
    cycles = (
        access.cycles_for(user)
        .filter(engagement=engagement)
        .select_related("organisation", "stage")
        .annotate(
            reflection_count=Count(
                "reflections",
                filter=Q(reflections__moderation=Reflection.Moderation.PUBLISHED),
                distinct=True,
            ),
            last_reflection=Max(
                "reflections__created",
                filter=Q(reflections__moderation=Reflection.Moderation.PUBLISHED),
            ),
        )
        .order_by("-updated")
    )
    if filters.organisation:
        cycles = cycles.filter(organisation__public_id=filters.organisation)
    if filters.stage:
        cycles = cycles.filter(stage__public_id=filters.stage)
    if filters.scale:
        cycles = cycles.filter(scale=filters.scale)
    if filters.status:
        cycles = cycles.filter(status=filters.status)
    return list(cycles)


# --- one cycle's journal --------------------------------------------------------------------


def pseudonym(user_id: int, engagement_id: int) -> str:
    """A stable name per person per engagement that no one can turn back into the person."""
    digest = hmac.new(
        settings.SECRET_KEY.encode(), f"{engagement_id}:{user_id}".encode(), hashlib.sha256
    ).hexdigest()
    return _("Participant %(code)s") % {"code": digest[:5].upper()}


@dataclass(frozen=True)
class CitedCase:
    slug: str
    title: str


@dataclass(frozen=True)
class ReflectionEntry:
    public_id: uuid.UUID
    text: str
    author_label: str
    role_label: str
    identity: str
    identity_label: str
    principles: list[str]
    stage_name: str
    experiment_title: str | None
    created: datetime
    edited: bool
    mine: bool
    moderation: str
    cases: tuple[CitedCase, ...] = ()


def author_label(reflection: Reflection, engagement_id: int) -> str:
    """Who a reflection is shown as, everywhere it is shown (journal, export)."""
    if reflection.author_role == Reflection.AuthorRole.RESIDENT:
        named = reflection.identity == Reflection.Identity.NAMED and reflection.first_name
        return reflection.first_name if named else _("A resident")
    if reflection.identity == Reflection.Identity.NAMED:
        return display_name(reflection.author)
    if reflection.identity == Reflection.Identity.PSEUDONYMOUS and reflection.author_id:
        return pseudonym(reflection.author_id, engagement_id)
    return _("Anonymous")


def reflection_visibility(viewer: AnyUser) -> Q:
    """The journal's rule: published reflections, and the viewer's own whatever their state."""
    return Q(moderation=Reflection.Moderation.PUBLISHED) | Q(author_id=viewer.pk)


def reflection_entry(
    reflection: Reflection, *, viewer: AnyUser, engagement_id: int
) -> ReflectionEntry:
    label = author_label(reflection, engagement_id)
    return ReflectionEntry(
        public_id=reflection.public_id,
        text=reflection.text,
        author_label=label,
        role_label=reflection.get_author_role_display(),
        identity=reflection.identity,
        identity_label=reflection.get_identity_display(),
        principles=[str(PRINCIPLE_LABELS.get(p, p)) for p in reflection.principles],
        stage_name=reflection.stage.name,
        experiment_title=reflection.experiment.title if reflection.experiment else None,
        created=reflection.created,
        edited=(reflection.updated - reflection.created).total_seconds() > 60,
        mine=viewer.is_authenticated and reflection.author_id == viewer.pk,
        moderation=reflection.moderation,
    )


@dataclass
class TimelineEntry:
    when: datetime
    kind: str
    item: Any


@dataclass
class LinkedCycles:
    part_of: list[LearningCycle] = field(default_factory=list)
    contains: list[LearningCycle] = field(default_factory=list)
    peers: list[LearningCycle] = field(default_factory=list)

    @property
    def any(self) -> bool:
        return bool(self.part_of or self.contains or self.peers)


@dataclass
class Journal:
    stages: list[Stage]
    moves: list[StageMove]
    reflections: list[ReflectionEntry]
    experiments: list[Experiment]
    adaptations: list[Any]
    timeline: list[TimelineEntry]


def visible_reflections(cycle: LearningCycle, viewer: AnyUser) -> QuerySet[Reflection]:
    return Reflection.objects.filter(cycle_id=cycle.pk).filter(reflection_visibility(viewer))


def cycle_journal(*, user: AnyUser, cycle: LearningCycle) -> Journal:
    stages = list(Stage.objects.filter(engagement_id=cycle.engagement_id))
    moves = list(cycle.moves.select_related("from_stage", "to_stage", "moved_by"))
    reflection_rows = list(
        visible_reflections(cycle, user).select_related("author", "stage", "experiment")
    )
    entries = {
        r.pk: reflection_entry(r, viewer=user, engagement_id=cycle.engagement_id)
        for r in reflection_rows
    }
    experiments = list(cycle.experiments.select_related("created_by"))
    adaptations = list(
        cycle.adaptations.select_related("recorded_by").prefetch_related(
            Prefetch(
                "reflections",
                queryset=visible_reflections(cycle, user).only("id", "public_id"),
            ),
            Prefetch("experiments", queryset=Experiment.objects.only("id", "public_id", "title")),
        )
    )
    cited = _cited_cases(cycle)
    for pk, entry in entries.items():
        if pk in cited["reflection"]:
            entries[pk] = replace(entry, cases=tuple(cited["reflection"][pk]))
    for adaptation in adaptations:
        adaptation.cited_reflections = [  # type: ignore[attr-defined]
            entries[r.pk] for r in adaptation.reflections.all() if r.pk in entries
        ]
        adaptation.cited_cases = cited["adaptation"].get(adaptation.pk, [])  # type: ignore[attr-defined]
    timeline = (
        [TimelineEntry(m.moved_at, "move", m) for m in moves]
        + [TimelineEntry(e.created, "reflection", e) for e in entries.values()]
        + [TimelineEntry(x.created, "experiment", x) for x in experiments]
        + [TimelineEntry(a.created, "adaptation", a) for a in adaptations]
    )
    timeline.sort(key=lambda entry: entry.when, reverse=True)
    return Journal(stages, moves, list(entries.values()), experiments, adaptations, timeline)


def _cited_cases(cycle: LearningCycle) -> dict[str, dict[int, list[CitedCase]]]:
    """The cycle's case-study citations, by reflection and by adaptation, in one query."""
    from cases.models import CaseCitation

    cited: dict[str, dict[int, list[CitedCase]]] = {"reflection": {}, "adaptation": {}}
    rows = (
        CaseCitation.objects.filter(cycle=cycle, case__published=True)
        .order_by("case__title")
        .values_list("reflection_id", "adaptation_id", "case__slug", "case__title")
    )
    for reflection_id, adaptation_id, slug, title in rows:
        kind, pk = ("reflection", reflection_id) if reflection_id else ("adaptation", adaptation_id)
        cited[kind].setdefault(pk, []).append(CitedCase(slug, title))
    return cited


def linked_cycles(*, user: AnyUser, cycle: LearningCycle) -> LinkedCycles:
    """Links shown both ways, to cycles the person may see only."""
    visible = access.cycles_for(user)
    links = (
        CycleLink.objects.filter(Q(from_cycle=cycle) | Q(to_cycle=cycle))
        .filter(Q(from_cycle__in=visible) & Q(to_cycle__in=visible))
        .select_related("from_cycle__organisation", "to_cycle__organisation")
    )
    result = LinkedCycles()
    for link in links:
        if link.kind == CycleLink.Kind.PEER:
            result.peers.append(
                link.to_cycle if link.from_cycle_id == cycle.pk else link.from_cycle
            )
        elif link.from_cycle_id == cycle.pk:
            result.contains.append(link.to_cycle)
        else:
            result.part_of.append(link.from_cycle)
    return result


def link_candidates(*, user: AnyUser, cycle: LearningCycle) -> QuerySet[LearningCycle]:
    return (
        access.cycles_for(user)
        .filter(engagement_id=cycle.engagement_id)
        .exclude(pk=cycle.pk)
        .select_related("organisation")
        .order_by("title")
    )


# --- organisations --------------------------------------------------------------------------


@dataclass
class MemberPage:
    members: list[Membership]
    invitations: list[Invitation]


def organisation_members(*, organisation_id: int) -> MemberPage:
    members = list(
        Membership.objects.filter(organisation_id=organisation_id)
        .select_related("user")
        .order_by("user__first_name", "user__username")
    )
    invitations = list(
        Invitation.objects.filter(
            organisation_id=organisation_id, accepted=None, revoked=None
        ).select_related("invited_by")
    )
    return MemberPage(members, invitations)
