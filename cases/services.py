"""Writing the case library: edits, citations, and whole-library import and export."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.http import QueryDict
from django.utils.translation import gettext as _

from cases import search
from cases.forms import CaseStudyForm
from cases.models import CaseCitation, CaseStudy
from cases.seed import CSV_COLUMNS
from engagements.access import audit
from engagements.models import Adaptation, Reflection
from engagements.services import Refused, _update_versioned
from hls.lib.spreadsheet import BOM, safe_cell, unsafe_cell

# The columns of an export: those of case-studies.csv, then the texts and the rest.
EXTRA_COLUMNS = [
    "title",
    "summary",
    "overview",
    "story_of_change",
    "title_uk",
    "summary_uk",
    "overview_uk",
    "story_of_change_uk",
    "principles",
    "year",
    "published",
]
EXPORT_COLUMNS = CSV_COLUMNS + EXTRA_COLUMNS
MAX_IMPORT_BYTES = 5 * 1024 * 1024
MAX_IMPORT_ROWS = 10_000
_SLUG = re.compile(r"[-a-zA-Z0-9_]+")


@transaction.atomic
def case_create(*, by: User, values: dict[str, Any]) -> CaseStudy:
    case = CaseStudy.objects.create(**values)
    audit(by, "case.created", case, slug=case.slug)
    search.forget_vocabulary()
    return case


@transaction.atomic
def case_update(
    *, case: CaseStudy, by: User, version: int | None, values: dict[str, Any]
) -> CaseStudy:
    _update_versioned(case, version, values)  # refreshes ``case`` from the database
    audit(by, "case.updated", case, slug=case.slug)
    search.forget_vocabulary()
    return case


@transaction.atomic
def cite(
    *,
    case: CaseStudy,
    by: User,
    reflection: Reflection | None = None,
    adaptation: Adaptation | None = None,
) -> CaseCitation:
    """Record that a reflection or adaptation cites a published case (once)."""
    record = reflection or adaptation
    if record is None or (reflection is not None and adaptation is not None):
        raise Refused(_("Choose one reflection or adaptation to cite the case from."))
    if not case.published:
        raise Refused(_("Only a published case study can be cited."))
    citation, _created = CaseCitation.objects.get_or_create(
        case=case,
        reflection=reflection,
        adaptation=adaptation,
        defaults={"cycle_id": record.cycle_id, "cited_by": by},
    )
    return citation


# --- export ------------------------------------------------------------------------------------


def export_row(case: CaseStudy) -> dict[str, Any]:
    return {
        "slug": case.slug,
        "organisation": case.organisation,
        "place": case.place,
        "country": case.country,
        "sector": "; ".join(case.sectors),
        "scale": case.scale,
        "organisation_type": case.organisation_type,
        "evidence": case.evidence,
        "facts": case.facts,
        "sources": " ".join(case.sources),
        "title": case.title,
        "summary": case.summary,
        "overview": case.overview,
        "story_of_change": case.story_of_change,
        "title_uk": case.title_uk,
        "summary_uk": case.summary_uk,
        "overview_uk": case.overview_uk,
        "story_of_change_uk": case.story_of_change_uk,
        "principles": "; ".join(case.principles),
        "year": case.year,
        "published": case.published,
    }


def export_csv() -> Iterator[str]:
    """The whole library as CSV (UTF-8 with a byte-order mark, which Excel needs)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=EXPORT_COLUMNS)
    yield BOM
    writer.writeheader()
    for case in CaseStudy.objects.order_by("slug").iterator(chunk_size=500):
        row = export_row(case)
        writer.writerow(
            {
                key: safe_cell(value)
                if isinstance(value, str)
                else ("" if value is None else value)
                for key, value in row.items()
            }
        )
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()


def export_json() -> str:
    rows = [export_row(case) for case in CaseStudy.objects.order_by("slug")]
    return json.dumps(rows, ensure_ascii=False, indent=2)


# --- import ------------------------------------------------------------------------------------


