"""Resident links as people meet them in Debian's Chromium (issue 4, DESIGN.md §5).

A manager makes a link and copies it; a resident opens it on a phone, is told who reads their
words, sends a reflection and keeps the receipt code; the manager approves it and the team
records what changed; later the resident reads that change with the code, downloads their
words and withdraws them. Another resident does it all with the keyboard alone. A closed or
unknown link answers with the same plain words. axe checks every page on the way.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from tests.conftest import assert_accessible
from tests.factories import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

QUESTION = "What helps people settle at home after hospital?"
LABEL = "Tenants meeting, March"
WORDS = "The bus to the clinic stopped running, so my neighbour walks there in the rain."
ADAPTATION = "A volunteer driver now takes people to the clinic on Tuesdays."
RECEIPT = re.compile(r"^[A-Z2-7]{4}-[A-Z2-7]{4}-[A-Z2-7]{4}-[A-Z2-7]{4}$")
PHONE: dict[str, Any] = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 3,
    "is_mobile": True,
    "has_touch": True,
    "locale": "uk-UA",
}
CLOSED = ("status of 404", "status of 410")


# --- helpers --------------------------------------------------------------------------------


@contextmanager
def person(
    browser: Browser, live_server: Any, *, expected: tuple[str, ...] = (), **options: Any
) -> Iterator[Page]:
    """A page in a browser context of its own (cookies, storage, device), failing on errors.

    Like ``another_person`` in test_browser_cycles.py, with the device and language given as
    context options. Chromium logs a console error for a 4xx page; only the statuses named in
    ``expected`` are allowed, a CSP violation or a script error never is.
    """
    context = browser.new_context(base_url=live_server.url, **{"locale": "en-GB", **options})
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


def sign_in(page: Page, username: str) -> None:
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Welcome")).to_be_visible()


def expect_no_sideways_scroll(page: Page, where: str) -> None:
    width = page.viewport_size["width"] if page.viewport_size else 0
    scroll = page.evaluate("document.documentElement.scrollWidth")
    assert scroll <= width, f"{where}: the page is {scroll}px wide at a {width}px viewport"


def expect_error_summary(page: Page, *messages: str) -> Locator:
    summary = page.locator("[data-error-summary]")
    expect(summary).to_be_focused()
    for message in messages:
        expect(summary).to_contain_text(message)
    assert page.title().startswith(("Error:", "Помилка:"))
    return summary


def tab_to(page: Page, target: Locator, limit: int = 40) -> None:
    """Press Tab (only Tab) until ``target`` has focus, as a keyboard user would."""
    for _ in range(limit):
        if target.evaluate("el => el === document.activeElement"):
            return
        page.keyboard.press("Tab")
    assert target.evaluate("el => el === document.activeElement"), (
        f"{limit} presses of Tab never reached {target}"
    )


STEPS = (
    "Your reflection",
    "A little more, if you want",
    "Your name",
    "Agreement",
    "Hearing back (optional)",
)


def step_headings(page: Page) -> Locator:
    return page.locator("form[data-keep-draft] h2")


def next_step(page: Page, step: int, *, name: str = "Next") -> None:
    """Press the one Next button on screen; the next step's heading then has focus."""
    page.get_by_role("button", name=name, exact=True).click()
    expect_on_step(page, step)


def expect_on_step(page: Page, step: int) -> None:
    """Only step ``step`` (counted from 1) shows, its heading focused, with "Step n of 5"."""
    heading = page.get_by_role("heading", name=STEPS[step - 1], level=2)
    expect(heading).to_be_focused()
    for other in STEPS:
        if other != STEPS[step - 1]:
            expect(page.get_by_role("heading", name=other, level=2)).to_be_hidden()
    expect(page.locator(".form-step__progress:visible")).to_have_text(f"Step {step} of 5")
    expect(heading).to_have_accessible_description(f"Step {step} of 5")


def expect_every_step_shown(page: Page) -> None:
    """No stepping: all five groups and the send button at once, no Next or Back."""
    for heading in STEPS:
        expect(page.get_by_role("heading", name=heading, level=2)).to_be_visible()
    expect(page.locator(".form-step__nav button[type=button]")).to_have_count(0)
    expect(page.locator(".form-step__progress")).to_have_count(0)
    expect(page.locator("button[type=submit].button")).to_be_visible()


def to_the_last_step(page: Page) -> None:
    """Press Next (in whatever language) until the send button shows."""
    for _ in range(len(STEPS) - 1):
        page.locator(
            ".form-step:visible .form-step__nav button[type=button]:not(.button--secondary)"
        ).click()
    expect(page.locator("button[type=submit].button")).to_be_visible()


def resident_link(world: Any, **options: Any) -> tuple[Any, str]:
    from engagements import residents

    return residents.link_create(
        cycle=world.cycle_a, by=world.personas.manager_a, label=LABEL, **options
    )


