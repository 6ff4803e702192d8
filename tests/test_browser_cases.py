"""The case study library as people meet it in Debian's Chromium (issue 5, DESIGN.md §7).

A visitor searches with a typo and is shown the corrected results, narrows them by two facets
(htmx swaps the results in place, focus stays on the ticked box, and the address changes so it
can be shared), opens a case and reads its sources. A facilitator imports a CSV with one bad
row and reads the row-by-row report. axe finds nothing on any of these pages.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from cases.models import CaseStudy
from cases.seed import shipped_cases
from tests.factories import PASSWORD, totp_code

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

FOUND = re.compile(r"^\d+ case stud(y|ies) found$")
IMPORT_CSV = (
    "slug,organisation,evidence,title,summary,place,sources\n"
    "kirklees-kindness,Kirklees Kindness Network,C,Kindness in Kirklees,"
    "Neighbours check on each other.,Kirklees,https://example.org/kirklees\n"
    "bad-grade,Bad Grade Org,Z,Bad grade,A case with a grade that does not exist.,Leeds,\n"
    "plymouth-alliance,Plymouth Alliance,B,Plymouth City Council and the Plymouth Alliance,"
    "An alliance contract replaced 25 separate ones.,Plymouth,"
    "https://example.org/plymouth\n"
)


@pytest.fixture
def library(transactional_db) -> None:
    """The shipped library (a transactional test before this one may have flushed it)."""
    from cases import search

    for values in shipped_cases():
        CaseStudy.objects.update_or_create(slug=values["slug"], defaults=values)
    search.forget_vocabulary()


# --- helpers --------------------------------------------------------------------------------


def assert_axe_clean(page: Page, where: str) -> None:
    """axe-core finds no violation at all, whatever its impact."""
    from axe_playwright_python.sync_playwright import Axe

    violations = Axe().run(page).response["violations"]
    details = "\n".join(
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in violations
    )
    assert not violations, f"axe found problems {where}:\n{details}"


@contextmanager
def person(browser: Browser, live_server: Any) -> Iterator[Page]:
    """A page in a browser context of its own (its own cookies), failing on script errors."""
    context = browser.new_context(base_url=live_server.url, locale="en-GB")
    context.set_default_timeout(10_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    try:
        yield page
    finally:
        context.close()
    assert not errors, f"browser reported errors: {errors}"


def result_titles(page: Page) -> list[str]:
    return page.locator(".card__title a").all_inner_texts()


def found_status(page: Page) -> Locator:
    return page.locator("#case-library [role=status]")


def facet(page: Page, legend: str, label: re.Pattern[str]) -> Locator:
    return page.get_by_role("group", name=legend).get_by_label(label)


# --- a visitor ------------------------------------------------------------------------------


def test_search_with_a_typo_narrow_by_two_facets_and_read_a_case(
    page: Page, browser: Browser, live_server: Any, library: None
) -> None:
    page.goto("/cases/")
    expect(page.get_by_role("heading", name="Case study library", level=1)).to_be_visible()
    expect(found_status(page)).to_have_text("26 case studies found")
    assert_axe_clean(page, "on the library")

    # A typo: the results are for the correction, and the box keeps what was typed.
    page.evaluate("window.notReloaded = true")
    box = page.get_by_role("searchbox", name="Search")
    box.fill("helth")
    box.press("Enter")
    expect(page.get_by_text("Showing results for “health”.")).to_be_visible()
    expect(found_status(page)).to_have_text("6 case studies found")
    expect(page).to_have_url(re.compile(r"/cases/\?q=helth$"))
    expect(box).to_have_value("helth")
    assert page.evaluate("window.notReloaded") is True, "the search reloaded the page"
    expect(page.get_by_role("link", name="Search for “helth” instead")).to_be_visible()
    assert_axe_clean(page, "on corrected search results")

    # The first facet, ticked with the keyboard: htmx swaps the results, focus stays put.
    partnership = facet(page, "Type of organisation", re.compile(r"^partnership \(2\)$"))
    box_id = partnership.get_attribute("id")
    partnership.focus()
    page.keyboard.press("Space")
    expect(page).to_have_url(re.compile(r"organisation_type=partnership"))
    expect(found_status(page)).to_have_text("2 case studies found")
    ticked = page.locator(f"#{box_id}")
    expect(ticked).to_be_checked()
    expect(ticked).to_be_focused()
    assert page.evaluate("document.activeElement.id") == box_id

    # The second facet, ticked with a click: the counts beside it had already updated.
    grade_c = facet(page, "Evidence grade", re.compile(r"^C: .* \(2\)$"))
    grade_id = grade_c.get_attribute("id")
    grade_c.click()
    expect(page).to_have_url(re.compile(r"evidence=C"))
    expect(page.locator(f"#{grade_id}")).to_be_checked()
    expect(page.locator(f"#{grade_id}")).to_be_focused()
    assert page.evaluate("document.activeElement.id") == grade_id
    expect(found_status(page)).to_have_text("2 case studies found")
    assert page.evaluate("window.notReloaded") is True, "a facet reloaded the page"
    narrowed = result_titles(page)
    assert len(narrowed) == 2
    shared_url = page.url
    assert "q=helth" in shared_url
    assert_axe_clean(page, "on narrowed results")

    # The address is shareable: someone else opening it sees the same results and choices.
    with person(browser, live_server) as other:
        other.goto(shared_url)
        expect(found_status(other)).to_have_text("2 case studies found")
        assert result_titles(other) == narrowed
        expect(facet(other, "Type of organisation", re.compile(r"^partnership"))).to_be_checked()
        expect(facet(other, "Evidence grade", re.compile(r"^C: "))).to_be_checked()
        expect(other.get_by_role("searchbox", name="Search")).to_have_value("helth")
    page.reload()
    expect(found_status(page)).to_have_text("2 case studies found")
    assert result_titles(page) == narrowed

    # Back in history shows the results before the second facet.
    page.go_back()
    expect(found_status(page)).to_have_text("2 case studies found")
    expect(page).not_to_have_url(re.compile(r"evidence=C"))
    page.go_forward()
    expect(page).to_have_url(re.compile(r"evidence=C"))

    # Open a case and read its sources.
    first = narrowed[0]
    page.get_by_role("link", name=first, exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(first)
    case = CaseStudy.objects.get(title=first)
    sources = page.get_by_role("region", name="Evidence and sources")
    expect(sources).to_contain_text(f"Evidence grade {case.evidence}")
    assert case.sources
    for url in case.sources:
        expect(sources.get_by_role("link", name=url, exact=True)).to_have_attribute("href", url)
    expect(page.get_by_role("region", name="Facts")).to_contain_text(case.organisation)
    assert_axe_clean(page, "on a case page")


def test_a_near_miss_offers_did_you_mean(page: Page, library: None) -> None:
    page.goto("/cases/?q=Plymoth+or+Gateshead")
    expect(found_status(page)).to_have_text(FOUND)
    before = len(result_titles(page))
    assert before > 0
    expect(page.get_by_text("Did you mean:")).to_be_visible()
    assert_axe_clean(page, "with a did-you-mean")
    page.get_by_role("link", name="Plymouth or Gateshead").click()
    expect(page).to_have_url(re.compile(r"q=Plymouth\+or\+Gateshead"))
    expect(page.get_by_text("Did you mean:")).to_have_count(0)
    assert len(result_titles(page)) == before + 1
    expect(page.get_by_role("link", name=re.compile("Plymouth Alliance"))).to_be_visible()


# --- a facilitator --------------------------------------------------------------------------


def sign_in_with_code(page: Page, username: str, device: Any) -> None:
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Enter your sign-in code")).to_be_visible()
    page.get_by_label("Code").fill(totp_code(device))
    page.get_by_role("button", name="Continue").click()


def test_a_facilitator_imports_a_csv_with_one_bad_row(
    page: Page, personas: Any, library: None
) -> None:
    from django_otp.plugins.otp_totp.models import TOTPDevice

    device = TOTPDevice.objects.get(user=personas.facilitator)
    sign_in_with_code(page, "facilitator", device)
    page.goto("/cases/")
    page.get_by_role("link", name="Import or export the library").click()
    expect(
        page.get_by_role("heading", name="Import or export the library", level=1)
    ).to_be_visible()
    assert_axe_clean(page, "on the import page")

    page.get_by_label("Library file").set_input_files(
        {"name": "library.csv", "mimeType": "text/csv", "buffer": IMPORT_CSV.encode()}
    )
    page.get_by_role("button", name="Import").click()

    report = page.get_by_role("region", name="What the import did")
    expect(report).to_be_visible()
    expect(report.get_by_role("status")).to_have_text("3 rows read.")
    rows = report.get_by_role("table").locator("tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.nth(0)).to_contain_text("kirklees-kindness")
    expect(rows.nth(0)).to_contain_text("Created")
    expect(rows.nth(1)).to_contain_text("bad-grade")
    expect(rows.nth(1)).to_contain_text("Rejected")
    expect(rows.nth(1)).to_contain_text("Evidence grade: Select a valid choice. Z is not one")
    expect(rows.nth(2)).to_contain_text("plymouth-alliance")
    expect(rows.nth(2)).to_contain_text("Updated")
    assert_axe_clean(page, "on the import report")

    assert CaseStudy.objects.get(slug="kirklees-kindness").published is False
    assert not CaseStudy.objects.filter(slug="bad-grade").exists()
    assert CaseStudy.objects.get(slug="plymouth-alliance").sources == [
        "https://example.org/plymouth"
    ]

    # The new case is a draft: the facilitator sees it marked so.
    page.goto("/cases/?q=Kirklees")
    card = page.locator(".card").filter(has_text="Kindness in Kirklees")
    expect(card.get_by_text("Draft", exact=True)).to_be_visible()

    # A malformed file changes nothing and says so.
    page.goto("/cases/library/import/")
    page.get_by_label("Library file").set_input_files(
        {"name": "broken.json", "mimeType": "application/json", "buffer": b'[{"slug": '}
    )
    page.get_by_role("button", name="Import").click()
    summary = page.locator("[data-error-summary]")
    expect(summary).to_be_focused()
    expect(summary).to_contain_text("Nothing was imported.")
    assert_axe_clean(page, "on a refused import")
