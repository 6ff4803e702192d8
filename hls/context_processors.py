from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest


def site(request: HttpRequest) -> dict[str, Any]:
    return {"SITE_URL": settings.SITE_URL, "DEBUG": settings.DEBUG}


def language_next(request: HttpRequest) -> dict[str, Any]:
    """Where the language switcher returns to: never a resident-link path with a token in it."""
    path = request.path
    if path.startswith("/r/receipt/") or path == "/r/":
        return {"language_next": path}
    if path.startswith("/r/"):
        return {"language_next": "/r/receipt/"}
    return {"language_next": request.get_full_path()}
