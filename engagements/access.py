"""The one access layer: who may see and do what.

Every view, htmx partial, form, export and task asks here. Objects outside a person's reach
answer 404, never 403, so nothing is revealed about what exists (DESIGN.md §4), and each refusal
writes an audit event (who, what, when; never content).

The rules:

- A facilitator is a member of a learning-partner organisation; they see an engagement, and
  every cycle in it, when they are one of its facilitators.
- A member of an organisation sees its cycles. A member of a partner organisation also sees the
  cycles other partners share with the whole engagement.
- Members of the owning organisation and the engagement's facilitators contribute to a cycle
  (system map, experiments, reflections, adaptations); its managers and admins, its starter and
  the facilitators also manage it (edit, move stage, link, pause or close).
- Organisation admins manage members; admins and managers invite colleagues.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, NoReturn

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Q, QuerySet
from django.http import Http404

from engagements.models import (
    Actor,
    Adaptation,
    AuditEvent,
    Engagement,
    EngagementPartner,
    Experiment,
    Factor,
    LearningCycle,
    Membership,
    Organisation,
    Reflection,
)

AnyUser = AbstractBaseUser | AnonymousUser

MANAGING_ROLES = (Membership.Role.ADMIN, Membership.Role.MANAGER)


# DESIGN §4: a figure about a group of fewer people than this is not shown (a digest's or the
# dashboard's breakdown, a health-check round or perspective), so nobody can be picked out.
MIN_GROUP = 5


def is_facilitator(user: AnyUser) -> bool:
    """Learning-partner staff: members of a learning-partner organisation."""
    if not user.is_authenticated:
        return False
    return Membership.objects.filter(
        user_id=user.pk, organisation__kind=Organisation.Kind.LEARNING_PARTNER
    ).exists()


def is_org_admin(user: AnyUser) -> bool:
    if not user.is_authenticated:
        return False
    return Membership.objects.filter(user_id=user.pk, role=Membership.Role.ADMIN).exists()


def requires_two_factor(user: AnyUser) -> bool:
    """Facilitators and admins (organisation admins and Django staff) must use two-factor."""
    if not user.is_authenticated or not settings.TWO_FACTOR_REQUIRED:
        return False
    return bool(
        getattr(user, "is_staff", False)
        or getattr(user, "is_superuser", False)
        or is_facilitator(user)
        or is_org_admin(user)
    )


# --- refusals -------------------------------------------------------------------------------


def audit(
    actor: AnyUser | None,
    action: str,
    obj: object | None = None,
    *,
    object_type: str = "",
    object_id: str = "",
    **detail: object,
) -> AuditEvent:
    """Record who did what to which object. Callers pass ids and names, never content."""
    if obj is not None:
        object_type = object_type or type(obj).__name__.lower()
        object_id = object_id or str(getattr(obj, "public_id", None) or getattr(obj, "pk", ""))
    return AuditEvent.objects.create(
        actor_id=actor.pk if actor is not None and actor.is_authenticated else None,
        action=action,
        object_type=object_type,
        object_id=object_id[:64],
        detail=detail,
    )


def deny(user: AnyUser, object_type: str, object_id: object) -> NoReturn:
    """Answer 404 for anything outside the person's reach, and note that they asked."""
    audit(user, "access.denied", object_type=object_type, object_id=str(object_id))
    raise Http404


# --- scopes ---------------------------------------------------------------------------------


def _pk(user: AnyUser) -> int:
    """The person's id; 0 (nobody) for an anonymous visitor."""
    return int(user.pk or 0)


def _member_org_ids(user: AnyUser) -> QuerySet[Membership, Any]:
    return Membership.objects.filter(user_id=_pk(user)).values("organisation_id")


def _partner_engagement_ids(user: AnyUser) -> QuerySet[EngagementPartner, Any]:
    return EngagementPartner.objects.filter(organisation_id__in=_member_org_ids(user)).values(
        "engagement_id"
    )


def _facilitated_engagement_ids(user: AnyUser) -> QuerySet[Engagement, Any]:
    """Engagements the person facilitates while still a member of their learning partner."""
    return Engagement.objects.filter(
        facilitators=_pk(user), learning_partner__memberships__user_id=_pk(user)
    ).values("id")


