"""Pages for reflection sessions, and the one-click unsubscribe from reminders.

Every session page asks ``engagements.access`` first: a session of a cycle is seen by whoever
sees the cycle and managed by whoever manages it; a session of a whole engagement is seen by
everyone in the engagement and managed by its facilitators. Anything else is 404.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from engagements import access, services, sessions
from engagements.models import (
    Adaptation,
    Engagement,
    LearningCycle,
    Profile,
    ReflectionSession,
)
from engagements.session_forms import SessionForm
from engagements.views import GET_POST, _refused
from hls.lib.http import AuthedRequest


@dataclass(frozen=True)
class SessionAccess:
    session: ReflectionSession
    can_manage: bool


def _session_for(
    request: AuthedRequest, public_id: uuid.UUID, *, need: str = "view"
) -> SessionAccess:
    user = request.user
    session = (
        ReflectionSession.objects.filter(public_id=public_id)
        .filter(
            Q(cycle=None, engagement__in=access.engagements_for(user))
            | Q(cycle__in=access.cycles_for(user))
        )
        .select_related(
            "engagement__learning_partner",
            "cycle__organisation",
            "cycle__engagement",
            "cycle__stage",
            "shared_link",
            "created_by",
        )
        .first()
    )
    if session is None:
        access.deny(user, "reflectionsession", public_id)
    if session.cycle is not None:
        can_manage = access.cycle_access(user, session.cycle.public_id).can_manage
    else:
        can_manage = access.engagement_access(user, session.engagement.public_id).facilitates
    if need == "manage" and not can_manage:
        access.deny(user, "reflectionsession", public_id)
    return SessionAccess(session, can_manage)


# --- lists ----------------------------------------------------------------------------------


def _list_page(
    request: AuthedRequest,
    engagement: Engagement,
    cycle: LearningCycle | None,
    can_schedule: bool,
) -> HttpResponse:
    found = ReflectionSession.objects.filter(engagement=engagement).select_related(
        "cycle__organisation"
    )
    if cycle is not None:
        found = found.filter(cycle=cycle)
    else:
        found = found.filter(Q(cycle=None) | Q(cycle__in=access.cycles_for(request.user)))
    now = timezone.now()
    rows = list(
        found.order_by("cancelled", "first_date", "start_time", "id").prefetch_related(
            "occurrences"
        )
    )
    for session in rows:
        upcoming = [o for o in session.occurrences.all() if o.starts_at > now]
        session.next_occurrence = upcoming[0] if upcoming else None  # type: ignore[attr-defined]
    return render(
        request,
        "engagements/session_list.html",
        {
            "engagement": engagement,
            "cycle": cycle,
            "sessions": rows,
            "can_schedule": can_schedule,
        },
    )


@login_required
@require_GET
def session_list(request: AuthedRequest, engagement: uuid.UUID) -> HttpResponse:
    allowed = access.engagement_access(request.user, engagement)
    return _list_page(request, allowed.engagement, None, allowed.facilitates)


@login_required
@require_GET
def cycle_session_list(request: AuthedRequest, cycle: uuid.UUID) -> HttpResponse:
    allowed = access.cycle_access(request.user, cycle)
    return _list_page(request, allowed.cycle.engagement, allowed.cycle, allowed.can_manage)


# --- scheduling and changing ----------------------------------------------------------------


def _form_page(
    request: AuthedRequest,
    form: SessionForm,
    engagement: Engagement,
    cycle: LearningCycle | None,
    session: ReflectionSession | None = None,
) -> HttpResponse:
    return render(
        request,
        "engagements/session_form.html",
        {"form": form, "engagement": engagement, "cycle": cycle, "session": session},
    )


def _create(
    request: AuthedRequest, engagement: Engagement, cycle: LearningCycle | None
) -> HttpResponse:
    form = SessionForm(request.POST or None, engagement=engagement, cycle=cycle)
    if request.method == "POST" and form.is_valid():
        values, invitees = form.session_values()
        try:
            session = sessions.session_create(
                engagement=engagement, cycle=cycle, by=request.user, invitees=invitees, **values
            )
        except services.Refused as refusal:
            _refused(form, refusal)
        else:
            messages.success(
                request, _("Session scheduled. Invitees get the prompt before each date.")
            )
            return redirect("engagements:session", session.public_id)
    return _form_page(request, form, engagement, cycle)


@login_required
@require_http_methods(GET_POST)
def session_create(request: AuthedRequest, engagement: uuid.UUID) -> HttpResponse:
    """A session for the whole engagement: its facilitators schedule it."""
    allowed = access.engagement_to_manage(request.user, engagement)
    return _create(request, allowed.engagement, None)


@login_required
@require_http_methods(GET_POST)
def cycle_session_create(request: AuthedRequest, cycle: uuid.UUID) -> HttpResponse:
    allowed = access.cycle_access(request.user, cycle, need="manage")
    return _create(request, allowed.cycle.engagement, allowed.cycle)


@login_required
@require_http_methods(GET_POST)
def session_edit(request: AuthedRequest, session: uuid.UUID) -> HttpResponse:
    found = _session_for(request, session, need="manage").session
    form = SessionForm(
        request.POST or None, instance=found, engagement=found.engagement, cycle=found.cycle
    )
    if request.method == "POST" and form.is_valid():
        values, invitees = form.session_values()
        try:
            sessions.session_update(
                session=found,
                version=form.cleaned_data.get("version"),
                by=request.user,
                invitees=invitees,
                **values,
            )
        except services.Refused as refusal:
            _refused(form, refusal)
        else:
            messages.success(request, _("Session saved. Dates not yet prompted follow the change."))
            return redirect("engagements:session", found.public_id)
    return _form_page(request, form, found.engagement, found.cycle, found)


@login_required
@require_POST
def session_cancel(request: AuthedRequest, session: uuid.UUID) -> HttpResponse:
    found = _session_for(request, session, need="manage").session
    sessions.session_cancel(session=found, by=request.user)
    messages.success(request, _("Session cancelled. No more prompts or reminders will be sent."))
    return redirect("engagements:session", found.public_id)


# --- reading --------------------------------------------------------------------------------


def _open_adaptations(request: AuthedRequest, session: ReflectionSession) -> list[Adaptation]:
    """Adaptations still proposed: where the session starts, to see what became of them."""
    if session.cycle_id is not None:
        scope = Q(cycle_id=session.cycle_id)
    else:
        scope = Q(cycle__in=access.cycles_for(request.user).filter(engagement=session.engagement))
    return list(
        Adaptation.objects.filter(scope, status=Adaptation.Status.PROPOSED)
        .select_related("cycle")
        .order_by("decided_on", "id")[:100]
    )


@login_required
@require_GET
def session_detail(request: AuthedRequest, session: uuid.UUID) -> HttpResponse:
    allowed = _session_for(request, session)
    found = allowed.session
    viewer_zone = (
        Profile.objects.filter(user_id=request.user.pk).values_list("timezone", flat=True).first()
    ) or found.timezone
    context: dict[str, Any] = {
        "session": found,
        "engagement": found.engagement,
        "cycle": found.cycle,
        "can_manage": allowed.can_manage,
        "occurrences": list(found.occurrences.all()),
        "invitees": list(found.invitees.order_by("first_name", "last_name", "username")),
        "questions": [q.strip() for q in found.questions.splitlines() if q.strip()],
        "adaptations": _open_adaptations(request, found),
        "viewer_zone": viewer_zone,
        "now": timezone.now(),
        "location_is_link": found.location.startswith(("https://", "http://")),
    }
    if allowed.can_manage:
        context["failures"] = sessions.failed_emails(found)
    return render(request, "engagements/session_detail.html", context)


@login_required
@require_GET
def session_calendar(request: AuthedRequest, session: uuid.UUID) -> HttpResponse:
    """The whole series as an .ics file to import into a calendar."""
    found = _session_for(request, session).session
    body = sessions.calendar_bytes(found, list(found.occurrences.all()))
    response = HttpResponse(body, content_type="text/calendar; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="reflection-session.ics"'
    return response


# --- one-click unsubscribe from reminders ---------------------------------------------------


def _no_trace(response: HttpResponse) -> HttpResponse:
    """The token is in the address: not cached, not indexed, not sent on as a referrer."""
    add_never_cache_headers(response)
    response["Referrer-Policy"] = "no-referrer"
    response["X-Robots-Tag"] = "noindex, nofollow"
    return response


# The signed token is the authority, and mail providers send RFC 8058's one-click POST
# ("List-Unsubscribe=One-Click") with no CSRF token. No sign-in is needed either.
@csrf_exempt
@require_http_methods(GET_POST)
def unsubscribe(request: HttpRequest, signed: str) -> HttpResponse:
    """GET shows one button (a link scanner following it changes nothing); POST acts."""
    user_id = sessions.unsubscribe_user_id(signed)
    if user_id is None:
        return _no_trace(render(request, "engagements/unsubscribe_invalid.html", status=400))
    if request.method == "POST":
        on = request.POST.get("reminders") == "on"
        sessions.reminders_set(user_id=user_id, on=on)
        return _no_trace(render(request, "engagements/unsubscribe_done.html", {"on": on}))
    return _no_trace(render(request, "engagements/unsubscribe.html"))
