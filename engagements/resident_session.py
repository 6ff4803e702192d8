"""The short anonymous session a resident gets from a shared link (DESIGN.md §5).

It lives in one signed cookie scoped to ``/r/``: which link the resident opened, the language
they read in, the submission keys this browser saved and the reflection or health-check answer
their receipt opened. Nothing about a resident is written to the server's session table, so
opening a link or sending a reflection costs no session row, and a resident has no server-side
session to leak or sweep.

The cookie is signed with the secret key (tampering empties it), HttpOnly, SameSite=Lax,
Secure in production, and lasts twelve hours from the last change.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import signing
from django.http import HttpRequest, HttpResponse

COOKIE = "hls_resident"
SALT = "hls.resident-session"
SECONDS = 12 * 60 * 60
PATH = "/r/"


class ResidentSession:
    """A small dict kept in a signed cookie; changes are written back with the response."""

    def __init__(self, raw: str | None) -> None:
        self._data: dict[str, Any] = {}
        self.modified = False
        if raw:
            try:
                loaded = signing.loads(raw[:4096], salt=SALT, max_age=SECONDS)
            except signing.BadSignature:  # tampered, or older than twelve hours
                loaded = None
            if isinstance(loaded, dict):
                self._data = loaded

    def __contains__(self, key: str) -> bool:
        return key in self._data

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self._data.get(key, default)

    def __setitem__(self, key: str, value: Any) -> None:
        if self._data.get(key, ...) != value:
            self._data[key] = value
            self.modified = True

    def pop(self, key: str, default: Any = None) -> Any:
        if key in self._data:
            self.modified = True
        return self._data.pop(key, default)

    def save(self, response: HttpResponse) -> None:
        if not self.modified:
            return
        if not self._data:
            response.delete_cookie(COOKIE, path=PATH, samesite="Lax")
            return
        response.set_cookie(
            COOKIE,
            signing.dumps(self._data, salt=SALT, compress=True),
            max_age=SECONDS,
            path=PATH,
            secure=settings.SESSION_COOKIE_SECURE,
            httponly=True,
            samesite="Lax",
        )


def of(request: HttpRequest) -> ResidentSession:
    """The resident session of this request, read from its cookie on first use."""
    session: ResidentSession | None = getattr(request, "_resident_session", None)
    if session is None:
        session = ResidentSession(request.COOKIES.get(COOKIE))
        request._resident_session = session  # type: ignore[attr-defined]
    return session


def save(request: HttpRequest, response: HttpResponse) -> None:
    """Write the session back if this request changed it (called by the /r/ middleware)."""
    session: ResidentSession | None = getattr(request, "_resident_session", None)
    if session is not None:
        session.save(response)
