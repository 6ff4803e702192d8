"""The docker compose file and the Dockerfile describe a whole, healthy deployment."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

BASE_DIR = Path(__file__).resolve().parents[2]


def compose_command() -> list[str]:
    plugin = ["docker", "compose", "version"]
    if (
        shutil.which("docker")
        and subprocess.run(plugin, capture_output=True, check=False).returncode == 0
    ):
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    pytest.fail("Neither 'docker compose' nor 'docker-compose' is installed (.ci/run installs it).")


def compose_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*compose_command(), "-f", "docker-compose.yml", "config", "-q"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_docker_compose_config_validates():
    result = compose_config({**os.environ, "DJANGO_SECRET_KEY": "a" * 20 + "B" * 20 + "0123456789"})
    assert result.returncode == 0, result.stderr


def test_docker_compose_refuses_to_start_without_a_secret_key():
    result = compose_config({k: v for k, v in os.environ.items() if k != "DJANGO_SECRET_KEY"})
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr


def test_every_service_has_a_health_check_and_the_app_waits_for_its_servers():
    compose = yaml.safe_load((BASE_DIR / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"web", "worker", "beat", "postgres", "redis"}
    for name, service in services.items():
        assert "healthcheck" in service, name
    for name in ("web", "worker", "beat"):
        depends = services[name]["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy"
        assert depends["redis"]["condition"] == "service_healthy"
        assert services[name]["environment"]["DJANGO_DEBUG"] == "false"
    assert "gunicorn" in services["web"]["command"]


def test_the_dockerfile_serves_with_gunicorn_as_an_unprivileged_user():
    dockerfile = (BASE_DIR / "Dockerfile").read_text()
    assert "USER hls" in dockerfile
    assert "collectstatic" in dockerfile
    assert '"gunicorn"' in dockerfile


def test_gunicorns_access_log_hides_capability_tokens():
    from types import SimpleNamespace

    from gunicorn.config import Config  # type: ignore[import-untyped]

    from hls.lib.gunicorn_logger import RedactingLogger

    logger = RedactingLogger(Config())
    token = "Zq3xY0bW1cD2eF3gH4iJ5kL6mN7oP8qR"
    environ = {
        "RAW_URI": f"/invitations/{token}/",
        "PATH_INFO": f"/invitations/{token}/",
        "REQUEST_METHOD": "GET",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "QUERY_STRING": "",
    }
    request = SimpleNamespace(
        method="GET", path=f"/invitations/{token}/", query="", version=(1, 1), headers=[]
    )
    response = SimpleNamespace(status="410 Gone", sent=10, headers=[], response_length=10)
    atoms = logger.atoms(response, request, environ, SimpleNamespace(seconds=0, microseconds=1))
    written = logger.atoms_wrapper_class(atoms)  # what gunicorn formats the line from
    line = logger.cfg.access_log_format % written
    assert token not in line
    assert "/invitations/[redacted]" in line
    assert all(token not in str(written[key]) for key in atoms)  # any format, any atom
    assert (
        "--logger-class hls.lib.gunicorn_logger.RedactingLogger"
        in (BASE_DIR / "docker-compose.yml").read_text()
    )
