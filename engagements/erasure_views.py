"""Erasing one's own account (``engagements.retention.erase_account``)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth import logout
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_http_methods

from engagements import retention
from engagements.services import Refused
from engagements.views import GET_POST
from hls.lib import ratelimit
from hls.lib.forms import AccessibleFormMixin
from hls.lib.http import AuthedRequest

# Wrong passwords one account may give here in 15 minutes (a stolen session cannot guess on).
WRONG_PASSWORD_LIMIT = 5


class EraseAccountForm(AccessibleFormMixin, forms.Form):
    password = forms.CharField(
        label=gettext_lazy("Your password"),
        max_length=4096,
        strip=False,
        help_text=gettext_lazy("To be sure it is you who asks."),
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )

    def __init__(self, user: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_password(self) -> str:
        password = str(self.cleaned_data["password"])
        key = str(self.user.pk)
        if ratelimit.peek("erase", key, limit=WRONG_PASSWORD_LIMIT, window=900):
            raise forms.ValidationError(
                _("Too many wrong passwords in a row. Wait 15 minutes, then try again.")
            )
        if not self.user.check_password(password):
            ratelimit.hit("erase", key, limit=WRONG_PASSWORD_LIMIT, window=900)
            raise forms.ValidationError(_("That is not your password."))
        return password


@login_required
@require_http_methods(GET_POST)
def erase(request: AuthedRequest) -> HttpResponse:
    blockers = retention.erasure_blockers(request.user)
    form = EraseAccountForm(request.user, request.POST if request.method == "POST" else None)
    if request.method == "POST" and not blockers and form.is_valid():
        try:
            retention.erase_account(user=request.user)
        except Refused as refusal:
            form.add_error(None, refusal.message)
        else:
            logout(request)
            return redirect("accounts:erase_done")
    return render(request, "accounts/erase.html", {"form": form, "blockers": blockers})


@require_GET
def erase_done(request: HttpRequest) -> HttpResponse:
    return render(request, "accounts/erase_done.html")
