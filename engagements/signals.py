from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.signals import user_logged_out
from django.dispatch import receiver
from django.http import HttpRequest
from django.utils.translation import gettext as _


@receiver(user_logged_out)
def say_signed_out(sender: Any, request: HttpRequest | None, **kwargs: Any) -> None:
    if request is not None:
        messages.success(request, _("You have signed out."))
