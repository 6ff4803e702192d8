from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
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


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """A plain-language page when a form's security check fails (usually an old tab)."""
    return render(request, "errors/csrf.html", status=403)
