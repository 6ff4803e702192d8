"""Pages residents use through a shared link, with no account (DESIGN.md §5).

``/r/<token>`` changes nothing: it checks the token's hash, keeps the link in a short
anonymous session (a signed cookie, ``engagements.resident_session``) and redirects to ``/r/`` so the token leaves the address bar. Everything
under ``/r/`` is sent with no-referrer, noindex and no-store (``hls.middleware``).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from django.conf import settings
from django.core import signing
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import translation
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods

from engagements import health, resident_session, residents
from engagements.models import Adaptation, HealthResponse, LearningCycle, Reflection, SharedLink
from engagements.resident_forms import ReceiptForm, ResidentReflectionForm
from engagements.services import Refused
from hls.lib import ratelimit
from hls.lib.http import client_ip

SESSION_LINK = "resident_link"
SESSION_HEALTH_LINK = "resident_health_link"  # a health-check round's link (health_views)
SESSION_RECEIPT = "resident_receipt"  # the reflection a receipt code (or sending it) opened
SESSION_HEALTH_RECEIPT = "resident_health_receipt"  # or the health-check answer
SESSION_KEYS = "resident_submissions"  # the submission keys this browser saved
LINK_SALT = "resident-link"
LINK_REF_SECONDS = 366 * 24 * 60 * 60  # as long as any link lives: the link itself decides

LOOKUPS_PER_MINUTE = 60
FAILED_LOOKUPS_PER_10_MINUTES = 20


def _too_many(request: HttpRequest, wait: int) -> HttpResponse:
    response = render(request, "residents/too_many.html", status=429)
    response["Retry-After"] = str(wait)
    return response


def _closed(request: HttpRequest, status: int) -> HttpResponse:
    # The same words for an unknown, expired or withdrawn link: the page reveals nothing.
    _activate_language(request, None)
    return render(request, "residents/link_closed.html", status=status)


SESSION_LANGUAGE = "resident_language"


def _activate_language(request: HttpRequest, code: str | None) -> None:
    """Residents see the engagement's language unless they chose one with the switcher."""
    code = code or resident_session.of(request).get(SESSION_LANGUAGE)
    if code and settings.LANGUAGE_COOKIE_NAME not in request.COOKIES:
        translation.activate(code)
        request.LANGUAGE_CODE = code


def _activate(link: SharedLink, request: HttpRequest) -> None:
    _activate_language(request, _cycle(link).engagement.language)


def _cycle(link: SharedLink) -> LearningCycle:
    """A reflection link's cycle (the other kind, a health-check round's, has none)."""
    assert link.cycle is not None, "a health-check link reached the reflection form"
    return link.cycle


@require_GET
def open_link(request: HttpRequest, token: str) -> HttpResponse:
    ip = client_ip(request)
    wait = ratelimit.peek(
        "r-fail", ip, limit=FAILED_LOOKUPS_PER_10_MINUTES, window=600
    ) or ratelimit.hit("r-lookup", ip, limit=LOOKUPS_PER_MINUTE, window=60)
    if wait:
        return _too_many(request, wait)
    link = residents.link_by_token(token)
    if link is None:
        ratelimit.hit("r-fail", ip, limit=FAILED_LOOKUPS_PER_10_MINUTES, window=600)
        return _closed(request, 404)
    if not link.is_active:
        return _closed(request, 410)
    session = resident_session.of(request)
    if link.health_round is not None:
        # A health-check link: its own form (engagements.health_views), its own session key,
        # so the reflection form never meets it.
        session[SESSION_HEALTH_LINK] = link.pk
        session[SESSION_LANGUAGE] = link.health_round.engagement.language
        return redirect("residents:health")
    session[SESSION_LINK] = link.pk
    session[SESSION_LANGUAGE] = _cycle(link).engagement.language
    return redirect("residents:reflect")


def _link_id(request: HttpRequest, link_ref: str | None) -> int | None:
    """The link the form was opened through, else the session's (two tabs, two links)."""
    if link_ref:
        try:
            link_id = signing.loads(link_ref[:500], salt=LINK_SALT, max_age=LINK_REF_SECONDS)
        except signing.BadSignature:
            link_id = None
        if isinstance(link_id, int):
            return link_id
    link_id = resident_session.of(request).get(SESSION_LINK)
    return link_id if isinstance(link_id, int) else None


def _load_link(link_id: int | None) -> SharedLink | None:
    if link_id is None:
        return None
    return (
        SharedLink.objects.select_related(
            "cycle__engagement__learning_partner", "cycle__organisation"
        )
        .filter(pk=link_id, cycle__isnull=False)  # a reflection link, not a health check's
        .first()
    )


