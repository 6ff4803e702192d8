from __future__ import annotations

from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from django_otp.admin import OTPAdminSite

from hls.lib.http import safe_next


class HLSAdminSite(OTPAdminSite):
    """Django admin behind the product's own sign-in and two-factor check.

    OTPAdminSite only admits staff verified with a second factor; sign-in itself happens on
    the product's login page so lockout and two-factor apply in one place.
    """

    site_header = _("HLS Learning Partner administration")
    site_title = _("HLS Learning Partner admin")

    def login(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        index = reverse("admin:index", current_app=self.name)
        target = safe_next(request, request.GET.get("next"), index)
        if not request.user.is_authenticated:
            return redirect_to_login(target, reverse("accounts:login"))
        if self.has_permission(request):
            return HttpResponseRedirect(target)
        # Signed in but not verified staff: for them the admin does not exist.
        raise Http404
