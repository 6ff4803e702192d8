from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.module_loading import import_string
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from engagements import selectors
from hls.lib import health


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    if not request.user.is_authenticated:
        return render(request, "home_public.html")
    memberships = selectors.memberships_for_user(user=request.user)
    return render(
        request,
        "home.html",
        {
            "memberships": memberships,
            "engagements": selectors.my_engagements(user=request.user),
            "can_create": any(m.organisation.is_learning_partner for m in memberships),
        },
    )


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    report = health.report()
    return JsonResponse(report, status=200 if report["ok"] else 503)


@require_GET
def robots_txt(request: HttpRequest) -> HttpResponse:
    lines = ["User-agent: *", "Disallow: /r/", "Disallow: /accounts/", "Disallow: /admin/", ""]
    return HttpResponse("\n".join(lines), content_type="text/plain; charset=utf-8")


# Resident pages whose form comes back with the resident's words after a failed check.
_RESCUES = {
    "/r/": "engagements.resident_views.rescue_after_security_check",
    "/r/health/": "engagements.health_views.rescue_after_security_check",
}


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """A plain-language page when a form's security check fails (usually an old tab).

    A resident's reflection or health-check answers come back on their form instead, with
    their words (DESIGN.md §5).
    """
    rescue = _RESCUES.get(request.path)
    if (
        rescue is not None
        and request.method == "POST"
        # Only the resident's own page: never words posted from another site.
        and request.headers.get("Sec-Fetch-Site", "same-origin") in {"same-origin", "none"}
    ):
        rescued = import_string(rescue)(request)
        if rescued is not None:
            return rescued
    return render(request, "errors/csrf.html", status=403)


def server_error(request: HttpRequest) -> HttpResponse:
    """500, or 503 with its own words when the database is down (nothing was saved)."""
    import sys

    from django.db import InterfaceError, OperationalError
    from django.template import loader

    error = sys.exc_info()[1]
    if isinstance(error, OperationalError | InterfaceError):
        body = loader.get_template("errors/database_down.html").render()
        response = HttpResponse(body, status=503)
        response["Retry-After"] = "60"
        return response
    return HttpResponse(loader.get_template("500.html").render(), status=500)
