"""Every write with side effects goes through here, in one transaction each.

Views and tasks check access first (``engagements.access``), then call a service with the
objects they were allowed to load. Services keep the invariants: a stage belongs to the
cycle's engagement, a closed cycle does not move, an edit made on a stale copy is refused.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Mapping
from datetime import date, timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db import IntegrityError, models, transaction
from django.db.models import F, Max
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from engagements.access import audit
from engagements.models import (
    Actor,
    Adaptation,
    CycleLink,
    Engagement,
    EngagementPartner,
    Experiment,
    Factor,
    Invitation,
    LearningCycle,
    Membership,
    Organisation,
    Reflection,
    Stage,
    StageMove,
)

INVITATION_DAYS = 14

# The default stage template (DESIGN.md §3). Texts are stored in the engagement's language
# when it is created; facilitators then edit them freely.
DEFAULT_STAGES: list[tuple[Any, list[Any]]] = [
    (
        gettext_lazy("Understand the system"),
        [
            gettext_lazy("What is the purpose of this work, as the people it serves see it?"),
            gettext_lazy("Who are the actors in this system, and who is missing from the room?"),
            gettext_lazy("How much do these actors trust each other, and why?"),
            gettext_lazy("Which factors shape outcomes here, and whose knowledge tells us so?"),
            gettext_lazy("Do we share an understanding of the system yet?"),
            gettext_lazy("At which scale are we working: person, team, place or wider?"),
            gettext_lazy("Are we ready to move on, and what would tell us we are?"),
        ],
    ),
    (
        gettext_lazy("Co-design"),
        [
            gettext_lazy("Who should design this with us, and how will they take part?"),
            gettext_lazy("What could we try, and what do we expect it to change?"),
            gettext_lazy("What would we need to stop doing to make room for it?"),
        ],
    ),
    (
        gettext_lazy("Experiment"),
        [
            gettext_lazy("What is the smallest safe way to try this?"),
            gettext_lazy("How will we notice what happens, including what we did not expect?"),
            gettext_lazy("Who is affected, and how are we hearing from them?"),
        ],
    ),
    (
        gettext_lazy("Reflect and adapt"),
        [
            gettext_lazy("What happened, and what did we learn from it?"),
            gettext_lazy("What will we change because of what we learned?"),
            gettext_lazy("What should the next cycle try to learn?"),
        ],
    ),
]


class Refused(Exception):
    """A request the rules do not allow; the message is shown to the person as it is."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class StaleEdit(Refused):
    def __init__(self) -> None:
        super().__init__(
            _(
                "Someone else changed this while you were editing it. Your text is still "
                "below: copy anything you want to keep, then open the record again to see "
                "their changes."
            )
        )


M = TypeVar("M", bound=models.Model)


def _update_versioned(obj: M, version: int | None, fields: Mapping[str, Any]) -> M:
    """Save ``fields`` only if nobody saved the record since ``version`` was read."""
    model = type(obj)
    expected = version if version is not None else obj.version  # type: ignore[attr-defined]
    simple = {
        k: v
        for k, v in fields.items()
        if not isinstance(model._meta.get_field(k), models.ManyToManyField)
    }
    if any(f.name == "updated" for f in model._meta.get_fields()):
        simple["updated"] = timezone.now()
    changed = model._default_manager.filter(pk=obj.pk, version=expected).update(
        **simple, version=F("version") + 1
    )
    if not changed:
        raise StaleEdit()
    for name, value in fields.items():
        field = model._meta.get_field(name)
        if isinstance(field, models.ManyToManyField):
            getattr(obj, name).set(value)
    obj.refresh_from_db()
    return obj


