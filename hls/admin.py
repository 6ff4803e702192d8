from __future__ import annotations

from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import reverse
from django_otp.admin import OTPAdminSite


class HLSAdminSite(OTPAdminSite):
    """Django admin behind the product's own sign-in and two-factor check.

    OTPAdminSite only admits users verified with a second factor; sign-in itself happens on
    the product's login page so lockout and two-factor apply in one place.
    """

    site_header = "HLS Learning Partner administration"
    site_title = "HLS Learning Partner admin"

    def login(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if request.user.is_authenticated:
            # Signed in but not an admin: the admin does not exist for them.
            raise Http404
        return redirect_to_login(request.get_full_path(), reverse("accounts:login"))
