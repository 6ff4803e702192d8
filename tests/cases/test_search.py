"""Searching the library: ranking, facet counts, typo tolerance and bad input (issue 5)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from cases import search
from tests.cases.conftest import make_case

pytestmark = pytest.mark.django_db

LIST = "/cases/"
HTMX = {"HX-Request": "true", "HX-Target": "case-library"}


def results_of(response: Any) -> search.Results:
    assert response.status_code == 200, response.status_code
    return response.context["results"]


def total_shown(response: Any) -> int:
    """The number the page (or the htmx part) says it found."""
    assert response.status_code == 200, response.status_code
    found = re.search(r"(\d+) case stud(?:y|ies) found", response.content.decode())
    assert found, "the page does not say how many cases it found"
    return int(found.group(1))


def slugs(response: Any) -> list[str]:
    return [hit.case.slug for hit in results_of(response).hits]


def facet_options(response: Any) -> list[tuple[str, str, int, bool]]:
    """Every (facet, value, count, chosen) the page shows beside a checkbox."""
    return [
        (facet["name"], option["value"], option["count"], option["chosen"])
        for facet in response.context["facets"]
        for option in facet["values"]
    ]


# --- ranking --------------------------------------------------------------------------------


def test_a_title_match_ranks_above_a_body_only_match(client: Client, library) -> None:
    # Alphabetically the body-only case comes first, so only the ranking can put it second.
    body = make_case(
        title="Allotments in Ashby",
        organisation="Ashby Growers",
        summary="Residents run the allotments together.",
        overview="Volunteers learned to keep quokkas out of the beds.",
    )
    title = make_case(
        title="Quokka care in Zetland",
        organisation="Zetland Trust",
        summary="A team that cares for animals.",
        overview="They changed how the service works.",
    )

    response = client.get(LIST, {"q": "quokka"})

    assert slugs(response) == [title.slug, body.slug]
    html = response.content.decode()
    assert html.index(f"/cases/{title.slug}/") < html.index(f"/cases/{body.slug}/")


def test_a_summary_match_ranks_above_a_story_match(client: Client, library) -> None:
    story = make_case(
        title="Aardvark street",
        summary="A neighbourhood project.",
        story_of_change="The wombat scheme grew slowly.",
    )
    summary = make_case(title="Zebra crossing", summary="A wombat scheme for the town.")

    assert slugs(client.get(LIST, {"q": "wombat"})) == [summary.slug, story.slug]


def test_matches_are_highlighted_and_case_text_is_escaped(client: Client, library) -> None:
    make_case(
        title="Escaping test",
        summary="<script>alert(1)</script> The kiwifruit cooperative shares its harvest.",
    )

    html = client.get(LIST, {"q": "kiwifruit"}).content.decode()

    assert "<mark>kiwifruit</mark>" in html
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


# --- facets ---------------------------------------------------------------------------------

FACETS = {"sector", "scale", "country", "organisation_type", "principle", "evidence"}


def check_counts(client: Client, params: dict[str, Any]) -> int:
    """Every value a facet offers, chosen on top of ``params``, gives exactly its count."""
    base = client.get(LIST, params)
    options = facet_options(base)
    assert {name for name, *_rest in options} == FACETS, "a facet shows no values"
    checked = 0
    for name, value, count, chosen in options:
        if chosen or name in params:
            continue
        response = client.get(LIST, {**params, name: value})
        total = results_of(response).total
        assert total == count, f"{name}={value!r} with {params}: shows {count}, gives {total}"
        assert len(response.context["results"].hits) == min(count, search.PAGE_SIZE)
        checked += 1
    return checked


def test_the_shipped_library_has_26_published_cases(client: Client, library) -> None:
    response = client.get(LIST)
    assert results_of(response).total == 26 == len(library)
    assert "26 case studies found" in response.content.decode()


def test_each_facet_count_is_the_number_of_results_it_gives(client: Client, library) -> None:
    assert check_counts(client, {}) > 30


def test_facet_counts_hold_for_a_search(client: Client, library) -> None:
    for query in ("council", "health", "learning system"):
        assert results_of(client.get(LIST, {"q": query})).total > 0, query
        assert check_counts(client, {"q": query}) > 0


def test_facet_counts_hold_with_other_facets_chosen(client: Client, library) -> None:
    assert check_counts(client, {"country": "United Kingdom"}) > 0
    assert check_counts(client, {"evidence": "C", "scale": "region"}) > 0
    principles = [v for n, v, *_ in facet_options(client.get(LIST)) if n == "principle"]
    assert check_counts(client, {"principle": principles[0]}) > 0


def test_counts_are_shown_beside_each_value(client: Client, library) -> None:
    response = client.get(LIST)
    html = response.content.decode()
    for _name, _value, count, _chosen in facet_options(response):
        assert f'<span class="facet__count">({count})</span>' in html
    assert 'name="scale" value="local"' in html


def test_two_values_of_a_facet_are_alternatives(client: Client, library) -> None:
    options = {(n, v): c for n, v, c, _ in facet_options(client.get(LIST))}
    local, national = options[("scale", "local")], options[("scale", "national")]
    both = results_of(client.get(LIST, {"scale": ["local", "national"]}))
    assert both.total == local + national
    response = client.get(LIST, {"scale": ["local", "national"]})
    shown = {(n, v): (c, chosen) for n, v, c, chosen in facet_options(response)}
    # A facet's own choices do not narrow its counts; both values show as chosen.
    assert shown[("scale", "local")] == (local, True)
    assert shown[("scale", "national")] == (national, True)
    assert shown[("scale", "region")][0] == options[("scale", "region")]


def test_array_facets_count_each_case_once(client: Client, library) -> None:
    """A case listing a sector or principle twice is still one result."""
    make_case(title="Doubled", sectors=["Orchards", "Orchards"], principles=["learning"] * 2)
    response = client.get(LIST, {"q": "Doubled"})
    shown = {(n, v): c for n, v, c, _ in facet_options(response)}
    assert shown[("sector", "Orchards")] == 1
    assert results_of(client.get(LIST, {"sector": "Orchards"})).total == 1


def test_a_chosen_value_with_no_results_left_stays_to_untick(client: Client, library) -> None:
    response = client.get(LIST, {"country": "Finland", "scale": "region"})
    shown = {(n, v): (c, chosen) for n, v, c, chosen in facet_options(response)}
    assert results_of(response).total == 0
    assert shown[("country", "Finland")] == (0, True)
    assert shown[("scale", "region")][1] is True


def test_the_htmx_update_returns_the_library_part_only(client: Client, library) -> None:
    response = client.get(LIST, {"scale": "national"}, headers=HTMX)
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith('<div id="case-library"')
    assert "<html" not in html
    counts = {(n, v): c for n, v, c, _ in facet_options(client.get(LIST))}
    assert total_shown(response) == counts[("scale", "national")]
    assert 'name="scale" value="national" checked' in html


def test_a_search_address_is_shareable(client: Client, library) -> None:
    params = {"q": "learning", "country": "United Kingdom", "evidence": "C"}
    first = client.get(LIST, params)
    again = Client().get(LIST, params)  # someone else opening the shared address
    assert slugs(first) == slugs(again)
    assert results_of(first).total == results_of(again).total > 0


# --- "did you mean" -------------------------------------------------------------------------


def test_a_typo_finds_plymouth_and_says_so(client: Client, library) -> None:
    response = client.get(LIST, {"q": "Plymoth"})
    results = results_of(response)
    assert "plymouth-alliance" in slugs(response)
    assert results.corrected_from == "Plymoth"
    assert results.searched == "Plymouth"
    html = response.content.decode()
    assert "Showing results for “Plymouth”." in html
    assert 'value="Plymoth"' in html  # the search box keeps what was typed


def test_search_for_the_typo_instead_is_not_corrected_again(client: Client, library) -> None:
    response = client.get(LIST, {"q": "Plymoth"})
    original = response.context["original_url"]
    again = client.get(LIST + original)
    results = results_of(again)
    assert results.corrected_from == ""
    assert results.searched == "Plymoth"
    assert results.total == 0
    assert results.suggestion == "Plymouth"


def test_a_near_miss_with_results_gets_did_you_mean(client: Client, library) -> None:
    response = client.get(LIST, {"q": "Plymoth or Gateshead"})
    results = results_of(response)
    assert "gateshead-council" in slugs(response)
    assert results.corrected_from == ""
    assert results.suggestion == "Plymouth or Gateshead"
    html = response.content.decode()
    assert "Did you mean:" in html
    link = response.context["suggestion_url"]
    assert "q=Plymouth+or+Gateshead" in link
    assert 'href="' + link.replace("&", "&amp;") + '"' in html
    followed = results_of(client.get(LIST + link))
    assert followed.total > results.total
    assert followed.suggestion == ""


def test_a_word_that_only_differs_by_its_ending_is_not_a_typo(client: Client, library) -> None:
    """'councils' finds the council cases; offering 'council' would change nothing."""
    results = results_of(client.get(LIST, {"q": "councils"}))
    assert results.total > 0
    assert results.suggestion == ""


def test_did_you_mean_keeps_the_chosen_facets(client: Client, library) -> None:
    response = client.get(LIST, {"q": "Plymoth or Gateshead", "country": "United Kingdom"})
    assert "country=United+Kingdom" in response.context["suggestion_url"]


def test_known_words_are_not_corrected(client: Client, library) -> None:
    assert search.suggest("Plymouth homelessness") == ""
    assert search.suggest("Plymoth homelessnes") == "Plymouth homelessness"


# --- bad input ------------------------------------------------------------------------------

BAD_QUERIES = [
    '"',
    "'",
    '"unbalanced quote',
    "it's",
    "&",
    "|",
    "!",
    ":*",
    "plym:*",
    "a & b | !c",
    "!!!(health",
    "<->",
    "health <-> learning",
    "(",
    "))",
    "-",
    "- -",
    "or",
    "OR OR",
    "the",
    "\\",
    "%",
    "%s %(name)s",
    "'; DROP TABLE cases_casestudy; --",
    "x" * 10_000,
    "health " * 2_000,
    "?!.,;:-()[]{}",
    "   ",
    "\x00",
    "Ply\x00mouth",
    "\u202eevil\u202c",
    "\u2067Plymouth\u2069",
    "\u200b",
    "Пошук здоров'я",
    "საქართველო",
    "😀",
    "e\u0301",
]


@pytest.mark.parametrize("query", BAD_QUERIES, ids=range(len(BAD_QUERIES)))
@pytest.mark.parametrize("htmx", [False, True], ids=["page", "htmx"])
def test_any_search_string_answers_200(client: Client, library, query: str, htmx: bool) -> None:
    response = client.get(LIST, {"q": query}, headers=HTMX if htmx else {})
    assert total_shown(response) <= 26
    assert ("<html" in response.content.decode()) is not htmx
    assert "\x00" not in response.content.decode()


BAD_PARAMS: list[dict[str, Any]] = [
    {"sector": "No such sector"},
    {"principle": "nonsense"},
    {"evidence": "Z"},
    {"scale": "x" * 10_000},
    {"country": "\x00"},
    {"country": ["United Kingdom"] * 50},
    {"organisation_type": ["a", "b", "c", "charity"]},
    {"sector": "\u202eHealth"},
    {"unknown_facet": "value"},
    {"page": "abc"},
    {"page": ""},
    {"page": "-3"},
    {"page": "0"},
    {"page": "1.5"},
    {"page": "1e9"},
    {"page": "9" * 50},
    {"page": "99999"},
    {"page": ["1", "2"]},
    {"q": ["health", "learning"]},
    {"q": "health", "page": "999999999999999999999999", "evidence": "\x00A"},
]


@pytest.mark.parametrize("params", BAD_PARAMS, ids=range(len(BAD_PARAMS)))
@pytest.mark.parametrize("htmx", [False, True], ids=["page", "htmx"])
def test_bad_filters_and_pages_answer_200(
    client: Client, library, params: dict[str, Any], htmx: bool
) -> None:
    response = client.get(LIST, params, headers=HTMX if htmx else {})
    assert total_shown(response) <= 26
    if not htmx:
        results = results_of(response)
        assert 1 <= results.page <= results.pages


def test_an_unknown_facet_value_gives_no_results(client: Client, library) -> None:
    assert results_of(client.get(LIST, {"sector": "No such sector"})).total == 0


def test_a_page_past_the_end_shows_the_last_page(client: Client, library) -> None:
    for _ in range(search.PAGE_SIZE):
        make_case(title=f"Filler {_:02d}", summary="Filler for paging.")
    response = client.get(LIST, {"page": "99999"})
    results = results_of(response)
    assert results.pages == 3
    assert results.page == 3
    assert len(results.hits) == 26 + search.PAGE_SIZE - 2 * search.PAGE_SIZE


def test_the_search_box_strips_control_characters(client: Client, library) -> None:
    response = client.get(LIST, {"q": "\u202ePly\x00mouth\u202c"})
    assert results_of(response).searched == "Ply mouth"


def test_a_bad_method_is_refused(client: Client, library) -> None:
    assert client.post(LIST, {"q": "x"}).status_code == 405


def test_the_page_and_its_htmx_part_vary_by_htmx_headers(client: Client, library) -> None:
    for headers in ({}, HTMX):
        vary = client.get(LIST, headers=headers)["Vary"]
        assert "HX-Request" in vary
        assert "HX-Target" in vary