def _facilitates(user: AnyUser, engagement_id: int) -> bool:
    return _facilitated_engagement_ids(user).filter(id=engagement_id).exists()


def engagements_for(user: AnyUser) -> QuerySet[Engagement]:
    """Engagements a person takes part in: as a facilitator or through a partner organisation."""
    if not user.is_authenticated:
        return Engagement.objects.none()
    return Engagement.objects.filter(
        Q(id__in=_facilitated_engagement_ids(user)) | Q(id__in=_partner_engagement_ids(user))
    )


def cycles_for(user: AnyUser) -> QuerySet[LearningCycle]:
    """Every learning cycle a person may see."""
    if not user.is_authenticated:
        return LearningCycle.objects.none()
    return LearningCycle.objects.filter(
        Q(organisation_id__in=_member_org_ids(user))
        | Q(engagement_id__in=_facilitated_engagement_ids(user))
        | Q(
            visibility=LearningCycle.Visibility.ENGAGEMENT,
            engagement_id__in=_partner_engagement_ids(user),
        )
    )


def managed_cycles(user: AnyUser) -> QuerySet[LearningCycle]:
    """Cycles a person manages: as a facilitator, or a manager or admin of the owner."""
    if not user.is_authenticated:
        return LearningCycle.objects.none()
    managing_orgs = Membership.objects.filter(user_id=_pk(user), role__in=MANAGING_ROLES).values(
        "organisation_id"
    )
    return LearningCycle.objects.filter(
        Q(organisation_id__in=managing_orgs)
        | Q(engagement_id__in=_facilitated_engagement_ids(user))
        # A member who started a cycle manages it (CycleAccess.can_manage says the same).
        | Q(created_by_id=_pk(user), organisation_id__in=_member_org_ids(user))
    )


def reflection_to_moderate(user: AnyUser, public_id: uuid.UUID | str) -> Reflection:
    reflection = (
        Reflection.objects.filter(
            public_id=public_id,
            author_role=Reflection.AuthorRole.RESIDENT,
            cycle__in=managed_cycles(user),
        )
        .select_related("cycle")
        .first()
    )
    if reflection is None:
        deny(user, "reflection", public_id)
    return reflection


# --- one object, with what this person may do to it -----------------------------------------


@dataclass(frozen=True)
class EngagementAccess:
    engagement: Engagement
    facilitates: bool
    # Partner organisations this person may start cycles for.
    start_for: tuple[int, ...]

    @property
    def can_start_cycle(self) -> bool:
        return self.facilitates or bool(self.start_for)


def engagement_access(user: AnyUser, public_id: uuid.UUID | str) -> EngagementAccess:
    engagement = (
        engagements_for(user).select_related("learning_partner").filter(public_id=public_id).first()
    )
    if engagement is None:
        deny(user, "engagement", public_id)
    facilitates = _facilitates(user, engagement.pk)
    if facilitates:
        start_for = tuple(engagement.partners.values_list("organisation_id", flat=True))
    else:
        start_for = tuple(
            EngagementPartner.objects.filter(
                engagement=engagement, organisation_id__in=_member_org_ids(user)
            ).values_list("organisation_id", flat=True)
        )
    return EngagementAccess(engagement, facilitates, start_for)


def engagement_facilitated(user: AnyUser, public_id: uuid.UUID | str) -> Engagement:
    """An engagement, for one of its facilitators, in one query; 404 for anyone else.

    For pages that only need to know the person facilitates it (the dashboard), where
    ``engagement_to_manage`` would also work out what else they may do there.
    """
    engagement = (
        Engagement.objects.filter(public_id=public_id, id__in=_facilitated_engagement_ids(user))
        .order_by()
        .first()
        if user.is_authenticated
        else None
    )
    if engagement is None:
        deny(user, "engagement", public_id)
    return engagement


def engagement_to_manage(user: AnyUser, public_id: uuid.UUID | str) -> EngagementAccess:
    access = engagement_access(user, public_id)
    if not access.facilitates:
        deny(user, "engagement", public_id)
    return access


