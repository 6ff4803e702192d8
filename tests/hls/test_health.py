import pytest

from hls.lib import health
from hls.lib import redis as redis_lib


@pytest.fixture
def dead_redis(settings, tmp_path):
    settings.REDIS_URL = f"unix://{tmp_path}/nobody-listens.sock"
    redis_lib.client.cache_clear()
    yield
    redis_lib.client.cache_clear()


@pytest.mark.worker
def test_it_is_200_when_database_broker_and_worker_are_up(client, celery_worker):
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is True
    assert body["database"] == {"ok": True}
    assert body["broker"] == {"ok": True}
    assert body["worker"]["ok"] is True


@pytest.mark.django_db
def test_it_is_503_when_no_worker_has_a_heartbeat(client):
    redis_lib.client().delete(*redis_lib.client().keys(health.HEARTBEAT_PREFIX + "*") or ["x"])
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["worker"]["ok"] is False
    assert body["database"]["ok"] is True


@pytest.mark.django_db
def test_it_is_503_and_names_the_broker_when_redis_is_down(client, dead_redis):
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["broker"]["ok"] is False
    assert body["worker"]["ok"] is False


@pytest.mark.django_db
def test_it_is_never_cached(client):
    response = client.get("/healthz")
    assert "no-cache" in response["Cache-Control"] or "no-store" in response["Cache-Control"]
