"""A resident link's token, shown once to the person who just made it (DESIGN.md §5).

Only a hash of the token is stored, so the page that makes a link shows it once: after the
POST (post, redirect, get, so a reload makes no second link) the token rides to the next page
in a short signed cookie, scoped to that page and deleted by it. Used by the cycle's resident
links page (``views.resident_links``) and by a health-check round's page
(``health_views.show_round``); ``templates/engagements/includes/new_link.html`` shows it.
"""

from __future__ import annotations

import uuid
from typing import Any

import segno
from django.conf import settings
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.translation import gettext as _

from engagements import residents
from engagements.models import SharedLink

COOKIE = "hls_new_link"
MAX_AGE = 600


def remember(response: HttpResponse, made: tuple[SharedLink, str]) -> HttpResponse:
    """Carry the new link's token to the page ``response`` redirects to (and only there)."""
    link, token = made
    response.set_signed_cookie(
        COOKIE,
        f"{link.public_id}:{token}",
        salt=COOKIE,
        max_age=MAX_AGE,
        path=response["Location"],
        secure=settings.SESSION_COOKIE_SECURE,
        httponly=True,
        samesite="Strict",
    )
    return response


def recall(request: HttpRequest, links: QuerySet[SharedLink]) -> dict[str, Any]:
    """The template context that shows the link just made, if it is one of ``links`` (the
    page's own) and the cookie holds its real token: ``new_link``, ``new_url`` and
    ``qr_svg``. Empty otherwise, and on anything but a GET."""
    if request.method != "GET":
        return {}
    value = request.get_signed_cookie(COOKIE, default=None, salt=COOKIE, max_age=MAX_AGE)
    public_id, _sep, token = (value or "").partition(":")
    try:
        uuid.UUID(public_id)
    except ValueError:
        return {}
    link = links.filter(public_id=public_id).first()
    if link is None or not residents.token_matches(link, token):
        return {}
    url = f"{settings.SITE_URL}{reverse('residents:open', args=[token])}"
    qr = segno.make(url, error="m").svg_inline(
        scale=5, title=_("QR code of the link"), omitsize=True
    )
    return {"new_link": link, "new_url": url, "qr_svg": qr}


def forget(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    """Delete the cookie once the page has been answered: shown once, never again."""
    if COOKIE in request.COOKIES:
        response.delete_cookie(COOKIE, path=request.path, samesite="Strict")
    return response