def the_reflection() -> Any:
    from engagements.models import Reflection

    return Reflection.objects.get(author_role=Reflection.AuthorRole.RESIDENT)


# --- what the manager does ------------------------------------------------------------------


def make_a_link(page: Page, cycle: Any) -> tuple[Locator, str]:
    """Manager A makes a held link from the cycle page; returns its section and the URL."""
    page.goto(f"/cycles/{cycle.public_id}/")
    page.get_by_role("link", name="Resident links").click()
    expect(page.get_by_role("heading", name="Resident links", level=1)).to_be_visible()
    page.get_by_label("Label").fill(LABEL)
    page.get_by_label("Works for (days)").fill("14")
    page.get_by_label("Hold each reflection for review").check()
    page.get_by_role("button", name="Make link").click()

    new = page.locator("section.new-link")
    expect(new.get_by_role("heading", name=f"Your new link: {LABEL}")).to_be_visible()
    url_box = new.get_by_label("Link", exact=True)
    expect(url_box).to_have_attribute("readonly", "")
    url = url_box.input_value()
    assert re.fullmatch(r"http://localhost:\d+/r/[A-Za-z0-9_-]{43}", url), url
    return new, url


def approve_it(page: Page) -> None:
    page.get_by_role("navigation", name="Your account").get_by_role(
        "link", name="To review"
    ).click()
    expect(page.get_by_role("heading", name="Resident reflections to review")).to_be_visible()
    held = page.locator(".moderation-item")
    expect(held).to_have_count(1)
    expect(held.locator(".reflection-text")).to_have_text(WORDS)
    expect(held).to_contain_text("Hospital discharge · Organisation A")
    expect(page.get_by_text("Nothing moderated yet.")).to_be_visible()
    assert_accessible(page, "on the moderation queue")

    held.get_by_role("button", name="Approve reflection 1").click()
    expect(page.get_by_text("Done. The log below records it.")).to_be_visible()
    expect(page.get_by_text("Nothing waiting for review.")).to_be_visible()
    expect(page.locator("main")).to_contain_text("Approved · Hospital discharge")
    assert_accessible(page, "on the moderation queue after approving")


# --- what the resident does -----------------------------------------------------------------


def reflect_on_a_phone(phone: Page, url: str) -> str:
    """Open the link, send once without consent, then properly; returns the receipt code."""
    token = url.rsplit("/", 1)[1]
    response = phone.goto(url)
    assert response is not None
    assert response.status == 200
    # The token leaves the address bar (and the history) at once.
    assert phone.url.endswith("/r/"), phone.url
    assert token not in phone.url
    # No referrer leaves the page (DESIGN.md §5); the form still posts (Sec-Fetch-Site).
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "noindex" in response.headers["x-robots-tag"]
    assert "no-store" in response.headers["cache-control"]

    # The phone asks for Ukrainian, but the engagement's language (English) comes first.
    expect(phone.locator("html")).to_have_attribute("lang", "en")
    expect(phone.get_by_role("heading", name="Share your reflection", level=1)).to_be_visible()
    expect(phone.locator(".resident__about .question")).to_have_text(QUESTION)
    about = phone.locator(".resident__about")
    expect(about).to_contain_text("Organisation A is trying to learn:")
    expect(about).to_contain_text(
        "Who reads what you write: the people at Organisation A working on this, and "
        "Learning Partner, who help them learn."
    )
    expect(about).to_contain_text("Someone reads each reflection before it is shared")
    expect(phone.get_by_label("Anonymously: no name")).to_be_checked()
    expect(phone.get_by_label("I agree to my reflection being used")).not_to_be_checked()
    expect(phone.get_by_label("Email me when the team has news")).not_to_be_checked()
    expect_no_sideways_scroll(phone, "the resident form")
    assert_accessible(phone, "on the resident form at 390px")

    words = phone.get_by_label("Your reflection")
    count = phone.locator(".charcount")
    expect(count).to_have_text("5000 characters left")
    words.tap()
    words.press_sequentially(WORDS[:20])
    expect(count).to_have_text(f"{5000 - 20} characters left")
    words.fill(WORDS)
    expect(count).to_have_text(f"{5000 - len(WORDS)} characters left")

    # One thing per screen: Next, the choices, then on past the name and the agreement.
    next_step(phone, 2)
    assert_accessible(phone, "on the second step of the resident form")
    phone.get_by_label("Better", exact=True).tap()
    phone.get_by_label("Hopeful").tap()
    phone.get_by_label("Systems: how services and places fit together").tap()
    next_step(phone, 3)
    next_step(phone, 4)
    next_step(phone, 5)

    # Sent without consent: the errors come first, and nothing typed or chosen is lost. Every
    # group shows at once, so each error can be seen.
    phone.get_by_role("button", name="Send my reflection").tap()
    summary = expect_error_summary(phone, "Tick the box to agree")
    expect_every_step_shown(phone)
    expect(summary.get_by_role("link")).to_have_attribute("href", "#id_consent")
    consent = phone.get_by_label("I agree to my reflection being used")
    expect(consent).to_have_attribute("aria-invalid", "true")
    expect(phone.get_by_label("Your reflection")).to_have_value(WORDS)
    expect(count).to_have_text(f"{5000 - len(WORDS)} characters left")
    expect(phone.get_by_label("Better", exact=True)).to_be_checked()
    expect(phone.get_by_label("Hopeful")).to_be_checked()
    expect(phone.get_by_label("Systems: how services and places fit together")).to_be_checked()
    expect(phone.get_by_label("Anonymously: no name")).to_be_checked()
    expect_no_sideways_scroll(phone, "the resident form with errors")
    assert_accessible(phone, "on the resident form with errors")

    consent.tap()
    phone.get_by_role("button", name="Send my reflection").tap()
    expect(phone.get_by_role("heading", name="Thank you: your reflection is saved")).to_be_visible()
    expect(phone.get_by_text("Someone will read it before it is shared")).to_be_visible()
    code = phone.locator("#receipt-code").inner_text().strip()
    assert RECEIPT.fullmatch(code), code
    expect(phone.get_by_text("this is the only time we show it")).to_be_visible()
    assert phone.url.endswith("/r/")
    expect_no_sideways_scroll(phone, "the thank-you page")
    assert_accessible(phone, "on the thank-you page")

    # On a shared phone, the next person opening the form finds none of these words.
    phone.goto("/r/")
    expect(phone.get_by_label("Your reflection")).to_have_value("")
    return code