# --- organisations and people ---------------------------------------------------------------


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@transaction.atomic
def invitation_create(
    *, organisation: Organisation, email: str, role: str, invited_by: User
) -> Invitation:
    """Invite someone by email. An existing account simply gains the membership."""
    from engagements import tasks

    email = email.strip()
    User = get_user_model()
    existing = User.objects.filter(email__iexact=email).first()
    now = timezone.now()
    if (
        existing is not None
        and Membership.objects.filter(user=existing, organisation=organisation).exists()
    ):
        raise Refused(
            _("This person is already a member of %(organisation)s.")
            % {"organisation": organisation.name},
            field="email",
        )
    Invitation.objects.filter(organisation=organisation, email__iexact=email, accepted=None).update(
        revoked=now
    )
    invitation = Invitation.objects.create(
        organisation=organisation,
        email=email,
        role=role,
        invited_by=invited_by,
        language=translation.get_language() or settings.LANGUAGE_CODE,
        expires=now + timedelta(days=INVITATION_DAYS),
    )
    if existing is not None:
        try:
            with transaction.atomic():
                Membership.objects.create(user=existing, organisation=organisation, role=role)
        except IntegrityError as error:  # a double click
            raise Refused(
                _("This person is already a member of %(organisation)s.")
                % {"organisation": organisation.name},
                field="email",
            ) from error
        invitation.accepted = now
        invitation.accepted_by = existing
        invitation.save(update_fields=["accepted", "accepted_by"])
        audit(invited_by, "membership.added", organisation, member=existing.pk, role=role)
    else:
        audit(invited_by, "invitation.created", invitation, role=role)
    transaction.on_commit(lambda: tasks.send_invitation.delay(invitation.pk))
    return invitation


def invitation_issue_token(invitation: Invitation) -> str:
    """Make a fresh link token for an invitation email; only its hash is kept."""
    token = secrets.token_urlsafe(32)
    Invitation.objects.filter(pk=invitation.pk).update(
        token_hash=_token_hash(token), sent=timezone.now()
    )
    return token


def invitation_by_token(token: str) -> Invitation | None:
    if not token or len(token) > 100:
        return None
    return (
        Invitation.objects.select_related("organisation", "invited_by")
        .filter(token_hash=_token_hash(token))
        .first()
    )


@transaction.atomic
def invitation_accept(
    *, invitation: Invitation, first_name: str, last_name: str, password: str
) -> User:
    """Create the account with the chosen password and the membership, once."""
    locked = Invitation.objects.select_for_update().get(pk=invitation.pk)
    if not locked.is_open:
        raise Refused(_("This invitation has already been used or has expired."))
    User = get_user_model()
    if (
        User.objects.filter(email__iexact=locked.email).exists()
        or User.objects.filter(username__iexact=locked.email).exists()
    ):
        raise Refused(
            _(
                "An account with this email address already exists. Sign in, then ask for a new invitation."
            )
        )
    try:
        with transaction.atomic():
            user = User.objects.create_user(
                username=locked.email.lower(),
                email=locked.email,
                password=password,
                first_name=first_name,
                last_name=last_name,
            )
    except IntegrityError as error:  # the same address accepted twice at once
        raise Refused(
            _(
                "An account with this email address already exists. Sign in, then ask for a new invitation."
            )
        ) from error
    Membership.objects.create(user=user, organisation=locked.organisation, role=locked.role)
    locked.accepted = timezone.now()
    locked.accepted_by = user
    locked.save(update_fields=["accepted", "accepted_by"])
    audit(user, "invitation.accepted", locked)
    return user


@transaction.atomic
def invitation_revoke(*, invitation: Invitation, by: User) -> None:
    Invitation.objects.filter(pk=invitation.pk, accepted=None).update(revoked=timezone.now())
    audit(by, "invitation.revoked", invitation)


@transaction.atomic
def member_set_role(*, membership: Membership, role: str, by: User) -> Membership:
    if membership.role == Membership.Role.ADMIN and role != Membership.Role.ADMIN:
        _keep_an_admin(membership)
    membership.role = role
    membership.save(update_fields=["role"])
    audit(
        by, "membership.role_changed", membership.organisation, member=membership.user_id, role=role
    )
    return membership


@transaction.atomic
def member_remove(*, membership: Membership, by: User) -> None:
    if membership.role == Membership.Role.ADMIN:
        _keep_an_admin(membership)
    audit(by, "membership.removed", membership.organisation, member=membership.user_id)
    # Leaving a learning partner ends facilitating its engagements.
    Engagement.facilitators.through.objects.filter(
        engagement__learning_partner_id=membership.organisation_id, user_id=membership.user_id
    ).delete()
    membership.delete()


def _keep_an_admin(membership: Membership) -> None:
    admins = Membership.objects.select_for_update().filter(
        organisation_id=membership.organisation_id, role=Membership.Role.ADMIN
    )
    if [m.pk for m in admins] == [membership.pk]:
        raise Refused(
            _(
                "An organisation needs at least one administrator. Make someone else an administrator first."
            )
        )


# --- engagements ----------------------------------------------------------------------------


