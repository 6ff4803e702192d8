"""Health of the parts the product needs: database, broker and at least one live worker."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import redis
from django.conf import settings
from django.db import DatabaseError, connection

from hls.lib.redis import client

HEARTBEAT_PREFIX = "hls:worker-heartbeat:"


def record_worker_heartbeat(hostname: str, at: float) -> None:
    # If the broker is down, /healthz says so and the next beat tries again.
    with contextlib.suppress(redis.RedisError):
        client().set(
            HEARTBEAT_PREFIX + hostname, str(at), ex=settings.WORKER_HEARTBEAT_STALE_SECONDS
        )


def forget_worker(hostname: str) -> None:
    with contextlib.suppress(redis.RedisError):
        client().delete(HEARTBEAT_PREFIX + hostname)


def check_database() -> dict[str, Any]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        return {"ok": False, "error": type(exc).__name__}
    return {"ok": True}


def check_broker() -> dict[str, Any]:
    try:
        client().ping()
    except redis.RedisError as exc:
        return {"ok": False, "error": type(exc).__name__}
    return {"ok": True}


def check_workers() -> dict[str, Any]:
    try:
        keys = list(client().scan_iter(match=HEARTBEAT_PREFIX + "*", count=100))
        beats = [float(v) for v in client().mget(keys) if v is not None] if keys else []
    except redis.RedisError as exc:
        return {"ok": False, "count": 0, "error": type(exc).__name__}
    if not beats:
        return {"ok": False, "count": 0, "error": "no worker heartbeat"}
    age = time.time() - max(beats)
    return {
        "ok": age < settings.WORKER_HEARTBEAT_STALE_SECONDS,
        "count": len(beats),
        "last_seen_s": round(age, 1),
    }


def report() -> dict[str, Any]:
    checks = {"database": check_database(), "broker": check_broker(), "worker": check_workers()}
    return {"ok": all(c["ok"] for c in checks.values()), **checks}