def read_change_download_and_withdraw(resident: Page, code: str) -> None:
    resident.goto("/r/receipt/")
    expect(resident.get_by_role("heading", name="Use your receipt code")).to_be_visible()
    assert_accessible(resident, "on the receipt-code page")
    # Typed as people copy it from a screen: lower case, spaces for dashes.
    resident.get_by_label("Receipt code").fill(code.lower().replace("-", " "))
    resident.get_by_role("button", name="Continue").click()

    expect(resident.get_by_role("heading", name="Your reflection", level=1)).to_be_visible()
    assert resident.url.endswith("/r/receipt/yours/")
    expect(resident.locator(".question")).to_have_text(QUESTION)
    expect(resident.locator(".resident__words")).to_have_text(WORDS)
    expect(resident.get_by_text("Shared with the team.")).to_be_visible()
    changed = resident.get_by_role("heading", name="What the team changed since")
    expect(changed).to_be_visible()
    expect(resident.get_by_role("listitem").filter(has_text=ADAPTATION)).to_contain_text("In place")
    expect_no_sideways_scroll(resident, "the receipt view")
    assert_accessible(resident, "on the receipt view")

    with resident.expect_download() as download_info:
        resident.get_by_role("link", name="Download as JSON").click()
    download = download_info.value
    assert download.suggested_filename == "my-reflection.json"
    data = json.loads(Path(download.path()).read_text(encoding="utf-8"))
    assert data["reflection"] == WORDS
    assert data["learning_question"] == QUESTION
    assert data["shown_as"] == "Anonymous"
    assert data["better_or_worse"] == "Better"
    assert data["feeling"] == "Hopeful"
    assert data["principles"] == ["systems"]
    assert data["follow_up_email"] is None
    assert data["status"] == "Published"

    with resident.expect_download() as download_info:
        resident.get_by_role("link", name="Download as text").click()
    text = Path(download_info.value.path()).read_text(encoding="utf-8")
    assert text.startswith(WORDS + "\n\n")

    resident.get_by_role("link", name="Withdraw my reflection").click()
    expect(resident.get_by_role("heading", name="Withdraw your reflection?")).to_be_visible()
    expect(resident.get_by_text("Your words will be deleted for good.")).to_be_visible()
    assert_accessible(resident, "on the withdraw confirmation")
    # "No, keep it" goes back and keeps it.
    resident.get_by_role("link", name="No, keep it").click()
    expect(resident.locator(".resident__words")).to_have_text(WORDS)
    resident.get_by_role("link", name="Withdraw my reflection").click()
    resident.get_by_role("button", name="Yes, delete my reflection").click()
    expect(resident.get_by_role("heading", name="Your reflection is deleted")).to_be_visible()
    expect(
        resident.get_by_text("We deleted your words. Thank you for taking part.")
    ).to_be_visible()
    assert_accessible(resident, "on the withdrawn page")

    # The receipt view is gone with it, and the code no longer opens anything.
    resident.goto("/r/receipt/yours/")
    assert resident.url.endswith("/r/receipt/")
    resident.get_by_label("Receipt code").fill(code)
    resident.get_by_role("button", name="Continue").click()
    expect_error_summary(resident, "We found nothing sent with this code.")
    expect(resident.get_by_label("Receipt code")).to_have_attribute("aria-invalid", "true")
    assert_accessible(resident, "on the receipt-code page with an unknown code")


