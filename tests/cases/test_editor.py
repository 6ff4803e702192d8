"""Facilitators write the library (issue 5): drafts, publishing, stale edits, bad sources and
reserved short names."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client
from django.utils.html import escape

from cases import services
from cases.models import CaseStudy
from engagements.models import AuditEvent

pytestmark = pytest.mark.django_db

NEW = "/cases/new/"
STALE = "Someone else changed this while you were editing it."


def new_case(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "title": "Kindness in Kirklees",
        "slug": "kindness-in-kirklees",
        "organisation": "Kirklees Kindness Network",
        "place": "Kirklees",
        "country": "United Kingdom",
        "sectors": "Community; Health",
        "scale": "local",
        "organisation_type": "charity",
        "principles": ["human", "learning"],
        "year": "2022",
        "evidence": "C",
        "summary": "Neighbours check on each other.",
        "overview": "A network of volunteers.",
        "story_of_change": "",
        "sources": "https://example.org/kirklees\nhttps://example.org/kindness",
        "facts": "From the network's own page.",
    }
    data.update(changes)
    return data


def edit_data(client: Client, case_slug: str, **changes: Any) -> dict[str, Any]:
    """What the edit form holds as served, with ``changes`` typed over it."""
    html = client.get(f"/cases/{case_slug}/edit/").content.decode()
    version = re.search(r'name="version" value="(\d+)"', html)
    assert version, "the edit form carries no version"
    case = CaseStudy.objects.get(slug=case_slug)
    data = new_case(
        title=case.title,
        slug=case.slug,
        organisation=case.organisation,
        summary=case.summary,
        evidence=case.evidence,
        sources="\n".join(case.sources),
        version=version.group(1),
    )
    if case.published:
        data["published"] = "on"
    data.update(changes)
    return {key: value for key, value in data.items() if value is not None}


def error_summary(response: Any) -> str:
    html = response.content.decode()
    start = html.find("data-error-summary")
    assert start >= 0, "no error summary on the page"
    return html[start : html.find("</div>", start)]


def test_a_facilitator_creates_a_draft_then_publishes_it(
    facilitator_client: Client, client: Client, library
) -> None:
    response = facilitator_client.post(NEW, new_case())

    assert response.status_code == 302
    assert response["Location"] == "/cases/kindness-in-kirklees/"
    case = CaseStudy.objects.get(slug="kindness-in-kirklees")
    assert case.published is False
    assert case.sectors == ["Community", "Health"]
    assert case.principles == ["human", "learning"]
    assert case.sources == ["https://example.org/kirklees", "https://example.org/kindness"]
    assert case.year == 2022
    assert client.get("/cases/kindness-in-kirklees/").status_code == 404
    assert AuditEvent.objects.filter(action="case.created", object_id=str(case.public_id))

    response = facilitator_client.post(
        "/cases/kindness-in-kirklees/edit/",
        edit_data(facilitator_client, "kindness-in-kirklees", published="on"),
    )

    assert response.status_code == 302
    case.refresh_from_db()
    assert case.published is True
    assert case.version == 2
    page = client.get("/cases/kindness-in-kirklees/")
    assert page.status_code == 200
    assert "https://example.org/kindness" in page.content.decode()
    found = client.get("/cases/", {"q": "Kirklees"}).context["results"]
    assert [hit.case.slug for hit in found.hits] == ["kindness-in-kirklees"]


def test_a_new_word_is_known_to_did_you_mean_at_once(
    facilitator_client: Client, client: Client, library
) -> None:
    client.get("/cases/", {"q": "Kirklees"})  # the vocabulary is now read and kept
    facilitator_client.post(NEW, new_case(published="on"))
    results = client.get("/cases/", {"q": "Kirklese"}).context["results"]
    assert results.corrected_from == "Kirklese"
    assert results.searched == "Kirklees"


def test_a_stale_edit_is_refused_and_keeps_the_text(
    facilitator_client: Client, personas, library
) -> None:
    stale = edit_data(
        facilitator_client, "plymouth-alliance", summary="My careful new summary of Plymouth."
    )
    case = CaseStudy.objects.get(slug="plymouth-alliance")
    services.case_update(
        case=case, by=personas.facilitator, version=case.version, values={"place": "Devon"}
    )

    response = facilitator_client.post("/cases/plymouth-alliance/edit/", stale)

    assert response.status_code == 200
    assert STALE in error_summary(response)
    html = response.content.decode()
    assert "My careful new summary of Plymouth.</textarea>" in html
    case.refresh_from_db()
    assert case.place == "Devon"
    assert case.summary != "My careful new summary of Plymouth."
    # The page still names the case as saved, not as typed.
    assert f"<h1>Edit “{escape(case.title)}”</h1>" in html


def test_an_edit_without_a_version_is_refused(facilitator_client: Client, library) -> None:
    data = edit_data(facilitator_client, "plymouth-alliance", summary="Changed.")
    del data["version"]
    response = facilitator_client.post("/cases/plymouth-alliance/edit/", data)
    assert response.status_code == 200
    assert "This form is out of date." in error_summary(response)
    assert CaseStudy.objects.get(slug="plymouth-alliance").summary != "Changed."


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "ftp://example.org/file",
        "example.org/no-scheme",
        "https://",
        "http://exa mple.org",
        "https://example.org/" + "x" * 600,
    ],
)
def test_a_bad_source_address_gets_a_clear_message(
    facilitator_client: Client, library, url: str
) -> None:
    response = facilitator_client.post(NEW, new_case(sources=f"https://example.org/good\n{url}"))

    assert response.status_code == 200
    summary = error_summary(response)
    if len(url) > 500:
        assert "A web address can be at most 500 characters." in summary
    else:
        first = url.split()[0]
        assert (
            escape(f"“{first}” is not a web address starting with https:// or http://.") in summary
        )
    assert 'href="#id_sources"' in summary
    assert not CaseStudy.objects.filter(slug="kindness-in-kirklees").exists()


@pytest.mark.parametrize("slug", ["new", "library"])
def test_reserved_short_names_are_refused(facilitator_client: Client, library, slug: str) -> None:
    response = facilitator_client.post(NEW, new_case(slug=slug))
    assert response.status_code == 200
    assert "This short name is used by the library&#x27;s own pages." in error_summary(response)
    assert not CaseStudy.objects.filter(slug=slug).exists()

    response = facilitator_client.post(
        "/cases/plymouth-alliance/edit/",
        edit_data(facilitator_client, "plymouth-alliance", slug=slug),
    )
    assert response.status_code == 200
    assert "This short name is used by the library&#x27;s own pages." in error_summary(response)
    assert CaseStudy.objects.filter(slug="plymouth-alliance").exists()


def test_a_taken_short_name_is_refused(facilitator_client: Client, library) -> None:
    response = facilitator_client.post(NEW, new_case(slug="plymouth-alliance"))
    assert response.status_code == 200
    assert "already exists" in error_summary(response)


def test_changing_the_short_name_moves_the_case(facilitator_client: Client, library) -> None:
    response = facilitator_client.post(
        "/cases/plymouth-alliance/edit/",
        edit_data(facilitator_client, "plymouth-alliance", slug="plymouth-renamed"),
    )
    assert response["Location"] == "/cases/plymouth-renamed/"
    assert facilitator_client.get("/cases/plymouth-renamed/").status_code == 200
    assert facilitator_client.get("/cases/plymouth-alliance/").status_code == 404


def test_an_invalid_edit_keeps_the_saved_title_in_the_page(
    facilitator_client: Client, library
) -> None:
    response = facilitator_client.post(
        "/cases/plymouth-alliance/edit/",
        edit_data(
            facilitator_client, "plymouth-alliance", title="Typed title", summary="", slug="typed"
        ),
    )
    assert response.status_code == 200
    html = response.content.decode()
    saved = CaseStudy.objects.get(slug="plymouth-alliance")
    assert f"<h1>Edit “{escape(saved.title)}”</h1>" in html
    assert 'href="/cases/plymouth-alliance/"' in html
    assert 'value="Typed title"' in html


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("summary", "", "This field is required."),
        ("evidence", "Z", "Select a valid choice."),
        ("year", "1066", "greater than or equal to 1900"),
        ("principles", ["flying"], "Select a valid choice."),
        ("sectors", "x" * 101, "at most 100 characters"),
        ("title", "x\x00y", "Null characters are not allowed."),
        ("slug", "Not a slug!", "Enter a valid “slug”"),
    ],
)
def test_bad_values_are_refused_with_a_message(
    facilitator_client: Client, library, field: str, value: Any, message: str
) -> None:
    response = facilitator_client.post(NEW, new_case(**{field: value}))
    assert response.status_code == 200
    assert escape(message) in error_summary(response)
    assert CaseStudy.objects.count() == 26
