"""Who sees what in the library (issue 5): drafts only for facilitators, editor pages only for
facilitators, and a case's citing cycles only for those who may see the cycle."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.utils.html import escape

from cases import services
from cases.models import CaseStudy
from engagements import access
from engagements.models import AuditEvent
from engagements.services import Refused, reflection_add
from tests.cases.conftest import make_case
from tests.conftest import verified_client

pytestmark = pytest.mark.django_db

LIST = "/cases/"
HTMX = {"HX-Request": "true", "HX-Target": "case-library"}
EDITOR_PAGES = [
    "/cases/new/",
    "/cases/plymouth-alliance/edit/",
    "/cases/secret-orchard/edit/",
    "/cases/no-such-case/edit/",
    "/cases/library/import/",
    "/cases/library/export.csv",
    "/cases/library/export.json",
]


@pytest.fixture
def draft(library) -> CaseStudy:
    return make_case(
        slug="secret-orchard",
        title="Secret Orchard Collective",
        organisation="Orchard Keepers",
        summary="A greengage orchard run by its neighbours.",
        country="Draftland",
        sectors=["Orchards"],
        scale="parish",
        organisation_type="orchard cooperative",
        evidence="A",
        published=False,
    )


def clients(personas) -> dict[str, Client]:
    return {
        "anonymous": Client(),
        "practitioner": verified_client(personas.practitioner_a),
        "manager": verified_client(personas.manager_a),
        "outsider": verified_client(personas.outsider),
    }


def facet_values(response: Any) -> set[str]:
    return {option["value"] for facet in response.context["facets"] for option in facet["values"]}


# --- drafts ---------------------------------------------------------------------------------


def test_a_draft_is_invisible_to_everyone_but_facilitators(personas, draft) -> None:
    for who, client in clients(personas).items():
        listing = client.get(LIST)
        assert listing.context["results"].total == 26, who
        html = listing.content.decode()
        assert "secret-orchard" not in html, who
        assert "Secret Orchard" not in html, who
        # Not in any count either.
        assert not {"Draftland", "Orchards", "parish", "orchard cooperative"} & facet_values(
            listing
        ), who
        evidence = {
            o["value"]: o["count"]
            for f in listing.context["facets"]
            if f["name"] == "evidence"
            for o in f["values"]
        }
        assert evidence["A"] == 5, who
        assert client.get(LIST, {"q": "greengage"}).context["results"].total == 0, who
        assert client.get(LIST, {"country": "Draftland"}).context["results"].total == 0, who
        partial = client.get(LIST, {"q": "orchard"}, headers=HTMX).content.decode()
        assert "secret-orchard" not in partial, who
        assert client.get("/cases/secret-orchard/").status_code == 404, who


def test_did_you_mean_never_offers_a_draft_word(client: Client, draft) -> None:
    results = client.get(LIST, {"q": "greengages"}).context["results"]
    assert results.total == 0
    assert "greengage" not in results.suggestion.lower()
    assert results.corrected_from == ""


def test_a_facilitator_sees_a_draft_marked_draft(personas, draft) -> None:
    client = verified_client(personas.facilitator)
    listing = client.get(LIST)
    assert listing.context["results"].total == 27
    assert {"Draftland", "Orchards"} <= facet_values(listing)

    found = client.get(LIST, {"q": "greengage"})
    assert [hit.case.slug for hit in found.context["results"].hits] == ["secret-orchard"]
    html = found.content.decode()
    assert '<span class="tag tag--muted">Draft</span>' in html

    detail = client.get("/cases/secret-orchard/")
    assert detail.status_code == 200
    assert '<span class="tag tag--muted">Draft</span>' in detail.content.decode()
    assert "Edit this case study" in detail.content.decode()


def test_publishing_a_draft_shows_it_to_everyone(client: Client, personas, draft) -> None:
    services.case_update(
        case=draft, by=personas.facilitator, version=draft.version, values={"published": True}
    )
    assert client.get("/cases/secret-orchard/").status_code == 200
    assert client.get(LIST).context["results"].total == 27
    assert "Draft</span>" not in client.get("/cases/secret-orchard/").content.decode()


# --- editor pages ---------------------------------------------------------------------------


@pytest.mark.parametrize("url", EDITOR_PAGES)
def test_editor_pages_send_anonymous_visitors_to_sign_in(client: Client, draft, url: str) -> None:
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


@pytest.mark.parametrize("url", EDITOR_PAGES)
def test_editor_pages_answer_404_to_non_facilitators(personas, draft, url: str) -> None:
    for who, client in clients(personas).items():
        if who == "anonymous":
            continue
        assert client.get(url).status_code == 404, (who, url)
        assert client.post(url, {"title": "x"}).status_code in (404, 405), (who, url)
    assert AuditEvent.objects.filter(action="access.denied").count() >= 3


def test_a_non_facilitator_post_changes_nothing(personas, draft) -> None:
    client = verified_client(personas.manager_a)
    before = list(CaseStudy.objects.order_by("pk").values_list())
    client.post(
        "/cases/new/",
        {"title": "Sneaky", "slug": "sneaky", "organisation": "O", "summary": "S", "evidence": "A"},
    )
    client.post(
        "/cases/plymouth-alliance/edit/",
        {"title": "Changed", "slug": "plymouth-alliance", "organisation": "O", "summary": "S"},
    )
    assert list(CaseStudy.objects.order_by("pk").values_list()) == before


@pytest.mark.parametrize("url", EDITOR_PAGES[:2] + EDITOR_PAGES[4:])
def test_editor_pages_open_for_a_facilitator(facilitator_client: Client, draft, url: str) -> None:
    assert facilitator_client.get(url).status_code == 200


def test_editing_a_missing_case_is_404_for_a_facilitator(facilitator_client: Client, draft) -> None:
    assert facilitator_client.get("/cases/no-such-case/edit/").status_code == 404


def test_the_list_shows_editor_links_only_to_facilitators(
    client: Client, facilitator_client: Client, personas, draft
) -> None:
    assert "Add a case study" not in client.get(LIST).content.decode()
    assert "Add a case study" not in verified_client(personas.manager_a).get(LIST).content.decode()
    html = facilitator_client.get(LIST).content.decode()
    assert 'href="/cases/new/"' in html
    assert 'href="/cases/library/import/"' in html


# --- a case page ----------------------------------------------------------------------------


def test_every_case_page_shows_its_evidence_grade_and_every_source(client: Client, library) -> None:
    for case in CaseStudy.objects.filter(published=True):
        response = client.get(f"/cases/{case.slug}/")
        assert response.status_code == 200, case.slug
        html = response.content.decode()
        assert f"Evidence grade {case.evidence}</strong>: " in html, case.slug
        assert f"</strong>: {escape(case.evidence_meaning)}</p>" in html
        assert case.sources, case.slug
        for url in case.sources:
            escaped = url.replace("&", "&amp;")
            assert f'<a href="{escaped}" rel="noopener noreferrer external">{escaped}</a>' in html
        for heading in ("Summary", "Facts", "Evidence and sources"):
            assert f">{heading}</h2>" in html, (case.slug, heading)


def test_unknown_facts_say_so(client: Client, library) -> None:
    make_case(slug="bare", title="Bare case", summary="Only a summary.", sources=[])
    html = client.get("/cases/bare/").content.decode()
    assert "Not known" in html
    assert "No source is recorded yet." in html


def test_a_case_page_is_in_ukrainian_when_the_reader_reads_ukrainian(
    client: Client, library
) -> None:
    case = CaseStudy.objects.exclude(summary_uk="").first()
    assert case is not None
    html = client.get(f"/cases/{case.slug}/", headers={"Accept-Language": "uk"}).content.decode()
    assert case.summary_uk.split("\n")[0][:40] in html
    assert 'lang="uk"' in html


@pytest.fixture
def cited(world, library) -> CaseStudy:
    case = CaseStudy.objects.get(slug="plymouth-alliance")
    reflection = reflection_add(
        cycle=world.cycle_a,
        by=world.personas.manager_a,
        author_role="manager",
        text="Plymouth's alliance shows how trust grows between providers.",
    )
    services.cite(case=case, by=world.personas.manager_a, reflection=reflection)
    # Citing twice is still one citation.
    services.cite(case=case, by=world.personas.manager_a, reflection=reflection)
    return case


def test_a_case_shows_the_cycles_citing_it_to_those_who_may_see_them(world, cited) -> None:
    p = world.personas
    cycle_link = f'href="/cycles/{world.cycle_a.public_id}/"'
    assert cited.citations.count() == 1
    for user in (p.manager_a, p.practitioner_a, p.facilitator, p.manager_b, p.outsider):
        html = verified_client(user).get("/cases/plymouth-alliance/").content.decode()
        may_see = access.cycles_for(user).filter(pk=world.cycle_a.pk).exists()
        assert (cycle_link in html) is may_see, user.username
        assert ("Hospital discharge" in html) is may_see, user.username
        if not may_see:
            assert "No learning cycle you can see cites this case yet." in html
    for user in (p.manager_a, p.practitioner_a, p.facilitator):
        assert access.cycles_for(user).filter(pk=world.cycle_a.pk).exists()
    assert not access.cycles_for(p.outsider).filter(pk=world.cycle_a.pk).exists()
    anonymous = Client().get("/cases/plymouth-alliance/").content.decode()
    assert "Hospital discharge" not in anonymous


def test_only_a_published_case_can_be_cited(world, draft) -> None:
    reflection = reflection_add(
        cycle=world.cycle_a, by=world.personas.manager_a, author_role="manager", text="Words."
    )
    with pytest.raises(Refused):
        services.cite(case=draft, by=world.personas.manager_a, reflection=reflection)
    with pytest.raises(Refused):
        services.cite(case=CaseStudy.objects.first(), by=world.personas.manager_a)  # type: ignore[arg-type]


def test_the_list_is_in_ukrainian_for_a_reader_of_ukrainian(client: Client, library) -> None:
    case = CaseStudy.objects.get(slug="plymouth-alliance")
    assert case.title_uk
    assert case.summary_uk
    uk = {"Accept-Language": "uk"}
    html = client.get(LIST, {"sector": case.sectors}, headers=uk).content.decode()
    assert f'lang="uk">{escape(case.title_uk)}</a>' in html
    assert escape(case.summary_uk)[:60] in html
    english = client.get(LIST, {"sector": case.sectors}, headers={"Accept-Language": "en"})
    assert f'lang="en">{escape(case.title)}</a>' in english.content.decode()


def test_a_search_in_ukrainian_finds_the_translated_case(client: Client, library) -> None:
    results = client.get(LIST, {"q": "бездомністю"}, headers={"Accept-Language": "uk"})
    assert "plymouth-alliance" in [hit.case.slug for hit in results.context["results"].hits]
    assert "<mark>бездомністю</mark>" in results.content.decode()