# --- the walks ------------------------------------------------------------------------------


def test_a_manager_makes_a_resident_link_and_copies_it(page, live_server, world, settings):
    settings.SITE_URL = live_server.url  # the link shown must open this server
    sign_in(page, "manager.a")
    page.goto(f"/cycles/{world.cycle_a.public_id}/")
    page.get_by_role("link", name="Resident links").click()
    expect(page.get_by_text("No resident links yet.")).to_be_visible()
    expect(page.get_by_label("Works for (days)")).to_have_value("30")
    page.get_by_role("button", name="Make link").click()  # nothing filled in: errors first
    expect_error_summary(page, "This field is required.")
    expect(page.get_by_label("Label")).to_have_attribute("aria-invalid", "true")
    assert_accessible(page, "on the resident-links form with errors")

    new, url = make_a_link(page, world.cycle_a)
    expect(new).to_contain_text("Copy it now")
    expect(new).to_contain_text("it cannot be shown again")

    # The QR code is an inline SVG drawn on this page, not an image from elsewhere.
    qr = new.locator(".qr svg")
    expect(qr).to_be_visible()
    expect(qr.locator("title")).to_have_text("QR code of the link")
    assert qr.locator("path").count() >= 1

    # What anyone holding the link can do, in plain words.
    expect(new.get_by_role("heading", name="What anyone holding this link can do")).to_be_visible()
    can_do = new.get_by_role("list")
    expect(can_do).to_contain_text(f"Read the cycle’s learning question (“{QUESTION}”)")
    expect(can_do).to_contain_text("Add reflections, anonymously or with a first name")
    expect(can_do).to_contain_text("Their reflections wait for review before the team sees them.")
    expect(can_do).to_contain_text("They cannot read anyone else’s reflections")

    row = page.get_by_role("table").get_by_role("row").filter(has_text=LABEL)
    expect(row).to_contain_text("Hold each reflection for review")
    expect(row).to_contain_text(f"{url.rsplit('/', 1)[1][:6]}…")
    expect(row).to_contain_text("Open until")
    assert_accessible(page, "on the resident-links page with a new link")

    # The copy button puts the whole link on the clipboard and says so (politely announced).
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    copy = new.get_by_role("button", name="Copy link")
    copy.click()
    status = new.locator(".copy-status")
    expect(status).to_have_text("Copied")
    expect(status).to_have_attribute("aria-live", "polite")
    assert page.evaluate("navigator.clipboard.readText()") == url
    # Checked as the person sees it: the pointer still resting on the button just pressed.
    assert_accessible(page, "on the resident-links page after copying the link")

    # The token is shown once: the page opened again has only its prefix.
    page.goto(page.url)
    expect(page.locator("section.new-link")).to_have_count(0)
    assert url.rsplit("/", 1)[1] not in page.content()


def test_a_resident_link_from_making_it_to_withdrawing_a_reflection(
    page, browser, live_server, world, settings
):
    from engagements import services
    from engagements.models import Adaptation, AuditEvent, ModerationEvent, Reflection

    settings.SITE_URL = live_server.url  # the link shown must open this server

    # 1. Manager A makes a link that holds each reflection for review.
    sign_in(page, "manager.a")
    _new, url = make_a_link(page, world.cycle_a)

    # 2. A resident opens it on a phone set to Ukrainian and sends a reflection.
    with person(browser, live_server, **PHONE) as phone:
        code = reflect_on_a_phone(phone, url)
    reflection = the_reflection()
    assert reflection.text == WORDS
    assert reflection.moderation == Reflection.Moderation.HELD
    assert reflection.identity == Reflection.Identity.ANONYMOUS
    assert reflection.first_name == ""
    assert reflection.author is None
    assert (reflection.better_or_worse, reflection.feeling) == ("better", "hopeful")
    assert reflection.language == "en"
    assert reflection.receipt_hash not in (code, "")

    # Until it is approved the journal does not show it to other readers.
    page.goto(f"/cycles/{world.cycle_a.public_id}/")
    expect(page.locator("#journal .reflection-text").filter(has_text=WORDS)).to_have_count(0)

    # 3. The manager approves it from "To review", and the team records what changed.
    approve_it(page)
    assert ModerationEvent.objects.get().action == "approve"
    page.goto(f"/cycles/{world.cycle_a.public_id}/")
    published = page.locator("#journal .timeline__item--reflection").filter(has_text=WORDS)
    expect(published).to_contain_text("A resident (Resident)")
    services.adaptation_record(
        cycle=world.cycle_a,
        by=world.personas.manager_a,
        reflections=[reflection],
        what_changed=ADAPTATION,
        because="Residents told us the bus had stopped.",
        decided_by="The discharge team meeting",
        decided_on=date.today(),
        status=Adaptation.Status.IN_PLACE,
    )

    # 4. Later, in a fresh browser, the resident uses the receipt code, then withdraws.
    with person(browser, live_server, **{**PHONE, "locale": "en-GB"}) as later:
        read_change_download_and_withdraw(later, code)
    assert not Reflection.objects.filter(pk=reflection.pk).exists()
    withdrawn = AuditEvent.objects.get(action="resident.reflection_withdrawn")
    assert withdrawn.actor is None
    assert "bus" not in json.dumps(withdrawn.detail)
    # The log keeps who did what, without the words.
    assert ModerationEvent.objects.get().reflection is None


