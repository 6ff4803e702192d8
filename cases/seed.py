"""The library as shipped: every case of case-studies.csv with texts written from its facts.

``case-studies.csv`` is a copy of the project's grounded facts (one row per organisation, with
sources and an evidence grade); ``case_texts.json`` holds the texts written from those facts
(English, with Ukrainian translations). The data migration and ``import_library`` use this.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parent / "fixtures"
CSV_COLUMNS = [
    "slug",
    "organisation",
    "place",
    "country",
    "sector",
    "scale",
    "organisation_type",
    "evidence",
    "facts",
    "sources",
]
TEXT_FIELDS = [
    "title",
    "summary",
    "overview",
    "story_of_change",
    "title_uk",
    "summary_uk",
    "overview_uk",
    "story_of_change_uk",
]


def split_sectors(value: str) -> list[str]:
    return [part.strip() for part in value.split(";") if part.strip()]


def shipped_cases() -> list[dict[str, Any]]:
    """One dict of model field values per shipped case, in the CSV's order."""
    with (FIXTURES / "case-studies.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    texts = {
        entry["slug"]: entry
        for entry in json.loads((FIXTURES / "case_texts.json").read_text(encoding="utf-8"))
    }
    cases = []
    for row in rows:
        text = texts[row["slug"]]
        cases.append(
            {
                "slug": row["slug"],
                "organisation": row["organisation"],
                "place": row["place"],
                "country": row["country"],
                "sectors": split_sectors(row["sector"]),
                "scale": row["scale"],
                "organisation_type": row["organisation_type"],
                "evidence": row["evidence"],
                "facts": row["facts"],
                "sources": row["sources"].split(),
                "principles": list(text["principles"]),
                "year": text["year"],
                "published": True,
                **{name: text[name] for name in TEXT_FIELDS},
            }
        )
    return cases
