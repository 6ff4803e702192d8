"""Sign-in, lockout, two-factor and password flows, including bad input."""

import re
from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from tests.conftest import verified_client
from tests.factories import PASSWORD, UserFactory, totp_code, totp_device

pytestmark = pytest.mark.django_db

LOGIN = "/accounts/login/"


def login(client, username, password=PASSWORD, **extra):
    return client.post(LOGIN, {"username": username, "password": password, **extra})


def test_it_signs_in_a_practitioner_and_shows_the_home_page(client, personas):
    response = login(client, "practitioner.a")
    assert response.status_code == 302
    assert response["Location"] == "/"
    home = client.get("/")
    assert b"Organisation A" in home.content


def test_it_keeps_the_username_and_says_what_is_wrong_on_a_wrong_password(client, personas):
    response = login(client, "practitioner.a", "not the password")
    assert response.status_code == 200
    text = response.content.decode()
    assert "Please enter a correct username and password" in text
    assert 'value="practitioner.a"' in text
    assert "<title>Error:" in text
    assert "data-error-summary" in text


@pytest.mark.parametrize(
    "fields",
    [
        {"username": "", "password": ""},
        {"username": "a\x00b", "password": "x"},
        {"username": "x" * 100_000, "password": "y" * 10_000},
        {"username": "<script>alert(1)</script>", "password": '" hx-get="/evil'},
        {"username": "ქართული Հայերեն Azərbaycan", "password": "🙂"},
        {"password": "only a password"},
        {"username": ["two", "values"], "password": "z"},
    ],
)
def test_it_answers_garbage_on_the_login_form_with_a_message_not_a_500(client, personas, fields):
    response = client.post(LOGIN, fields)
    assert response.status_code == 200
    assert b"There is a problem" in response.content
    assert b"<script>alert(1)</script>" not in response.content


