"""Strict parsing of configuration from environment variables.

Every helper raises :class:`ConfigError` naming the variable, so a bad value stops the
process at start with a message an operator can act on, instead of a surprise later.
"""

from __future__ import annotations

import os
from urllib.parse import parse_qs, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})


class ConfigError(ImproperlyConfigured):
    """A configuration variable is missing or has a value we cannot use."""


def _raw(name: str) -> str | None:
    value = os.environ.get(name)
    if value is None:
        return None
    value = value.strip()
    return value or None


def env_str(name: str, default: str | None = None) -> str | None:
    value = _raw(name)
    return default if value is None else value


def env_required(name: str, why: str) -> str:
    value = _raw(name)
    if value is None:
        raise ConfigError(f"{name} must be set: {why}")
    return value


def env_bool(name: str, default: bool) -> bool:
    value = _raw(name)
    if value is None:
        return default
    word = value.lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ConfigError(f"{name} must be true or false (or 1/0, yes/no, on/off), not {value!r}")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    value = _raw(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {value!r}") from None
    if minimum is not None and number < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, not {number}")
    return number


def env_list(name: str, default: list[str]) -> list[str]:
    value = _raw(name)
    if value is None:
        return default
    items = [item.strip() for item in value.split(",")]
    if any(not item for item in items):
        raise ConfigError(
            f"{name} must be a comma-separated list without empty items, not {value!r}"
        )
    return items


def check_url(name: str, value: str, schemes: set[str]) -> str:
    """Return ``value`` when it is a URL with one of ``schemes``; raise naming ``name``."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ConfigError(f"{name} is not a valid URL ({exc}): {_redact(value)!r}") from None
    if parts.scheme not in schemes:
        expected = ", ".join(f"{s}://" for s in sorted(schemes))
        raise ConfigError(f"{name} must start with one of {expected}, not {_redact(value)!r}")
    if parts.scheme in {"http", "https"} and not parts.hostname:
        raise ConfigError(f"{name} must name a host, not {_redact(value)!r}")
    return value


def _redact(url: str) -> str:
    """Hide a password in a URL before it goes into an error message or a log."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    return url


def email_settings(name: str, url: str) -> dict[str, object]:
    """Translate ``EMAIL_URL`` into Django's email settings.

    smtp://user:pass@host:25 (plain), smtp+tls://...:587 (STARTTLS), smtps://...:465 (TLS),
    console:// (print to the terminal) and dummy:// (discard).
    """
    check_url(name, url, {"smtp", "smtp+tls", "smtps", "console", "dummy"})
    parts = urlsplit(url)
    if parts.scheme == "console":
        return {"EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend"}
    if parts.scheme == "dummy":
        return {"EMAIL_BACKEND": "django.core.mail.backends.dummy.EmailBackend"}
    if not parts.hostname:
        raise ConfigError(f"{name} must name the SMTP host, not {_redact(url)!r}")
    query = parse_qs(parts.query)
    timeout = query.get("timeout", ["10"])[0]
    try:
        timeout_s = int(timeout)
    except ValueError:
        raise ConfigError(f"{name} has a timeout that is not a whole number: {timeout!r}") from None
    default_port = {"smtp": 25, "smtp+tls": 587, "smtps": 465}[parts.scheme]
    return {
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": parts.hostname,
        "EMAIL_PORT": parts.port or default_port,
        "EMAIL_HOST_USER": unquote(parts.username or ""),
        "EMAIL_HOST_PASSWORD": unquote(parts.password or ""),
        "EMAIL_USE_TLS": parts.scheme == "smtp+tls",
        "EMAIL_USE_SSL": parts.scheme == "smtps",
        "EMAIL_TIMEOUT": timeout_s,
    }
