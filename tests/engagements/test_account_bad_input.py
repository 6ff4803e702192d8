"""Garbage in every field of every account form: a clear message on the same page, never a 500."""

import pytest
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from tests.conftest import verified_client

pytestmark = pytest.mark.django_db

GARBAGE = [
    "",
    "   ",
    "\x00",
    "x" * 100_000,
    "<script>alert(1)</script>",
    '<div hx-get="/admin/" hx-trigger="load">',
    "\u202eevil\u202c",
    "=1+1",
    "ქართული Հայերեն",
]


@pytest.mark.parametrize("value", GARBAGE)
def test_password_change_answers_garbage_with_a_message(personas, value):
    client = verified_client(personas.practitioner_a)
    response = client.post(
        reverse("accounts:password_change"),
        {"old_password": value, "new_password1": value, "new_password2": value},
    )
    assert response.status_code == 200
    assert b"There is a problem" in response.content
    assert b"<script>alert(1)</script>" not in response.content
    personas.practitioner_a.refresh_from_db()
    assert personas.practitioner_a.check_password("correct horse battery staple")


@pytest.mark.parametrize("value", GARBAGE)
def test_setting_a_new_password_from_a_reset_link_answers_garbage(client, personas, value):
    from django.contrib.auth.tokens import default_token_generator

    user = personas.manager_a
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    token = default_token_generator.make_token(user)
    form = client.get(reverse("accounts:password_reset_confirm", args=[uid, token]), follow=True)
    url = form.redirect_chain[-1][0]
    response = client.post(url, {"new_password1": value, "new_password2": value + "!"})
    assert response.status_code == 200
    assert b"There is a problem" in response.content


@pytest.mark.parametrize(
    "uid_token", [("MQ", "bad-token"), ("!!!", "x"), ("\x00", "\x00"), ("A" * 5000, "B" * 5000)]
)
def test_a_tampered_reset_link_says_it_no_longer_works(client, personas, uid_token):
    response = client.get(f"/accounts/password/reset/{uid_token[0]}/{uid_token[1]}/", follow=True)
    assert response.status_code in (200, 404)
    if response.status_code == 200:
        assert b"This link no longer works" in response.content


@pytest.mark.parametrize("value", [*GARBAGE, "12345", "1234567", "abcdef"])
def test_the_code_fields_answer_garbage_with_a_message(client, personas, value):
    client.post(
        "/accounts/login/", {"username": "facilitator", "password": "correct horse battery staple"}
    )
    response = client.post(reverse("accounts:two_factor_verify"), {"token": value, "next": "/"})
    assert response.status_code == 200
    assert b"There is a problem" in response.content
    assert client.get("/").status_code == 302  # still not through


@pytest.mark.parametrize("value", GARBAGE)
def test_setup_answers_garbage_with_a_message(personas, value):
    from django.test import Client

    client = Client()
    client.force_login(personas.manager_b)
    response = client.post(reverse("accounts:two_factor_setup"), {"token": value})
    assert response.status_code == 200
    assert b"There is a problem" in response.content


@pytest.mark.parametrize(
    "target", ["https://evil.example/", "//evil.example/", "javascript:alert(1)", "\x00"]
)
def test_it_never_redirects_off_site_after_sign_in(client, personas, target):
    response = client.post(
        "/accounts/login/",
        {"username": "practitioner.a", "password": "correct horse battery staple", "next": target},
    )
    assert response.status_code == 302
    assert response["Location"] == "/"