def test_it_locks_out_a_username_and_address_after_repeated_failures(client, personas, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert login(client, "manager.a", "wrong").status_code == 200
    locked = login(client, "manager.a", "wrong")
    assert locked.status_code == 429
    assert b"Too many attempts to sign in" in locked.content
    # Even the right password is refused during the cool-off ...
    assert login(client, "manager.a").status_code == 429
    # ... but only for that username: a colleague at the same address can still sign in.
    assert login(client, "practitioner.a").status_code == 302


def test_it_lets_a_locked_out_person_in_again_after_the_cool_off(client, personas, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        login(client, "manager.a", "wrong")
    assert login(client, "manager.a").status_code == 429
    with time_machine.travel(timezone.now() + timedelta(minutes=16)):
        assert login(client, "manager.a").status_code == 302


def test_it_asks_an_enrolled_facilitator_for_a_code_before_anything_else(client, personas):
    response = login(client, "facilitator")
    assert response.status_code == 302
    assert response["Location"] == "/"
    home = client.get("/")
    assert home.status_code == 302
    assert home["Location"].startswith(reverse("accounts:two_factor_verify"))


def test_it_refuses_a_wrong_code_with_a_message_and_accepts_the_right_one(client, personas):
    login(client, "facilitator")
    verify = reverse("accounts:two_factor_verify") + "?next=/"
    wrong = client.post(verify, {"token": "000000", "next": "/"})
    assert wrong.status_code == 200
    assert b"That code did not match" in wrong.content
    garbage = client.post(verify, {"token": "\x00<b>", "next": "/"})
    assert garbage.status_code == 200
    assert b"There is a problem" in garbage.content
    # Until the code is right, the page offers nothing but signing out.
    assert reverse("accounts:password_change").encode() not in wrong.content
    assert b"Sign out" in wrong.content
    device = TOTPDevice.objects.get(user=personas.facilitator)
    # django-otp throttles after a failure; wait out the back-off as a person would.
    with time_machine.travel(timezone.now() + timedelta(seconds=30)):
        right = client.post(verify, {"token": totp_code(device), "next": "/"})
        assert right.status_code == 302
        assert right["Location"] == "/"
        assert client.get("/").status_code == 200


def test_it_makes_a_facilitator_without_a_device_set_one_up(client, personas):
    TOTPDevice.objects.filter(user=personas.facilitator).delete()
    login(client, "facilitator")
    response = client.get("/")
    assert response["Location"].startswith(reverse("accounts:two_factor_setup"))
    page = client.get(response["Location"])
    assert page.status_code == 200
    assert b"<svg" in page.content
    device = TOTPDevice.objects.get(user=personas.facilitator, confirmed=False)
    done = client.post(
        reverse("accounts:two_factor_setup"), {"token": totp_code(device), "next": "/"}
    )
    assert done.status_code == 200
    assert b"Your backup codes" in done.content
    codes = re.findall(r"<code>([a-z2-7]{8})</code>", done.content.decode())
    assert len(codes) == 10
    device.refresh_from_db()
    assert device.confirmed
    assert client.get("/").status_code == 200


def test_a_backup_code_works_once(client, personas):
    static = StaticDevice.objects.create(user=personas.facilitator, name="backup")
    static.token_set.create(token="abcd2345")
    verify = reverse("accounts:two_factor_verify")
    login(client, "facilitator")
    assert client.post(verify, {"token": "ABCD 2345", "next": "/"}).status_code == 302
    client.post("/accounts/logout/")
    login(client, "facilitator")
    again = client.post(verify, {"token": "abcd2345", "next": "/"})
    assert again.status_code == 200


def test_an_org_admin_must_use_two_factor_but_a_practitioner_need_not(client, personas):
    membership = personas.manager_a.memberships.get()
    membership.role = "admin"
    membership.save()
    login(client, "manager.a")
    assert client.get("/")["Location"].startswith(reverse("accounts:two_factor_setup"))
    other = client.__class__()
    login(other, "practitioner.a")
    assert other.get("/").status_code == 200


def test_a_practitioner_may_turn_two_factor_off_but_a_facilitator_may_not(personas):
    totp_device(personas.practitioner_a)
    practitioner = verified_client(personas.practitioner_a)
    practitioner.post(reverse("accounts:two_factor_disable"))
    assert not TOTPDevice.objects.filter(user=personas.practitioner_a).exists()
    facilitator = verified_client(personas.facilitator)
    facilitator.post(reverse("accounts:two_factor_disable"))
    assert TOTPDevice.objects.filter(user=personas.facilitator).exists()


def test_it_sends_htmx_requests_to_the_second_factor_with_a_client_redirect(client, personas):
    login(client, "facilitator")
    response = client.get("/", headers={"HX-Request": "true"})
    assert response["HX-Redirect"].startswith(reverse("accounts:two_factor_verify"))


def test_the_admin_needs_a_verified_staff_member(client, personas):
    admin_user = UserFactory(username="root", is_staff=True, is_superuser=True)
    assert client.get("/admin/")["Location"].startswith("/admin/login/")
    assert client.get("/admin/login/?next=/admin/")["Location"].startswith(LOGIN)
    login(client, "root")
    # Staff must enrol a second factor before reaching the admin.
    assert client.get("/admin/")["Location"].startswith(reverse("accounts:two_factor_setup"))
    totp_device(admin_user)
    assert verified_client(admin_user).get("/admin/").status_code == 200
    # A signed-in person who is not staff finds no admin at all.
    assert verified_client(personas.practitioner_a).get("/admin/login/").status_code == 404


def test_it_changes_a_password_and_explains_mistakes(personas):
    client = verified_client(personas.practitioner_a)
    url = reverse("accounts:password_change")
    bad = client.post(
        url, {"old_password": "nope", "new_password1": "short", "new_password2": "other"}
    )
    assert bad.status_code == 200
    assert b"There is a problem" in bad.content
    new = "a much longer new passphrase"
    good = client.post(url, {"old_password": PASSWORD, "new_password1": new, "new_password2": new})
    assert good["Location"] == reverse("accounts:password_change_done")
    personas.practitioner_a.refresh_from_db()
    assert personas.practitioner_a.check_password(new)


def test_it_emails_a_reset_link_that_works_once(client, personas, smtp_sink, settings):
    settings.SITE_URL = "https://hls.example.org"
    response = client.post(reverse("accounts:password_reset"), {"email": "manager.a@example.org"})
    assert response["Location"] == reverse("accounts:password_reset_done")
    [message] = smtp_sink.wait_for(1)
    assert message["To"] == "manager.a@example.org"
    assert message.is_multipart()  # text and HTML versions
    text = message.get_payload(0).get_payload(decode=True).decode()
    match = re.search(r"https://hls\.example\.org(/accounts/password/reset/\S+/)", text)
    assert match, text
    link = match.group(1)
    form = client.get(link, follow=True)
    assert b"Choose a new password" in form.content
    new = "another long passphrase"
    done = client.post(form.redirect_chain[-1][0], {"new_password1": new, "new_password2": new})
    assert done["Location"] == reverse("accounts:password_reset_complete")
    again = client.get(link, follow=True)
    assert b"This link no longer works" in again.content


def test_an_expired_reset_link_says_so_and_offers_a_new_one(client, personas, smtp_sink):
    client.post(reverse("accounts:password_reset"), {"email": "manager.a@example.org"})
    [message] = smtp_sink.wait_for(1)
    text = message.get_payload(0).get_payload(decode=True).decode()
    match = re.search(r"(/accounts/password/reset/\S+/)", text)
    assert match, text
    link = match.group(1)
    with time_machine.travel(timezone.now() + timedelta(days=2)):
        page = client.get(link, follow=True)
    assert b"This link no longer works" in page.content
    assert reverse("accounts:password_reset").encode() in page.content


def test_it_does_not_reveal_whether_an_email_has_an_account(client, personas, smtp_sink):
    known = client.post(reverse("accounts:password_reset"), {"email": "manager.a@example.org"})
    unknown = client.post(reverse("accounts:password_reset"), {"email": "nobody@example.org"})
    assert known["Location"] == unknown["Location"]
    assert len(smtp_sink.wait_for(1)) == 1


@pytest.mark.parametrize(
    "email", ["", "not-an-email", "a\x00@example.org", "x" * 5000 + "@example.org"]
)
def test_it_answers_a_bad_reset_address_with_a_message(client, personas, email):
    response = client.post(reverse("accounts:password_reset"), {"email": email})
    assert response.status_code == 200
    assert b"There is a problem" in response.content


def test_signing_out_says_so(client, personas):
    login(client, "practitioner.a")
    response = client.post("/accounts/logout/", follow=True)
    assert b"You have signed out." in response.content
    assert not get_user_model().objects.get(username="practitioner.a").is_anonymous
    assert client.get("/").context["user"].is_anonymous
