"""Issue 4, point 6: a resident's reflection is never lost (retries, races, ended sessions,
failed security checks, a dead broker)."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import kombu.pools
import pytest
import time_machine
from django.conf import settings
from django.db import connections
from django.test import Client
from django.utils import timezone

from engagements import residents
from engagements.models import AuditEvent, Outbox, Reflection, SharedLink
from engagements.tasks import run_outbox, sweep_outbox
from hls.celery import app as _app
from tests.residents.helpers import form_data, html_of, opened

DEAD_BROKER = "redis://127.0.0.1:1/0"
app: Any = _app  # the tests reach into its private pools and backend cache
RESUMED = "Your page was open for a long time, so we checked it again."


# --- idempotence ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_double_post_stores_one_reflection_and_shows_the_same_receipt(link):
    client = opened(link)
    data = form_data(client, follow_up="on", email="r@example.org")
    first = client.post("/r/", data)
    second = client.post("/r/", data)
    assert first.status_code == second.status_code == 200
    assert first.context["receipt"] == second.context["receipt"]
    assert first.context["receipt"] in html_of(second)
    assert Reflection.objects.count() == 1
    assert Outbox.objects.count() == 1
    assert AuditEvent.objects.filter(action="resident.reflection_added").count() == 1
    assert SharedLink.objects.get().submissions == 1


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_posts_with_the_same_key_store_one_reflection(link, monkeypatch):
    """Both requests reach the storing statement together: a real race."""
    client = opened(link)
    data = form_data(client)
    cookies = client.cookies
    barrier = threading.Barrier(2, timeout=10)
    local = threading.local()
    real_receipt_code = residents.receipt_code

    def receipt_code_after_both_checked(key: Any) -> str:
        # submit() calls this just before the one statement that stores the reflection.
        if not getattr(local, "waited", False):
            local.waited = True
            barrier.wait()
        return real_receipt_code(key)

    monkeypatch.setattr(residents, "receipt_code", receipt_code_after_both_checked)
    results: list[Any] = []
    errors: list[BaseException] = []

    def post() -> None:
        try:
            other = Client()
            other.cookies = cookies
            results.append(other.post("/r/", data))
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=post) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors
    assert [r.status_code for r in results] == [200, 200]
    receipts = {r.context["receipt"] for r in results}
    assert len(receipts) == 1
    assert Reflection.objects.count() == 1
    assert SharedLink.objects.get().submissions == 1
    assert AuditEvent.objects.filter(action="resident.reflection_added").count() == 1


# --- an ended session or a failed security check --------------------------------------------


@pytest.mark.django_db
def test_a_post_after_the_session_ended_brings_the_words_back_then_saves(link):
    data = form_data(opened(link), first_name="Nino", identity="named")
    data["text"] = "Words written over a long lunch break."
    stranger = Client()  # the session cookie is gone; only the form's link_ref remains
    response = stranger.post("/r/", data)
    assert response.status_code == 200
    html = html_of(response)
    assert "Words written over a long lunch break." in html
    assert RESUMED in html
    assert 'value="Nino"' in html
    assert not Reflection.objects.exists()

    again = stranger.post("/r/", data)
    assert again.status_code == 200
    assert "receipt" in again.context
    reflection = Reflection.objects.get()
    assert reflection.text == "Words written over a long lunch break."
    assert reflection.first_name == "Nino"


@pytest.mark.django_db
def test_a_post_after_the_session_ended_on_a_closed_link_keeps_the_words(link, world):
    data = form_data(opened(link), text="Still worth reading.")
    residents.link_revoke(link=link, by=world.personas.manager_a)
    response = Client().post("/r/", data)
    assert response.status_code == 410
    assert "Still worth reading." in html_of(response)
    assert "This link has closed" in html_of(response)


@pytest.mark.django_db
def test_a_failed_csrf_check_brings_the_words_back_with_a_plain_explanation(link):
    client = Client(enforce_csrf_checks=True)
    opened(link, client)
    data = form_data(client, text="Typed on a bus with a flaky connection.", feeling="worried")
    data["csrfmiddlewaretoken"] = "x" * 64  # the token of a long-gone page
    client.cookies.pop("csrftoken", None)
    response = client.post("/r/", data)
    assert response.status_code == 403
    assert not Reflection.objects.exists()
    html = html_of(response)
    assert RESUMED in html
    assert re.search(r"<textarea[^>]*>\s*Typed on a bus with a flaky connection.</textarea>", html)
    assert re.search(r'value="worried"[^>]*checked', html)
    assert response["Referrer-Policy"] == "no-referrer"
    # Pressing Send once more works: the page carries a fresh, valid security token.
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    assert token is not None
    data["csrfmiddlewaretoken"] = token.group(1)
    again = client.post("/r/", data)
    assert again.status_code == 200
    assert "receipt" in again.context
    assert Reflection.objects.get().text == "Typed on a bus with a flaky connection."


@pytest.mark.django_db
def test_a_failed_csrf_check_without_a_session_still_brings_the_words_back(link):
    data = form_data(opened(link), text="My session and my cookies are gone.")
    client = Client(enforce_csrf_checks=True)
    response = client.post("/r/", data)
    assert response.status_code == 403
    assert "My session and my cookies are gone." in html_of(response)
    assert RESUMED in html_of(response)


@pytest.mark.django_db
def test_a_failed_csrf_check_on_a_link_that_closed_meanwhile_keeps_the_words(link, world):
    client = Client(enforce_csrf_checks=True)
    opened(link, client)
    data = form_data(client, text="Sent just after the link closed.")
    data["csrfmiddlewaretoken"] = "x" * 64
    residents.link_revoke(link=link, by=world.personas.manager_a)
    response = client.post("/r/", data)
    assert response.status_code in (403, 410)
    assert "Sent just after the link closed." in html_of(response)
    assert "This link has closed" in html_of(response)


@pytest.mark.django_db
def test_a_form_left_open_past_its_link_ref_still_shows_the_words(link):
    data = form_data(opened(link), text="Written slowly over a week.")
    with time_machine.travel(timezone.now() + timedelta(days=8)):
        response = Client().post("/r/", data)
    assert "Written slowly over a week." in html_of(response)


# --- the broker is down ---------------------------------------------------------------------


def _point_celery_at(url: str) -> None:
    """Publish to ``url`` from now on, through connections made afresh on next use."""
    kombu.pools.reset()  # close and forget every pooled connection, whatever its address
    app.conf.broker_url = url
    app._pool = None
    app.amqp._producer_pool = None


@pytest.fixture
def dead_broker(monkeypatch) -> Iterator[None]:
    """Celery publishes to an address where nothing listens; restored afterwards."""
    monkeypatch.setattr(residents, "_broker_down_until", 0.0)
    _point_celery_at(DEAD_BROKER)
    try:
        yield
    finally:
        _point_celery_at(settings.CELERY_BROKER_URL)
        residents._broker_down_until = 0.0


@pytest.fixture
def dead_result_backend() -> Iterator[None]:
    """Celery's result store is unreachable too (Redis stopped altogether); restored afterwards."""
    cached, local = app._backend_cache, getattr(app._local, "backend", None)
    app.conf.result_backend = DEAD_BROKER
    app._backend_cache = None
    if local is not None:
        del app._local.backend
    try:
        yield
    finally:
        app.conf.result_backend = settings.CELERY_RESULT_BACKEND
        app._backend_cache = cached
        if local is not None:
            app._local.backend = local
        elif hasattr(app._local, "backend"):
            del app._local.backend


