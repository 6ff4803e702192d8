"""The Celery app. Every periodic schedule of the product is defined here, in one place."""

from __future__ import annotations

import os
import time
from typing import Any

from celery import Celery, bootsteps
from celery.schedules import crontab

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hls.settings")

app = Celery("hls")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

app.conf.beat_schedule = {
    "sweep-outbox": {
        "task": "engagements.sweep_outbox",
        "schedule": 60.0,
    },
    "sweep-emails": {
        "task": "engagements.sweep_emails",
        "schedule": 60.0,
    },
    # Resident input past its engagement's retention period; expired export files.
    "retention": {
        "task": "engagements.run_retention",
        "schedule": crontab(hour="2", minute="41"),
    },
    # Reflection sessions: each date is claimed before its emails are owed, so two beats
    # running at once send nothing twice.
    "session-prompts": {
        "task": "engagements.send_session_prompts",
        "schedule": 60.0,
    },
    "session-reminders": {
        "task": "engagements.send_session_reminders",
        "schedule": 60.0,
    },
    # Learning digests: each person's and engagement's latest due period, made once.
    "digests": {
        "task": "engagements.digests_due",
        "schedule": crontab(minute="*/15"),
    },
    "clear-expired-sessions": {
        "task": "hls.tasks.clear_expired_sessions",
        "schedule": crontab(hour="3", minute="17"),
    },
}


class WorkerHeartbeat(bootsteps.StartStopStep):
    """Writes a short-lived key to Redis while the worker runs; /healthz reads it."""

    requires = ("celery.worker.components:Timer",)

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.tref: Any = None

    def start(self, worker: Any) -> None:
        from django.conf import settings

        from hls.lib import health

        def beat() -> None:
            health.record_worker_heartbeat(worker.hostname, time.time())

        beat()
        self.tref = worker.timer.call_repeatedly(settings.WORKER_HEARTBEAT_SECONDS, beat)

    def stop(self, worker: Any) -> None:
        from hls.lib import health

        if self.tref is not None:
            self.tref.cancel()
            self.tref = None
        health.forget_worker(worker.hostname)


app.steps["worker"].add(WorkerHeartbeat)