@require_http_methods(["GET", "POST"])
def reflect(request: HttpRequest) -> HttpResponse:
    session = resident_session.of(request)
    had_session = SESSION_LINK in session
    link_id = _link_id(request, request.POST.get("link_ref"))
    form = ResidentReflectionForm(request.POST) if request.method == "POST" else None
    if (
        form is not None
        and had_session
        and link_id == session[SESSION_LINK]
        and form.is_valid()
        and str(form.cleaned_data["submission_key"]) not in session.get(SESSION_KEYS, [])
    ):
        # The everyday case, a first send from the link this browser opened: straight to the
        # statement that stores it (which checks the link), no page read of the link first.
        _activate_language(request, None)
        return _send(request, form, link_id, None)

    link = _load_link(link_id)
    if link is None:
        return _no_link(request)
    _activate(link, request)
    if form is not None and form.is_valid() and had_session:
        # Already saved by this person (a double click, a refresh): the same thank-you page,
        # even if the link has closed since.
        key = form.cleaned_data["submission_key"]
        if str(key) in session.get(SESSION_KEYS, []):
            saved = (
                Reflection.objects.select_related("shared_link").filter(submission_key=key).first()
            )
            if saved is not None:
                return _thanks(request, saved, key)
    if not link.is_active:
        if form is not None:
            form.add_error(None, _("This link has closed, so your reflection could not be sent."))
            return _form_page(request, link, form, status=410)
        return _closed(request, 410)
    session[SESSION_LINK] = link.pk
    if form is None:
        form = ResidentReflectionForm(initial={"link_ref": signing.dumps(link.pk, salt=LINK_SALT)})
        return _form_page(request, link, form)

    if not form.is_valid():
        return _form_page(request, link, form)
    if not had_session:
        # The session ended while they typed: nothing is lost, they press Send once more.
        return _form_page(request, link, _resumed_form(request), resumed=True)
    return _send(request, form, link.pk, link)


def _send(
    request: HttpRequest, form: ResidentReflectionForm, link_id: int, link: SharedLink | None
) -> HttpResponse:
    """Store a valid form's reflection and thank the resident, or say why it was not stored.

    ``link`` is loaded only when a page about it must be shown (busy, closed, someone else's
    submission key); the everyday send does without it.
    """

    def form_page(form: ResidentReflectionForm, **kwargs: Any) -> HttpResponse:
        loaded = link or _load_link(link_id)
        if loaded is None:  # deleted meanwhile
            return _no_link(request)
        return _form_page(request, loaded, form, **kwargs)

    wait = ratelimit.hit("r-submit", str(link_id), limit=settings.RESIDENT_SUBMIT_LIMIT, window=60)
    if wait:
        response = form_page(form, status=429, busy=True)
        response["Retry-After"] = str(wait)
        return response
    data = form.cleaned_data
    try:
        reflection, created = residents.submit(
            link_id=link_id,
            submission_key=data["submission_key"],
            text=data["text"],
            identity=data["identity"],
            first_name=data["first_name"].strip(),
            better_or_worse=data["better_or_worse"],
            feeling=data["feeling"],
            principles=data["principles"],
            follow_up_email=data["email"],
            language=translation.get_language() or settings.LANGUAGE_CODE,
        )
    except Refused as refusal:
        form.add_error(None, refusal.message)
        closed = not isinstance(refusal, residents.Withdrawn)
        return form_page(form, status=410 if closed else 200)
    if not created:
        # Someone else's submission key: their words and receipt stay theirs.
        return form_page(_resumed_form(request), resumed=True)
    session = resident_session.of(request)
    keys = session.get(SESSION_KEYS, [])
    session[SESSION_KEYS] = [*keys[-19:], str(data["submission_key"])]
    return _thanks(request, reflection, data["submission_key"])


def _thanks(request: HttpRequest, reflection: Reflection, key: uuid.UUID) -> HttpResponse:
    remember_receipt(request, reflection)
    link = reflection.shared_link
    return render(
        request,
        "residents/thanks.html",
        {
            "draft_key": f"reflection-{link.public_id}" if link is not None else "",
            "reflection": reflection,
            "receipt": residents.receipt_code(key),
        },
    )


def _resumed_form(request: HttpRequest) -> ResidentReflectionForm:
    """The posted words again, under a fresh submission key (the old one is not reused)."""
    data = request.POST.copy()
    data["submission_key"] = str(uuid.uuid4())
    form = ResidentReflectionForm(data)
    form.is_valid()
    return form


