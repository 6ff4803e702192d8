"""The foundation as a person meets it, in Debian's Chromium."""

import pytest
from playwright.sync_api import expect

from tests.conftest import assert_accessible
from tests.factories import PASSWORD, totp_code

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_manager_signs_in_sees_home_and_signs_out(page, personas):
    page.goto("/")
    assert_accessible(page, "on the public home page")
    page.get_by_role("link", name="Sign in").first.click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert_accessible(page, "on the login page")

    page.get_by_label("Username").fill("manager.a")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()

    expect(page.get_by_role("heading", name="Welcome")).to_be_visible()
    expect(page.get_by_text("Organisation A", exact=True)).to_be_visible()
    assert_accessible(page, "on the home page")

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_text("You have signed out.")).to_be_visible()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


def test_a_wrong_password_moves_focus_to_the_error_summary(page, personas):
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill("manager.a")
    page.get_by_label("Password").fill("wrong")
    page.get_by_role("button", name="Sign in").click()
    summary = page.locator("[data-error-summary]")
    expect(summary).to_be_focused()
    assert page.title().startswith("Error:")
    expect(page.get_by_label("Username")).to_have_value("manager.a")
    assert_accessible(page, "on the login page with errors")


def test_a_facilitator_signs_in_with_a_code_from_their_app(page, personas):
    from django_otp.plugins.otp_totp.models import TOTPDevice

    page.goto("/accounts/login/")
    page.get_by_label("Username").fill("facilitator")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Enter your sign-in code")).to_be_visible()
    assert_accessible(page, "on the code page")
    device = TOTPDevice.objects.get(user=personas.facilitator)
    page.get_by_label("Code").fill(totp_code(device))
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("heading", name="Welcome")).to_be_visible()


def test_the_keyboard_reaches_the_skip_link_first_and_it_works(page, personas):
    page.goto("/accounts/login/")
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to main content")
    expect(skip).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("main")).to_be_focused()


def test_the_page_reflows_at_phone_width_in_ukrainian(page, personas):
    page.set_viewport_size({"width": 320, "height": 640})
    page.goto("/accounts/login/")
    page.get_by_role("button", name="Українська").click()
    expect(page.get_by_role("heading", name="Увійти")).to_be_visible()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 320, f"page is {width}px wide at a 320px viewport"
    assert_accessible(page, "on the Ukrainian login page at 320px")
