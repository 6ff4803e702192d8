"""Pages of the health check (``engagements.health``), for members and for residents.

Every member page asks ``engagements.access`` first: a round of a cycle is seen and answered by
whoever sees the cycle, a round of the whole engagement by everyone in the engagement, and the
engagement's facilitators open and close rounds. Anything else is 404, audited.

Residents answer through the round's link as DESIGN.md §5 says for every resident link:
``/r/<token>`` (``resident_views.open_link``) puts the link in the signed resident cookie and
sends them to the token-free ``/r/health/``; answers are sent once whatever the clicks (a
submission key), rate limited per link, and never lost to an expired page or security check
(``hls.views.csrf_failure`` hands a failed check here: :func:`rescue_after_security_check`).
Their thanks page shows a receipt code, once, that opens their answer on the receipt pages
(``resident_views.receipt``) to look at, download or withdraw.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core import signing
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.formats import date_format
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from engagements import access, health, new_links, resident_session, residents, services
from engagements.health_forms import AnswerForm, ResidentAnswerForm, RoundForm
from engagements.models import Engagement, HealthResponse, HealthRound, LearningCycle, SharedLink
from engagements.resident_views import (
    SESSION_HEALTH_LINK,
    SESSION_KEYS,
    _activate_language,
    _closed,
    remember_receipt,
)
from engagements.views import GET_POST, _refused
from hls.lib import ratelimit
from hls.lib.http import AuthedRequest

# --- members: access ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RoundAccess:
    round: HealthRound
    facilitates: bool
    perspective: str | None  # what the person's answer counts as (health.perspective_of)


def _round_for(request: AuthedRequest, public_id: uuid.UUID, *, need: str = "view") -> RoundAccess:
    user = request.user
    found = (
        HealthRound.objects.filter(public_id=public_id)
        .filter(
            Q(cycle=None, engagement__in=access.engagements_for(user))
            | Q(cycle__in=access.cycles_for(user))
        )
        .select_related("engagement__learning_partner", "cycle__organisation")
        .first()
    )
    if found is None:
        access.deny(user, "healthround", public_id)
    if found.cycle is not None:
        facilitates = access.cycle_access(user, found.cycle.public_id).facilitates
    else:
        facilitates = access.engagement_access(user, found.engagement.public_id).facilitates
    if need == "manage" and not facilitates:
        access.deny(user, "healthround", public_id)
    perspective = health.perspective_of(user, found, facilitates=facilitates)
    if need == "answer" and perspective is None:
        access.deny(user, "healthround", public_id)
    return RoundAccess(found, facilitates, perspective)


# --- members: lists and opening -----------------------------------------------------------------


def _list_page(
    request: AuthedRequest, engagement: Engagement, cycle: LearningCycle | None, can_open: bool
) -> HttpResponse:
    rounds = health.rounds_for(user=request.user, engagement=engagement, cycle=cycle)
    return render(
        request,
        "engagements/health_rounds.html",
        {
            "engagement": engagement,
            "cycle": cycle,
            "rounds": rounds,
            "can_open": can_open,
            # The round of this very scope still open, if any: another waits until it closes.
            "open_round": next(
                (r for r in rounds if r.closed is None and r.cycle_id == (cycle and cycle.pk)),
                None,
            ),
            "min_respondents": health.MIN_RESPONDENTS,
            # A round past its last day for answers says so (answers closed, round still open).
            "today": health.local_today(engagement),
        },
    )


@login_required
@require_GET
def list_rounds(request: AuthedRequest, engagement: uuid.UUID) -> HttpResponse:
    allowed = access.engagement_access(request.user, engagement)
    return _list_page(request, allowed.engagement, None, allowed.facilitates)


@login_required
@require_GET
def list_cycle_rounds(request: AuthedRequest, cycle: uuid.UUID) -> HttpResponse:
    allowed = access.cycle_access(request.user, cycle)
    return _list_page(request, allowed.cycle.engagement, allowed.cycle, allowed.facilitates)


def _open(
    request: AuthedRequest, engagement: Engagement, cycle: LearningCycle | None
) -> HttpResponse:
    form = RoundForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            health_round, link = health.round_open(
                engagement=engagement,
                cycle=cycle,
                by=request.user,
                title=data["title"],
                closes_on=data["closes_on"],
                resident_link=data["resident_link"],
            )
        except services.Refused as refusal:
            _refused(form, refusal)
        else:
            messages.success(
                request,
                _(
                    "Round opened. Everyone taking part can answer it from this page; "
                    "tell them it is open."
                ),
            )
            response = redirect("engagements:health_round", health_round.public_id)
            # The residents' link, if made, is shown once on the round's page.
            return new_links.remember(response, link) if link is not None else response
    elif not form.is_bound:
        month = date_format(health.local_today(engagement), "F Y")
        form.initial["title"] = _("Health check, %(month)s") % {"month": month}
    return render(
        request,
        "engagements/health_open.html",
        {"form": form, "engagement": engagement, "cycle": cycle},
    )


@login_required
@require_http_methods(GET_POST)
def open_round(request: AuthedRequest, engagement: uuid.UUID) -> HttpResponse:
    allowed = access.engagement_to_manage(request.user, engagement)
    return _open(request, allowed.engagement, None)


@login_required
@require_http_methods(GET_POST)
def open_cycle_round(request: AuthedRequest, cycle: uuid.UUID) -> HttpResponse:
    allowed = access.cycle_access(request.user, cycle)
    if not allowed.facilitates:
        access.deny(request.user, "learningcycle", cycle)
    return _open(request, allowed.cycle.engagement, allowed.cycle)


# --- members: a round ---------------------------------------------------------------------------


@login_required
@require_GET
def show_round(request: AuthedRequest, health_round: uuid.UUID) -> HttpResponse:
    allowed = _round_for(request, health_round)
    found = allowed.round
    context: dict[str, Any] = {
        "round": found,
        "engagement": found.engagement,
        "cycle": found.cycle,
        "facilitates": allowed.facilitates,
        "can_answer": allowed.perspective is not None,
        "takes_answers": health.takes_answers(found),
        "answered": HealthResponse.objects.filter(round=found, respondent=request.user).exists(),
        "results": health.round_results(found),
    }
    if request.htmx and request.htmx.target == "health-count":
        # "Show the latest count": the count alone, swapped into the page's persistent live
        # region. Should answers have closed since the page opened, it says so (``refreshed``).
        context["refreshed"] = True
        return render(request, "engagements/health_round.html#count", context)
    if request.htmx and request.htmx.target == "health-results":
        return render(request, "engagements/health_round.html#results", context)
    if allowed.facilitates:
        links = found.shared_links.all()
        context["links"] = list(links)
        context.update(new_links.recall(request, links))
    return new_links.forget(request, render(request, "engagements/health_round.html", context))


@login_required
@require_http_methods(GET_POST)
def answer_round(request: AuthedRequest, health_round: uuid.UUID) -> HttpResponse:
    allowed = _round_for(request, health_round, need="answer")
    found = allowed.round
    perspective = allowed.perspective or ""
    if request.method == "POST":
        form = AnswerForm(request.POST)
        if form.is_valid():
            try:
                _response, first = health.answer_save(
                    health_round=found,
                    by=request.user,
                    perspective=perspective,
                    answers=form.answers(),
                )
            except services.Refused as refusal:
                _refused(form, refusal)
            else:
                if first:
                    done = _("Thank you: your answers are saved.")
                else:
                    done = _("Your answers are changed.")
                messages.success(
                    request,
                    " ".join(
                        [done, _("You can change them for as long as the round takes answers.")]
                    ),
                )
                return redirect("engagements:health_round", found.public_id)
    else:
        if not health.takes_answers(found):
            messages.info(request, _("This round no longer takes answers. Its results are below."))
            return redirect("engagements:health_round", found.public_id)
        mine = health.my_answer(found, request.user)
        form = AnswerForm(initial=AnswerForm.initial_from(mine))
    return render(
        request,
        "engagements/health_answer.html",
        {
            "form": form,
            "round": found,
            "engagement": found.engagement,
            "cycle": found.cycle,
            "perspective": health.Perspective(perspective).label if perspective else "",
            "min_respondents": health.MIN_RESPONDENTS,
            "answered_before": bool(request.method == "GET" and form.initial),
        },
    )


@login_required
@require_POST
def close_round(request: AuthedRequest, health_round: uuid.UUID) -> HttpResponse:
    found = _round_for(request, health_round, need="manage").round
    try:
        health.round_close(health_round=found, by=request.user)
    except services.Refused as refusal:
        messages.info(request, refusal.message)
    else:
        messages.success(
            request,
            _(
                "Round closed. Nobody can answer or change an answer now, and its resident link "
                "no longer works. The results below are final: talk them over together."
            ),
        )
    return redirect("engagements:health_round", found.public_id)


# --- residents ----------------------------------------------------------------------------------

HEALTH_LINK_SALT = "resident-health-link"  # not the reflection form's: a link_ref fits one form
LINK_REF_SECONDS = 366 * 24 * 60 * 60


def _resident_link(request: HttpRequest) -> SharedLink | None:
    """The round's link the form was opened through, else the one in the resident cookie."""
    link_id: Any = None
    link_ref = request.POST.get("link_ref")
    if link_ref:
        try:
            link_id = signing.loads(link_ref[:500], salt=HEALTH_LINK_SALT, max_age=LINK_REF_SECONDS)
        except signing.BadSignature:
            link_id = None
    if not isinstance(link_id, int):
        link_id = resident_session.of(request).get(SESSION_HEALTH_LINK)
    if not isinstance(link_id, int):
        return None
    return (
        SharedLink.objects.select_related(
            "health_round__engagement__learning_partner", "health_round__cycle__organisation"
        )
        .filter(pk=link_id, health_round__isnull=False)
        .first()
    )


