"""Entry point behind `make run`, `make test` and `make bench`.

``python -m hls.run run``    start embedded services, migrate, load the demo, then run the
                             web server, a Celery worker and Celery beat in the foreground.
``python -m hls.run test``   compile translations, lint, type-check, check migrations, pytest.
``python -m hls.run bench``  run every script in bench/ (or one: ``bench NAME``).

Embedded PostgreSQL and Redis start only when DATABASE_URL / REDIS_URL are unset; this process
holds them for its children and stops them when it exits.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
BIN = Path(PYTHON).parent


def _load_dotenv() -> None:
    from dotenv import load_dotenv

    load_dotenv(BASE_DIR / ".env", override=False)


def hold_services() -> None:
    """Start the embedded servers this environment lacks and export their URLs to children."""
    data_dir = Path(os.environ.get("HLS_DATA_DIR") or BASE_DIR / ".data")
    from hls import embedded

    if not os.environ.get("DATABASE_URL"):
        print("Starting embedded PostgreSQL under .data/pg ...", flush=True)
        os.environ["DATABASE_URL"] = embedded.postgres_url(data_dir)
    if not os.environ.get("REDIS_URL"):
        print("Starting embedded Redis under .data/redis ...", flush=True)
        os.environ["REDIS_URL"] = embedded.redis_url(data_dir)


def manage(*args: str) -> None:
    subprocess.run([PYTHON, str(BASE_DIR / "manage.py"), *args], check=True, cwd=BASE_DIR)


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _wait_until_serving(
    url: str, processes: dict[str, subprocess.Popen[bytes]], timeout: float
) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in processes.values()):
            return False
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - our own local URL
                return True
        except urllib.error.HTTPError:
            return True  # it answered (503 until the worker's first heartbeat): it is serving
        except OSError:
            time.sleep(0.2)
    return False


def _stop_all(processes: dict[str, subprocess.Popen[bytes]]) -> None:
    for process in processes.values():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    for name, process in processes.items():
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"{name} did not stop in time; killing it.", flush=True)
            process.kill()
            process.wait()
    if processes:
        print("Stopped.", flush=True)


def command_run(args: argparse.Namespace) -> int:
    _load_dotenv()
    os.environ.setdefault("DJANGO_DEBUG", "true")
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "8000"))
    if not _port_free(host, port):
        print(
            f"Port {port} on {host} is already in use. Stop what uses it, or run: PORT={port + 1} make run"
        )
        return 1
    os.environ.setdefault(
        "DJANGO_SITE_URL", f"http://{'localhost' if host == '127.0.0.1' else host}:{port}"
    )
    hold_services()
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        return _prepare_and_serve(host, port, processes)
    except (KeyboardInterrupt, subprocess.CalledProcessError) as exc:
        if isinstance(exc, subprocess.CalledProcessError):
            print(f"A start-up step failed: {' '.join(map(str, exc.cmd[1:]))}", flush=True)
        return 1
    finally:
        # However start-up ended, nothing is left running (embedded servers stop at exit).
        _stop_all(processes)


def _prepare_and_serve(host: str, port: int, processes: dict[str, subprocess.Popen[bytes]]) -> int:
    manage("compiletranslations")
    manage("migrate", "--noinput")
    manage("demo", "--quiet")

    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    beat_schedule = (
        Path(os.environ.get("HLS_DATA_DIR") or BASE_DIR / ".data") / "celerybeat-schedule"
    )
    commands = {
        "web": [PYTHON, str(BASE_DIR / "manage.py"), "runserver", f"{host}:{port}"],
        "worker": [
            str(BIN / "celery"),
            "-A",
            "hls",
            "worker",
            "--loglevel",
            "INFO",
            "--concurrency",
            "2",
        ],
        "beat": [
            str(BIN / "celery"),
            "-A",
            "hls",
            "beat",
            "--loglevel",
            "INFO",
            "--schedule",
            str(beat_schedule),
        ],
    }
    for name, command in commands.items():
        processes[name] = subprocess.Popen(command, cwd=BASE_DIR)

    url = os.environ["DJANGO_SITE_URL"]
    if _wait_until_serving(f"http://{host}:{port}/healthz", processes, timeout=60):
        print("\n" + "=" * 72, flush=True)
        print(f"HLS Learning Partner is running at {url}/", flush=True)
        print(f"Health: {url}/healthz    Admin: {url}/admin/", flush=True)
        manage("demo")
        print(
            "Press Ctrl-C to stop the web server, worker, beat and embedded services.", flush=True
        )
        print("=" * 72 + "\n", flush=True)
    else:
        print("The web server did not start; see the messages above.", flush=True)
        stopping = True

    exit_code = 0
    while not stopping:
        for name, process in processes.items():
            if process.poll() is not None:
                print(
                    f"{name} stopped unexpectedly (exit code {process.returncode}); stopping the rest."
                )
                stopping = True
                exit_code = 1
        time.sleep(0.3)
    print("\nStopping ...", flush=True)
    return exit_code


def command_test(args: argparse.Namespace) -> int:
    os.environ.setdefault("DJANGO_DEBUG", "true")
    hold_services()
    steps = [
        ("translations", [PYTHON, "manage.py", "compiletranslations"]),
        ("ruff", [str(BIN / "ruff"), "check", "."]),
        ("ruff format", [str(BIN / "ruff"), "format", "--check", "."]),
        ("mypy", [str(BIN / "mypy"), "."]),
        ("django checks", [PYTHON, "manage.py", "check", "--fail-level", "WARNING"]),
        ("migrations", [PYTHON, "manage.py", "makemigrations", "--check", "--dry-run"]),
        ("pytest", [str(BIN / "pytest"), *args.pytest_args]),
    ]
    for title, command in steps:
        print(
            f"\n==> {title}: {' '.join(Path(c).name if i == 0 else c for i, c in enumerate(command))}",
            flush=True,
        )
        started = time.monotonic()
        result = subprocess.run(command, cwd=BASE_DIR, check=False)
        print(
            f"==> {title}: {'ok' if result.returncode == 0 else 'FAILED'} in {time.monotonic() - started:.1f}s",
            flush=True,
        )
        if result.returncode != 0:
            return result.returncode
    return 0


def command_bench(args: argparse.Namespace) -> int:
    hold_services()
    bench_dir = BASE_DIR / "bench"
    if args.name:
        scripts = [bench_dir / f"{args.name}.py"]
        if not scripts[0].exists():
            names = sorted(p.stem for p in bench_dir.glob("[!_]*.py"))
            print(f"No bench called {args.name!r}. There are: {', '.join(names)}")
            return 2
    else:
        scripts = sorted(bench_dir.glob("[!_]*.py"))
    failed = 0
    for script in scripts:
        print(f"\n==> bench {script.stem}", flush=True)
        result = subprocess.run([PYTHON, str(script)], cwd=BASE_DIR, check=False)
        failed += result.returncode != 0
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m hls.run")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="run the whole product locally")
    test = sub.add_parser("test", help="run every check and the test suite")
    test.add_argument("pytest_args", nargs=argparse.REMAINDER)
    bench = sub.add_parser("bench", help="run the benchmarks")
    bench.add_argument("name", nargs="?")
    args = parser.parse_args()
    handler = {"run": command_run, "test": command_test, "bench": command_bench}[args.command]
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
