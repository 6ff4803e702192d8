"""Sign-in, two-factor and password pages.

Django's auth views do the work; these classes only choose our forms and templates. The
two-factor views are small functions over django-otp's TOTP and backup-code devices.
"""

from __future__ import annotations

from base64 import b32encode
from typing import Any

import segno
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse, reverse_lazy
from django.utils.translation import get_language, ngettext
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST
from django_otp import devices_for_user, match_token
from django_otp import login as otp_login
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from engagements.access import requires_two_factor
from engagements.forms import (
    LoginForm,
    PasswordChangeForm,
    PasswordResetForm,
    SetPasswordForm,
    TokenForm,
)
from hls.lib.http import safe_next

BACKUP_CODE_COUNT = 10


class LoginView(auth_views.LoginView):
    template_name = "accounts/login.html"
    form_class = LoginForm
    redirect_authenticated_user = True

    def form_valid(self, form: Any) -> HttpResponse:
        response = super().form_valid(form)
        # The language they chose in Preferences follows them to a new browser.
        from engagements.models import Profile

        chosen = (
            Profile.objects.filter(user_id=form.get_user().pk)
            .values_list("language", flat=True)
            .first()
        )
        if chosen and chosen in dict(settings.LANGUAGES):
            set_language_cookie(response, chosen)
        return response

    def get_success_url(self) -> str:
        target = safe_next(self.request, self.get_redirect_url(), reverse("home"))
        # Someone already signed in who is sent back here (an old tab, a bookmark) goes home
        # instead of into a redirect loop.
        return reverse("home") if target.split("?")[0] == self.request.path else target


class PasswordChangeView(auth_views.PasswordChangeView):
    template_name = "accounts/password_change.html"
    form_class = PasswordChangeForm
    success_url = reverse_lazy("accounts:password_change_done")


class PasswordChangeDoneView(auth_views.PasswordChangeDoneView):
    template_name = "accounts/password_change_done.html"


class PasswordResetView(auth_views.PasswordResetView):
    template_name = "accounts/password_reset.html"
    form_class = PasswordResetForm
    subject_template_name = "emails/password_reset_subject.txt"
    email_template_name = "emails/password_reset.txt"
    html_email_template_name = "emails/password_reset.html"
    success_url = reverse_lazy("accounts:password_reset_done")

    def get_form_kwargs(self) -> dict[str, Any]:
        # Links in the email use the configured site address, never the request's Host header.
        self.extra_email_context = {"site_url": settings.SITE_URL, "LANGUAGE_CODE": get_language()}
        return super().get_form_kwargs()


class PasswordResetDoneView(auth_views.PasswordResetDoneView):
    template_name = "accounts/password_reset_done.html"


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    template_name = "accounts/password_reset_confirm.html"
    form_class = SetPasswordForm
    success_url = reverse_lazy("accounts:password_reset_complete")


class PasswordResetCompleteView(auth_views.PasswordResetCompleteView):
    template_name = "accounts/password_reset_complete.html"


def set_language_cookie(response: HttpResponse, language: str) -> None:
    """Pages follow ``language`` from the next request on, as the language switcher does."""
    samesite: Any = settings.LANGUAGE_COOKIE_SAMESITE
    response.set_cookie(
        settings.LANGUAGE_COOKIE_NAME,
        language,
        max_age=settings.LANGUAGE_COOKIE_AGE,
        path=settings.LANGUAGE_COOKIE_PATH,
        domain=settings.LANGUAGE_COOKIE_DOMAIN,
        secure=settings.LANGUAGE_COOKIE_SECURE,
        httponly=settings.LANGUAGE_COOKIE_HTTPONLY,
        samesite=samesite,
    )


def _next_url(request: HttpRequest) -> str:
    return safe_next(request, request.POST.get("next") or request.GET.get("next"), reverse("home"))


def _confirmed_totp(user: Any) -> TOTPDevice | None:
    return TOTPDevice.objects.filter(user=user, confirmed=True).first()


