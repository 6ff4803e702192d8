"""A learning cycle as people meet it in Debian's Chromium.

One partner's manager starts a cycle, maps the system, moves it on, logs an experiment,
reflects and records an adaptation; the facilitator reads it all; the other partner sees
nothing until the cycle is shared; an outsider never reaches it, page or htmx partial.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.conftest import assert_accessible
from tests.factories import PASSWORD, engagement_with, totp_code

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ENGAGEMENT = "Learning together"
TITLE = "Hospital discharge"
QUESTION = "What helps people settle at home after hospital?"
ACTORS = [
    ("District nurses", "Team or service", "High"),
    ("Families of patients", "Group or community", "Mixed"),
]
FACTOR = "Discharge happens late on Fridays."
NOTE = "We have mapped who is involved and agree on the factors; time to design together."
EXPERIMENT = "Discharge calls"
LEARNED = "People wanted a named person, not a service."
REFLECTION = "Families trust the district nurses more than they trust us."
ADAPTATION = "Every discharge letter now names one person to call."


# --- helpers --------------------------------------------------------------------------------


def sign_in(page: Page, username: str) -> None:
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def sign_in_with_code(page: Page, username: str, device) -> None:
    sign_in(page, username)
    expect(page.get_by_role("heading", name="Enter your sign-in code")).to_be_visible()
    page.get_by_label("Code").fill(totp_code(device))
    page.get_by_role("button", name="Continue").click()


@contextmanager
def another_person(
    browser, live_server, expected: tuple[str, ...] = ("status of 404",)
) -> Iterator[Page]:
    """A page in a browser context of its own (its own cookies), failing on script errors.

    Like the ``page`` fixture, except that Chromium's "status of 404" console message is
    allowed: a 404 is what these pages are asked for. A CSP violation or a script error is not.
    """
    context = browser.new_context(base_url=live_server.url, locale="en-GB")
    context.set_default_timeout(10_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "console",
        lambda msg: (
            errors.append(msg.text)
            if msg.type == "error" and not any(e in msg.text for e in expected)
            else None
        ),
    )
    try:
        yield page
    finally:
        context.close()
    assert not errors, f"browser reported errors: {errors}"


def open_add_form(page: Page, summary: str) -> Locator:
    """Open the <details> whose summary reads ``summary``; its form is inside."""
    details = page.locator("details").filter(has=page.locator("summary", has_text=summary))
    details.locator("summary").click()
    expect(details).to_have_attribute("open", "")
    return details


def expect_announcement(section: Locator, text: str) -> None:
    """After an htmx save the section is swapped and focus moves to what changed."""
    announcement = section.get_by_role("status")
    expect(announcement).to_have_text(text)
    expect(announcement).to_be_focused()


def expect_not_found(page: Page, url: str) -> None:
    response = page.goto(url)
    assert response is not None
    assert response.status == 404, f"{url} answered {response.status}"
    expect(page.get_by_role("heading", name="Page not found")).to_be_visible()


def go_to_engagement(page: Page) -> None:
    page.get_by_role("navigation", name="Your account").get_by_role(
        "link", name="Engagements"
    ).click()
    expect(page.get_by_role("heading", name="Your engagements")).to_be_visible()
    page.get_by_role("link", name=ENGAGEMENT).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(ENGAGEMENT)


# --- what manager A does --------------------------------------------------------------------


def start_a_cycle(page: Page) -> None:
    page.get_by_role("link", name="Start a learning cycle").click()
    expect(page.get_by_role("heading", name="Start a learning cycle")).to_be_visible()
    assert_accessible(page, "on the start-a-cycle form")
    page.get_by_label("Short name").fill(TITLE)
    page.get_by_label("Learning question").fill(QUESTION)
    page.get_by_label("System scale").select_option(label="Team")
    expect(page.get_by_label("Our organisation and the facilitators")).to_be_checked()
    page.get_by_role("button", name="Start cycle").click()

    expect(page.get_by_role("heading", level=1)).to_have_text(TITLE)
    expect(page.get_by_text("Cycle started. Begin by mapping the system.")).to_be_visible()
    expect(page.get_by_text(QUESTION)).to_be_visible()
    expect(page.locator(".facts")).to_contain_text("Our organisation and the facilitators")
    expect(page.locator("#map").get_by_text("No actors yet.")).to_be_visible()
    assert_accessible(page, "on a new cycle's page")


def map_the_system(page: Page) -> None:
    system_map = page.locator("#map")
    for name, kind, trust in ACTORS:
        form = open_add_form(page, "Add an actor")
        form.get_by_label("Name").fill(name)
        form.get_by_label("Kind").select_option(label=kind)
        form.get_by_label("Trust level").select_option(label=trust)
        form.get_by_role("button", name="Add actor").click()
        expect_announcement(system_map, "Actor added to the system map.")
        expect(system_map.get_by_role("listitem").filter(has_text=name)).to_contain_text(
            f"{kind} · trust: {trust}"
        )
        expect(page.get_by_role("img", name="System map diagram")).to_be_visible()
        assert_accessible(page, f"after adding the actor {name!r}")
    diagram = page.get_by_role("img", name="System map diagram")
    expect(diagram).to_have_accessible_name(
        re.compile(r"^System map diagram 2 actors are drawn around the learning question")
    )

    form = open_add_form(page, "Add a factor")
    form.get_by_label("Description").fill(FACTOR)
    form.get_by_label("Whose knowledge").fill("Front-line staff")
    form.get_by_role("button", name="Add factor").click()
    expect_announcement(system_map, "Factor added to the system map.")
    expect(system_map.get_by_role("listitem").filter(has_text=FACTOR)).to_contain_text(
        "known by: Front-line staff"
    )
    expect(diagram).to_be_visible()
    assert_accessible(page, "after adding a factor")


def move_to_co_design(page: Page) -> None:
    page.get_by_role("link", name="Move stage").click()
    expect(page.get_by_role("heading", name="Move to another stage")).to_be_visible()
    assert_accessible(page, "on the move-stage page")
    page.get_by_label("Move to stage").select_option(label="Co-design")
    page.get_by_label("Why now?").fill(NOTE)
    page.get_by_role("button", name="Move stage").click()

    expect(page.get_by_text("Moved to Co-design.")).to_be_visible()
    expect(page.locator("[aria-current=step]")).to_contain_text("Co-design")
    move = page.locator("#journal .timeline__item--move").filter(has_text="Stage move")
    expect(move).to_contain_text("Moved from Understand the system to Co-design")
    expect(move).to_contain_text(NOTE)
    assert_accessible(page, "on the cycle page after a stage move")


def log_an_experiment(page: Page) -> None:
    journal = page.locator("#journal")
    form = open_add_form(page, "Log an experiment")
    form.get_by_label("Name").fill(EXPERIMENT)
    form.get_by_label("System probe").check()
    form.get_by_label("Premise").fill("A call on the first evening at home helps people settle.")
    form.get_by_label("What happened").fill("We called forty people over six weeks.")
    form.get_by_label("What we learned").fill(LEARNED)
    form.get_by_label("What we will change").fill("Name a person in every letter.")
    form.get_by_role("button", name="Log experiment").click()

    expect_announcement(journal, "Experiment logged.")
    experiment = journal.locator(".timeline__item--experiment")
    expect(experiment.get_by_role("heading", name=EXPERIMENT)).to_be_visible()
    expect(experiment).to_contain_text("System probe")
    expect(experiment).to_contain_text(f"What we learned{LEARNED}")
    assert_accessible(page, "after logging an experiment")


def add_a_reflection(page: Page) -> None:
    journal = page.locator("#journal")
    # Sent empty first: the form comes back with its errors and focus on the summary.
    form = open_add_form(page, "Add a reflection")
    form.get_by_role("button", name="Add reflection").click()
    summary = journal.locator("[data-error-summary]")
    expect(summary).to_be_focused()
    expect(summary).to_contain_text("There is a problem")
    form = journal.locator("details[open]")
    expect(form.locator("summary")).to_have_text("Add a reflection")
    expect(form.get_by_label("Reflection")).to_have_attribute("aria-invalid", "true")
    assert_accessible(page, "on the reflection form with errors")

    form.get_by_label("Reflection").fill(REFLECTION)
    form.get_by_label("Systems").check()
    form.get_by_label("About an experiment").select_option(label=EXPERIMENT)
    form.get_by_role("button", name="Add reflection").click()

    expect_announcement(journal, "Reflection added.")
    reflection = journal.locator(".timeline__item--reflection")
    expect(reflection.locator(".reflection-text")).to_have_text(REFLECTION)
    expect(reflection).to_contain_text("during Co-design")
    expect(reflection).to_contain_text(f"About the experiment “{EXPERIMENT}”")
    assert_accessible(page, "after adding a reflection")


def record_an_adaptation(page: Page, author: str) -> None:
    journal = page.locator("#journal")
    form = open_add_form(page, "Record an adaptation")
    form.get_by_label("What we changed").fill(ADAPTATION)
    form.get_by_label("Because we learned").fill(LEARNED)
    form.get_by_label("Decided by").fill("The discharge team meeting")
    form.get_by_label(f"{author}: {REFLECTION}", exact=True).check()
    form.get_by_label(EXPERIMENT, exact=True).check()
    form.get_by_role("button", name="Record adaptation").click()

    expect_announcement(journal, "Adaptation recorded.")
    adaptation = journal.locator(".timeline__item--adaptation")
    expect(adaptation).to_contain_text(ADAPTATION)
    expect(adaptation).to_contain_text(f"Because we learned: {LEARNED}")
    expect(adaptation.get_by_role("link", name=f"reflection by {author}")).to_be_visible()
    expect(adaptation.get_by_role("link", name=f"experiment “{EXPERIMENT}”")).to_be_visible()
    assert_accessible(page, "after recording an adaptation")


def share_with_the_engagement(page: Page, cycle_url: str) -> None:
    page.goto(cycle_url)
    page.get_by_role("link", name="Edit cycle").click()
    expect(page.get_by_role("heading", name="Edit cycle")).to_be_visible()
    assert_accessible(page, "on the edit-cycle form")
    page.get_by_label("Everyone in the engagement").check()
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Cycle saved.")).to_be_visible()
    expect(page.locator(".facts")).to_contain_text("Everyone in the engagement")


def expect_the_whole_journal(page: Page) -> None:
    expect(page.get_by_role("heading", level=1)).to_have_text(TITLE)
    for name, _kind, _trust in ACTORS:
        expect(page.locator("#map").get_by_role("listitem").filter(has_text=name)).to_be_visible()
    journal = page.locator("#journal")
    expect(journal.locator(".timeline__item--move").filter(has_text=NOTE)).to_be_visible()
    expect(journal.get_by_role("heading", name=EXPERIMENT)).to_be_visible()
    expect(journal.locator(".reflection-text")).to_have_text(REFLECTION)
    expect(journal.locator(".timeline__item--adaptation")).to_contain_text(ADAPTATION)


# --- the walk -------------------------------------------------------------------------------


def test_a_cycle_from_start_to_adaptation_and_who_can_see_it(page, browser, live_server, personas):
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from engagements.models import LearningCycle, Reflection

    engagement = engagement_with(
        learning_partner=personas.learning_partner,
        facilitator=personas.facilitator,
        partners=[personas.org_a, personas.org_b],
    )

    # 1. Manager A starts a cycle and fills its journal.
    sign_in(page, "manager.a")
    expect(page.get_by_role("heading", name="Welcome")).to_be_visible()
    go_to_engagement(page)
    assert_accessible(page, "on the engagement page")
    start_a_cycle(page)
    cycle = LearningCycle.objects.get(title=TITLE)
    cycle_url = f"/cycles/{cycle.public_id}/"
    assert page.url.endswith(cycle_url)
    map_the_system(page)
    move_to_co_design(page)
    log_an_experiment(page)
    add_a_reflection(page)
    record_an_adaptation(page, author=personas.manager_a.get_full_name() or "manager.a")
    reflection = Reflection.objects.get(cycle=cycle)

    # 2. The facilitator, signed in with a code from their app, reads the whole journal.
    device = TOTPDevice.objects.get(user=personas.facilitator)
    with another_person(browser, live_server) as facilitator:
        sign_in_with_code(facilitator, "facilitator", device)
        expect(facilitator.get_by_role("heading", name="Welcome")).to_be_visible()
        go_to_engagement(facilitator)
        facilitator.get_by_role("link", name="See 1 learning cycle").click()
        expect(facilitator.get_by_role("heading", name="Learning cycles")).to_be_visible()
        assert_accessible(facilitator, "on the facilitator's cycle list")
        facilitator.get_by_role("link", name=TITLE).click()
        expect_the_whole_journal(facilitator)
        assert_accessible(facilitator, "on the cycle page as the facilitator")

    # 3. Manager B sees nothing while the cycle is private, and reads it once it is shared.
    with another_person(browser, live_server) as manager_b:
        sign_in(manager_b, "manager.b")
        expect(manager_b.get_by_role("heading", name="Welcome")).to_be_visible()
        go_to_engagement(manager_b)
        expect(manager_b.get_by_role("link", name="See 0 learning cycles")).to_be_visible()
        expect_not_found(manager_b, cycle_url)
        assert_accessible(manager_b, "on the not-found page")

        share_with_the_engagement(page, cycle_url)

        manager_b.goto("/")
        go_to_engagement(manager_b)
        manager_b.get_by_role("link", name="See 1 learning cycle").click()
        expect(manager_b.get_by_text("Shared with the engagement")).to_be_visible()
        manager_b.get_by_role("link", name=TITLE).click()
        assert manager_b.url.endswith(cycle_url)
        expect_the_whole_journal(manager_b)
        # They read another organisation's journal; they do not write in it.
        expect(manager_b.get_by_text("Add a reflection")).to_have_count(0)
        expect(manager_b.get_by_role("link", name="Move stage")).to_have_count(0)
        expect(manager_b.get_by_role("link", name="Edit cycle")).to_have_count(0)
        assert_accessible(manager_b, "on a shared cycle as another partner")

    # 4. An outsider gets "not found" everywhere: pages and htmx partials alike.
    with another_person(browser, live_server) as outsider:
        sign_in(outsider, "outsider")
        expect(outsider.get_by_role("heading", name="Welcome")).to_be_visible()
        partials = [
            f"/cycles/{cycle.public_id}/section/journal/",
            f"/records/reflection/{reflection.public_id}/edit/",
        ]
        pages = [
            cycle_url,
            f"/engagements/{engagement.public_id}/",
            f"/engagements/{engagement.public_id}/cycles/",
        ]
        for url in pages + partials:
            expect_not_found(outsider, url)
        for url in partials:
            response = outsider.request.get(url, headers={"HX-Request": "true"})
            assert response.status == 404, f"htmx {url} answered {response.status}"
            assert REFLECTION not in response.text()
            assert TITLE not in response.text()


def test_a_reflection_is_edited_inline_with_focus_where_it_is_needed(page, world):
    from engagements import services

    reflection = services.reflection_add(
        cycle=world.cycle_a,
        by=world.personas.manager_a,
        author_role="manager",
        text="First thoughts.",
    )
    sign_in(page, "manager.a")
    expect(page.get_by_role("heading", name="Welcome")).to_be_visible()
    page.goto(f"/cycles/{world.cycle_a.public_id}/")
    journal = page.locator("#journal")

    page.get_by_role("link", name="Edit your reflection").click()
    item = page.locator(f"#item-{reflection.public_id}")
    expect(item.get_by_role("form", name="Edit")).to_be_visible()
    expect(item.get_by_label("Reflection")).to_be_focused()
    assert_accessible(page, "on an inline edit form")

    item.get_by_label("Reflection").fill("")
    item.get_by_role("button", name="Save changes").click()
    expect(item.locator("[data-error-summary]")).to_be_focused()
    assert_accessible(page, "on an inline edit form with errors")

    item.get_by_label("Reflection").fill("Second thoughts.")
    item.get_by_role("button", name="Save changes").click()
    expect_announcement(journal, "Changes saved.")
    expect(journal.locator(".reflection-text")).to_have_text("Second thoughts.")


def test_a_session_that_ends_while_typing_keeps_the_text_and_says_why(browser, live_server, world):
    # The refused request's console line ("status of 401" or 403) is what this test provokes.
    with another_person(browser, live_server, expected=("status of 401", "Error Code 401")) as page:
        sign_in(page, "manager.a")
        page.goto(f"/cycles/{world.cycle_a.public_id}/")
        open_add_form(page, "Add a reflection")
        page.get_by_label("Reflection", exact=True).fill("Words I must not lose")
        # The session ends (signed out elsewhere, or expired) while the form is open.
        page.context.clear_cookies(name="sessionid")
        page.get_by_role("button", name="Add reflection").click()
        alert = page.locator("[data-htmx-failure]")
        expect(alert).to_contain_text("Your session has ended")
        expect(alert).to_be_focused()
        expect(page.get_by_label("Reflection", exact=True)).to_have_value("Words I must not lose")
        assert_accessible(page, "with the session-ended message")