def _resident_page(
    request: HttpRequest,
    link: SharedLink,
    form: ResidentAnswerForm,
    *,
    status: int = 200,
    resumed: bool = False,
    busy: bool = False,
) -> HttpResponse:
    health_round = link.health_round
    assert health_round is not None
    return render(
        request,
        "residents/health_answer.html",
        {
            "link": link,
            "round": health_round,
            "engagement": health_round.engagement,
            "cycle": health_round.cycle,
            "form": form,
            "resumed": resumed,
            "busy": busy,
            "min_respondents": health.MIN_RESPONDENTS,
        },
        status=status,
    )


def _no_link(request: HttpRequest) -> HttpResponse:
    """No link to answer through: say so, and give back any comments so they can be copied."""
    posted = request.POST
    comments = [
        posted.get(name, "")[:2000]
        for name in posted
        if name.startswith("comment_") and posted.get(name, "").strip()
    ]
    return render(
        request,
        "residents/health_no_link.html",
        {"comments": comments},
        status=400 if request.method == "POST" else 200,
    )


def _given_back(request: HttpRequest, link: SharedLink, *, status: int) -> HttpResponse:
    """The form again with what they chose, under a fresh submission key (the old one is
    not reused), to send once more."""
    data = request.POST.copy()
    data["submission_key"] = str(uuid.uuid4())
    form = ResidentAnswerForm(data)
    form.is_valid()
    resident_session.of(request)[SESSION_HEALTH_LINK] = link.pk
    return _resident_page(request, link, form, status=status, resumed=True)


