"""Exports of an engagement as CSV, XLSX or JSON, made by a job (DESIGN.md §4 and §6).

An export holds what its requester may see, and nothing more:

- the learning cycles of the engagement they may see (``access.cycles_for``);
- the reflections the journal shows them (published, or their own), with the author shown as
  the journal shows it (``selectors.author_label``): anonymous ones carry no author,
  pseudonymous ones the pseudonym, residents their first name only when they chose to give it;
  follow-up emails, receipt codes and submission keys never leave the database;
- the adaptations of those cycles, citing only reflections the requester may see.

The request writes the :class:`~engagements.models.Export` row and an outbox row in one
transaction; the job (``tasks.build_export``) claims the export with a PostgreSQL advisory lock,
so a second copy of the job does nothing while the first runs and takes over if the first
worker died. The outbox row is marked done when the job ends, not when it is handed to the
broker, so the outbox sweeper starts again an export whose message was lost. It reads the rows with ``.iterator()`` and writes them straight to a file under
``HLS_EXPORT_DIR`` (a ``.part`` name, renamed when complete), saving its progress every
``PROGRESS_EVERY`` rows, so memory stays flat whatever the engagement's size.

Formats:

- CSV: one file Excel opens with a double click: UTF-8 with a byte-order mark, CRLF line ends,
  one row per record with a first column saying what the record is (learning cycle,
  reflection or adaptation); the columns are the union of the three kinds', blank where a kind
  has no such field. One file rather than a ZIP of three, because a ZIP is one more step
  between a person and their data, and Excel cannot open one.
- XLSX: an openpyxl write-only workbook (rows streamed to disk) with one sheet per kind.
- JSON: ``{"engagement": {...}, "cycles": [...], "reflections": [...], "adaptations": [...]}``,
  written one record at a time, with the same values (lists stay lists).

Text cells of CSV and XLSX that a spreadsheet would run as a formula start with a quote
(``hls.lib.spreadsheet.safe_cell``). Headings and labels are in the requester's language (their
profile's, else the site's).
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import connection, transaction
from django.db.models import Prefetch, QuerySet
from django.utils import timezone, translation
from django.utils.formats import number_format
from django.utils.text import slugify
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter

from engagements import access, counting, selectors
from engagements.models import (
    Adaptation,
    Change,
    Engagement,
    Experiment,
    Export,
    Feeling,
    LearningCycle,
    Outbox,
    Principle,
    Profile,
    Reflection,
)
from engagements.residents import dispatch
from engagements.services import Refused
from hls.lib.spreadsheet import BOM, safe_cell
from hls.lib.sql import try_advisory_lock

log = logging.getLogger(__name__)

AnyUser = AbstractBaseUser | AnonymousUser

# The outbox task that starts an export's job (engagements.tasks.run_outbox).
EXPORT = "engagements.export"
# Rows read from the database per round trip, and rows written between progress saves.
CHUNK_SIZE = 1000
PROGRESS_EVERY = 500
# The first key of the advisory lock an export's job holds while it runs ("EXPT").
_LOCK_CLASS = 0x45585054

RUNNING = (Export.Status.QUEUED, Export.Status.RUNNING)
# Kept in ``error`` while an export is made a second time after its worker died.
RESTARTED = "restarted"

CONTENT_TYPES: dict[str, str] = {
    Export.Format.CSV: "text/csv; charset=utf-8",
    Export.Format.XLSX: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    Export.Format.JSON: "application/json; charset=utf-8",
}

# Why a job did not finish, by the code stored in ``Export.error``.
ERRORS = {
    "too_large": gettext_lazy(
        "The engagement grew past the most rows one export may hold while the export waited "
        "to start."
    ),
    "no_access": gettext_lazy("You no longer take part in this engagement."),
    "timeout": gettext_lazy("The export took too long and was stopped."),
    "interrupted": gettext_lazy("The export was interrupted twice on our side and was stopped."),
    "failed": gettext_lazy("Something went wrong on our side while the export was made."),
}


class TooLarge(Refused):
    def __init__(self, rows: int) -> None:
        super().__init__(
            _(
                "This export would hold %(rows)s rows, more than the %(limit)s one export may "
                "hold, so it was not started. Ask the people who run this site for a copy of "
                "the whole engagement."
            )
            % {
                "rows": number_format(rows, force_grouping=True),
                "limit": number_format(settings.HLS_EXPORT_MAX_ROWS, force_grouping=True),
            },
            field="format",
        )


# --- what an export holds -------------------------------------------------------------------


LABELS: dict[str, Any] = {
    "record": gettext_lazy("Record"),
    "id": gettext_lazy("ID"),
    "cycle_id": gettext_lazy("Cycle ID"),
    "cycle": gettext_lazy("Learning cycle"),
    "organisation": gettext_lazy("Organisation"),
    "team": gettext_lazy("Team"),
    "scale": gettext_lazy("System scale"),
    "stage": gettext_lazy("Stage"),
    "status": gettext_lazy("Status"),
    "visibility": gettext_lazy("Who can see it"),
    "learning_question": gettext_lazy("Learning question"),
    "purpose": gettext_lazy("Purpose"),
    "experiment": gettext_lazy("Experiment"),
    "author": gettext_lazy("Shown as"),
    "author_role": gettext_lazy("Role"),
    "identity": gettext_lazy("Identity"),
    "principles": gettext_lazy("Principles"),
    "text": gettext_lazy("Reflection"),
    "better_or_worse": gettext_lazy("Better or worse"),
    "feeling": gettext_lazy("How it felt"),
    "language": gettext_lazy("Language"),
    "what_changed": gettext_lazy("What we changed"),
    "because": gettext_lazy("Because we learned"),
    "decided_by": gettext_lazy("Decided by"),
    "decided_on": gettext_lazy("Date decided"),
    "prompted_by_reflections": gettext_lazy("Prompted by reflections (IDs)"),
    "prompted_by_experiments": gettext_lazy("Prompted by experiments"),
    "created": gettext_lazy("Created"),
    "updated": gettext_lazy("Last changed"),
}

# The CSV's columns, in order: every kind's columns, with the record's kind first.
CSV_COLUMNS = tuple(LABELS)


@dataclass(frozen=True)
class Kind:
    key: str  # the JSON section
    record: Any  # the CSV's first column
    sheet: Any  # the XLSX sheet's name
    columns: tuple[str, ...]


CYCLES = Kind(
    "cycles",
    gettext_lazy("Learning cycle"),
    gettext_lazy("Learning cycles"),
    (
        "cycle_id",
        "cycle",
        "organisation",
        "team",
        "scale",
        "stage",
        "status",
        "visibility",
        "learning_question",
        "purpose",
        "created",
        "updated",
    ),
)
REFLECTIONS = Kind(
    "reflections",
    gettext_lazy("Reflection"),
    gettext_lazy("Reflections"),
    (
        "id",
        "cycle_id",
        "cycle",
        "organisation",
        "stage",
        "experiment",
        "author",
        "author_role",
        "identity",
        "principles",
        "text",
        "better_or_worse",
        "feeling",
        "language",
        "created",
    ),
)
ADAPTATIONS = Kind(
    "adaptations",
    gettext_lazy("Adaptation"),
    gettext_lazy("Adaptations"),
    (
        "id",
        "cycle_id",
        "cycle",
        "organisation",
        "what_changed",
        "because",
        "decided_by",
        "decided_on",
        "status",
        "prompted_by_reflections",
        "prompted_by_experiments",
        "created",
    ),
)
KINDS = (CYCLES, REFLECTIONS, ADAPTATIONS)

Row = dict[str, Any]


def visible_cycles(user: AnyUser, engagement: Engagement) -> QuerySet[LearningCycle]:
    return access.cycles_for(user).filter(engagement_id=engagement.pk)


def visible_reflections(user: AnyUser, engagement: Engagement) -> QuerySet[Reflection]:
    """The journal's rule (``selectors.visible_reflections``) across the visible cycles.

    The same set ``counting.reflection_counts`` counts for this reader (``count_rows``).
    """
    return counting.counted_reflections(visible_cycles(user, engagement), viewer=user)


def visible_adaptations(user: AnyUser, engagement: Engagement) -> QuerySet[Adaptation]:
    return Adaptation.objects.filter(cycle_id__in=visible_cycles(user, engagement).values("id"))


def count_rows(user: AnyUser, engagement: Engagement) -> int:
    """Cycles, reflections and adaptations the file will hold.

    The reflections are counted by ``counting.reflection_counts``, the count the dashboard
    and the digest show too, with the journal's rule for this reader (``visible_reflections``).
    """
    cycles = visible_cycles(user, engagement)
    return (
        cycles.count()
        + counting.reflection_counts(cycles=cycles, viewer=user).reflections
        + visible_adaptations(user, engagement).count()
    )


def _zone(engagement: Engagement) -> ZoneInfo:
    try:
        return ZoneInfo(engagement.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _cycle_rows(user: AnyUser, engagement: Engagement, zone: ZoneInfo) -> Iterator[Row]:
    cycles = (
        visible_cycles(user, engagement)
        .select_related("organisation", "stage")
        .order_by("created", "id")
    )
    for cycle in cycles.iterator(chunk_size=CHUNK_SIZE):
        yield {
            "id": str(cycle.public_id),
            "cycle_id": str(cycle.public_id),
            "cycle": cycle.title,
            "organisation": cycle.organisation.name,
            "team": cycle.team_name,
            "scale": cycle.get_scale_display(),
            "stage": cycle.stage.name,
            "status": cycle.get_status_display(),
            "visibility": cycle.get_visibility_display(),
            "learning_question": cycle.learning_question,
            "purpose": cycle.purpose,
            "created": cycle.created.astimezone(zone),
            "updated": cycle.updated.astimezone(zone),
        }


# Only these columns of a reflection are read: never the follow-up email, the receipt's hash,
# the submission key or the link a resident came through.
_REFLECTION_FIELDS = (
    "public_id",
    "text",
    "author_id",
    "author_role",
    "identity",
    "first_name",
    "principles",
    "better_or_worse",
    "feeling",
    "language",
    "created",
    "author__username",
    "author__first_name",
    "author__last_name",
    "stage__name",
    "experiment__title",
    "cycle__public_id",
    "cycle__title",
    "cycle__organisation__name",
)


def _labels(choices: Iterable[tuple[str, Any]]) -> dict[str, str]:
    """Choice labels in the active language, looked up once per export rather than per row."""
    return {value: str(label) for value, label in choices}


def _reflection_rows(user: AnyUser, engagement: Engagement, zone: ZoneInfo) -> Iterator[Row]:
    reflections = (
        visible_reflections(user, engagement)
        .select_related("author", "stage", "experiment", "cycle__organisation")
        .only(*_REFLECTION_FIELDS)
        .order_by("created", "id")
    )
    roles = _labels(Reflection.AuthorRole.choices)
    identities = _labels(Reflection.Identity.choices)
    principles = _labels(Principle.choices)
    changes = _labels(Change.choices)
    feelings = _labels(Feeling.choices)
    for reflection in reflections.iterator(chunk_size=CHUNK_SIZE):
        yield {
            "id": str(reflection.public_id),
            "cycle_id": str(reflection.cycle.public_id),
            "cycle": reflection.cycle.title,
            "organisation": reflection.cycle.organisation.name,
            "stage": reflection.stage.name,
            "experiment": reflection.experiment.title if reflection.experiment else "",
            "author": selectors.author_label(reflection, engagement.pk),
            "author_role": roles.get(reflection.author_role, reflection.author_role),
            "identity": identities.get(reflection.identity, reflection.identity),
            "principles": [principles.get(p, p) for p in reflection.principles],
            "text": reflection.text,
            "better_or_worse": changes.get(reflection.better_or_worse, ""),
            "feeling": feelings.get(reflection.feeling, ""),
            "language": reflection.language,
            "created": reflection.created.astimezone(zone),
        }


def _adaptation_rows(user: AnyUser, engagement: Engagement, zone: ZoneInfo) -> Iterator[Row]:
    adaptations = (
        visible_adaptations(user, engagement)
        .select_related("cycle__organisation")
        .prefetch_related(
            Prefetch(
                "reflections",
                queryset=visible_reflections(user, engagement).only("id", "public_id"),
            ),
            Prefetch("experiments", queryset=Experiment.objects.only("id", "title")),
        )
        .order_by("created", "id")
    )
    statuses = _labels(Adaptation.Status.choices)
    for adaptation in adaptations.iterator(chunk_size=CHUNK_SIZE):
        yield {
            "id": str(adaptation.public_id),
            "cycle_id": str(adaptation.cycle.public_id),
            "cycle": adaptation.cycle.title,
            "organisation": adaptation.cycle.organisation.name,
            "what_changed": adaptation.what_changed,
            "because": adaptation.because,
            "decided_by": adaptation.decided_by,
            "decided_on": adaptation.decided_on,
            "status": statuses.get(adaptation.status, adaptation.status),
            "prompted_by_reflections": [str(r.public_id) for r in adaptation.reflections.all()],
            "prompted_by_experiments": [e.title for e in adaptation.experiments.all()],
            "created": adaptation.created.astimezone(zone),
        }


Sections = list[tuple[Kind, Iterable[Row]]]


def sections(user: AnyUser, engagement: Engagement) -> Sections:
    """Each kind with its rows, read lazily: nothing runs until a writer iterates."""
    zone = _zone(engagement)
    return [
        (CYCLES, _cycle_rows(user, engagement, zone)),
        (REFLECTIONS, _reflection_rows(user, engagement, zone)),
        (ADAPTATIONS, _adaptation_rows(user, engagement, zone)),
    ]


# --- writers --------------------------------------------------------------------------------


def _text(value: Any) -> str:
    """A value as the text of a CSV cell."""
    if value is None:
        return ""
    if isinstance(value, list):
        return "; ".join(str(item) for item in value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def write_csv(path: Path, parts: Sections, engagement: Engagement) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write(BOM)
        writer = csv.writer(handle, dialect="excel", lineterminator="\r\n")
        writer.writerow([str(LABELS[column]) for column in CSV_COLUMNS])
        for kind, rows in parts:
            record = str(kind.record)
            for row in rows:
                row["record"] = record
                writer.writerow([safe_cell(_text(row.get(column))) for column in CSV_COLUMNS])


def _xlsx_value(value: Any) -> Any:
    if isinstance(value, list):
        value = "; ".join(str(item) for item in value)
    if isinstance(value, str):
        # Control characters make a workbook Excel refuses to open; a cell holds 32,767.
        return safe_cell(ILLEGAL_CHARACTERS_RE.sub("", value))[:32767]
    if isinstance(value, datetime):
        return value.replace(tzinfo=None)  # Excel has no time zones: the engagement's local time
    return value


# Column widths in characters, for the columns that hold more than a word or two.
_WIDE = {"text": 80, "learning_question": 60, "purpose": 50, "what_changed": 60, "because": 60}


def write_xlsx(path: Path, parts: Sections, engagement: Engagement) -> None:
    workbook = Workbook(write_only=True)
    bold = Font(bold=True)
    for kind, rows in parts:
        sheet = workbook.create_sheet(title=_sheet_title(str(kind.sheet)))
        sheet.freeze_panes = "A2"
        for number, column in enumerate(kind.columns, start=1):
            width = _WIDE.get(column, 40 if column.endswith("id") else 20)
            sheet.column_dimensions[get_column_letter(number)].width = width
        header = []
        for column in kind.columns:
            cell = WriteOnlyCell(sheet, value=safe_cell(str(LABELS[column])))
            cell.font = bold
            header.append(cell)
        sheet.append(header)
        for row in rows:
            sheet.append([_xlsx_value(row.get(column)) for column in kind.columns])
    workbook.save(path)


def _sheet_title(name: str) -> str:
    """Excel's rules for a sheet's name: at most 31 characters, none of []:*?/\\."""
    return re.sub(r"[\[\]:*?/\\]", " ", name).strip()[:31] or "Sheet"


def _json_default(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date) else str(value)


def write_json(path: Path, parts: Sections, engagement: Engagement) -> None:
    def dump(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False, default=_json_default)

    about = {
        "id": str(engagement.public_id),
        "title": engagement.title,
        "time_zone": engagement.timezone,
        "exported": timezone.now().astimezone(_zone(engagement)),
    }
    with path.open("w", encoding="utf-8", newline="\n") as handle:
        handle.write('{"engagement": ' + dump(about))
        for kind, rows in parts:
            handle.write(f',\n"{kind.key}": [')
            first = True
            for row in rows:
                record = {column: row.get(column) for column in kind.columns}
                handle.write(("\n" if first else ",\n") + dump(record))
                first = False
            handle.write("\n]")
        handle.write("}\n")


WRITERS: dict[str, Callable[[Path, Sections, Engagement], None]] = {
    Export.Format.CSV: write_csv,
    Export.Format.XLSX: write_xlsx,
    Export.Format.JSON: write_json,
}


# --- requesting -----------------------------------------------------------------------------


@transaction.atomic
def request_export(*, user: Any, engagement: Engagement, fmt: str) -> tuple[Export, bool]:
    """Start an export of what ``user`` may see of ``engagement``, or reuse the running one.

    The caller has checked the person may see the engagement (``access.engagement_access``).
    Returns the export and whether it is new. Refuses an unknown format, and an export with
    more than ``HLS_EXPORT_MAX_ROWS`` rows (``TooLarge``). The job starts after the commit; if
    the broker is down, the outbox sweeper starts it later.
    """
    if fmt not in Export.Format.values:
        raise Refused(_("Choose CSV, Excel or JSON."), field="format")
    # One request at a time per person and engagement, so a double click makes one export.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(hashtext(%s))", [f"export:{engagement.pk}:{user.pk}"]
        )
    running = (
        Export.objects.filter(
            engagement=engagement,
            requested_by=user,
            format=fmt,
            status__in=RUNNING,
            expires__gt=timezone.now(),
        )
        .order_by("-created")
        .first()
    )
    if running is not None:
        if running.status == Export.Status.QUEUED and running.created < timezone.now() - timedelta(
            minutes=1
        ):
            _enqueue(running)  # still waiting after a minute: its job may be lost; run it again
        return running, False
    rows = count_rows(user, engagement)
    if rows > settings.HLS_EXPORT_MAX_ROWS:
        raise TooLarge(rows)
    export = Export.objects.create(
        engagement=engagement,
        requested_by=user,
        format=fmt,
        rows_total=rows,
        expires=timezone.now() + timedelta(hours=settings.HLS_EXPORT_HOURS),
    )
    access.audit(user, "export.requested", export, format=fmt, rows=rows)
    _enqueue(export)
    return export, True


def _enqueue(export: Export) -> None:
    """An outbox row for the export's job, handed to the broker after the commit.

    Running an export's job twice is harmless (``build`` skips what is claimed or finished).
    """
    job = Outbox.objects.create(task=EXPORT, object_id=export.pk)
    transaction.on_commit(lambda: dispatch([job.pk]))


def export_for(user: AnyUser, public_id: uuid.UUID | str) -> Export:
    """The person's own export, while they still take part in its engagement; else 404."""
    export = (
        Export.objects.filter(
            public_id=public_id,
            requested_by_id=user.pk or 0,
            engagement__in=access.engagements_for(user),
        )
        .select_related("engagement")
        .first()
    )
    if export is None:
        access.deny(user, "export", public_id)
    return export


