"""The rate limiter against the real Redis in use (embedded Redis 6 or a server)."""

import pytest

from hls.lib import ratelimit
from hls.lib.redis import client


@pytest.fixture(autouse=True)
def _clean():
    yield
    for key in client().scan_iter("hls:rl:test-*"):
        client().delete(key)


def test_it_counts_refuses_over_the_limit_and_expires_the_window():
    assert [ratelimit.hit("test-a", "k", limit=2, window=60) for _ in range(2)] == [None, None]
    wait = ratelimit.hit("test-a", "k", limit=2, window=60)
    assert wait is not None
    assert 1 <= wait <= 60
    assert ratelimit.peek("test-a", "k", limit=2, window=60) is not None
    assert ratelimit.peek("test-a", "other", limit=2, window=60) is None
    [key] = list(client().scan_iter("hls:rl:test-a:k:*"))
    assert 0 < client().ttl(key) <= 61


def test_with_redis_unreachable_it_allows_and_warns_once_per_interval(monkeypatch, caplog):
    """An outage lets residents through; the log says so once, not once per request."""
    import redis

    dead = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
    monkeypatch.setattr(ratelimit, "client", lambda: dead)
    monkeypatch.setattr(ratelimit, "_last_warned", {})
    caplog.set_level("WARNING", logger="hls.lib.ratelimit")
    assert [ratelimit.hit("test-b", "k", limit=1, window=60) for _ in range(5)] == [None] * 5
    assert len(caplog.records) == 1
    assert "test-b unavailable" in caplog.records[0].getMessage()
    # An interval later (the clock is monotonic, so the last warning is moved back instead):
    ratelimit._last_warned["test-b"] -= ratelimit.WARN_EVERY
    ratelimit.hit("test-b", "k", limit=1, window=60)
    assert len(caplog.records) == 2
