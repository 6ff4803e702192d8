"""Pages residents use through a shared link, with no account (DESIGN.md §5).

``/r/<token>`` changes nothing: it checks the token's hash, keeps the link in a short
anonymous session and redirects to ``/r/`` so the token leaves the address bar. Everything
under ``/r/`` is sent with no-referrer, noindex and no-store (``hls.middleware``).
"""

from __future__ import annotations

import json
import uuid

from django.conf import settings
from django.core import signing
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import translation
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods

from engagements import residents
from engagements.models import Adaptation, Reflection, SharedLink
from engagements.resident_forms import ReceiptForm, ResidentReflectionForm
from engagements.services import Refused
from hls.lib import ratelimit
from hls.lib.http import client_ip

SESSION_LINK = "resident_link"
SESSION_RECEIPT = "resident_receipt"
SESSION_KEYS = "resident_submissions"  # the submission keys this browser saved
LINK_SALT = "resident-link"
SESSION_SECONDS = 12 * 60 * 60
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
    code = code or request.session.get(SESSION_LANGUAGE)
    if code and settings.LANGUAGE_COOKIE_NAME not in request.COOKIES:
        translation.activate(code)
        request.LANGUAGE_CODE = code


def _activate(link: SharedLink, request: HttpRequest) -> None:
    _activate_language(request, link.cycle.engagement.language)


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
    request.session[SESSION_LINK] = link.pk
    request.session[SESSION_LANGUAGE] = link.cycle.engagement.language
    request.session.set_expiry(SESSION_SECONDS)
    return redirect("residents:reflect")


def _link_from(request: HttpRequest, link_ref: str | None = None) -> SharedLink | None:
    """The link the form was opened through, else the session's (two tabs, two links)."""
    link_id = None
    if link_ref:
        try:
            link_id = signing.loads(link_ref[:500], salt=LINK_SALT, max_age=LINK_REF_SECONDS)
        except signing.BadSignature:
            link_id = None
    if link_id is None:
        link_id = request.session.get(SESSION_LINK)
    if link_id is None:
        return None
    return (
        SharedLink.objects.select_related(
            "cycle__engagement__learning_partner", "cycle__organisation"
        )
        .filter(pk=link_id)
        .first()
    )