def recent_exports(user: AnyUser, engagement: Engagement, limit: int = 10) -> list[Export]:
    return list(
        Export.objects.filter(engagement=engagement, requested_by_id=user.pk).order_by(
            "-created", "-id"
        )[:limit]
    )


def is_expired(export: Export) -> bool:
    return export.status == Export.Status.EXPIRED or export.expires <= timezone.now()


def is_finished(export: Export) -> bool:
    return export.status not in RUNNING or is_expired(export)


def error_message(export: Export) -> str:
    return str(ERRORS.get(export.error, ERRORS["failed"])) if export.error else ""


# --- files ----------------------------------------------------------------------------------


def export_dir() -> Path:
    """The folder export files go to, made if need be (by the job that writes one)."""
    path = Path(settings.HLS_EXPORT_DIR)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def file_path(export: Export) -> Path | None:
    """The finished file, if it is there; never a name from anywhere but our own row."""
    if not export.file_name:
        return None
    path = Path(settings.HLS_EXPORT_DIR) / Path(export.file_name).name
    try:
        return path if path.is_file() else None
    except OSError:
        return None


def download_names(export: Export) -> tuple[str, str]:
    """A safe ASCII file name, and the name in the engagement's own words (UTF-8)."""
    day = timezone.localdate(export.created).isoformat()
    extension = export.format
    title = export.engagement.title
    ascii_stem = slugify(title)[:80].strip("-") or "engagement"
    stem = re.sub(r'[\x00-\x1f\x7f/\\:*?"<>|]+', " ", title)
    stem = re.sub(r"\s+", " ", stem).strip(" .")[:120] or ascii_stem
    return f"{ascii_stem}-{day}.{extension}", f"{stem} {day}.{extension}"


