"""Pages for engagements, learning cycles and organisations.

Every view starts by asking ``engagements.access`` for the object, which answers 404 (and
writes an audit event) when it is out of the person's reach. Writes go through
``engagements.services``; reads through ``engagements.selectors``. htmx requests get the
partial they swap; the same URLs serve full pages without JavaScript.
"""

from __future__ import annotations

import uuid
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth import get_user_model, login
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import reswap, retarget

from cases.views import related_for_cycle
from engagements import access, counting, diagram, new_links, residents, selectors, services
from engagements.forms import (
    AcceptInvitationForm,
    ActorForm,
    AdaptationForm,
    CycleForm,
    CycleLinkForm,
    EngagementForm,
    ExperimentForm,
    FacilitatorForm,
    FactorForm,
    InviteMemberForm,
    MemberRoleForm,
    MoveStageForm,
    PartnerInviteForm,
    ReflectionForm,
    StageForm,
    VersionedForm,
)
from engagements.models import (
    Engagement,
    Invitation,
    LearningCycle,
    Membership,
    ModerationEvent,
    Organisation,
    Scale,
    Stage,
)
from engagements.resident_forms import ModerationForm, SharedLinkForm
from hls.lib.http import AuthedRequest

GET_POST = ["GET", "POST"]


def _refused(form: forms.BaseForm, refusal: services.Refused) -> None:
    field = refusal.field if refusal.field in form.fields else None
    form.add_error(field, refusal.message)


