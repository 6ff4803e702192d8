from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import resolve_url
from django.utils.cache import add_never_cache_headers, patch_vary_headers


class PrivatePagesMiddleware:
    """Pages for a signed-in person are never stored by browsers or shared caches.

    htmx partials vary on the HX-Request header so a cache never serves a fragment as a page.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            request.headers.get("HX-Request")
            and response.status_code == 302
            and not request.user.is_authenticated
            and response.get("Location", "").startswith(resolve_url(settings.LOGIN_URL))
        ):
            # A session that ended while someone typed: htmx must not swap the sign-in page
            # into the form. A 401 leaves the form and its text where they are; app.js says why.
            response = HttpResponse(status=401)
        if request.user.is_authenticated:
            add_never_cache_headers(response)
        if request.headers.get("HX-Request"):
            patch_vary_headers(response, ["HX-Request"])
        return response


class ResidentPagesMiddleware:
    """Everything under /r/ (resident links) leaks nothing onward (DESIGN.md §5).

    No referrer leaves the page, search engines do not index it, and nothing is cached.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if request.path.startswith("/r/"):
            from engagements import resident_session

            resident_session.save(request, response)
            response["Referrer-Policy"] = "no-referrer"
            response["X-Robots-Tag"] = "noindex, nofollow"
            add_never_cache_headers(response)
        return response


class NullOriginMiddleware:
    """Lets Django's CSRF protection work for the no-referrer pages under /r/.

    With ``Referrer-Policy: no-referrer`` a browser sends ``Origin: null`` even on a
    same-origin form post, which Django's CSRF check refuses. The browser's own
    ``Sec-Fetch-Site`` header, which no page can set, says whether the post came from this
    site; when it did (or, on the resident pages, when an older browser sends no such header),
    the origin is taken as this site's own. The CSRF token is then checked
    by Django's middleware, which runs next, as usual.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.META.get("HTTP_ORIGIN") == "null":
            fetch_site = request.META.get("HTTP_SEC_FETCH_SITE")
            if fetch_site == "same-origin" or (
                # Browsers from before Sec-Fetch-Site (Safari before 16.4) send neither. On the
                # resident pages the CSRF token still decides: its cookie is SameSite=Lax, so
                # no other site's post carries it, and no other site can read the token.
                fetch_site is None and request.path.startswith("/r/")
            ):
                request.META["HTTP_ORIGIN"] = f"{request.scheme}://{request.get_host()}"
        return self.get_response(request)