def content_disposition(export: Export) -> str:
    ascii_name, name = download_names(export)
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


# --- the job --------------------------------------------------------------------------------


def _language(user_id: int) -> str:
    language = Profile.objects.filter(user_id=user_id).values_list("language", flat=True).first()
    codes = {code for code, _name in settings.LANGUAGES}
    return language if language in codes else settings.LANGUAGE_CODE


def _counted(rows: Iterable[Row], progress: Callable[[], None]) -> Iterator[Row]:
    for row in rows:
        yield row
        progress()


def build(export_id: int) -> str:
    """Make one export's file. Idempotent: a finished, expired or claimed export is skipped.

    Whatever the outcome, except "busy" (another copy is on it), the export's outbox rows are
    marked done here, not when the job was handed to the broker: until then the outbox sweeper
    hands the job out again, so a lost message or a killed worker cannot leave an export
    waiting for ever. An export found half made (its worker died) is made again once; found
    half made a second time, it fails, so a job the time limit kills is not retried endlessly.
    """
    # Held while the job runs: a second copy finds it taken; a dead worker's is released.
    with try_advisory_lock((_LOCK_CLASS, export_id & 0x7FFFFFFF)) as claimed:
        if not claimed:
            return "busy"
        result = _claimed(export_id)
        Outbox.objects.filter(task=EXPORT, object_id=export_id, done=None).update(
            done=timezone.now()
        )
        return result


