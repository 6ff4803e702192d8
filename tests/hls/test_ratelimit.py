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