def _submit_with_follow_up(client: Client, emails: list[str]) -> list[float]:
    """Send one reflection per address; every one must be thanked with a receipt."""
    timings = []
    for n, email in enumerate(emails):
        data = form_data(client, text=f"Reflection number {n}.", follow_up="on", email=email)
        started = time.monotonic()
        response = client.post("/r/", data)
        timings.append(time.monotonic() - started)
        assert response.status_code == 200, n
        assert "Thank you: your reflection is saved" in html_of(response)
        assert re.fullmatch(r"[A-Z2-7]{4}(-[A-Z2-7]{4}){3}", response.context["receipt"])
    return timings


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_with_the_broker_down_every_reflection_is_saved_and_its_email_sent_once_it_returns(
    link, dead_broker, smtp_sink, request
):
    client = opened(link)
    emails = [f"resident{n}@example.org" for n in range(5)]
    _submit_with_follow_up(client, emails)
    assert Reflection.objects.count() == 5
    jobs = list(Outbox.objects.all())
    assert len(jobs) == 5
    assert all(job.enqueued is None and job.done is None for job in jobs)
    assert {job.object_id for job in jobs} == set(Reflection.objects.values_list("pk", flat=True))

    # The broker comes back and a real worker runs; the sweeper enqueues what was missed.
    _point_celery_at(settings.CELERY_BROKER_URL)
    request.getfixturevalue("celery_worker")
    with time_machine.travel(timezone.now() + timedelta(seconds=30)):
        assert sweep_outbox() == 5
    messages = smtp_sink.wait_for(5, timeout=20)
    assert sorted(m["To"] for m in messages) == sorted(emails)
    deadline = time.monotonic() + 10
    while Outbox.objects.filter(done=None).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Outbox.objects.filter(done=None).exists()
    assert Outbox.objects.filter(enqueued=None).count() == 0
    # Nothing is sent twice, and a second sweep finds nothing left to do.
    with time_machine.travel(timezone.now() + timedelta(seconds=30)):
        assert sweep_outbox() == 0
    time.sleep(0.5)
    assert len(smtp_sink.messages) == 5


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "down",
    [
        "broker",
        "broker and result store",
    ],
)
def test_with_redis_down_each_resident_is_thanked_within_two_seconds(
    link, dead_broker, down, request
):
    if down == "broker and result store":
        request.getfixturevalue("dead_result_backend")
    client = opened(link)
    timings = _submit_with_follow_up(client, [f"quick{n}@example.org" for n in range(5)])
    assert max(timings) < 2, [round(t, 2) for t in timings]
    assert Reflection.objects.count() == Outbox.objects.filter(enqueued=None).count() == 5


@pytest.mark.django_db
def test_run_outbox_sends_once_however_often_it_runs(link, smtp_sink):
    client = opened(link)
    client.post("/r/", form_data(client, follow_up="on", email="once@example.org"))
    job = Outbox.objects.get()
    assert run_outbox(job.pk) == "done"
    assert run_outbox(job.pk) == "skipped"
    time.sleep(0.2)
    assert [m["To"] for m in smtp_sink.messages] == ["once@example.org"]
    job.refresh_from_db()
    assert job.done is not None


@pytest.mark.django_db
def test_a_withdrawn_reflection_gets_no_follow_up(link, smtp_sink):
    client = opened(link)
    response = client.post("/r/", form_data(client, follow_up="on", email="gone@example.org"))
    assert response.status_code == 200
    job = Outbox.objects.get()
    assert client.post("/r/receipt/yours/withdraw/").status_code == 200
    assert run_outbox(job.pk) == "skipped"
    time.sleep(0.2)
    assert smtp_sink.messages == []