def _claimed(export_id: int) -> str:
    export = (
        Export.objects.select_related("engagement", "requested_by").filter(pk=export_id).first()
    )
    if export is None or export.status not in RUNNING:
        return "skipped"
    if is_expired(export):
        Export.objects.filter(pk=export.pk).update(status=Export.Status.EXPIRED)
        return "expired"
    restarted = export.status == Export.Status.RUNNING
    if restarted and export.error == RESTARTED:
        return _fail(export, "interrupted")
    return _build(export, restarted=restarted)


def delete_file(export: Export) -> None:
    """Remove the export's file, if it has one."""
    if export.file_name:
        _remove(Path(settings.HLS_EXPORT_DIR) / Path(export.file_name).name)


def _remove(path: Path) -> None:
    with suppress(OSError):
        path.unlink(missing_ok=True)


def _fail(export: Export, code: str) -> str:
    Export.objects.filter(pk=export.pk).update(
        status=Export.Status.FAILED, error=code, finished=timezone.now()
    )
    return code


def _build(export: Export, *, restarted: bool = False) -> str:
    from celery.exceptions import SoftTimeLimitExceeded

    user, engagement = export.requested_by, export.engagement
    # Access is asked again: the person may have left the engagement since they asked.
    if not user.is_active or not access.engagements_for(user).filter(pk=engagement.pk).exists():
        return _fail(export, "no_access")
    total = count_rows(user, engagement)
    if total > settings.HLS_EXPORT_MAX_ROWS:
        return _fail(export, "too_large")
    Export.objects.filter(pk=export.pk).update(
        status=Export.Status.RUNNING,
        rows_total=total,
        rows_done=0,
        error=RESTARTED if restarted else "",
    )
    name = f"{export.public_id}.{export.format}"
    final = Path(settings.HLS_EXPORT_DIR) / name
    partial = final.with_name(name + ".part")
    done = 0

    def progress() -> None:
        nonlocal done
        done += 1
        if done % PROGRESS_EVERY == 0:
            Export.objects.filter(pk=export.pk).update(rows_done=min(done, total))

    started = time.monotonic()
    try:
        export_dir()  # made here, so a folder that cannot be written fails the export, visibly
        with translation.override(_language(user.pk)):
            parts: Sections = [
                (kind, _counted(rows, progress)) for kind, rows in sections(user, engagement)
            ]
            WRITERS[export.format](partial, parts, engagement)
        partial.chmod(0o600)
        os.replace(partial, final)
        size = final.stat().st_size
    except SoftTimeLimitExceeded:
        _remove(partial)
        return _fail(export, "timeout")
    except Exception:
        _remove(partial)
        log.exception("export %s failed", export.pk)
        return _fail(export, "failed")
    Export.objects.filter(pk=export.pk).update(
        status=Export.Status.DONE,
        error="",
        rows_total=done,
        rows_done=done,
        file_name=name,
        size=size,
        finished=timezone.now(),
    )
    log.info(
        "export %s: %s rows as %s in %.1f s",
        export.pk,
        done,
        export.format,
        time.monotonic() - started,
    )
    return "done"


# --- expiry (called by the nightly retention job) -------------------------------------------


def expire_due(now: datetime | None = None) -> int:
    """Delete the files of exports past their expiry and mark them expired; tidy the folder.

    Also removes files no export row points to any more (an engagement deleted, a job killed
    while writing), once they are an hour old so a job writing now is left alone.
    """
    now = now or timezone.now()
    expired = 0
    due = Export.objects.filter(expires__lte=now).exclude(status=Export.Status.EXPIRED)
    folder = Path(settings.HLS_EXPORT_DIR)
    for export in due.only("id", "file_name").iterator(chunk_size=CHUNK_SIZE):
        delete_file(export)
        expired += Export.objects.filter(pk=export.pk).update(
            status=Export.Status.EXPIRED, file_name=""
        )
    if not folder.is_dir():
        return expired
    kept = set(
        Export.objects.filter(status=Export.Status.DONE)
        .exclude(file_name="")
        .values_list("file_name", flat=True)
    )
    cutoff = time.time() - 3600
    for path in folder.iterdir():
        if path.is_file() and path.name not in kept and path.stat().st_mtime < cutoff:
            _remove(path)
    return expired