def rescue_after_security_check(request: HttpRequest) -> HttpResponse:
    """The form again, with the resident's answers, after a failed CSRF check (an old tab).

    Called by ``hls.views.csrf_failure`` for a same-site POST to ``/r/health/``, as the
    reflection form's rescue is for ``/r/``: the resident sends them once more instead of
    meeting an error page (DESIGN.md §5).
    """
    link = _resident_link(request)
    if link is None or link.health_round is None:
        return _no_link(request)
    _activate_language(request, link.health_round.engagement.language)
    if not link.is_active or not health.takes_answers(link.health_round):
        form = ResidentAnswerForm(request.POST)
        form.is_valid()
        return _not_taking(request, link, form)
    return _given_back(request, link, status=403)


def _not_taking(request: HttpRequest, link: SharedLink, form: ResidentAnswerForm) -> HttpResponse:
    """The form with the resident's answers and why they were not sent: the round or the link
    closed (or the round is past its last day)."""
    health_round = link.health_round
    assert health_round is not None
    if link.is_active or health_round.closed is not None:
        form.add_error(None, health.RoundClosed(health_round, resident=True).message)
    else:  # expired, closed or full, the round still open
        form.add_error(None, _("This link has closed, so your answers were not sent."))
    return _resident_page(request, link, form, status=410)


