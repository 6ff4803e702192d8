"""Settings parse strictly: bad values stop the process at start, naming the variable."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hls.lib.env import ConfigError, email_settings

BASE_DIR = Path(__file__).resolve().parents[2]
STRONG_KEY = "k" * 10 + "Zq8-yT3_pL0vXw2bN5mR7cJ4hG6fD1sA9eU" + "x" * 10

PRODUCTION = {
    "DJANGO_DEBUG": "false",
    "DJANGO_SECRET_KEY": STRONG_KEY,
    "DJANGO_ALLOWED_HOSTS": "hls.example.org",
    "DJANGO_SITE_URL": "https://hls.example.org",
}


def manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    inherited = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DJANGO_DEBUG", "DJANGO_ALLOW_ASYNC_UNSAFE"}
    }
    full_env = {**inherited, "DJANGO_DEBUG": "true", **env}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DJANGO_DEBUG", "maybe"),
        ("DATABASE_URL", "mysql://root@localhost/hls"),
        ("DATABASE_URL", "postgres://host:notaport/db"),
        ("REDIS_URL", "http://localhost:6379"),
        ("EMAIL_URL", "smtp://"),
        ("EMAIL_URL", "carrier-pigeon://loft"),
        ("DJANGO_SITE_URL", "hls.example.org"),
        ("DJANGO_SITE_URL", "https://hls.example.org/app"),
        ("DJANGO_ALLOWED_HOSTS", "a.example.org,,b.example.org"),
        ("DJANGO_LOG_FORMAT", "xml"),
        ("DJANGO_DB_CONN_MAX_AGE", "forever"),
    ],
)
def test_it_stops_at_start_naming_the_bad_variable(variable, value):
    result = manage("check", **{variable: value})
    assert result.returncode == 2, result.stderr
    assert f"Configuration error: {variable}" in result.stderr
    assert "Traceback" not in result.stderr


def test_it_refuses_production_without_a_secret_key():
    env = {**PRODUCTION, "DJANGO_SECRET_KEY": ""}
    result = manage("check", **env)
    assert result.returncode == 2
    assert "DJANGO_SECRET_KEY must be set" in result.stderr


def test_it_refuses_a_weak_secret_key_in_production():
    result = manage("check", **{**PRODUCTION, "DJANGO_SECRET_KEY": "django-insecure-short"})
    assert result.returncode == 2
    assert "DJANGO_SECRET_KEY is too weak" in result.stderr


def test_it_refuses_production_without_allowed_hosts():
    result = manage("check", **{**PRODUCTION, "DJANGO_ALLOWED_HOSTS": ""})
    assert result.returncode == 2
    assert "DJANGO_ALLOWED_HOSTS must be set" in result.stderr


def test_check_deploy_is_clean_in_production():
    result = manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_it_reads_each_email_url_form():
    assert str(email_settings("EMAIL_URL", "console://")["EMAIL_BACKEND"]).endswith(
        "console.EmailBackend"
    )
    smtp = email_settings("EMAIL_URL", "smtp+tls://me%40example.org:p%40ss@mail.example.org")
    assert smtp["EMAIL_HOST"] == "mail.example.org"
    assert smtp["EMAIL_PORT"] == 587
    assert smtp["EMAIL_USE_TLS"] is True
    assert smtp["EMAIL_HOST_USER"] == "me@example.org"
    assert smtp["EMAIL_HOST_PASSWORD"] == "p@ss"
    assert email_settings("EMAIL_URL", "smtps://mail.example.org")["EMAIL_USE_SSL"] is True


def test_it_hides_passwords_in_error_messages():
    with pytest.raises(ConfigError) as caught:
        email_settings("EMAIL_URL", "smtp+ssl://user:hunter2@mail.example.org")
    assert "hunter2" not in str(caught.value)
    assert "EMAIL_URL" in str(caught.value)