def rescue_after_security_check(request: HttpRequest) -> HttpResponse | None:
    """The form again, with the resident's words, after a failed CSRF check (an old page)."""
    link = _load_link(_link_id(request, request.POST.get("link_ref")))
    if link is None:
        return _no_link(request)
    _activate(link, request)
    form = _resumed_form(request)
    if not link.is_active:
        form.add_error(None, _("This link has closed, so your reflection could not be sent."))
        return _form_page(request, link, form, status=410)
    resident_session.of(request)[SESSION_LINK] = link.pk
    return _form_page(request, link, form, status=403, resumed=True)


def _no_link(request: HttpRequest) -> HttpResponse:
    """No link to send to: say so, and give back any words so they can be copied."""
    return render(
        request,
        "residents/no_link.html",
        {"words": request.POST.get("text", "")[:20000]},
        status=400 if request.method == "POST" else 200,
    )


def _form_page(
    request: HttpRequest,
    link: SharedLink,
    form: ResidentReflectionForm,
    *,
    status: int = 200,
    resumed: bool = False,
    busy: bool = False,
) -> HttpResponse:
    return render(
        request,
        "residents/reflect.html",
        {
            "link": link,
            "cycle": _cycle(link),
            "engagement": _cycle(link).engagement,
            "form": form,
            "resumed": resumed,
            "busy": busy,
        },
        status=status,
    )


# --- receipts -------------------------------------------------------------------------------
#
# One code form for both kinds of receipt: a reflection's, and a health-check answer's
# (``engagements.health``). The code opens one or the other for this browser (its pk in the
# resident cookie); the pages below show, download or withdraw whichever it opened.


def remember_receipt(request: HttpRequest, found: Reflection | HealthResponse) -> None:
    """The receipt pages of this browser now show ``found`` (and nothing else)."""
    session = resident_session.of(request)
    if isinstance(found, HealthResponse):
        session[SESSION_HEALTH_RECEIPT] = found.pk
        session.pop(SESSION_RECEIPT, None)
    else:
        session[SESSION_RECEIPT] = found.pk
        session.pop(SESSION_HEALTH_RECEIPT, None)


@require_http_methods(["GET", "POST"])
def receipt(request: HttpRequest) -> HttpResponse:
    form = ReceiptForm(request.POST or None)
    if request.method == "POST":
        ip = client_ip(request)
        wait = ratelimit.peek("r-receipt-fail", ip, limit=FAILED_LOOKUPS_PER_10_MINUTES, window=600)
        if wait:
            return _too_many(request, wait)
        if form.is_valid():
            found = residents.by_receipt(form.cleaned_data["code"])
            if found is not None:
                remember_receipt(request, found)
                return redirect("residents:receipt_view")
            ratelimit.hit("r-receipt-fail", ip, limit=FAILED_LOOKUPS_PER_10_MINUTES, window=600)
            # The same words whatever kind of code it was meant to be: they reveal nothing.
            form.add_error(
                "code",
                _(
                    "We found nothing sent with this code. Check it against what you wrote "
                    "down; if you withdrew what you sent, it no longer exists."
                ),
            )
    return render(request, "residents/receipt.html", {"form": form})


def _receipt_reflection(request: HttpRequest) -> Reflection | None:
    reflection_id = resident_session.of(request).get(SESSION_RECEIPT)
    if reflection_id is None:
        return None
    return (
        Reflection.objects.select_related("cycle__engagement", "cycle__organisation", "stage")
        .filter(pk=reflection_id, author_role=Reflection.AuthorRole.RESIDENT)
        .first()
    )


def _opened_answer(request: HttpRequest) -> bool:
    """Whether this browser's receipt pages are about a health-check answer."""
    return SESSION_HEALTH_RECEIPT in resident_session.of(request)


def _receipt_answer(request: HttpRequest) -> HealthResponse | None:
    """The health-check answer this browser's receipt opened, unless withdrawn since."""
    answer_id = resident_session.of(request).get(SESSION_HEALTH_RECEIPT)
    if not isinstance(answer_id, int):
        return None
    answer = (
        HealthResponse.objects.select_related("round__engagement", "round__cycle")
        .filter(pk=answer_id, perspective=Reflection.AuthorRole.RESIDENT)
        .exclude(receipt_hash="")  # withdrawn once answers had closed: the code works no more
        .first()
    )
    if answer is not None:
        _activate_language(request, answer.round.engagement.language)
    return answer


def _since(reflection: Reflection) -> QuerySet[Adaptation]:
    return Adaptation.objects.filter(
        cycle_id=reflection.cycle_id, created__gte=reflection.created
    ).order_by("created")