def _new_backup_codes(user: Any) -> list[str]:
    device, _created = StaticDevice.objects.get_or_create(
        user=user, name="backup", defaults={"confirmed": True}
    )
    device.token_set.all().delete()
    codes = [StaticToken.random_token() for _ in range(BACKUP_CODE_COUNT)]
    StaticToken.objects.bulk_create(StaticToken(device=device, token=code) for code in codes)
    return codes


@login_required
def two_factor(request: HttpRequest) -> HttpResponse:
    user: Any = request.user
    backup = StaticDevice.objects.filter(user=user, name="backup").first()
    return render(
        request,
        "accounts/two_factor.html",
        {
            "totp": _confirmed_totp(user),
            "backup_codes_left": backup.token_set.count() if backup else 0,
            "required": requires_two_factor(user),
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def two_factor_setup(request: HttpRequest) -> HttpResponse:
    user: Any = request.user
    if _confirmed_totp(user):
        return redirect("accounts:two_factor")
    device = TOTPDevice.objects.filter(user=user, confirmed=False).first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name="authenticator", confirmed=False)

    form = TokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if device.verify_token(form.cleaned_data["token"]):
            with transaction.atomic():
                device.confirmed = True
                device.save(update_fields=["confirmed"])
                codes = _new_backup_codes(user)
            otp_login(request, device)
            return render(
                request,
                "accounts/backup_codes.html",
                {"codes": codes, "next": _next_url(request), "first_time": True},
            )
        form.add_error(
            "token",
            _(
                "That code did not match. Check the time on your phone and enter the code it shows now."
            ),
        )

    secret = b32encode(device.bin_key).decode()
    return render(
        request,
        "accounts/two_factor_setup.html",
        {
            "form": form,
            "qr_svg": segno.make(device.config_url, error="m").svg_inline(
                scale=4, title=_("QR code for your authenticator app"), omitsize=True
            ),
            "secret_groups": [secret[i : i + 4] for i in range(0, len(secret), 4)],
            "next": _next_url(request),
            "required": requires_two_factor(user),
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def two_factor_verify(request: HttpRequest) -> HttpResponse:
    user: Any = request.user
    if user.is_verified():
        return HttpResponseRedirect(_next_url(request))
    form = TokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        throttled = [
            d
            for d in devices_for_user(user)
            if hasattr(d, "verify_is_allowed") and not d.verify_is_allowed()[0]
        ]
        device = None if throttled else match_token(user, form.cleaned_data["token"])
        if device is not None:
            otp_login(request, device)
            if isinstance(device, StaticDevice):
                left = device.token_set.count()
                messages.warning(
                    request,
                    ngettext(
                        "You used a backup code. You have %(count)d left; make new ones on your two-factor page.",
                        "You used a backup code. You have %(count)d left; make new ones on your two-factor page.",
                        left,
                    )
                    % {"count": left},
                )
            return HttpResponseRedirect(_next_url(request))
        if throttled:
            form.add_error(
                "token", _("Too many wrong codes in a row. Wait a minute, then try again.")
            )
        else:
            form.add_error(
                "token",
                _("That code did not match. Enter the code your app shows now, or a backup code."),
            )
    return render(
        request, "accounts/two_factor_verify.html", {"form": form, "next": _next_url(request)}
    )


@login_required
@require_POST
def two_factor_backup_codes(request: HttpRequest) -> HttpResponse:
    user: Any = request.user
    if not _confirmed_totp(user):
        return redirect("accounts:two_factor_setup")
    with transaction.atomic():
        codes = _new_backup_codes(user)
    return render(
        request,
        "accounts/backup_codes.html",
        {"codes": codes, "next": reverse("accounts:two_factor"), "first_time": False},
    )


@login_required
@require_POST
def two_factor_disable(request: HttpRequest) -> HttpResponse:
    user: Any = request.user
    if requires_two_factor(user):
        messages.error(
            request, _("Your role needs two-factor sign-in, so it cannot be turned off.")
        )
        return redirect("accounts:two_factor")
    with transaction.atomic():
        TOTPDevice.objects.filter(user=user).delete()
        StaticDevice.objects.filter(user=user).delete()
    messages.success(request, _("Two-factor sign-in is off."))
    return redirect("accounts:two_factor")
