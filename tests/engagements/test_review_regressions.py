"""Holes a review found in the sign-in flow, kept closed."""

import pytest
from django.test import RequestFactory
from django.urls import reverse
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from hls.lib.http import client_ip
from tests.conftest import verified_client
from tests.factories import PASSWORD, UserFactory, totp_device

pytestmark = pytest.mark.django_db


def sign_in(client, username):
    return client.post("/accounts/login/", {"username": username, "password": PASSWORD})


def test_a_password_alone_cannot_enrol_a_new_app_while_backup_codes_exist(client, personas):
    TOTPDevice.objects.filter(user=personas.facilitator).delete()
    StaticDevice.objects.create(user=personas.facilitator, name="backup").token_set.create(
        token="abcd2345"
    )
    sign_in(client, "facilitator")
    response = client.get(reverse("accounts:two_factor_setup"))
    assert response["Location"].startswith(reverse("accounts:two_factor_verify"))
    client.post(reverse("accounts:two_factor_setup"), {"token": "123456"})
    assert not TOTPDevice.objects.filter(user=personas.facilitator).exists()


@pytest.mark.parametrize("target", ["dashboard", "home", "x", "accounts:login"])
def test_a_next_that_is_a_bare_word_goes_home_not_to_a_500(personas, target):
    client = verified_client(personas.facilitator)
    response = client.get(reverse("accounts:two_factor_verify") + f"?next={target}")
    assert response.status_code == 302
    assert response["Location"] == "/"


def test_a_signed_in_person_sent_back_to_the_login_page_goes_home(personas):
    client = verified_client(personas.practitioner_a)
    response = client.get("/accounts/login/?next=/accounts/login/")
    assert response.status_code == 302
    assert response["Location"] == "/"


def test_verified_staff_reach_the_admin_through_its_own_login_link(personas):
    admin_user = UserFactory(username="root", is_staff=True, is_superuser=True)
    totp_device(admin_user)
    client = verified_client(admin_user)
    response = client.get("/admin/login/?next=/admin/")
    assert response["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200


def test_anonymous_admin_visitors_sign_in_and_come_back_to_the_admin(client):
    response = client.get("/admin/login/?next=/admin/engagements/")
    assert response["Location"] == "/accounts/login/?next=/admin/engagements/"


def test_behind_a_proxy_only_the_address_the_proxy_added_counts(settings):
    settings.BEHIND_PROXY = True
    settings.PROXY_COUNT = 1
    request = RequestFactory().get(
        "/", HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.7", REMOTE_ADDR="10.0.0.2"
    )
    assert client_ip(request) == "203.0.113.7"
    settings.BEHIND_PROXY = False
    assert client_ip(request) == "10.0.0.2"