@require_http_methods(GET_POST)
def resident_answer(request: HttpRequest) -> HttpResponse:
    session = resident_session.of(request)
    had_session = SESSION_HEALTH_LINK in session
    link = _resident_link(request)
    if link is None or link.health_round is None:
        return _no_link(request)
    health_round = link.health_round
    _activate_language(request, health_round.engagement.language)
    form = ResidentAnswerForm(request.POST) if request.method == "POST" else None
    if form is not None and form.is_valid() and had_session:
        key = form.cleaned_data["submission_key"]
        if str(key) in session.get(SESSION_KEYS, []):
            # Already sent from this browser (a double click, a refresh): the same thanks and
            # receipt code, even if the round has closed since. Withdrawn since, it is not
            # found: the form below says so (health.AnswerWithdrawn) or that the round closed.
            saved = (
                HealthResponse.objects.select_related("round")
                .filter(submission_key=key)
                .exclude(receipt_hash="")
                .first()
            )
            if saved is not None:
                return _thanks(request, saved, key)
    if not link.is_active or not health.takes_answers(health_round):
        if form is None:
            return _closed(request, 410)
        return _not_taking(request, link, form)
    session[SESSION_HEALTH_LINK] = link.pk
    if form is None:
        link_ref = signing.dumps(link.pk, salt=HEALTH_LINK_SALT)
        return _resident_page(request, link, ResidentAnswerForm(initial={"link_ref": link_ref}))
    if not form.is_valid():
        return _resident_page(request, link, form)
    if not had_session:
        # The session ended while they answered: nothing is lost, they press Send once more.
        return _given_back(request, link, status=200)
    wait = ratelimit.hit("r-submit", str(link.pk), limit=settings.RESIDENT_SUBMIT_LIMIT, window=60)
    if wait:
        response = _resident_page(request, link, form, status=429, busy=True)
        response["Retry-After"] = str(wait)
        return response
    key = form.cleaned_data["submission_key"]
    try:
        answer, created = health.resident_answer_submit(
            link_id=link.pk, submission_key=key, answers=form.answers()
        )
    except services.Refused as refusal:
        form.add_error(None, refusal.message)
        withdrawn = isinstance(refusal, health.AnswerWithdrawn)
        return _resident_page(request, link, form, status=200 if withdrawn else 410)
    if not created:
        # The key was stored by another browser, or by this one a moment ago (a second click
        # before the first came back): saved once, and its receipt code is not shown again, so
        # only whoever sent it can see or withdraw the answer.
        return _thanks(request, answer, None)
    keys = session.get(SESSION_KEYS, [])
    session[SESSION_KEYS] = [*keys[-19:], str(key)]
    return _thanks(request, answer, key)


def _thanks(request: HttpRequest, answer: HealthResponse, key: uuid.UUID | None) -> HttpResponse:
    """Thanks, with the answer's receipt code (shown on this page only) when ``key`` is given."""
    if key is not None:
        remember_receipt(request, answer)
    return render(
        request,
        "residents/health_thanks.html",
        {"round": answer.round, "receipt": residents.receipt_code(key) if key else ""},
    )