def _parse_uuid(value: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(value or "")
    except ValueError:
        return None


# --- engagements ----------------------------------------------------------------------------


@login_required
@require_GET
def engagement_list(request: AuthedRequest) -> HttpResponse:
    return render(
        request,
        "engagements/engagement_list.html",
        {
            "engagements": selectors.my_engagements(user=request.user),
            "can_create": access.is_facilitator(request.user),
        },
    )


def _learning_partners(user: Any) -> list[Organisation]:
    return list(
        Organisation.objects.learning_partners().filter(memberships__user_id=user.pk).distinct()
    )


@login_required
@require_http_methods(GET_POST)
def engagement_create(request: AuthedRequest) -> HttpResponse:
    partners = _learning_partners(request.user)
    if not partners:
        access.deny(request.user, "engagement", "new")
    form = EngagementForm(request.POST or None, learning_partners=partners)
    if request.method == "POST" and form.is_valid():
        data = form.changed_values()
        engagement = services.engagement_create(
            learning_partner=form.learning_partner(), by=request.user, **data
        )
        messages.success(request, _("Engagement created. Next, invite its partner organisations."))
        return redirect("engagements:engagement", engagement.public_id)
    return render(
        request,
        "engagements/engagement_form.html",
        {"form": form, "learning_partner": partners[0] if len(partners) == 1 else None},
    )


@login_required
@require_GET
def engagement_detail(request: AuthedRequest, engagement: uuid.UUID) -> HttpResponse:
    allowed = access.engagement_access(request.user, engagement)
    overview = selectors.engagement_overview(user=request.user, engagement=allowed.engagement)
    return render(
        request,
        "engagements/engagement_detail.html",
        {"engagement": allowed.engagement, "access": allowed, "overview": overview},
    )


@login_required
@require_http_methods(GET_POST)
def engagement_edit(request: AuthedRequest, engagement: uuid.UUID) -> HttpResponse:
    allowed = access.engagement_to_manage(request.user, engagement)
    form = EngagementForm(request.POST or None, instance=allowed.engagement)
    if request.method == "POST" and form.is_valid():
        try:
            services.engagement_update(
                engagement=allowed.engagement,
                version=form.cleaned_data.get("version"),
                by=request.user,
                **form.changed_values(),
            )
        except services.Refused as refusal:
            _refused(form, refusal)
        else:
            messages.success(request, _("Engagement saved."))
            return redirect("engagements:engagement", engagement)
    return render(
        request,
        "engagements/engagement_form.html",
        {"form": form, "engagement": allowed.engagement},
    )


@login_required
@require_http_methods(GET_POST)
def engagement_stages(request: AuthedRequest, engagement: uuid.UUID) -> HttpResponse:
    allowed = access.engagement_to_manage(request.user, engagement)
    add_form = StageForm(request.POST or None, prefix="new")
    if request.method == "POST" and add_form.is_valid():
        services.stage_add(engagement=allowed.engagement, by=request.user, **add_form.cleaned_data)
        messages.success(request, _("Stage added."))
        return redirect("engagements:stages", engagement)
    return _stages_page(request, allowed.engagement, add_form)


def _stages_page(
    request: AuthedRequest,
    engagement: Engagement,
    add_form: StageForm,
    edited: StageForm | None = None,
) -> HttpResponse:
    """Every stage with its own form (``edited`` in place of its stage's), and the add form."""
    forms = [
        (
            s,
            edited
            if edited and s.pk == edited.instance.pk
            else StageForm(instance=s, prefix=f"s{s.pk}"),
        )
        for s in engagement.stages.all()
    ]
    context = {"engagement": engagement, "add_form": add_form, "forms": forms, "form": edited}
    return render(request, "engagements/stages.html", context)


def _stage_for(request: AuthedRequest, engagement: uuid.UUID, stage: uuid.UUID) -> Stage:
    allowed = access.engagement_to_manage(request.user, engagement)
    found = Stage.objects.filter(engagement=allowed.engagement, public_id=stage).first()
    if found is None:
        access.deny(request.user, "stage", stage)
    return found


@login_required
@require_POST
def stage_edit(request: AuthedRequest, engagement: uuid.UUID, stage: uuid.UUID) -> HttpResponse:
    found = _stage_for(request, engagement, stage)
    form = StageForm(request.POST, instance=found, prefix=f"s{found.pk}")
    if form.is_valid():
        services.stage_update(stage=found, by=request.user, **form.cleaned_data)
        messages.success(request, _("Stage saved."))
        return redirect("engagements:stages", engagement)
    return _stages_page(request, found.engagement, StageForm(prefix="new"), edited=form)


@login_required
@require_POST
def stage_reorder(request: AuthedRequest, engagement: uuid.UUID, stage: uuid.UUID) -> HttpResponse:
    found = _stage_for(request, engagement, stage)
    direction = -1 if request.POST.get("direction") == "up" else 1
    services.stage_move(stage=found, direction=direction, by=request.user)
    return redirect("engagements:stages", engagement)


@login_required
@require_http_methods(GET_POST)
def partner_invite(request: AuthedRequest, engagement: uuid.UUID) -> HttpResponse:
    allowed = access.engagement_to_manage(request.user, engagement)
    form = PartnerInviteForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        organisation = services.partner_invite(
            engagement=allowed.engagement, by=request.user, **form.cleaned_data
        )
        messages.success(
            request,
            _("%(organisation)s joined the engagement. We emailed an invitation to %(email)s.")
            % {"organisation": organisation.name, "email": form.cleaned_data["admin_email"]},
        )
        return redirect("engagements:engagement", engagement)
    return render(
        request,
        "engagements/partner_invite.html",
        {"engagement": allowed.engagement, "form": form},
    )


@login_required
@require_http_methods(GET_POST)
def facilitators(request: AuthedRequest, engagement: uuid.UUID) -> HttpResponse:
    allowed = access.engagement_to_manage(request.user, engagement)
    current = allowed.engagement.facilitators.all()
    candidates = (
        get_user_model()
        .objects.filter(memberships__organisation=allowed.engagement.learning_partner)
        .exclude(pk__in=current.values("pk"))
        .order_by("first_name", "username")
    )
    form = FacilitatorForm(request.POST or None, candidates=candidates)
    if request.method == "POST":
        remove = request.POST.get("remove")
        if remove:
            person = None if "\x00" in remove else current.filter(username=remove[:150]).first()
            if person is None:
                access.deny(request.user, "user", "facilitator")
            try:
                services.facilitator_remove(
                    engagement=allowed.engagement, user=person, by=request.user
                )
            except services.Refused as refusal:
                messages.error(request, refusal.message)
            else:
                messages.success(request, _("Facilitator removed."))
            return redirect("engagements:facilitators", engagement)
        if form.is_valid():
            services.facilitator_add(
                engagement=allowed.engagement, user=form.cleaned_data["person"], by=request.user
            )
            messages.success(request, _("Facilitator added."))
            return redirect("engagements:facilitators", engagement)
    return render(
        request,
        "engagements/facilitators.html",
        {"engagement": allowed.engagement, "facilitators": list(current), "form": form},
    )


# --- learning cycles ------------------------------------------------------------------------


def _filters(request: AuthedRequest) -> selectors.CycleFilters:
    scale = request.GET.get("scale", "")
    status = request.GET.get("status", "")
    return selectors.CycleFilters(
        organisation=_parse_uuid(request.GET.get("organisation")),
        stage=_parse_uuid(request.GET.get("stage")),
        scale=scale if scale in Scale.values else "",
        status=status if status in LearningCycle.Status.values else "",
    )


@login_required
@require_GET
def cycle_list(request: AuthedRequest, engagement: uuid.UUID) -> HttpResponse:
    allowed = access.engagement_access(request.user, engagement)
    filters = _filters(request)
    cycles = selectors.cycle_list(user=request.user, engagement=allowed.engagement, filters=filters)
    context = {
        "engagement": allowed.engagement,
        "access": allowed,
        "cycles": cycles,
        "filters": filters,
        "organisations": [
            p.organisation for p in allowed.engagement.partners.select_related("organisation")
        ],
        "stages": list(allowed.engagement.stages.all()),
        "scales": Scale.choices,
        "statuses": LearningCycle.Status.choices,
    }
    template = "engagements/cycle_list.html"
    if request.htmx and request.htmx.target == "cycle-results":
        template += "#results"
    return render(request, template, context)


@login_required
@require_http_methods(GET_POST)
def cycle_start(request: AuthedRequest, engagement: uuid.UUID) -> HttpResponse:
    allowed = access.engagement_access(request.user, engagement)
    if not allowed.can_start_cycle:
        access.deny(request.user, "engagement", engagement)
    organisations = Organisation.objects.filter(pk__in=allowed.start_for)
    form = CycleForm(request.POST or None, organisations=organisations)
    if request.method == "POST" and form.is_valid():
        data = form.changed_values()
        try:
            cycle = services.cycle_start(
                engagement=allowed.engagement,
                organisation=form.cleaned_data["organisation"],
                by=request.user,
                **data,
            )
        except services.Refused as refusal:
            _refused(form, refusal)
        else:
            messages.success(request, _("Cycle started. Begin by mapping the system."))
            return redirect("engagements:cycle", cycle.public_id)
    return render(
        request,
        "engagements/cycle_form.html",
        {"engagement": allowed.engagement, "form": form},
    )


def _cycle_context(
    request: AuthedRequest,
    allowed: access.CycleAccess,
    section: str | None = None,
    **forms_: Any,
) -> dict[str, Any]:
    """What the cycle page needs; for one htmx section, only what that section shows."""
    cycle = allowed.cycle
    closed = cycle.status == LearningCycle.Status.CLOSED
    context: dict[str, Any] = {
        "cycle": cycle,
        "engagement": cycle.engagement,
        "access": allowed,
        "is_closed": closed,
        "can_move": allowed.can_manage and not closed,
    }
    if section in (None, "journal"):
        context["journal"] = selectors.cycle_journal(user=request.user, cycle=cycle)
    if section in (None, "map"):
        actors, factors = list(cycle.actors.all()), list(cycle.factors.all())
        context.update(actors=actors, factors=factors, diagram=diagram.system_map(actors, factors))
    if section is None:
        context["links"] = selectors.linked_cycles(user=request.user, cycle=cycle)
        latest = sorted(context["journal"].reflections, key=lambda e: e.created, reverse=True)
        recent = [entry.text for entry in latest[:20]]
        context["related_cases"] = related_for_cycle(cycle, recent)
    # A refused form (for example, on a cycle closed meanwhile) still comes back with its text.
    if allowed.can_contribute and (not closed or forms_):
        kinds = [kind for kind in KINDS if section in (None, SECTION_OF[kind])]
        context["add_forms"] = {
            kind: forms_.get(kind) or _child_form(kind, None, cycle, request.user, prefix=kind)
            for kind in kinds
        }
    return context


@login_required
@require_GET
def cycle_detail(request: AuthedRequest, cycle: uuid.UUID) -> HttpResponse:
    allowed = access.cycle_access(request.user, cycle)
    return render(request, "engagements/cycle_detail.html", _cycle_context(request, allowed))


SECTIONS = {"journal", "map"}


@login_required
@require_GET
def cycle_section(request: AuthedRequest, cycle: uuid.UUID, section: str) -> HttpResponse:
    """One section of a cycle page, for htmx (cancel an inline edit, refresh)."""
    allowed = access.cycle_access(request.user, cycle)
    if section not in SECTIONS:
        raise Http404
    return render(
        request,
        f"engagements/cycle_detail.html#{section}",
        _cycle_context(request, allowed, section),
    )


@login_required
@require_http_methods(GET_POST)
def cycle_edit(request: AuthedRequest, cycle: uuid.UUID) -> HttpResponse:
    allowed = access.cycle_access(request.user, cycle, need="manage")
    form = CycleForm(request.POST or None, instance=allowed.cycle)
    if request.method == "POST" and form.is_valid():
        try:
            services.cycle_update(
                cycle=allowed.cycle,
                version=form.cleaned_data.get("version"),
                by=request.user,
                **form.changed_values(),
            )
        except services.Refused as refusal:
            _refused(form, refusal)
        else:
            messages.success(request, _("Cycle saved."))
            return redirect("engagements:cycle", cycle)
    return render(
        request,
        "engagements/cycle_form.html",
        {"engagement": allowed.cycle.engagement, "cycle": allowed.cycle, "form": form},
    )


@login_required
@require_http_methods(GET_POST)
def cycle_move(request: AuthedRequest, cycle: uuid.UUID) -> HttpResponse:
    allowed = access.cycle_access(request.user, cycle, need="manage")
    form = MoveStageForm(request.POST or None, cycle=allowed.cycle, prefix="move")
    if request.method == "POST" and form.is_valid():
        try:
            services.cycle_move_stage(
                cycle=allowed.cycle,
                to_stage=form.cleaned_data["stage"],
                note=form.cleaned_data["note"],
                version=form.cleaned_data.get("version"),
                by=request.user,
            )
        except services.Refused as refusal:
            _refused(form, refusal)
        else:
            messages.success(
                request, _("Moved to %(stage)s.") % {"stage": form.cleaned_data["stage"].name}
            )
            return redirect("engagements:cycle", cycle)
    return render(
        request,
        "engagements/cycle_move.html",
        {"engagement": allowed.cycle.engagement, "cycle": allowed.cycle, "form": form},
    )


@login_required
@require_http_methods(GET_POST)
def cycle_links(request: AuthedRequest, cycle: uuid.UUID) -> HttpResponse:
    allowed = access.cycle_access(request.user, cycle, need="manage")
    candidates = selectors.link_candidates(user=request.user, cycle=allowed.cycle)
    form = CycleLinkForm(request.POST or None, candidates=candidates)
    if request.method == "POST":
        remove = _parse_uuid(request.POST.get("remove"))
        if remove is not None:
            other = candidates.filter(public_id=remove).first()
            if other is None:
                access.deny(request.user, "learningcycle", remove)
            services.cycle_link_remove(cycle=allowed.cycle, other=other, by=request.user)
            messages.success(request, _("Link removed."))
            return redirect("engagements:cycle_links", cycle)
        if form.is_valid():
            try:
                services.cycle_link_add(
                    cycle=allowed.cycle,
                    other=form.cleaned_data["other"],
                    relation=form.cleaned_data["relation"],
                    by=request.user,
                )
            except services.Refused as refusal:
                _refused(form, refusal)
            else:
                messages.success(request, _("Cycles linked."))
                return redirect("engagements:cycle_links", cycle)
    return render(
        request,
        "engagements/cycle_links.html",
        {
            "engagement": allowed.cycle.engagement,
            "cycle": allowed.cycle,
            "form": form,
            "links": selectors.linked_cycles(user=request.user, cycle=allowed.cycle),
        },
    )


# --- records inside a cycle: system map, experiments, reflections, adaptations ---------------

KINDS = ("actor", "factor", "experiment", "reflection", "adaptation")
SECTION_OF = {
    "actor": "map",
    "factor": "map",
    "experiment": "journal",
    "reflection": "journal",
    "adaptation": "journal",
}
ADDED = {
    "actor": _("Actor added to the system map."),
    "factor": _("Factor added to the system map."),
    "experiment": _("Experiment logged."),
    "reflection": _("Reflection added."),
    "adaptation": _("Adaptation recorded."),
}


def _child_form(
    kind: str,
    data: Any,
    cycle: LearningCycle,
    viewer: Any,
    *,
    prefix: str,
    instance: Any = None,
) -> VersionedForm:
    # Several inline edit forms can be open on one page: each gets ids of its own.
    auto_id = f"id_{instance.public_id.hex[:8]}_%s" if instance is not None else "id_%s"
    options: dict[str, Any] = {"instance": instance, "prefix": prefix, "auto_id": auto_id}
    if kind == "actor":
        return ActorForm(data, **options)
    if kind == "factor":
        return FactorForm(data, **options)
    if kind == "experiment":
        return ExperimentForm(data, **options)
    if kind == "reflection":
        return ReflectionForm(data, cycle=cycle, **options)
    return AdaptationForm(data, cycle=cycle, viewer=viewer, **options)


def _add(kind: str, allowed: access.CycleAccess, request: AuthedRequest, form: Any) -> Any:
    cycle, by = allowed.cycle, request.user
    data = form.changed_values()
    if kind == "actor":
        return services.actor_add(cycle=cycle, by=by, **data)
    if kind == "factor":
        return services.factor_add(cycle=cycle, by=by, **data)
    if kind == "experiment":
        return services.experiment_add(cycle=cycle, by=by, **data)
    if kind == "reflection":
        return services.reflection_add(cycle=cycle, by=by, author_role=allowed.author_role, **data)
    return services.adaptation_record(cycle=cycle, by=by, **data)


def _after_save(
    request: AuthedRequest, allowed: access.CycleAccess, kind: str, message: str, anchor: str
) -> HttpResponse:
    if request.htmx:
        allowed.cycle.refresh_from_db()
        section = SECTION_OF[kind]
        context = _cycle_context(request, allowed, section)
        context["announcement"] = message
        return render(request, f"engagements/cycle_detail.html#{section}", context)
    messages.success(request, message)
    url = reverse("engagements:cycle", args=[allowed.cycle.public_id])
    return HttpResponseRedirect(f"{url}#{anchor}")


@login_required
@require_http_methods(GET_POST)
def child_add(request: AuthedRequest, cycle: uuid.UUID, kind: str) -> HttpResponse:
    if kind not in KINDS:
        raise Http404
    allowed = access.cycle_access(request.user, cycle, need="contribute")
    data = request.POST if request.method == "POST" else None
    form = _child_form(kind, data, allowed.cycle, request.user, prefix=kind)
    if request.method == "POST" and form.is_valid():
        try:
            obj = _add(kind, allowed, request, form)
        except services.Refused as refusal:
            _refused(form, refusal)
        else:
            return _after_save(request, allowed, kind, str(ADDED[kind]), f"item-{obj.public_id}")
    if request.htmx and request.method == "POST":
        context = _cycle_context(request, allowed, SECTION_OF[kind], **{kind: form})
        context["open_form"] = kind
        return render(request, f"engagements/cycle_detail.html#{SECTION_OF[kind]}", context)
    return render(
        request,
        "engagements/child_form.html",
        {
            "cycle": allowed.cycle,
            "engagement": allowed.cycle.engagement,
            "form": form,
            "kind": kind,
            "adding": True,
        },
    )


@login_required
@require_http_methods(GET_POST)
def child_edit(request: AuthedRequest, kind: str, public_id: uuid.UUID) -> HttpResponse:
    if kind not in KINDS:
        raise Http404
    obj, allowed = access.child_access(request.user, kind, public_id)
    data = request.POST if request.method == "POST" else None
    form = _child_form(kind, data, allowed.cycle, request.user, prefix="edit", instance=obj)
    if request.method == "POST" and form.is_valid():
        try:
            services.child_update(
                obj=obj,
                version=form.cleaned_data.get("version"),
                by=request.user,
                **form.changed_values(),
            )
        except services.Refused as refusal:
            _refused(form, refusal)
        else:
            return _after_save(request, allowed, kind, _("Changes saved."), f"item-{obj.public_id}")
    context = {
        "cycle": allowed.cycle,
        "engagement": allowed.cycle.engagement,
        "form": form,
        "kind": kind,
        "obj": obj,
        "section": SECTION_OF[kind],
    }
    if request.htmx:
        response = render(request, "engagements/child_form.html#inline", context)
        if request.method == "POST":
            # The form asked to replace its section; with errors, only the form is replaced.
            retarget(response, f"#item-{obj.public_id}")
            reswap(response, "outerHTML")
        return response
    return render(request, "engagements/child_form.html", context)


@login_required
@require_POST
def child_delete(request: AuthedRequest, kind: str, public_id: uuid.UUID) -> HttpResponse:
    if kind not in ("actor", "factor"):
        raise Http404
    obj, allowed = access.child_access(request.user, kind, public_id)
    try:
        services.child_delete(obj=obj, by=request.user)  # type: ignore[arg-type]
    except services.Refused as refusal:
        messages.error(request, refusal.message)
        return redirect("engagements:cycle", allowed.cycle.public_id)
    return _after_save(request, allowed, kind, _("Removed from the system map."), "map")


# --- organisations and invitations ----------------------------------------------------------


@login_required
@require_http_methods(GET_POST)
def organisation_members(request: AuthedRequest, organisation: uuid.UUID) -> HttpResponse:
    allowed = access.organisation_access(request.user, organisation)
    form = InviteMemberForm(request.POST or None, roles=allowed.roles_to_give())
    if request.method == "POST":
        if not allowed.can_invite:
            access.deny(request.user, "organisation", organisation)
        if form.is_valid():
            try:
                services.invitation_create(
                    organisation=allowed.organisation,
                    email=form.cleaned_data["email"],
                    role=form.cleaned_data["role"],
                    invited_by=request.user,
                )
            except services.Refused as refusal:
                _refused(form, refusal)
            else:
                messages.success(
                    request,
                    _("We emailed %(email)s. They appear below until they accept.")
                    % {"email": form.cleaned_data["email"]},
                )
                return redirect("engagements:members", organisation)
    page = selectors.organisation_members(organisation_id=allowed.organisation.pk)
    return render(
        request,
        "engagements/organisation_members.html",
        {
            "organisation": allowed.organisation,
            "access": allowed,
            "page": page,
            "form": form,
            "role_choices": Membership.Role.choices,
        },
    )


@login_required
@require_POST
def member_update(
    request: AuthedRequest, organisation: uuid.UUID, member: uuid.UUID
) -> HttpResponse:
    allowed = access.organisation_access(request.user, organisation, need="manage")
    membership = (
        Membership.objects.filter(organisation=allowed.organisation, public_id=member)
        .select_related("user", "organisation")
        .first()
    )
    if membership is None:
        access.deny(request.user, "membership", member)
    try:
        if request.POST.get("action") == "remove":
            services.member_remove(membership=membership, by=request.user)
            messages.success(request, _("Member removed."))
        else:
            form = MemberRoleForm(request.POST)
            if not form.is_valid():
                messages.error(request, _("Choose one of the roles in the list."))
            else:
                services.member_set_role(
                    membership=membership, role=form.cleaned_data["role"], by=request.user
                )
                messages.success(request, _("Role changed."))
    except services.Refused as refusal:
        messages.error(request, refusal.message)
    return redirect("engagements:members", organisation)


@login_required
@require_POST
def invitation_revoke(
    request: AuthedRequest, organisation: uuid.UUID, invitation: uuid.UUID
) -> HttpResponse:
    allowed = access.organisation_access(request.user, organisation, need="invite")
    found = Invitation.objects.filter(
        organisation=allowed.organisation, public_id=invitation
    ).first()
    if found is None:
        access.deny(request.user, "invitation", invitation)
    services.invitation_revoke(invitation=found, by=request.user)
    messages.success(request, _("Invitation withdrawn."))
    return redirect("engagements:members", organisation)


@require_http_methods(GET_POST)
def invitation_accept(request: AuthedRequest, token: str) -> HttpResponse:
    """Accept an emailed invitation by choosing a password. GET changes nothing."""
    invitation = services.invitation_by_token(token)
    if invitation is None:
        raise Http404
    if (
        invitation.accepted is not None
        and request.user.is_authenticated
        and invitation.accepted_by_id == request.user.pk
    ):
        return redirect("home")  # a second click on "Create my account"
    if not invitation.is_open:
        return render(
            request, "engagements/invitation_gone.html", {"invitation": invitation}, status=410
        )
    form = AcceptInvitationForm(request.POST or None, email=invitation.email)
    if request.method == "POST" and form.is_valid():
        try:
            with transaction.atomic():
                user = services.invitation_accept(
                    invitation=invitation,
                    first_name=form.cleaned_data["first_name"],
                    last_name=form.cleaned_data["last_name"],
                    password=form.cleaned_data["password1"],
                )
        except services.Refused as refusal:
            _refused(form, refusal)
        else:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            messages.success(
                request,
                _("Welcome. Next time, sign in with your email address %(email)s as your username.")
                % {"email": invitation.email},
            )
            return redirect("home")
    return render(
        request, "engagements/invitation_accept.html", {"invitation": invitation, "form": form}
    )


# --- resident links and moderation ----------------------------------------------------------


def _resident_links_page(
    request: AuthedRequest, allowed: access.CycleAccess, form: SharedLinkForm
) -> HttpResponse:
    links = allowed.cycle.shared_links.all()
    context: dict[str, Any] = {
        "cycle": allowed.cycle,
        "engagement": allowed.cycle.engagement,
        "form": form,
        "links": list(links),
        **new_links.recall(request, links),  # the link just made, shown once
    }
    return new_links.forget(request, render(request, "engagements/resident_links.html", context))


@login_required
@require_http_methods(GET_POST)
def resident_links(request: AuthedRequest, cycle: uuid.UUID) -> HttpResponse:
    allowed = access.cycle_access(request.user, cycle, need="manage")
    form = SharedLinkForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        made = residents.link_create(
            cycle=allowed.cycle,
            by=request.user,
            label=form.cleaned_data["label"],
            days=form.cleaned_data["days"],
            max_submissions=form.cleaned_data["max_submissions"],
            moderation_mode=form.cleaned_data["moderation_mode"],
        )
        # Post, redirect, get: a reload cannot make a second link.
        return new_links.remember(redirect("engagements:resident_links", cycle), made)
    return _resident_links_page(request, allowed, form)


@login_required
@require_POST
def resident_link_revoke(request: AuthedRequest, cycle: uuid.UUID, link: uuid.UUID) -> HttpResponse:
    allowed = access.cycle_access(request.user, cycle, need="manage")
    found = allowed.cycle.shared_links.filter(public_id=link).first()
    if found is None:
        access.deny(request.user, "sharedlink", link)
    residents.link_revoke(link=found, by=request.user)
    messages.success(request, _("Link closed. Anyone opening it now is told it no longer works."))
    return redirect("engagements:resident_links", cycle)


@login_required
@require_GET
def moderation_queue(request: AuthedRequest) -> HttpResponse:
    held = list(
        # The dashboard's "waiting for review" counts this same query.
        counting.held_for_moderation(request.user)
        .select_related("cycle__organisation", "cycle__engagement")
        .order_by("created")
    )
    log = list(
        ModerationEvent.objects.filter(
            cycle__in=access.managed_cycles(request.user)
        ).select_related("actor", "cycle")[:50]
    )
    return render(
        request,
        "engagements/moderation.html",
        {"held": held, "log": log, "form": ModerationForm()},
    )


@login_required
@require_POST
def moderation_act(request: AuthedRequest, reflection: uuid.UUID) -> HttpResponse:
    found = access.reflection_to_moderate(request.user, reflection)
    form = ModerationForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Choose approve, hide or remove part."))
        return redirect("engagements:moderation")
    try:
        residents.moderate(
            reflection=found,
            action=form.cleaned_data["action"],
            by=request.user,
            remove=form.cleaned_data["remove"],
        )
    except services.Refused as refusal:
        messages.error(request, refusal.message)
    else:
        messages.success(request, _("Done. The log below records it."))
    return redirect("engagements:moderation")