def test_a_resident_completes_the_form_with_the_keyboard_alone(browser, live_server, world):
    from engagements.models import SharedLink

    _link, token = resident_link(world, moderation_mode=SharedLink.ModerationMode.PUBLISH)
    with person(browser, live_server) as page:
        page.goto(f"/r/{token}")
        expect(page.get_by_role("heading", name="Share your reflection")).to_be_visible()
        keys = page.keyboard

        # The skip link comes first and lands in the page's main content.
        keys.press("Tab")
        expect(page.get_by_role("link", name="Skip to main content")).to_be_focused()
        keys.press("Enter")
        expect(page.locator("main")).to_be_focused()

        tab_to(page, page.get_by_label("Your reflection"))
        keys.type("Typed with the keyboard alone.")
        expect(page.locator(".charcount")).to_have_text(
            f"{5000 - len('Typed with the keyboard alone.')} characters left"
        )
        # One thing per screen: Next moves focus to the next step's heading.
        next_button = page.get_by_role("button", name="Next", exact=True)
        tab_to(page, next_button)
        keys.press("Enter")
        expect_on_step(page, 2)

        # A radio group is one Tab stop; the arrow keys choose inside it.
        tab_to(page, page.get_by_label("I would rather not say").first)
        keys.press("ArrowDown")
        expect(page.get_by_label("Better", exact=True)).to_be_checked()
        tab_to(page, page.get_by_label("Human: how people are treated and supported"))
        keys.press("Space")
        expect(page.get_by_label("Human: how people are treated and supported")).to_be_checked()
        tab_to(page, next_button)
        keys.press("Enter")
        expect_on_step(page, 3)

        # Choosing a first name; Enter in the name box goes on rather than sending.
        tab_to(page, page.get_by_label("Anonymously: no name"))
        keys.press("ArrowDown")
        expect(page.get_by_label("With my first name")).to_be_checked()
        tab_to(page, page.get_by_label("Your first name"))
        keys.type("Olena")
        keys.press("Enter")
        expect_on_step(page, 4)
        expect(page.locator("[data-error-summary]")).to_have_count(0)  # nothing was sent

        # Back and on again, then sending without consent.
        tab_to(page, page.get_by_role("button", name="Back"))
        keys.press("Enter")
        expect_on_step(page, 3)
        expect(page.get_by_label("Your first name")).to_have_value("Olena")
        tab_to(page, next_button)
        keys.press("Enter")
        expect_on_step(page, 4)
        tab_to(page, next_button)
        keys.press("Enter")
        expect_on_step(page, 5)
        tab_to(page, page.get_by_role("button", name="Send my reflection"))
        keys.press("Enter")

        # The error summary has focus; its link takes the keyboard to the box to tick.
        summary = expect_error_summary(page, "Tick the box to agree")
        tab_to(page, summary.get_by_role("link"))
        keys.press("Enter")
        consent = page.get_by_label("I agree to my reflection being used")
        expect(consent).to_be_focused()
        keys.press("Space")
        expect(consent).to_be_checked()
        expect(page.get_by_label("Your reflection")).to_have_value("Typed with the keyboard alone.")
        tab_to(page, page.get_by_role("button", name="Send my reflection"))
        keys.press("Enter")

        expect(
            page.get_by_role("heading", name="Thank you: your reflection is saved")
        ).to_be_visible()
        expect(page.get_by_text("The team can read it now.")).to_be_visible()
        assert RECEIPT.fullmatch(page.locator("#receipt-code").inner_text().strip())
        tab_to(page, page.get_by_role("link", name="See your reflection"))
        keys.press("Enter")
        expect(page.locator(".resident__words")).to_have_text("Typed with the keyboard alone.")
        expect(page.get_by_text("Nothing recorded yet.")).to_be_visible()

    reflection = the_reflection()
    assert reflection.first_name == "Olena"
    assert reflection.principles == ["human"]
    assert reflection.better_or_worse == "better"
    assert reflection.moderation == "published"