def _lock(engagement: Engagement) -> None:
    """Changes to an engagement's stages or facilitators happen one at a time."""
    Engagement.objects.select_for_update().filter(pk=engagement.pk).first()


@transaction.atomic
def engagement_create(*, learning_partner: Organisation, by: User, **fields: Any) -> Engagement:
    engagement = Engagement.objects.create(
        learning_partner=learning_partner, created_by=by, **fields
    )
    engagement.facilitators.add(by)
    with translation.override(engagement.language):
        Stage.objects.bulk_create(
            Stage(
                engagement=engagement,
                name=str(name),
                questions="\n".join(str(q) for q in questions),
                position=position,
            )
            for position, (name, questions) in enumerate(DEFAULT_STAGES, start=1)
        )
    audit(by, "engagement.created", engagement)
    return engagement


@transaction.atomic
def engagement_update(
    *, engagement: Engagement, version: int | None, by: User, **fields: Any
) -> Engagement:
    _update_versioned(engagement, version, fields)
    audit(by, "engagement.updated", engagement)
    return engagement


@transaction.atomic
def stage_add(*, engagement: Engagement, name: str, questions: str, by: User) -> Stage:
    _lock(engagement)
    last = Stage.objects.filter(engagement=engagement).aggregate(Max("position"))
    stage = Stage.objects.create(
        engagement=engagement,
        name=name,
        questions=questions,
        position=(last["position__max"] or 0) + 1,
    )
    audit(by, "stage.added", stage)
    return stage


@transaction.atomic
def stage_update(*, stage: Stage, name: str, questions: str, by: User) -> Stage:
    stage.name = name
    stage.questions = questions
    stage.save(update_fields=["name", "questions"])
    audit(by, "stage.updated", stage)
    return stage


@transaction.atomic
def stage_move(*, stage: Stage, direction: int, by: User) -> None:
    """Swap a stage with its neighbour (direction -1 earlier, +1 later) and renumber."""
    _lock(stage.engagement)
    stages = list(Stage.objects.filter(engagement_id=stage.engagement_id))
    index = next(i for i, s in enumerate(stages) if s.pk == stage.pk)
    other = index + direction
    if 0 <= other < len(stages):
        stages[index], stages[other] = stages[other], stages[index]
    for position, each in enumerate(stages, start=1):
        each.position = position
    Stage.objects.bulk_update(stages, ["position"])
    audit(by, "stage.reordered", stage)


@transaction.atomic
def partner_invite(
    *,
    engagement: Engagement,
    name: str,
    kind: str,
    country: str,
    city: str,
    admin_email: str,
    by: User,
) -> Organisation:
    """Bring a new partner organisation into an engagement and invite its first admin."""
    organisation = Organisation.objects.create(name=name, kind=kind, country=country, city=city)
    EngagementPartner.objects.create(
        engagement=engagement, organisation=organisation, joined=timezone.localdate()
    )
    invitation_create(
        organisation=organisation, email=admin_email, role=Membership.Role.ADMIN, invited_by=by
    )
    audit(by, "engagement.partner_added", engagement, organisation=str(organisation.public_id))
    return organisation


@transaction.atomic
def facilitator_add(*, engagement: Engagement, user: User, by: User) -> None:
    engagement.facilitators.add(user)
    audit(by, "engagement.facilitator_added", engagement, facilitator=user.pk)


@transaction.atomic
def facilitator_remove(*, engagement: Engagement, user: User, by: User) -> None:
    _lock(engagement)
    if engagement.facilitators.exclude(pk=user.pk).count() == 0:
        raise Refused(_("An engagement needs at least one facilitator."))
    engagement.facilitators.remove(user)
    audit(by, "engagement.facilitator_removed", engagement, facilitator=user.pk)


# --- learning cycles ------------------------------------------------------------------------


@transaction.atomic
def cycle_start(
    *, engagement: Engagement, organisation: Organisation, by: User, **fields: Any
) -> LearningCycle:
    first = Stage.objects.filter(engagement=engagement).order_by("position", "id").first()
    if first is None:
        raise Refused(_("This engagement has no stages yet. Ask a facilitator to add one."))
    if not EngagementPartner.objects.filter(
        engagement=engagement, organisation=organisation
    ).exists():
        raise Refused(_("Choose one of the engagement's partner organisations."), "organisation")
    cycle = LearningCycle.objects.create(
        engagement=engagement, organisation=organisation, stage=first, created_by=by, **fields
    )
    StageMove.objects.create(cycle=cycle, from_stage=None, to_stage=first, moved_by=by)
    audit(by, "cycle.started", cycle)
    return cycle