@dataclass(frozen=True)
class CycleAccess:
    cycle: LearningCycle
    facilitates: bool
    role: str | None  # the person's role in the owning organisation, if a member

    @property
    def can_contribute(self) -> bool:
        return self.facilitates or self.role is not None

    @property
    def can_manage(self) -> bool:
        return (
            self.facilitates
            or self.role in MANAGING_ROLES
            or (self.role is not None and self.cycle.created_by_id == self._user_id)
        )

    _user_id: int | None = None

    @property
    def author_role(self) -> str:
        """The role a reflection by this person carries."""
        if self.role == Membership.Role.PRACTITIONER:
            return Reflection.AuthorRole.PRACTITIONER
        if self.role in MANAGING_ROLES:
            return Reflection.AuthorRole.MANAGER
        return Reflection.AuthorRole.LEARNING_PARTNER


def _cycle_access(user: AnyUser, cycle: LearningCycle) -> CycleAccess:
    facilitates = _facilitates(user, cycle.engagement_id)
    role = (
        Membership.objects.filter(user_id=_pk(user), organisation_id=cycle.organisation_id)
        .values_list("role", flat=True)
        .first()
    )
    return CycleAccess(cycle, facilitates, role, user.pk)


def cycle_access(user: AnyUser, public_id: uuid.UUID | str, *, need: str = "view") -> CycleAccess:
    """The cycle with what the person may do; 404 unless they may at least ``need``."""
    cycle = (
        cycles_for(user)
        .select_related("engagement", "organisation", "stage")
        .filter(public_id=public_id)
        .first()
    )
    if cycle is None:
        deny(user, "learningcycle", public_id)
    access = _cycle_access(user, cycle)
    _require(user, access, need, "learningcycle", public_id)
    return access


def _require(user: AnyUser, access: CycleAccess, need: str, kind: str, public_id: object) -> None:
    allowed = {
        "view": True,
        "contribute": access.can_contribute,
        "manage": access.can_manage,
    }[need]
    if not allowed:
        deny(user, kind, public_id)


CHILD_MODELS: dict[str, type[Actor | Factor | Experiment | Reflection | Adaptation]] = {
    "actor": Actor,
    "factor": Factor,
    "experiment": Experiment,
    "reflection": Reflection,
    "adaptation": Adaptation,
}


def child_access(
    user: AnyUser, kind: str, public_id: uuid.UUID | str
) -> tuple[Actor | Factor | Experiment | Reflection | Adaptation, CycleAccess]:
    """A record inside a cycle that the person may edit.

    Contributors edit the system map, experiments and adaptations; a reflection is edited by
    its author only.
    """
    model = CHILD_MODELS[kind]
    obj = (
        model.objects.filter(public_id=public_id, cycle__in=cycles_for(user))
        .select_related("cycle__engagement", "cycle__organisation", "cycle__stage")
        .first()
    )
    if obj is None:
        deny(user, kind, public_id)
    access = _cycle_access(user, obj.cycle)
    _require(user, access, "contribute", kind, public_id)
    if isinstance(obj, Reflection) and obj.author_id != user.pk:
        deny(user, kind, public_id)
    return obj, access


# --- organisations --------------------------------------------------------------------------


@dataclass(frozen=True)
class OrganisationAccess:
    organisation: Organisation
    role: str

    @property
    def can_invite(self) -> bool:
        return self.role in MANAGING_ROLES

    @property
    def can_manage_members(self) -> bool:
        return self.role == Membership.Role.ADMIN

    def roles_to_give(self) -> list[tuple[str, Any]]:
        """Admins give any role; managers invite managers and practitioners."""
        return [
            (value, label)
            for value, label in Membership.Role.choices
            if self.can_manage_members or value != Membership.Role.ADMIN
        ]


def organisation_access(
    user: AnyUser, public_id: uuid.UUID | str, *, need: str = "view"
) -> OrganisationAccess:
    membership = (
        Membership.objects.filter(user_id=user.pk, organisation__public_id=public_id)
        .select_related("organisation")
        .first()
        if user.is_authenticated
        else None
    )
    if membership is None:
        deny(user, "organisation", public_id)
    access = OrganisationAccess(membership.organisation, membership.role)
    allowed = {
        "view": True,
        "invite": access.can_invite,
        "manage": access.can_manage_members,
    }[need]
    if not allowed:
        deny(user, "organisation", public_id)
    return access
