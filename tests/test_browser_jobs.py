"""Issue 6 as a facilitator meets it in Debian's Chromium, with a real worker and SMTP server.

The facilitator schedules a reflection session; the prompt the beat sends arrives in the SMTP
sink with its calendar invitation; the week's engagement digest is read in the app; the
engagement is exported as XLSX and as CSV and both files are opened. axe checks every page.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta
from email.message import Message

import pytest
from icalendar import Calendar
from openpyxl import load_workbook
from playwright.sync_api import Page, expect

from engagements import digests, services, sessions
from engagements.models import Digest, Profile, Reflection
from tests.conftest import assert_accessible
from tests.test_browser_cycles import sign_in_with_code

pytestmark = [pytest.mark.browser, pytest.mark.worker]

REFLECTION = "Families trust the district nurses more than they trust us."


def _parts(message: Message) -> dict[str, bytes]:
    """Each MIME part's decoded bytes by content type (the first of each type)."""
    found: dict[str, bytes] = {}
    for part in message.walk():
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes):
            found.setdefault(part.get_content_type(), payload)
    return found


def _download(page: Page, link_name: str) -> bytes:
    with page.expect_download() as info:
        page.get_by_role("link", name=re.compile(link_name)).click()
    path = info.value.path()
    assert path is not None
    with open(path, "rb") as handle:
        return handle.read()


def _export(page: Page, label: str, engagement_url: str) -> bytes:
    page.goto(engagement_url)
    page.get_by_role("link", name="Export").click()
    page.get_by_label(label).check()
    page.get_by_role("button", name="Make the export").click()
    # The worker makes it while the page shows progress; the link appears when it is ready.
    expect(page.get_by_role("link", name=re.compile("Download"))).to_be_visible(timeout=20_000)
    assert_accessible(page, f"on the finished {label} export")
    return _download(page, "Download")


def test_a_facilitator_schedules_a_session_reads_the_digest_and_exports(
    page, world, celery_worker, smtp_sink
):
    from django.utils import timezone

    p = world.personas
    engagement_url = f"/engagements/{world.engagement.public_id}/"
    services.reflection_add(
        cycle=world.cycle_a, by=p.manager_a, author_role="manager", text=REFLECTION
    )
    Profile.objects.create(user=p.practitioner_a, language="uk")
    # Names of their own: the factory's random first names can coincide.
    for user, name in ((p.manager_a, "Mariam"), (p.practitioner_a, "Taras")):
        user.first_name = name
        user.save(update_fields=["first_name"])

    sign_in_with_code(page, p.facilitator.username, p.facilitator.totpdevice_set.get())
    page.goto(f"/cycles/{world.cycle_a.public_id}/")
    page.get_by_role("link", name="Reflection sessions for this cycle").click()
    page.get_by_role("link", name="Schedule a session for this cycle").click()
    tomorrow = timezone.localdate() + timedelta(days=1)
    page.get_by_label("Title").fill("Ward reflection")
    page.get_by_label("Date").fill(tomorrow.isoformat())
    page.get_by_label("Start time").fill("23:30")
    page.get_by_label("Mariam").check()
    page.get_by_label("Taras").check()
    page.get_by_label("Send the prompt this many hours before").fill("72")  # due at once
    page.get_by_role("button", name="Schedule session").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Ward reflection")
    assert_accessible(page, "on the new session's page")

    # What beat does every minute: the due prompts go out through the real worker.
    assert sessions.prompts_send_due() == 1
    messages = smtp_sink.wait_for(2, timeout=20)
    assert sorted(m["X-Envelope-To"] for m in messages) == [
        p.manager_a.email,
        p.practitioner_a.email,
    ]
    by_person = {m["X-Envelope-To"]: m for m in messages}
    english = _parts(by_person[p.manager_a.email])
    assert "Ward reflection" in by_person[p.manager_a.email]["Subject"]
    assert f"/cycles/{world.cycle_a.public_id}/" in english["text/plain"].decode()
    invitation = Calendar.from_ical(english["text/calendar"])
    event = next(iter(invitation.walk("VEVENT")))
    assert event["SUMMARY"] == "Ward reflection"
    assert event.decoded("DTSTART").date() == tomorrow
    # The practitioner reads theirs in Ukrainian, the language of their profile.
    ukrainian = _parts(by_person[p.practitioner_a.email])["text/plain"].decode()
    assert re.search(r"[А-Яа-яІіЇїЄє]{4,}", ukrainian)

    # The week's engagement digest, compiled as the beat would, read in the app.
    period = digests.latest_period(
        "weekly", world.engagement.timezone, timezone.now() + timedelta(days=7)
    )
    Reflection.objects.update(created=period.start + timedelta(hours=10))
    digest = digests.make_digest(
        Digest.Scope.ENGAGEMENT,
        world.engagement.pk,
        "weekly",
        period.first_day.isoformat(),
        world.engagement.timezone,
        now=period.due,
    )
    assert digest is not None
    page.get_by_role("navigation", name="Your account").get_by_role("link", name="Digests").click()
    page.get_by_role("link", name=re.compile(world.engagement.title)).first.click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(world.engagement.title)
    expect(page.get_by_text(REFLECTION)).to_be_visible()
    assert_accessible(page, "on the engagement digest")

    workbook = load_workbook(io.BytesIO(_export(page, "Excel (XLSX)", engagement_url)))
    cells = [c for sheet in workbook for row in sheet.iter_rows(values_only=True) for c in row]
    assert REFLECTION in cells
    assert world.cycle_a.title in cells

    text = _export(page, "CSV", engagement_url).decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    assert any(REFLECTION in row for row in rows)
    assert any(world.cycle_b.title in row for row in rows)  # org B's cycle is shared