@transaction.atomic
def cycle_update(
    *, cycle: LearningCycle, version: int | None, by: User, **fields: Any
) -> LearningCycle:
    _update_versioned(cycle, version, fields)
    audit(by, "cycle.updated", cycle, fields=sorted(fields))
    return cycle


@transaction.atomic
def cycle_move_stage(
    *, cycle: LearningCycle, to_stage: Stage, note: str, version: int | None, by: User
) -> StageMove:
    locked = LearningCycle.objects.select_for_update().get(pk=cycle.pk)
    if locked.status == LearningCycle.Status.CLOSED:
        raise Refused(_("This cycle is closed, so it cannot move stage. Reopen it first."))
    if version is not None and locked.version != version:
        raise StaleEdit()
    if to_stage.engagement_id != locked.engagement_id:
        raise Refused(_("Choose one of this engagement's stages."), "stage")
    if to_stage.pk == locked.stage_id:
        raise Refused(_("The cycle is already at this stage."), "stage")
    move = StageMove.objects.create(
        cycle=locked, from_stage_id=locked.stage_id, to_stage=to_stage, moved_by=by, note=note
    )
    LearningCycle.objects.filter(pk=locked.pk).update(
        stage=to_stage, version=F("version") + 1, updated=timezone.now()
    )
    cycle.refresh_from_db()
    audit(by, "cycle.stage_moved", cycle, to=str(to_stage.public_id))
    return move


@transaction.atomic
def cycle_link_add(
    *, cycle: LearningCycle, other: LearningCycle, relation: str, by: User
) -> CycleLink:
    """``relation`` reads from ``cycle``: it is part of, contains, or is a peer of ``other``."""
    if other.pk == cycle.pk:
        raise Refused(_("A cycle cannot be linked to itself."), "other")
    # Both cycles locked, in a fixed order, so A→B and B→A cannot both be written at once.
    list(
        LearningCycle.objects.select_for_update().filter(pk__in=[cycle.pk, other.pk]).order_by("pk")
    )
    if CycleLink.objects.filter(
        models.Q(from_cycle=cycle, to_cycle=other) | models.Q(from_cycle=other, to_cycle=cycle)
    ).exists():
        raise Refused(_("These cycles are already linked."), "other")
    if relation == "part_of":
        link = CycleLink(from_cycle=other, to_cycle=cycle, kind=CycleLink.Kind.PARENT)
    elif relation == "contains":
        link = CycleLink(from_cycle=cycle, to_cycle=other, kind=CycleLink.Kind.PARENT)
    else:
        link = CycleLink(from_cycle=cycle, to_cycle=other, kind=CycleLink.Kind.PEER)
    link.created_by = by
    try:
        with transaction.atomic():
            link.save()
    except IntegrityError as error:
        raise Refused(_("These cycles are already linked."), "other") from error
    audit(by, "cycle.linked", cycle, other=str(other.public_id), relation=relation)
    return link


@transaction.atomic
def cycle_link_remove(*, cycle: LearningCycle, other: LearningCycle, by: User) -> None:
    CycleLink.objects.filter(
        models.Q(from_cycle=cycle, to_cycle=other) | models.Q(from_cycle=other, to_cycle=cycle)
    ).delete()
    audit(by, "cycle.unlinked", cycle, other=str(other.public_id))


# --- inside a cycle -------------------------------------------------------------------------


def _check_same_cycle(
    cycle_id: int,
    *,
    experiment: Experiment | None = None,
    reflections: Iterable[Reflection] = (),
    experiments: Iterable[Experiment] = (),
) -> None:
    """Records may only point at records of their own cycle, whatever a form was sent."""
    if experiment is not None and experiment.cycle_id != cycle_id:
        raise Refused(_("Choose one of this cycle's experiments."), "experiment")
    if any(r.cycle_id != cycle_id for r in reflections) or any(
        e.cycle_id != cycle_id for e in experiments
    ):
        raise Refused(_("An adaptation can only cite this cycle's reflections and experiments."))


def _check_open(cycle: LearningCycle) -> None:
    if cycle.status == LearningCycle.Status.CLOSED:
        raise Refused(_("This cycle is closed. Reopen it to add to it."))