class Malformed(Exception):
    """The file as a whole cannot be read: nothing is imported."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass
class RowReport:
    number: int  # the row's number in the file (1 = the first case)
    slug: str
    outcome: str  # created, updated, rejected
    reasons: list[str] = field(default_factory=list)


def read_rows(data: bytes, filename: str) -> list[dict[str, Any]]:
    """The rows of an uploaded CSV or JSON file, or ``Malformed`` saying what is wrong."""
    if len(data) > MAX_IMPORT_BYTES:
        raise Malformed(_("The file is larger than 5 MB."))
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise Malformed(_("The file is not UTF-8 text. Save it as UTF-8 CSV or JSON.")) from None
    if "\x00" in text:
        raise Malformed(_("The file holds NUL characters, so it is not a CSV or JSON file."))
    if not text.strip():
        raise Malformed(_("The file is empty."))
    is_json = filename.lower().endswith(".json") or text.lstrip()[:1] in ("[", "{")
    if is_json:
        try:
            rows = json.loads(text)
        except ValueError as exc:
            raise Malformed(
                _("The JSON cannot be read: %(error)s") % {"error": str(exc)[:200]}
            ) from None
        if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
            raise Malformed(_("The JSON must be a list of cases, each an object."))
    else:
        try:
            reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
            # A spreadsheet may pad a column's name with spaces.
            reader.fieldnames = [name.strip() for name in reader.fieldnames or []]
            rows = list(reader)
        except csv.Error as exc:
            raise Malformed(
                _("The CSV cannot be read: %(error)s") % {"error": str(exc)[:200]}
            ) from None
        header = reader.fieldnames or []
        missing = [
            column for column in ("slug", "organisation", "evidence") if column not in header
        ]
        if missing:
            raise Malformed(
                _("The CSV has no column named: %(columns)s.") % {"columns": ", ".join(missing)}
            )
        for number, row in enumerate(rows, start=1):
            if None in row:
                raise Malformed(
                    _("Row %(number)s of the CSV has more cells than the header has columns.")
                    % {"number": number}
                )
            if any(value is None for value in row.values()):
                # Read as empty, the missing cells would wipe those facts of the case.
                raise Malformed(
                    _("Row %(number)s of the CSV has fewer cells than the header has columns.")
                    % {"number": number}
                )
        # Undo the quote our own export puts before formula-like cells.
        rows = [{key: unsafe_cell(value) for key, value in row.items()} for row in rows]
    if not rows:
        raise Malformed(_("The file holds no cases."))
    if len(rows) > MAX_IMPORT_ROWS:
        raise Malformed(_("The file holds more than 10,000 cases."))
    return rows


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "; ".join(str(item) for item in value)
    return str(value)


def _form_data(row: dict[str, Any], case: CaseStudy | None) -> QueryDict:
    """The form fields an import row sets; for an update, columns it lacks keep their value."""
    data = QueryDict(mutable=True)
    current = export_row(case) if case is not None else {}
    for column in EXPORT_COLUMNS:
        value = _text(row[column]) if column in row else _text(current.get(column))
        if column == "sector":
            data["sectors"] = value
        elif column == "sources":
            data["sources"] = "\n".join(value.replace(";", " ").split())
        elif column == "principles":
            data.setlist("principles", [p.strip() for p in value.split(";") if p.strip()])
        elif column == "published":
            if value.strip().lower() in ("true", "1", "yes"):
                data["published"] = "on"
        else:
            data[column] = value
    if case is None and not data.get("title"):
        data["title"] = data.get("organisation", "")
    if case is not None:
        data["version"] = str(case.version)
    return data


def _reasons(form: CaseStudyForm) -> list[str]:
    reasons = []
    for name, errors in form.errors.items():
        label = form.fields[name].label if name in form.fields else ""
        for error in errors:
            reasons.append(f"{label}: {error}" if label else str(error))
    return reasons


@transaction.atomic
def import_library(*, data: bytes, filename: str, by: User) -> list[RowReport]:
    """Create or update a case per row; a bad row is rejected with its reasons, the others
    still apply. A malformed file raises ``Malformed`` and changes nothing."""
    rows = read_rows(data, filename)
    slugs = [_text(row.get("slug")).strip() for row in rows]
    # Only well-formed slugs are looked up (one with a NUL byte cannot even be asked for); any
    # other row goes to the form, which rejects it with the reason.
    wanted = {slug for slug in slugs if _SLUG.fullmatch(slug) and len(slug) <= 100}
    existing = {case.slug: case for case in CaseStudy.objects.filter(slug__in=wanted)}
    reports: list[RowReport] = []
    seen: set[str] = set()
    for number, (row, slug) in enumerate(zip(rows, slugs, strict=True), start=1):
        if slug and slug in seen:
            reports.append(
                RowReport(
                    number, slug[:100], "rejected", [_("This slug is already in an earlier row.")]
                )
            )
            continue
        seen.add(slug)
        case = existing.get(slug)
        form = CaseStudyForm(_form_data(row, case), instance=case)
        if not form.is_valid():
            reports.append(RowReport(number, slug[:100], "rejected", _reasons(form)))
            continue
        values = form.changed_values()
        if case is None:
            case_create(by=by, values=values)
            reports.append(RowReport(number, slug, "created"))
        else:
            case_update(case=case, by=by, version=case.version, values=values)
            reports.append(RowReport(number, slug, "updated"))
    audit(
        by,
        "case.imported",
        object_type="caselibrary",
        created=sum(r.outcome == "created" for r in reports),
        updated=sum(r.outcome == "updated" for r in reports),
        rejected=sum(r.outcome == "rejected" for r in reports),
    )
    return reports