def test_resident_pages_speak_the_engagements_language_until_the_resident_switches(
    browser, live_server, world
):
    _link, token = resident_link(world)
    with person(browser, live_server, **PHONE) as phone:
        phone.goto(f"/r/{token}")
        expect(phone.locator("html")).to_have_attribute("lang", "en")
        phone.get_by_label("Your reflection").fill(WORDS)
        next_step(phone, 2)
        phone.get_by_label("Worse", exact=True).tap()
        phone.get_by_label("Learning: what could be learned or tried").tap()

        # The switcher in the footer: the words typed and the choices made so far stay.
        switcher = phone.get_by_role("group", name="Language")
        switcher.get_by_role("button", name="Українська").tap()
        assert phone.url.endswith("/r/"), phone.url
        expect(phone.locator("html")).to_have_attribute("lang", "uk")
        expect(phone.get_by_role("group", name="Мова")).to_contain_text("English")
        words = phone.locator("#id_text")
        expect(words).to_have_value(WORDS)
        expect(phone.locator("input[name=better_or_worse][value=worse]")).to_be_checked()
        expect(phone.locator("input[name=principles][value=learning]")).to_be_checked()
        expect(phone.locator(".form-step__progress:visible")).to_have_text("Крок 1 з 5")
        expect_no_sideways_scroll(phone, "the Ukrainian resident form")
        assert_accessible(phone, "on the resident form in Ukrainian")

        # The form still works in Ukrainian: through the steps, errors first, then a receipt.
        next_step_uk = phone.get_by_role("button", name="Далі", exact=True)
        expect(next_step_uk).to_be_visible()
        to_the_last_step(phone)
        expect(phone.get_by_role("button", name="Назад", exact=True)).to_be_visible()
        phone.locator("button[type=submit].button").tap()
        summary = phone.locator("[data-error-summary]")
        expect(summary).to_be_focused()
        expect(summary).to_contain_text("Виникла проблема")
        expect(words).to_have_value(WORDS)
        phone.locator("#id_consent").tap()
        phone.locator("button[type=submit].button").tap()
        code = phone.locator("#receipt-code")
        expect(code).to_have_text(RECEIPT)
        expect(phone.locator("html")).to_have_attribute("lang", "uk")
        assert the_reflection().language == "uk"
        assert the_reflection().better_or_worse == "worse"
        assert the_reflection().principles == ["learning"]

        # And the words on it are Ukrainian, not only the page's language attribute.
        phone.goto("/r/")
        expect(phone.locator("html")).to_have_attribute("lang", "uk")
        expect(phone.get_by_role("heading", level=1)).not_to_have_text("Share your reflection")
        expect(phone.locator("#id_consent + label")).not_to_have_text(
            "I agree to my reflection being used as described above."
        )
        expect(phone.locator("button[type=submit].button")).not_to_have_text("Send my reflection")


def test_a_resident_goes_through_the_form_one_step_at_a_time(browser, live_server, world):
    from engagements.models import Reflection, SharedLink

    _link, token = resident_link(world, moderation_mode=SharedLink.ModerationMode.PUBLISH)
    with person(browser, live_server, **{**PHONE, "locale": "en-GB"}) as phone:
        phone.goto(f"/r/{token}")

        # Only the first step shows: the words, a Next button, no Back and no Send yet.
        expect(phone.locator(".form-step__progress:visible")).to_have_text("Step 1 of 5")
        expect(phone.get_by_role("heading", name=STEPS[0], level=2)).to_be_visible()
        for heading in STEPS[1:]:
            expect(phone.get_by_role("heading", name=heading, level=2)).to_be_hidden()
        expect(phone.locator("[data-step][hidden]")).to_have_count(4)
        expect(phone.get_by_role("button", name="Back")).to_have_count(0)
        expect(phone.get_by_role("button", name="Send my reflection")).to_have_count(0)
        expect(phone.get_by_label("I agree to my reflection being used")).to_be_hidden()

        # Nothing written: the same message the server gives, and focus stays in the box.
        words = phone.get_by_label("Your reflection")
        phone.get_by_role("button", name="Next", exact=True).tap()
        expect(phone.get_by_text("Write your reflection before sending it.")).to_be_visible()
        expect(words).to_be_focused()
        expect(words).to_have_attribute("aria-invalid", "true")
        expect(words).to_have_accessible_description(
            re.compile("^Error: Write your reflection before sending it.")
        )
        expect(phone.locator(".form-step__progress:visible")).to_have_text("Step 1 of 5")
        expect(phone.get_by_role("heading", name=STEPS[1], level=2)).to_be_hidden()
        # Spaces alone are not a reflection either.
        words.fill("   \n  ")
        phone.get_by_role("button", name="Next", exact=True).tap()
        expect(words).to_be_focused()
        expect(phone.get_by_role("heading", name=STEPS[1], level=2)).to_be_hidden()
        assert_accessible(phone, "on the first step with its error")

        # Written: Next moves on, to the heading of the next step, and the error goes.
        words.fill(WORDS)
        next_step(phone, 2)
        expect(phone.get_by_text("Write your reflection before sending it.")).to_have_count(0)
        expect(words).not_to_have_attribute("aria-invalid", "true")
        expect_no_sideways_scroll(phone, "the second step")
        assert_accessible(phone, "on a step of the resident form")
        phone.get_by_label("About the same").tap()
        phone.get_by_label("Relieved").tap()

        # Back returns to the words, with focus on their heading; nothing is lost.
        phone.get_by_role("button", name="Back").tap()
        expect_on_step(phone, 1)
        expect(words).to_have_value(WORDS)
        next_step(phone, 2)
        expect(phone.get_by_label("About the same")).to_be_checked()

        # Optional steps never stop anyone going on.
        next_step(phone, 3)
        next_step(phone, 4)
        phone.get_by_label("I agree to my reflection being used").tap()
        next_step(phone, 5)
        expect(phone.get_by_role("button", name="Next", exact=True)).to_have_count(0)
        expect(phone.get_by_role("button", name="Back")).to_be_visible()
        assert_accessible(phone, "on the last step of the resident form")
        assert not Reflection.objects.exists()  # no step sent anything on its own

        phone.get_by_role("button", name="Send my reflection").tap()
        expect(
            phone.get_by_role("heading", name="Thank you: your reflection is saved")
        ).to_be_visible()
        expect(phone.locator("#receipt-code")).to_have_text(RECEIPT)

    reflection = the_reflection()
    assert reflection.text == WORDS
    assert (reflection.better_or_worse, reflection.feeling) == ("same", "relieved")


