import pytest

from hls.lib import health
from hls.tasks import ping

pytestmark = pytest.mark.worker


def test_it_round_trips_a_task_through_a_real_worker_and_broker(celery_worker):
    result = ping.delay("hello")
    assert result.get(timeout=20) == "pong:hello"


def test_it_reports_the_worker_heartbeat_while_a_worker_runs(celery_worker):
    report = health.check_workers()
    assert report["ok"] is True
    assert report["count"] >= 1
