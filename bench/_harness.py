"""Shared bench machinery: production settings, a fresh database, timing and the BENCH line.

Each bench script calls ``setup(name)`` first. It runs against the embedded services (or the
servers named by DATABASE_URL / REDIS_URL), in a database of its own that it drops at exit.
"""

from __future__ import annotations

import atexit
import os
import secrets
import socket
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

BASE_DIR = Path(__file__).resolve().parent.parent


def setup(name: str) -> None:
    sys.path.insert(0, str(BASE_DIR))
    # Production settings, as served: DEBUG off, a real secret, the real middleware stack.
    os.environ["DJANGO_DEBUG"] = "false"
    os.environ["DJANGO_SECRET_KEY"] = secrets.token_urlsafe(50)
    os.environ["DJANGO_ALLOWED_HOSTS"] = "testserver,localhost,127.0.0.1"
    os.environ["DJANGO_SECURE_SSL_REDIRECT"] = "false"
    os.environ["DJANGO_LOG_LEVEL"] = "WARNING"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hls.settings")
    import warnings

    # No collectstatic in a bench run: WhiteNoise's note about the empty folder is noise here.
    warnings.filterwarnings("ignore", message="No directory at", module="whitenoise")
    import django
    from django.conf import settings

    django.setup()
    # Static file names are hashed in production; benches do not run collectstatic.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    from django.db import connection

    creation = connection.creation
    original_name = connection.settings_dict["NAME"]
    connection.settings_dict["TEST"]["NAME"] = f"bench_{name}"
    creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    atexit.register(creation.destroy_test_db, original_name, verbosity=0)


def measure(fn: Callable[[], object], *, runs: int, warmup: int = 10) -> list[float]:
    """Milliseconds for each of ``runs`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def p50(values: list[float]) -> float:
    return statistics.median(values)


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def report(name: str, **figures: float | int | str) -> None:
    def show(value: float | int | str) -> str:
        return f"{value:.2f}" if isinstance(value, float) else str(value)

    print(
        f"BENCH {name} " + " ".join(f"{key}={show(value)}" for key, value in figures.items()),
        flush=True,
    )


# --- processes beside the bench ------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def bench_database_url() -> str:
    """DATABASE_URL, but naming the bench's own database (the one setup() created)."""
    from django.db import connection

    parts = urlsplit(os.environ["DATABASE_URL"])
    return urlunsplit(parts._replace(path="/" + connection.settings_dict["NAME"]))


def redis_url_for_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        query = parse_qs(parts.query)
        query["db"] = [str(db)]
        return f"unix://{parts.path}?{urlencode(query, doseq=True)}"  # urlunsplit drops the //
    return urlunsplit(parts._replace(path=f"/{db}"))