@require_GET
def receipt_view(request: HttpRequest) -> HttpResponse:
    if _opened_answer(request):
        answer = _receipt_answer(request)
        if answer is None:
            return redirect("residents:receipt")
        return render(
            request,
            "residents/health_receipt_view.html",
            {
                "answer": answer,
                "round": answer.round,
                "engagement": answer.round.engagement,
                "status": health.resident_round_status(answer.round),
                "sections": health.resident_answer_rows(answer),
            },
        )
    reflection = _receipt_reflection(request)
    if reflection is None:
        return redirect("residents:receipt")
    _activate_language(request, reflection.language)
    return render(
        request,
        "residents/receipt_view.html",
        {
            "reflection": reflection,
            "cycle": reflection.cycle,
            "adaptations": list(_since(reflection)),
        },
    )


def _download(data: dict[str, Any], text: str, fmt: str, name: str) -> HttpResponse:
    if fmt == "json":
        response = HttpResponse(
            json.dumps(data, ensure_ascii=False, indent=2),
            content_type="application/json; charset=utf-8",
        )
    else:
        response = HttpResponse(text, content_type="text/plain; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{name}.{fmt}"'
    return response


def _answer_text(data: dict[str, Any]) -> str:
    """A health-check answer as plain text: what it answered, then each score and comment."""
    lines = [f"{key}: {value}" for key, value in data.items() if key != "answers" and value]
    for answer in data["answers"]:
        lines += ["", f"{answer['behaviour']}: {answer['score']}"]
        if answer["comment"]:
            lines.append(answer["comment"])
    return "\n".join(lines) + "\n"


@require_GET
def receipt_download(request: HttpRequest, fmt: str) -> HttpResponse:
    if fmt not in ("json", "txt"):
        raise Http404
    if _opened_answer(request):
        answer = _receipt_answer(request)
        if answer is None:
            return redirect("residents:receipt")
        data = health.resident_answer_export(answer)
        return _download(data, _answer_text(data), fmt, "my-health-check-answers")
    reflection = _receipt_reflection(request)
    if reflection is None:
        return redirect("residents:receipt")
    _activate_language(request, reflection.language)
    data = residents.export(reflection)
    lines = [f"{key}: {value}" for key, value in data.items() if key != "reflection"]
    text = data["reflection"] + "\n\n" + "\n".join(lines) + "\n"
    return _download(data, text, fmt, "my-reflection")


@require_http_methods(["GET", "POST"])
def receipt_withdraw(request: HttpRequest) -> HttpResponse:
    if _opened_answer(request):
        return _withdraw_answer(request)
    reflection = _receipt_reflection(request)
    if reflection is None:
        if request.method == "POST":
            return render(request, "residents/withdrawn.html", {"gone": True})
        return redirect("residents:receipt")
    _activate_language(request, reflection.language)
    if request.method == "POST":
        residents.withdraw(reflection=reflection)
        resident_session.of(request).pop(SESSION_RECEIPT, None)
        return render(request, "residents/withdrawn.html", {})
    return render(request, "residents/withdraw_confirm.html", {"reflection": reflection})


def _withdraw_answer(request: HttpRequest) -> HttpResponse:
    """Withdraw a health-check answer: all of it while the round takes answers, else its
    comments (``health.resident_withdrawal`` says why), after a page saying which.

    The browser keeps pointing at the answer afterwards, so withdrawing again (another tab, a
    refresh) says it was withdrawn already.
    """
    answer = _receipt_answer(request)
    if answer is None:
        if request.method == "POST":
            _activate_language(request, None)
            return render(request, "residents/health_withdrawn.html", {"gone": True})
        return redirect("residents:receipt")
    changed = False
    posted = request.POST.get("withdrawal", "")
    if request.method == "POST" and posted in (health.WITHDRAW_ANSWER, health.WITHDRAW_COMMENTS):
        try:
            done = health.resident_answer_withdraw(response=answer, withdrawal=posted)
        except health.WithdrawalChanged:
            # Answers closed since the page was read: it is shown again, saying what changed.
            changed = True
            answer.round.refresh_from_db(fields=["closed", "closes_on"])
        else:
            context = {"gone": not done, "withdrawal": posted}
            return render(request, "residents/health_withdrawn.html", context)
    withdrawal = health.resident_withdrawal(answer.round)
    return render(
        request,
        "residents/health_withdraw_confirm.html",
        {
            "answer": answer,
            "round": answer.round,
            "withdrawal": withdrawal,
            "changed": changed,
            "status": health.resident_round_status(answer.round),
        },
        status=409 if changed else 200,
    )
