"""Importing and exporting the whole library (issue 5): a malformed file changes nothing, a bad
row is rejected on its own with its reasons, and an export imports back unchanged."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.http import StreamingHttpResponse
from django.test import Client

from cases import services
from cases.models import CaseStudy
from engagements.models import AuditEvent
from tests.cases.conftest import data_snapshot, make_case, snapshot

pytestmark = pytest.mark.django_db

IMPORT = "/cases/library/import/"
HEADER = "slug,organisation,evidence,title,summary,place"
PLACES = {
    "title": "Tbilisi: საქართველო",
    "organisation": "Primăria Iași, România",
    "place": "Yerevan, Հայաստան",
    "country": "Azərbaycan",
    "summary": "Çağdaş şəhər; Երևան; მადლობა; Științe și țară.",
    "overview": "საქართველო, Հայաստան, Azərbaycan and România learn together.",
}


def upload(client: Client, content: bytes, name: str = "library.csv") -> Any:
    return client.post(IMPORT, {"file": SimpleUploadedFile(name, content)})


def report_of(response: Any) -> list[tuple[int, str, str]]:
    assert response.status_code == 200
    report = response.context["report"]
    assert report is not None, response.context["form"].errors
    return [(row.number, row.slug, row.outcome) for row in report]


def export(client: Client, fmt: str) -> bytes:
    response = client.get(f"/cases/library/export.{fmt}")
    assert response.status_code == 200
    assert 'filename="case-library-' in response["Content-Disposition"]
    if isinstance(response, StreamingHttpResponse):
        return b"".join(response.streaming_content)
    return bytes(response.content)


# --- a malformed file -----------------------------------------------------------------------

# Each holds a good row that would change the Plymouth case, so "nothing changed" means it.
GOOD_ROW = "plymouth-alliance,Changed Organisation,A,Changed title,Changed summary,Changed"
MALFORMED: list[tuple[str, str, bytes]] = [
    ("not-utf8.csv", "not UTF-8", f"{HEADER}\n{GOOD_ROW}\nx,Caf\xe9,A,,,\n".encode("latin-1")),
    ("utf16.csv", "not UTF-8", f"{HEADER}\n{GOOD_ROW}\n".encode("utf-16")),
    ("nul.csv", "NUL", f"{HEADER}\n{GOOD_ROW}\nx,Org\x00,A,,,\n".encode()),
    ("nul.json", "NUL", b'[{"slug": "plymouth-alliance", "organisation": "X\x00"}]'),
    ("broken.json", "JSON cannot be read", b'[{"slug": "plymouth-alliance", "title": "X"},'),
    ("object.json", "must be a list", b'{"slug": "plymouth-alliance", "title": "X"}'),
    ("numbers.json", "must be a list", b"[1, 2, 3]"),
    ("mixed.json", "must be a list", b'[{"slug": "plymouth-alliance", "title": "X"}, "row"]'),
    ("string.json", "must be a list", b'"plymouth-alliance"'),
    ("empty-list.json", "no cases", b"[]"),
    (
        "missing.csv",
        "no column named: organisation, evidence",
        b"slug,title\nplymouth-alliance,X\n",
    ),
    ("extra.csv", "more cells", f"{HEADER}\n{GOOD_ROW}\nx,Org,A,T,S,P,extra\n".encode()),
    ("short.csv", "fewer cells", f"{HEADER}\n{GOOD_ROW}\nx,Org\n".encode()),
    ("quote.csv", "CSV cannot be read", f'{HEADER}\n{GOOD_ROW}\n"x,Org,A,,,\n'.encode()),
    ("empty.csv", "empty", b""),
    ("blank.csv", "empty", b"\n\n  \n"),
    ("bom.csv", "empty", b"\xef\xbb\xbf"),
    ("header.csv", "no cases", f"{HEADER}\n".encode()),
    ("huge.csv", "larger than 5 MB", f"{HEADER}\n{GOOD_ROW}\n".encode() + b"x" * 5_300_000),
    (
        "many.json",
        "more than 10,000",
        json.dumps([{"slug": f"s{i}"} for i in range(10_001)]).encode(),
    ),
    ("binary.csv", "not UTF-8", bytes(range(256)) * 4),
]


@pytest.mark.parametrize(
    ("name", "reason", "content"), MALFORMED, ids=[name for name, _r, _c in MALFORMED]
)
def test_a_malformed_file_changes_nothing(
    facilitator_client: Client, library, name: str, reason: str, content: bytes
) -> None:
    make_case(title="A draft", published=False)
    before = snapshot()

    response = upload(facilitator_client, content, name)

    assert response.status_code == 200
    assert snapshot() == before
    html = response.content.decode()
    assert "Nothing was imported." in html
    assert reason in html, html[html.find("error-summary") :][:600]
    assert '<form method="post" enctype="multipart/form-data"' in html
    assert response.context["report"] is None
    assert 'id="report-title"' not in html
    assert not AuditEvent.objects.filter(action="case.imported").exists()


def test_a_post_without_a_file_asks_for_one(facilitator_client: Client, library) -> None:
    before = snapshot()
    response = facilitator_client.post(IMPORT, {})
    assert response.status_code == 200
    assert snapshot() == before
    assert response.context["form"].errors["file"]
    assert "There is a problem" in response.content.decode()


# --- row by row -----------------------------------------------------------------------------


def test_one_bad_row_is_rejected_and_the_others_apply(facilitator_client: Client, library) -> None:
    before = data_snapshot()
    rows = [
        "slug,organisation,evidence,title,summary,place,sources",
        "new-case,New Org,B,A new case,Written from its source.,Leeds,https://example.org/a",
        "bad-case,Bad Org,Z,Bad,Bad summary,Nowhere,javascript:alert(1)",
        "plymouth-alliance,Plymouth Alliance,B,Plymouth Alliance,New summary.,Plymouth,"
        "https://example.org/p https://example.org/q",
        "new,Reserved Org,A,Reserved,A summary,,",
    ]

    response = upload(facilitator_client, "\n".join(rows).encode())

    assert report_of(response) == [
        (1, "new-case", "created"),
        (2, "bad-case", "rejected"),
        (3, "plymouth-alliance", "updated"),
        (4, "new", "rejected"),
    ]
    report = response.context["report"]
    assert any(r.startswith("Evidence grade:") for r in report[1].reasons), report[1].reasons
    assert any("javascript:alert(1)" in r for r in report[1].reasons), report[1].reasons
    assert report[3].reasons == [
        "Short name in the address: This short name is used by the library's own pages."
    ]
    assert not CaseStudy.objects.filter(slug__in=["bad-case", "new"]).exists()

    created = CaseStudy.objects.get(slug="new-case")
    assert (created.organisation, created.evidence, created.place) == ("New Org", "B", "Leeds")
    assert created.sources == ["https://example.org/a"]
    assert created.published is False  # no "published" column: a new case starts as a draft

    plymouth = CaseStudy.objects.get(slug="plymouth-alliance")
    assert plymouth.summary == "New summary."
    assert plymouth.sources == ["https://example.org/p", "https://example.org/q"]
    # Columns the file lacks keep their values.
    old = before["plymouth-alliance"]
    assert plymouth.overview == old["overview"]
    assert plymouth.overview
    assert plymouth.sectors == old["sectors"]
    assert plymouth.principles == old["principles"]
    assert plymouth.published is True

    html = response.content.decode()
    assert "4 rows read." in html
    for word in ("Created", "Updated", "Rejected", "javascript:alert(1)"):
        assert word in html
    event = AuditEvent.objects.get(action="case.imported")
    assert event.detail == {"created": 1, "updated": 1, "rejected": 2}


def test_rows_that_repeat_or_carry_bad_values_are_rejected(
    facilitator_client: Client, library
) -> None:
    rows: list[dict[str, Any]] = [
        {"slug": "json-one", "organisation": "One", "evidence": "A", "summary": "One."},
        {"slug": "json-one", "organisation": "Again", "evidence": "A", "summary": "Again."},
        {"slug": "nul\u0000slug", "organisation": "Nul", "evidence": "A", "summary": "S"},
        {"slug": "nul-text", "organisation": "Nul\u0000", "evidence": "A", "summary": "S"},
        {"slug": "no-org", "evidence": "A", "summary": "S"},
        {"organisation": "No slug", "evidence": "A", "summary": "S"},
        {"organisation": "No slug either", "evidence": "A", "summary": "S"},
        {"slug": "bad slug!", "organisation": "O", "evidence": "A", "summary": "S"},
        {"slug": ["a", "list"], "organisation": {"a": 1}, "evidence": 5, "summary": None},
        {"slug": "bad-year", "organisation": "O", "evidence": "A", "summary": "S", "year": "1066"},
        {
            "slug": "bad-principle",
            "organisation": "O",
            "evidence": "A",
            "summary": "S",
            "principles": "learning; flying",
        },
        {
            "slug": "long-sector",
            "organisation": "O",
            "evidence": "A",
            "summary": "S",
            "sector": "x" * 101,
        },
        {
            "slug": "json-two",
            "organisation": "Two",
            "evidence": "C",
            "summary": "Two.",
            "sources": ["https://example.org/1", "https://example.org/2"],
            "year": 2020,
            "published": True,
            "principles": ["learning", "systems"],
        },
    ]

    response = upload(facilitator_client, json.dumps(rows).encode(), "library.json")

    outcomes = [outcome for _n, _s, outcome in report_of(response)]
    assert outcomes == ["created"] + ["rejected"] * 11 + ["created"]
    for row in response.context["report"][1:12]:
        assert row.reasons, row
    assert response.context["report"][1].reasons == ["This slug is already in an earlier row."]
    assert "already in an earlier row" not in " ".join(response.context["report"][6].reasons)
    assert CaseStudy.objects.get(slug="json-one").organisation == "One"
    two = CaseStudy.objects.get(slug="json-two")
    assert two.sources == ["https://example.org/1", "https://example.org/2"]
    assert (two.year, two.published, two.principles) == (2020, True, ["learning", "systems"])


def test_an_update_with_a_sector_listed_twice_keeps_it_once(
    facilitator_client: Client, library
) -> None:
    content = (
        "slug,organisation,evidence,sector\n"
        "plymouth-alliance,Plymouth Alliance,B,Housing; Housing;  Mental   health \n"
    )
    assert report_of(upload(facilitator_client, content.encode())) == [
        (1, "plymouth-alliance", "updated")
    ]
    assert CaseStudy.objects.get(slug="plymouth-alliance").sectors == ["Housing", "Mental health"]


def test_the_shipped_case_studies_csv_imports_as_updates(
    facilitator_client: Client, library
) -> None:
    """case-studies.csv itself (its columns only) updates every shipped case, changing none."""
    from cases.seed import FIXTURES

    before = data_snapshot()
    response = upload(facilitator_client, (FIXTURES / "case-studies.csv").read_bytes())
    outcomes = {outcome for _n, _s, outcome in report_of(response)}
    assert outcomes == {"updated"}
    assert data_snapshot() == before


# --- export and round trips -----------------------------------------------------------------


@pytest.fixture
def tricky_cases(library) -> list[CaseStudy]:
    return [
        make_case(
            slug="formulas",
            title='=HYPERLINK("https://evil.example", "click")',
            organisation="+44 Organisation",
            place="-1 below",
            country="@home",
            summary="=1+2",
            overview="-minus first\nthen a second line\r\nand a third",
            story_of_change="@SUM(A1:A2)",
            facts="'=a formula someone already quoted",
            sectors=["=cmd", "Health"],
            principles=["learning", "human"],
            sources=["https://example.org/=x"],
            published=False,
            year=None,
        ),
        make_case(slug="caucasus-and-romania", evidence="B", year=2021, **PLACES),
    ]


def test_the_csv_export_starts_with_a_bom_and_defuses_formulas(
    facilitator_client: Client, tricky_cases
) -> None:
    data = export(facilitator_client, "csv")

    assert data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    assert len(rows) == 28
    assert list(rows[0]) == services.EXPORT_COLUMNS
    row = next(r for r in rows if r["slug"] == "formulas")
    assert row["title"] == '\'=HYPERLINK("https://evil.example", "click")'
    assert row["organisation"] == "'+44 Organisation"
    assert row["place"] == "'-1 below"
    assert row["country"] == "'@home"
    assert row["summary"] == "'=1+2"
    assert row["story_of_change"] == "'@SUM(A1:A2)"
    assert row["sector"] == "'=cmd; Health"
    assert row["facts"] == "''=a formula someone already quoted"
    assert row["published"] == "False"
    for cells in rows:
        for value in cells.values():
            assert value[:1] not in ("=", "+", "-", "@"), value
    georgian = next(r for r in rows if r["slug"] == "caucasus-and-romania")
    assert georgian["title"] == PLACES["title"]
    assert georgian["country"] == "Azərbaycan"


def test_the_json_export_keeps_text_as_it_is(facilitator_client: Client, tricky_cases) -> None:
    rows = json.loads(export(facilitator_client, "json").decode("utf-8"))
    assert len(rows) == 28
    row = next(r for r in rows if r["slug"] == "formulas")
    assert row["summary"] == "=1+2"
    assert row["published"] is False
    assert row["year"] is None
    assert "საქართველო" in export(facilitator_client, "json").decode("utf-8")


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_an_export_imports_back_unchanged(
    facilitator_client: Client, tricky_cases, fmt: str
) -> None:
    before = data_snapshot()
    data = export(facilitator_client, fmt)

    response = upload(facilitator_client, data, f"library.{fmt}")

    report = report_of(response)
    assert len(report) == 28
    assert {outcome for _n, _s, outcome in report} == {"updated"}
    assert data_snapshot() == before


def test_an_export_into_an_empty_library_recreates_it(
    facilitator_client: Client, tricky_cases
) -> None:
    before = data_snapshot()
    data = export(facilitator_client, "csv")
    CaseStudy.objects.all().delete()

    report = report_of(upload(facilitator_client, data))

    assert {outcome for _n, _s, outcome in report} == {"created"}
    assert data_snapshot() == before


def test_caucasian_and_romanian_text_renders_after_a_round_trip(
    client: Client, facilitator_client: Client, tricky_cases
) -> None:
    for fmt in ("csv", "json"):
        data = export(facilitator_client, fmt)
        CaseStudy.objects.filter(slug="caucasus-and-romania").delete()
        outcomes = {
            slug: outcome
            for _n, slug, outcome in report_of(upload(facilitator_client, data, f"library.{fmt}"))
        }
        assert outcomes.pop("caucasus-and-romania") == "created"
        assert set(outcomes.values()) == {"updated"}

        case = CaseStudy.objects.get(slug="caucasus-and-romania")
        for name, value in PLACES.items():
            assert getattr(case, name) == value
        html = client.get("/cases/caucasus-and-romania/").content.decode()
        for value in PLACES.values():
            assert value in html
        found = client.get("/cases/", {"q": "România"})
        assert "caucasus-and-romania" in [hit.case.slug for hit in found.context["results"].hits]
        by_country = client.get("/cases/", {"country": "Azərbaycan"})
        assert by_country.context["results"].total == 1
        assert "Azərbaycan" in by_country.content.decode()


def test_a_json_value_that_looks_quoted_keeps_its_quote(
    facilitator_client: Client, library
) -> None:
    """Only a CSV cell gets a defusing quote; a JSON import takes text as it is."""
    rows = [{"slug": "quoted", "organisation": "O", "evidence": "A", "summary": "'-5 degrees"}]
    report_of(upload(facilitator_client, json.dumps(rows).encode(), "library.json"))
    assert CaseStudy.objects.get(slug="quoted").summary == "'-5 degrees"


def test_the_import_page_links_to_both_exports(facilitator_client: Client, library) -> None:
    html = facilitator_client.get(IMPORT).content.decode()
    assert 'href="/cases/library/export.csv"' in html
    assert 'href="/cases/library/export.json"' in html
    assert facilitator_client.get("/cases/library/export.xml").status_code == 404