def test_every_answer_survives_a_reload(browser, live_server, world):
    _link, token = resident_link(world)
    with person(browser, live_server, **{**PHONE, "locale": "en-GB"}) as phone:
        phone.goto(f"/r/{token}")
        key = "hls-draft:" + (
            phone.locator("form[data-keep-draft]").get_attribute("data-keep-draft") or ""
        )
        phone.get_by_label("Your reflection").fill(WORDS)
        next_step(phone, 2)
        phone.get_by_label("Better", exact=True).tap()
        phone.get_by_label("Frustrated").tap()
        phone.get_by_label("Human: how people are treated and supported").tap()
        next_step(phone, 3)
        phone.get_by_label("With my first name").tap()
        phone.get_by_label("Your first name").fill("Nino")
        next_step(phone, 4)
        phone.get_by_label("I agree to my reflection being used").tap()

        # Kept as JSON, without the hidden fields or the security token.
        draft = json.loads(phone.evaluate("key => sessionStorage.getItem(key)", key))
        fields = draft["fields"]
        assert fields["text"] == WORDS
        assert fields["better_or_worse"] == "better"
        assert fields["principles"] == ["human"]
        assert fields["consent"] == ["on"]
        assert not {"csrfmiddlewaretoken", "submission_key", "link_ref"} & set(fields)

        phone.reload()
        expect(phone.get_by_label("Your reflection")).to_have_value(WORDS)
        expect(phone.get_by_label("Better", exact=True)).to_be_checked()
        expect(phone.get_by_label("Frustrated")).to_be_checked()
        expect(phone.get_by_label("Human: how people are treated and supported")).to_be_checked()
        expect(phone.get_by_label("Learning: what could be learned or tried")).not_to_be_checked()
        expect(phone.get_by_label("With my first name")).to_be_checked()
        expect(phone.get_by_label("Your first name")).to_have_value("Nino")
        expect(phone.get_by_label("I agree to my reflection being used")).to_be_checked()
        expect(phone.get_by_label("Email me when the team has news")).not_to_be_checked()
        expect(phone.locator(".charcount")).to_have_text(f"{5000 - len(WORDS)} characters left")

        # A draft kept by an older version of the page (the words alone) still comes back.
        phone.evaluate("key => sessionStorage.setItem(key, 'Words from before.')", key)
        phone.goto("/r/")
        expect(phone.get_by_label("Your reflection")).to_have_value("Words from before.")
        expect(phone.get_by_label("I would rather not say").first).to_be_checked()


def test_without_javascript_every_group_shows_and_the_form_sends(browser, live_server, world):
    _link, token = resident_link(world)
    with person(
        browser, live_server, java_script_enabled=False, **{**PHONE, "locale": "en-GB"}
    ) as phone:
        phone.goto(f"/r/{token}")
        expect_every_step_shown(phone)
        expect(phone.get_by_role("button", name="Next")).to_have_count(0)
        expect(phone.get_by_text("Step 1 of 5")).to_have_count(0)
        expect_no_sideways_scroll(phone, "the resident form without JavaScript")

        phone.get_by_label("Your reflection").fill(WORDS)
        phone.get_by_label("Worse", exact=True).tap()
        phone.get_by_label("I agree to my reflection being used").tap()
        phone.get_by_role("button", name="Send my reflection").tap()
        expect(
            phone.get_by_role("heading", name="Thank you: your reflection is saved")
        ).to_be_visible()
        expect(phone.locator("#receipt-code")).to_have_text(RECEIPT)
    assert the_reflection().better_or_worse == "worse"


