from __future__ import annotations

from celery import shared_task
from django.core import management


@shared_task(name="hls.tasks.ping")
def ping(payload: str) -> str:
    """Echo a payload back: lets an operator (and the tests) prove a full broker round trip."""
    return f"pong:{payload}"


@shared_task(name="hls.tasks.clear_expired_sessions")
def clear_expired_sessions() -> None:
    management.call_command("clearsessions")
