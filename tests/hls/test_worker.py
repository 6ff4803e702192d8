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


def test_every_task_stops_before_the_broker_would_hand_it_to_another_worker():
    from hls.celery import app

    app.loader.import_default_modules()
    visibility = app.conf.broker_transport_options["visibility_timeout"]
    assert app.conf.task_acks_late is True
    assert app.conf.task_reject_on_worker_lost is True
    ours = {name: task for name, task in app.tasks.items() if not name.startswith("celery.")}
    assert "engagements.deliver_emails" in ours
    for name, task in ours.items():
        hard = task.time_limit or app.conf.task_time_limit
        soft = task.soft_time_limit or app.conf.task_soft_time_limit
        assert hard is not None, name
        assert hard < visibility, name
        assert soft is not None, name
        assert soft < hard, name


def test_every_periodic_job_is_a_known_task_and_defined_in_one_place():
    from pathlib import Path

    from hls.celery import app

    app.loader.import_default_modules()
    for entry in app.conf.beat_schedule.values():
        assert entry["task"] in app.tasks, entry
    # No other module adds schedules of its own.
    root = Path(__file__).resolve().parents[2]
    elsewhere = [
        path
        for folder in ("hls", "engagements", "cases")
        for path in (root / folder).rglob("*.py")
        if path.name != "celery.py"
        and any(mark in path.read_text() for mark in (".beat_schedule", "add_periodic_task"))
    ]
    assert elsewhere == []