def test_the_character_count_is_announced_only_at_its_thresholds(browser, live_server, world):
    _link, token = resident_link(world)
    with person(browser, live_server, **{**PHONE, "locale": "en-GB"}) as phone:
        phone.goto(f"/r/{token}")
        count = phone.locator(".charcount")
        spoken = phone.locator("[data-charcount-live-for]")
        expect(count).to_have_attribute("aria-hidden", "true")
        expect(count).not_to_have_attribute("aria-live", re.compile(".*"))
        expect(spoken).to_have_attribute("aria-live", "polite")
        expect(spoken).to_have_text("")

        # Every key changes what is seen; nothing is said while plenty is left.
        words = phone.get_by_label("Your reflection")
        words.press_sequentially("Some words")
        expect(count).to_have_text(f"{5000 - 10} characters left")
        expect(spoken).to_have_text("")
        words.fill("x" * 4899)
        expect(count).to_have_text("101 characters left")
        expect(spoken).to_have_text("")

        # Crossing to 100 left is said once; the keys after it are not.
        words.press("End")
        words.press_sequentially("xy")
        expect(count).to_have_text("99 characters left")
        expect(spoken).to_have_text("100 characters left")
        words.fill("x" * 5000)
        expect(count).to_have_text("0 characters left")
        expect(spoken).to_have_text("0 characters left")
        words.fill("x" * 4000)
        expect(count).to_have_text("1000 characters left")
        expect(spoken).to_have_text("1000 characters left")


def test_a_link_in_an_engagement_in_ukrainian_opens_in_ukrainian(browser, live_server, world):
    world.engagement.language = "uk"
    world.engagement.save(update_fields=["language"])
    _link, token = resident_link(world)
    with person(browser, live_server, locale="en-GB") as page:
        page.goto(f"/r/{token}")
        expect(page.locator("html")).to_have_attribute("lang", "uk")
        expect(page.locator(".resident__about .question")).to_have_text(QUESTION)


def test_each_link_opens_in_its_own_engagements_language(browser, live_server, world):
    """A language the app chose for one link is not a choice the resident made."""
    from engagements import residents
    from tests.factories import cycle_for, engagement_with

    personas = world.personas
    other = engagement_with(
        learning_partner=personas.learning_partner,
        facilitator=personas.facilitator,
        partners=[personas.org_a],
        title="Разом",
    )
    other.language = "uk"
    other.save(update_fields=["language"])
    cycle = cycle_for(other, personas.org_a, personas.manager_a, title="Теплі місця")
    _link, english = resident_link(world)
    _other_link, ukrainian = residents.link_create(
        cycle=cycle, by=personas.manager_a, label="Зустріч"
    )
    with person(browser, live_server, locale="en-GB") as page:
        page.goto(f"/r/{english}")
        expect(page.locator("html")).to_have_attribute("lang", "en")
        page.goto(f"/r/{ukrainian}")
        expect(page.locator("html")).to_have_attribute("lang", "uk")


def test_a_closed_link_and_an_unknown_one_say_the_same_plain_words(
    page, browser, live_server, world
):
    _link, token = resident_link(world)
    sign_in(page, "manager.a")
    page.goto(f"/cycles/{world.cycle_a.public_id}/resident-links/")
    page.get_by_role("button", name=f"Close link {LABEL}").click()
    expect(page.get_by_text("Link closed.")).to_be_visible()
    expect(page.get_by_role("table").get_by_role("row").filter(has_text=LABEL)).to_contain_text(
        "Closed"
    )

    # A closed link names no engagement, so the page follows the browser's own language.
    english_phone = {**PHONE, "locale": "en-GB"}
    with person(browser, live_server, expected=CLOSED, **english_phone) as phone:
        closed = phone.goto(f"/r/{token}")
        assert closed is not None
        assert closed.status == 410
        expect(phone.get_by_role("heading", name="This link does not work")).to_be_visible()
        expect(phone.get_by_text("Please ask the person or organisation")).to_be_visible()
        closed_words = phone.locator("main").inner_text()
        expect_no_sideways_scroll(phone, "the closed-link page")
        assert_accessible(phone, "on the closed-link page")

        unknown = phone.goto(f"/r/{token[:-4]}AAAA")
        assert unknown is not None
        assert unknown.status == 404
        assert phone.locator("main").inner_text() == closed_words
        assert token not in phone.content()
        phone.get_by_role(
            "link",
            name="Already sent a reflection or answered a health check? Use your receipt code",
        ).click()
        expect(phone.get_by_role("heading", name="Use your receipt code")).to_be_visible()
