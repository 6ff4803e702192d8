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
