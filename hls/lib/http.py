from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import User
from django.http import HttpRequest
from django_htmx.middleware import HtmxDetails


def client_ip(request: HttpRequest) -> str:
    """The address of the person, for lockout and rate limits.

    Behind a proxy, only the address the trusted proxy appended to X-Forwarded-For counts:
    entries further left are whatever the client chose to send.
    """
    if settings.BEHIND_PROXY:
        forwarded = [part.strip() for part in request.headers.get("X-Forwarded-For", "").split(",")]
        forwarded = [part for part in forwarded if part]
        if len(forwarded) >= settings.PROXY_COUNT:
            return forwarded[-settings.PROXY_COUNT]
    return request.META.get("REMOTE_ADDR", "")


def safe_next(request: HttpRequest, target: str | None, fallback: str) -> str:
    """``target`` when it is a path on this site (never another site, never a view name)."""
    from django.utils.http import url_has_allowed_host_and_scheme

    if (
        target
        and target.startswith("/")
        and url_has_allowed_host_and_scheme(
            target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        )
    ):
        return target
    return fallback


class HtmxRequest(HttpRequest):
    """Any request, with django-htmx details (its middleware runs for every request)."""

    htmx: HtmxDetails


class AuthedRequest(HttpRequest):
    """The request a signed-in view sees (``login_required`` ran), with django-htmx details."""

    user: User
    htmx: HtmxDetails