@require_http_methods(["GET", "POST"])
def reflect(request: HttpRequest) -> HttpResponse:
    had_session = SESSION_LINK in request.session
    link = _link_from(request, request.POST.get("link_ref"))
    if link is None:
        return _no_link(request)
    _activate(link, request)
    form = ResidentReflectionForm(request.POST) if request.method == "POST" else None
    if form is not None and form.is_valid() and had_session:
        # Already saved by this person (a double click, a refresh): the same thank-you page,
        # even if the link has closed since.
        key = form.cleaned_data["submission_key"]
        if str(key) in request.session.get(SESSION_KEYS, []):
            saved = Reflection.objects.filter(submission_key=key).first()
            if saved is not None:
                return _thanks(request, link, saved, key)
    if not link.is_active:
        if form is not None:
            form.add_error(None, _("This link has closed, so your reflection could not be sent."))
            return _form_page(request, link, form, status=410)
        return _closed(request, 410)
    if request.session.get(SESSION_LINK) != link.pk:
        request.session[SESSION_LINK] = link.pk
    if form is None:
        form = ResidentReflectionForm(initial={"link_ref": signing.dumps(link.pk, salt=LINK_SALT)})
        return _form_page(request, link, form)

    if not form.is_valid():
        return _form_page(request, link, form)
    if not had_session:
        # The session ended while they typed: nothing is lost, they press Send once more.
        return _form_page(request, link, _resumed_form(request), resumed=True)
    wait = ratelimit.hit("r-submit", str(link.pk), limit=settings.RESIDENT_SUBMIT_LIMIT, window=60)
    if wait:
        response = _form_page(request, link, form, status=429, busy=True)
        response["Retry-After"] = str(wait)
        return response
    data = form.cleaned_data
    try:
        reflection, created = residents.submit(
            link=link,
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
        return _form_page(
            request, link, form, status=410 if not isinstance(refusal, residents.Withdrawn) else 200
        )
    if not created:
        # Someone else's submission key: their words and receipt stay theirs.
        return _form_page(request, link, _resumed_form(request), resumed=True)
    keys = request.session.get(SESSION_KEYS, [])
    request.session[SESSION_KEYS] = [*keys[-19:], str(data["submission_key"])]
    return _thanks(request, link, reflection, data["submission_key"])


def _thanks(
    request: HttpRequest, link: SharedLink, reflection: Reflection, key: uuid.UUID
) -> HttpResponse:
    request.session[SESSION_RECEIPT] = reflection.pk
    return render(
        request,
        "residents/thanks.html",
        {
            "link": link,
            "cycle": link.cycle,
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
    link = _link_from(request, request.POST.get("link_ref"))
    if link is None:
        return _no_link(request)
    _activate(link, request)
    form = _resumed_form(request)
    if not link.is_active:
        form.add_error(None, _("This link has closed, so your reflection could not be sent."))
        return _form_page(request, link, form, status=410)
    request.session[SESSION_LINK] = link.pk
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
            "cycle": link.cycle,
            "engagement": link.cycle.engagement,
            "form": form,
            "resumed": resumed,
            "busy": busy,
        },
        status=status,
    )


# --- receipts -------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
def receipt(request: HttpRequest) -> HttpResponse:
    form = ReceiptForm(request.POST or None)
    if request.method == "POST":
        ip = client_ip(request)
        wait = ratelimit.peek("r-receipt-fail", ip, limit=FAILED_LOOKUPS_PER_10_MINUTES, window=600)
        if wait:
            return _too_many(request, wait)
        if form.is_valid():
            found = residents.reflection_by_receipt(form.cleaned_data["code"])
            if found is not None:
                request.session[SESSION_RECEIPT] = found.pk
                request.session.set_expiry(SESSION_SECONDS)
                return redirect("residents:receipt_view")
            ratelimit.hit("r-receipt-fail", ip, limit=FAILED_LOOKUPS_PER_10_MINUTES, window=600)
            form.add_error(
                "code",
                _(
                    "We found no reflection with this code. Check it against what you wrote "
                    "down; if you withdrew the reflection, it no longer exists."
                ),
            )
    return render(request, "residents/receipt.html", {"form": form})


def _receipt_reflection(request: HttpRequest) -> Reflection | None:
    reflection_id = request.session.get(SESSION_RECEIPT)
    if reflection_id is None:
        return None
    return (
        Reflection.objects.select_related("cycle__engagement", "cycle__organisation", "stage")
        .filter(pk=reflection_id, author_role=Reflection.AuthorRole.RESIDENT)
        .first()
    )


def _since(reflection: Reflection) -> QuerySet[Adaptation]:
    return Adaptation.objects.filter(
        cycle_id=reflection.cycle_id, created__gte=reflection.created
    ).order_by("created")


@require_GET
def receipt_view(request: HttpRequest) -> HttpResponse:
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


@require_GET
def receipt_download(request: HttpRequest, fmt: str) -> HttpResponse:
    if fmt not in ("json", "txt"):
        raise Http404
    reflection = _receipt_reflection(request)
    if reflection is None:
        return redirect("residents:receipt")
    _activate_language(request, reflection.language)
    data = residents.export(reflection)
    if fmt == "json":
        response = HttpResponse(
            json.dumps(data, ensure_ascii=False, indent=2),
            content_type="application/json; charset=utf-8",
        )
    else:
        lines = [f"{key}: {value}" for key, value in data.items() if key != "reflection"]
        body = data["reflection"] + "\n\n" + "\n".join(lines) + "\n"
        response = HttpResponse(body, content_type="text/plain; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="my-reflection.{fmt}"'
    return response


@require_http_methods(["GET", "POST"])
def receipt_withdraw(request: HttpRequest) -> HttpResponse:
    reflection = _receipt_reflection(request)
    if reflection is None:
        if request.method == "POST":
            return render(request, "residents/withdrawn.html", {"gone": True})
        return redirect("residents:receipt")
    _activate_language(request, reflection.language)
    if request.method == "POST":
        residents.withdraw(reflection=reflection)
        request.session.pop(SESSION_RECEIPT, None)
        return render(request, "residents/withdrawn.html", {})
    return render(request, "residents/withdraw_confirm.html", {"reflection": reflection})
