"""Fixed-window rate limits in Redis that fail open: when Redis is down, nobody is refused."""

from __future__ import annotations

import logging
import time

from hls.lib.redis import client

log = logging.getLogger(__name__)

WARN_EVERY = 30.0  # seconds between "unavailable" warnings, so an outage is not a log flood
_last_warned: dict[str, float] = {}


def _unavailable(scope: str) -> None:
    now = time.monotonic()
    if now - _last_warned.get(scope, -WARN_EVERY) >= WARN_EVERY:
        _last_warned[scope] = now
        log.warning(
            "rate limit %s unavailable; allowing (said at most every %.0f s)", scope, WARN_EVERY
        )


def _window(scope: str, key: str, window: int) -> tuple[str, int]:
    """The Redis key of the current fixed window, and the seconds until it ends."""
    now = int(time.time())
    start = now - now % window
    return f"hls:rl:{scope}:{key}:{start}", max(1, start + window - now)


def hit(scope: str, key: str, *, limit: int, window: int) -> int | None:
    """Count one event; return seconds to wait if over ``limit`` in this window, else None."""
    cache_key, remaining = _window(scope, key, window)
    try:
        # One round trip: count, and make sure the window's key expires.
        # (SET NX + INCR rather than EXPIRE NX, which Redis before 7 lacks.)
        pipe = client().pipeline(transaction=False)
        pipe.set(cache_key, 0, ex=window + 1, nx=True)
        pipe.incr(cache_key)
        count = int(pipe.execute()[1])
    except Exception:  # Redis unreachable: protections relax rather than lose a reflection.
        _unavailable(scope)
        return None
    return remaining if count > limit else None


def peek(scope: str, key: str, *, limit: int, window: int) -> int | None:
    """Seconds to wait if ``key`` is already over ``limit`` in this window, without counting."""
    cache_key, remaining = _window(scope, key, window)
    try:
        count = int(client().get(cache_key) or 0)
    except Exception:
        return None
    return remaining if count >= limit else None
