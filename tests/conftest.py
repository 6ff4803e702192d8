"""Shared fixtures: personas, a real Celery worker, an SMTP sink, and headless Chromium."""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from engagements.models import Membership, Organisation
from tests.factories import MembershipFactory, OrganisationFactory, UserFactory, totp_device

# Playwright's sync API runs an event loop in the test thread; the tests' own ORM calls there
# are still synchronous and safe.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = os.environ.get("HLS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def pytest_configure(config: pytest.Config) -> None:
    # Tasks from this run go to a queue of its own, so a worker of a running `make run` (or
    # another test run on the same Redis) never takes them.
    from hls.celery import app

    app.conf.task_default_queue = f"hls-test-{uuid.uuid4().hex[:8]}"

    # Running pytest directly (not through `make test`) still gets compiled translations.
    from django.core.management import call_command

    call_command("compiletranslations", verbosity=0)


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _fresh_cache():
    from django.core.cache import cache

    yield
    # Lockout counters and rate limits must not leak between tests.
    cache.clear()


# --- personas -------------------------------------------------------------------------------


@dataclass
class Personas:
    learning_partner: Any
    org_a: Any
    org_b: Any
    outsider_org: Any
    facilitator: Any
    manager_a: Any
    practitioner_a: Any
    manager_b: Any
    outsider: Any


@pytest.fixture
def personas(db) -> Personas:
    lp = OrganisationFactory(name="Learning Partner", kind=Organisation.Kind.LEARNING_PARTNER)
    org_a = OrganisationFactory(name="Organisation A")
    org_b = OrganisationFactory(name="Organisation B", kind=Organisation.Kind.HEALTH_BODY)
    outsider_org = OrganisationFactory(name="Outsider Org", kind=Organisation.Kind.CHARITY)
    facilitator = MembershipFactory(
        user=UserFactory(username="facilitator"), organisation=lp, role=Membership.Role.MANAGER
    ).user
    totp_device(facilitator)
    manager_a = MembershipFactory(
        user=UserFactory(username="manager.a"), organisation=org_a, role=Membership.Role.MANAGER
    ).user
    practitioner_a = MembershipFactory(
        user=UserFactory(username="practitioner.a"), organisation=org_a
    ).user
    manager_b = MembershipFactory(
        user=UserFactory(username="manager.b"), organisation=org_b, role=Membership.Role.MANAGER
    ).user
    outsider = MembershipFactory(
        user=UserFactory(username="outsider"), organisation=outsider_org
    ).user
    return Personas(
        lp, org_a, org_b, outsider_org, facilitator, manager_a, practitioner_a, manager_b, outsider
    )


def verified_client(user) -> Client:
    """A client signed in as ``user`` with the second factor done, as after a real sign-in."""
    from django_otp.plugins.otp_totp.models import TOTPDevice

    client = Client()
    client.force_login(user)
    device = TOTPDevice.objects.filter(user=user, confirmed=True).first()
    if device is not None:
        session = client.session
        session["otp_device_id"] = device.persistent_id
        session.save()
    return client


# --- a real Celery worker -------------------------------------------------------------------


@pytest.fixture
def celery_worker(transactional_db) -> Iterator[object]:
    """A real Celery worker (solo pool, in a thread) on the real broker."""
    from celery.contrib.testing.worker import start_worker

    from hls.celery import app

    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10) as worker:
        yield worker


# --- SMTP sink ------------------------------------------------------------------------------


@dataclass
class SmtpSink:
    host: str
    port: int
    messages: list[Message] = field(default_factory=list)
    # Replies to give to the next DATA commands instead of "250 OK" (e.g. "421 4.3.2 later").
    replies: list[str] = field(default_factory=list)
    # Addresses refused at RCPT with this reply (e.g. "550 5.1.1 no such mailbox").
    refuse: dict[str, str] = field(default_factory=dict)
    # Seconds to wait before answering each RCPT: a slow server, so a test can act mid-batch.
    rcpt_delay: float = 0.0

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Message]:
        import time

        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.messages


class _Collector:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.sink.rcpt_delay:
            import asyncio

            await asyncio.sleep(self.sink.rcpt_delay)
        if address in self.sink.refuse:
            return self.sink.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.sink.replies:
            return self.sink.replies.pop(0)
        message = message_from_bytes(envelope.original_content or envelope.content)
        message["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)
        self.sink.messages.append(message)
        return "250 OK"


@pytest.fixture
def smtp_sink(settings) -> Iterator[SmtpSink]:
    """A local SMTP server the app really sends to (the edge of the world, not a mock)."""
    from aiosmtpd.controller import Controller

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sink = SmtpSink(host="127.0.0.1", port=port)
    controller = Controller(_Collector(sink), hostname="127.0.0.1", port=port)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = sink.host
    settings.EMAIL_PORT = sink.port
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = ""
    settings.EMAIL_HOST_PASSWORD = ""
    yield sink
    controller.stop()


# --- headless Chromium ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        pytest.fail(
            f"Browser tests need Debian's Chromium at {CHROMIUM}: apt-get install -y chromium "
            "(.ci/run installs it)."
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser, live_server, request) -> Iterator[object]:
    context = browser.new_context(base_url=live_server.url, locale="en-GB")
    context.set_default_timeout(10_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "console",
        lambda msg: errors.append(msg.text) if msg.type == "error" else None,
    )
    yield page
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    context.close()
    # A Content-Security-Policy violation or a script error is a defect, not noise.
    assert not errors, f"browser reported errors: {errors}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


def assert_accessible(page, context: str = "") -> None:
    """axe-core (from the axe-playwright-python package): no serious or critical violations."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    bad = [v for v in results.response["violations"] if v.get("impact") in {"serious", "critical"}]
    details = "\n".join(
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in bad
    )
    assert not bad, f"axe found serious/critical problems {context}:\n{details}"


# --- an engagement with one cycle per partner -----------------------------------------------


@dataclass
class World:
    personas: Any
    engagement: Any
    cycle_a: Any
    cycle_b: Any


@pytest.fixture
def world(personas) -> World:
    from tests.factories import cycle_for, engagement_with

    engagement = engagement_with(
        learning_partner=personas.learning_partner,
        facilitator=personas.facilitator,
        partners=[personas.org_a, personas.org_b],
    )
    cycle_a = cycle_for(engagement, personas.org_a, personas.manager_a)
    cycle_b = cycle_for(
        engagement, personas.org_b, personas.manager_b, title="Warm spaces", scale="place"
    )
    return World(personas, engagement, cycle_a, cycle_b)
