from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.http import urlencode
from django_htmx.http import HttpResponseClientRedirect
from django_otp import user_has_device

from engagements.access import requires_two_factor

# Pages a signed-in person may use before their second factor is checked.
OPEN_WHILE_PENDING = {
    "accounts:logout",
    "set_language",
    "healthz",
    "robots_txt",
    # The one-click link in an email works whatever the state of the person's sign-in.
    "engagements:unsubscribe",
}


class TwoFactorMiddleware:
    """Sends a signed-in person to the second-factor step until it is done.

    Anyone who has enrolled a device must use it. Facilitators and admins must enrol.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(
        self, request: HttpRequest, view: Any, args: Any, kwargs: Any
    ) -> HttpResponse | None:
        user: Any = request.user
        if not user.is_authenticated or user.is_verified():
            return None
        if user_has_device(user):
            target = "accounts:two_factor_verify"
        elif requires_two_factor(user):
            target = "accounts:two_factor_setup"
        else:
            return None
        # Templates offer only "Sign out" until the second factor is done.
        request.two_factor_pending = True  # type: ignore[attr-defined]
        match = request.resolver_match
        # Only the step this person needs is open: someone with a device cannot enrol another.
        if match is not None and match.view_name in {target, *OPEN_WHILE_PENDING}:
            return None
        url = f"{reverse(target)}?{urlencode({'next': request.get_full_path()})}"
        if request.headers.get("HX-Request"):
            return HttpResponseClientRedirect(url)
        return redirect(url)