@transaction.atomic
def actor_add(*, cycle: LearningCycle, by: User, **fields: Any) -> Actor:
    _check_open(cycle)
    actor = Actor.objects.create(cycle=cycle, **fields)
    audit(by, "actor.added", actor)
    return actor


@transaction.atomic
def factor_add(*, cycle: LearningCycle, by: User, **fields: Any) -> Factor:
    _check_open(cycle)
    factor = Factor.objects.create(cycle=cycle, **fields)
    audit(by, "factor.added", factor)
    return factor


@transaction.atomic
def experiment_add(*, cycle: LearningCycle, by: User, **fields: Any) -> Experiment:
    _check_open(cycle)
    experiment = Experiment.objects.create(cycle=cycle, created_by=by, **fields)
    audit(by, "experiment.added", experiment)
    return experiment


@transaction.atomic
def reflection_add(
    *,
    cycle: LearningCycle,
    by: User,
    author_role: str,
    experiment: Experiment | None = None,
    cases: Iterable[Any] = (),
    **fields: Any,
) -> Reflection:
    _check_open(cycle)
    _check_same_cycle(cycle.pk, experiment=experiment)
    reflection = Reflection.objects.create(
        cycle=cycle,
        author=by,
        author_role=author_role,
        stage_id=cycle.stage_id,
        experiment=experiment,
        language=translation.get_language() or settings.LANGUAGE_CODE,
        **fields,
    )
    LearningCycle.objects.filter(pk=cycle.pk).update(updated=timezone.now())
    _cite_cases(reflection, cases, by)
    audit(by, "reflection.added", reflection)
    return reflection


@transaction.atomic
def adaptation_record(
    *,
    cycle: LearningCycle,
    by: User,
    reflections: Iterable[Reflection] = (),
    experiments: Iterable[Experiment] = (),
    cases: Iterable[Any] = (),
    **fields: Any,
) -> Adaptation:
    _check_open(cycle)
    reflections, experiments = list(reflections), list(experiments)
    _check_same_cycle(cycle.pk, reflections=reflections, experiments=experiments)
    adaptation = Adaptation.objects.create(cycle=cycle, recorded_by=by, **fields)
    adaptation.reflections.set(reflections)
    adaptation.experiments.set(experiments)
    _cite_cases(adaptation, cases, by)
    LearningCycle.objects.filter(pk=cycle.pk).update(updated=timezone.now())
    audit(by, "adaptation.recorded", adaptation)
    return adaptation


@transaction.atomic
def child_update(
    *,
    obj: Actor | Factor | Experiment | Reflection | Adaptation,
    version: int | None,
    by: User,
    cases: Iterable[Any] | None = None,
    **fields: Any,
) -> Any:
    """Edit a record inside a cycle, refusing a stale copy and a closed cycle."""
    _check_open(obj.cycle)
    _check_same_cycle(
        obj.cycle_id,
        experiment=fields.get("experiment"),
        reflections=fields.get("reflections", ()),
        experiments=fields.get("experiments", ()),
    )
    _update_versioned(obj, version, fields)
    if cases is not None and isinstance(obj, Reflection | Adaptation):
        _cite_cases(obj, cases, by)
    LearningCycle.objects.filter(pk=obj.cycle_id).update(updated=timezone.now())
    audit(by, f"{type(obj).__name__.lower()}.updated", obj)
    return obj


def _cite_cases(record: Reflection | Adaptation, cases: Iterable[Any], by: User) -> None:
    """Make the record's case-study citations exactly ``cases`` (published ones only)."""
    from cases.models import CaseCitation

    wanted = {case.pk: case for case in cases if case.published}
    key = "reflection" if isinstance(record, Reflection) else "adaptation"
    existing = CaseCitation.objects.filter(**{key: record})
    existing.exclude(case_id__in=wanted).delete()
    have = set(existing.values_list("case_id", flat=True))
    CaseCitation.objects.bulk_create(
        [
            CaseCitation(case=case, cycle_id=record.cycle_id, cited_by=by, **{key: record})
            for pk, case in wanted.items()
            if pk not in have
        ]
    )


@transaction.atomic
def child_delete(*, obj: Actor | Factor, by: User) -> None:
    _check_open(obj.cycle)
    audit(by, f"{type(obj).__name__.lower()}.deleted", obj)
    obj.delete()


def today() -> date:
    return timezone.localdate()
