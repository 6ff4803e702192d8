"""Issue 4, "Done when": bad input to the resident pages gets a clear answer, never a 500."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils.html import escape

from engagements.models import Outbox, Reflection, SharedLink
from tests.conftest import verified_client
from tests.residents.helpers import TEXT, form_data, html_of, opened

pytestmark = pytest.mark.django_db

PROBLEM = "There is a problem"
CLOSED_WORDS = "This link does not work"

MARKUP = (
    '<script>alert("x")</script><img src=x onerror=alert(1)>'
    '<a href="https://evil.example/steal">click</a>'
    '<div hx-get="/accounts/logout/" hx-trigger="load" hx-swap="outerHTML">boom</div>'
    "{{ request.user }} {% now 'Y' %} https://evil.example/bare & done"
)
GEORGIAN = "საავადმყოფოდან სახლში დაბრუნება გამიჭირდა, მაგრამ მეზობელი დამეხმარა."
ARMENIAN = "Հիվանդանոցից տուն վերադառնալը դժվար էր, բայց հարևանս օգնեց։"
AZERBAIJANI = "Xəstəxanadan evə qayıtmaq çətin idi; qonşum kömək etdi. Şəhər, ğ, ı, ö, ü, ç."
EMOJI = "Home at last 🏠👩🏽‍⚕️❤️‍🩹 🇬🇪🇦🇲🇦🇿 — thank you 🙏🏾"


def post_reflection(link: Any, **overrides: Any) -> Any:
    client = opened(link)
    return client.post("/r/", form_data(client, **overrides))


def textarea_value(response: Any) -> str:
    """The reflection as the re-rendered form shows it (HTML-escaped, Django's leading newline)."""
    match = re.search(r'<textarea name="text"[^>]*>\n?(.*?)</textarea>', html_of(response), re.S)
    assert match, "the form came back without the reflection box"
    return match.group(1)


def words_blocks(html: str) -> list[str]:
    """The inner HTML of every element that turns htmx off (where resident words belong)."""
    return [m.group(2) for m in re.finditer(r"<(\w+)[^>]*\shx-disable[^>]*>(.*?)</\1>", html, re.S)]


# --- the reflection itself ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "Write your reflection before sending it."),
        ("     ", "Write your reflection before sending it."),
        ("\n\t \u00a0\r\n", "Write your reflection before sending it."),
        ("\u202e\u202c\u2066\u2069", "Write your reflection before sending it."),
    ],
    ids=["empty", "spaces", "whitespace", "only-direction-marks"],
)
def test_an_empty_or_blank_reflection_is_refused_plainly(link, text, message):
    response = post_reflection(link, text=text, feeling="hopeful")
    assert response.status_code == 200
    html = html_of(response)
    assert PROBLEM in html
    assert message in html
    assert response.context["form"].errors["text"] == [message]
    assert re.search(r'value="hopeful"[^>]*checked', html)  # the other answers stay
    assert not Reflection.objects.exists()


def test_a_reflection_of_100000_characters_is_refused_with_its_words_kept(link):
    text = ("A very long account of a hard week. " * 2800)[:100_000]
    response = post_reflection(link, text=text)
    assert response.status_code == 200
    html = html_of(response)
    assert PROBLEM in html
    assert "longer than 5,000 characters" in html
    assert textarea_value(response) == escape(text.strip())
    assert not Reflection.objects.exists()


def test_a_reflection_of_exactly_5000_characters_is_saved(link):
    text = "é" * 4990 + "🏠" * 10
    response = post_reflection(link, text=text)
    assert response.status_code == 200
    assert Reflection.objects.get().text == text


def test_nul_bytes_get_a_clear_answer_and_no_500(link):
    # Nobody can see a NUL byte to remove it, so the reflection goes without it.
    response = post_reflection(link, text="before\x00after")
    assert response.status_code == 200
    assert Reflection.objects.get().text == "beforeafter"
    for field, value in [("first_name", "Jo\x00"), ("email", "a\x00@example.org")]:
        answers = {"first_name": "Jo", "email": "r@example.org", field: value}
        response = post_reflection(link, identity="named", follow_up="on", **answers)
        assert response.status_code == 200, field
        assert PROBLEM in html_of(response), field
    assert Reflection.objects.count() == 1


def test_markup_and_hx_attributes_are_stored_as_typed_and_shown_inert(publish_link, world):
    client = opened(publish_link)
    assert client.post("/r/", form_data(client, text=MARKUP)).status_code == 200
    reflection = Reflection.objects.get()
    assert reflection.text == MARKUP
    assert reflection.moderation == "published"

    staff = verified_client(world.personas.manager_a)
    pages = {
        "cycle page": staff.get(reverse("engagements:cycle", args=[world.cycle_a.public_id])),
        "receipt page": client.get("/r/receipt/yours/"),
    }
    for name, response in pages.items():
        assert response.status_code == 200, name
        html = html_of(response)
        assert any(escape(MARKUP) in block for block in words_blocks(html)), name
        for live in (
            "<script>alert(",
            "<img src=x",
            'href="https://evil.example',
            'hx-get="/accounts/logout/"',
            "<div hx-get",
        ):
            assert live not in html, (name, live)
        assert "{{ request.user }}" in html.replace("&#x27;", "'"), name  # not evaluated


def test_markup_in_a_held_reflection_is_inert_in_the_moderation_queue(link, world):
    assert post_reflection(link, text=MARKUP).status_code == 200
    staff = verified_client(world.personas.manager_a)
    html = html_of(staff.get(reverse("engagements:moderation")))
    assert any(escape(MARKUP) in block for block in words_blocks(html))
    assert "<script>alert(" not in html
    assert 'hx-get="/accounts/logout/"' not in html


def test_direction_override_characters_are_removed(link):
    text = "I paid \u202e0001\u202c pounds \u2066for\u2069 the \u202ataxi\u202c home."
    assert post_reflection(link, text=text).status_code == 200
    stored = Reflection.objects.get().text
    assert stored == "I paid 0001 pounds for the taxi home."
    assert not re.search("[\u202a-\u202e\u2066-\u2069]", stored)


@pytest.mark.parametrize(
    "text", [EMOJI, GEORGIAN, ARMENIAN, AZERBAIJANI], ids=["emoji", "ka", "hy", "az"]
)
def test_text_in_any_script_round_trips_exactly(link, text):
    client = opened(link)
    response = client.post("/r/", form_data(client, text=text))
    assert response.status_code == 200
    assert Reflection.objects.get().text == text

    page = client.get("/r/receipt/yours/")
    assert page.status_code == 200
    assert escape(text) in html_of(page)
    download = client.get("/r/receipt/yours/download.json")
    assert download.status_code == 200
    assert download["Content-Type"] == "application/json; charset=utf-8"
    assert json.loads(download.content.decode("utf-8"))["reflection"] == text
    assert text.encode("utf-8") in download.content  # readable as is, not \u-escaped
    plain = client.get("/r/receipt/yours/download.txt")
    assert plain.content.decode("utf-8").startswith(text + "\n")


def test_a_reflection_in_several_scripts_at_once_round_trips(link):
    text = f"{GEORGIAN}\n{ARMENIAN}\n{AZERBAIJANI}\n{EMOJI}"
    client = opened(link)
    assert client.post("/r/", form_data(client, text=text)).status_code == 200
    assert Reflection.objects.get().text == text
    html = html_of(client.get("/r/receipt/yours/"))
    assert escape(text).replace("\n", "<br>") in html


# --- tokens ---------------------------------------------------------------------------------


def _tampered(token: str) -> list[str]:
    return [
        token[:-1],
        token[:20],
        token[:6],
        token + "A",
        token + "%20",
        token + ".",
        token.swapcase(),
        token[:10] + "ü" + token[11:],
        token[:10] + "%C3%BC" + token[11:],
        token[:10] + "%00" + token[11:],
        "ا" * 43,
        "x" * 5000,
        token * 120,
    ]


def test_tampered_or_truncated_tokens_are_not_found_never_a_500(link):
    for n, bad in enumerate(_tampered(link.token)):
        response = Client(REMOTE_ADDR=f"192.0.2.{n + 1}").get(f"/r/{bad}")
        assert response.status_code == 404, bad[:30]
        assert CLOSED_WORDS in html_of(response), bad[:30]
        if len(bad) >= 20:  # the page does not echo what was asked for either
            assert bad not in html_of(response), bad[:30]
        assert response["Referrer-Policy"] == "no-referrer"
    assert SharedLink.objects.get().last_used is None


def test_a_token_with_a_trailing_slash_is_not_echoed(link):
    response = Client().get(f"/r/{link.token}/", follow=True)
    assert response.redirect_chain == [("/r/", 302)]  # as some apps share it, it still opens
    assert link.token not in html_of(response)


def test_a_path_below_a_token_is_not_found(link):
    response = Client().get(f"/r/{link.token[:10]}/more")
    assert response.status_code == 404


# --- receipts and withdrawal ----------------------------------------------------------------


def test_a_replayed_receipt_after_withdrawal_gets_a_clear_message(link):
    client = opened(link)
    code = client.post("/r/", form_data(client)).context["receipt"]
    assert client.post("/r/receipt/yours/withdraw/").status_code == 200
    assert not Reflection.objects.exists()

    for attempt in (Client(), client):
        response = attempt.post("/r/receipt/", {"code": code})
        assert response.status_code == 200
        assert "We found nothing sent with this code." in html_of(response)
        assert "if you withdrew what you sent, it no longer exists" in html_of(response)
    # The old session's receipt pages send the resident back to the code form.
    for path in ("/r/receipt/yours/", "/r/receipt/yours/download.json"):
        response = client.get(path)
        assert response.status_code == 302
        assert response["Location"] == "/r/receipt/"
    again = client.post("/r/receipt/yours/withdraw/")
    assert again.status_code == 200
    assert "It had already been deleted." in html_of(again)


@pytest.mark.parametrize(
    "code",
    ["", "ABCD", "ABCD-EFGH-IJKL-MNOP-QRST", "\x00" * 16, "' OR 1=1 --", "ä" * 16, "x" * 41],
)
def test_odd_receipt_codes_get_a_clear_answer(link, code):
    response = Client().post("/r/receipt/", {"code": code})
    assert response.status_code == 200
    assert PROBLEM in html_of(response)


def test_a_replayed_submission_after_withdrawal_is_not_stored_again(link):
    client = opened(link)
    data = form_data(client, text="Please forget this.")
    assert client.post("/r/", data).status_code == 200
    assert client.post("/r/receipt/yours/withdraw/").status_code == 200

    replay = client.post("/r/", data)
    assert replay.status_code == 200
    assert "You withdrew this reflection, so it was not sent again." in html_of(replay)
    assert not Reflection.objects.exists()
    assert SharedLink.objects.get().submissions == 1
    # From a fresh browser (no session): checked again, then still refused.
    stranger = Client()
    assert stranger.post("/r/", data).status_code == 200
    refused = stranger.post("/r/", data)
    assert "You withdrew this reflection, so it was not sent again." in html_of(refused)
    assert not Reflection.objects.exists()


# --- identity and follow-up -----------------------------------------------------------------


@pytest.mark.parametrize("first_name", ["", "   "])
def test_a_named_reflection_needs_a_first_name(link, first_name):
    response = post_reflection(link, identity="named", first_name=first_name)
    assert response.status_code == 200
    assert "Write your first name, or choose to stay anonymous." in html_of(response)
    assert textarea_value(response).strip() == escape(TEXT)
    assert not Reflection.objects.exists()


def test_a_first_name_without_choosing_named_is_not_stored(link):
    assert post_reflection(link, identity="anonymous", first_name="Nino").status_code == 200
    reflection = Reflection.objects.get()
    assert reflection.first_name == ""
    assert reflection.identity == "anonymous"


def test_follow_up_without_an_email_is_refused(link):
    response = post_reflection(link, follow_up="on", email="")
    assert response.status_code == 200
    assert "Write your email address so we can follow up." in html_of(response)
    assert not Reflection.objects.exists()


def test_an_email_without_the_box_ticked_is_not_stored(link):
    client = opened(link)
    response = client.post("/r/", form_data(client, email="not-asked@example.org"))
    assert response.status_code == 200
    reflection = Reflection.objects.get()
    assert reflection.follow_up_email == ""
    assert not Outbox.objects.exists()
    export = client.get("/r/receipt/yours/download.json").json()
    assert export["follow_up_email"] is None
    assert "not-asked@example.org" not in json.dumps(export)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("identity", "pseudonymous"),
        ("identity", ""),
        ("principles", "everything"),
        ("better_or_worse", "much"),
        ("feeling", "<b>"),
        ("consent", ""),
    ],
)
def test_tampered_choices_get_a_clear_error(link, field, value):
    response = post_reflection(link, **{field: value})
    assert response.status_code == 200
    assert PROBLEM in html_of(response)
    assert escape(TEXT) in textarea_value(response)
    assert not Reflection.objects.exists()


# --- hidden fields --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key", ["not-a-uuid", "", "' OR 1=1 --", "0" * 500, "\x00"], ids=lambda k: repr(k[:12])
)
def test_a_tampered_submission_key_gets_an_error_not_a_500(link, key):
    response = post_reflection(link, submission_key=key)
    assert response.status_code == 200
    assert PROBLEM in html_of(response)
    assert escape(TEXT) in textarea_value(response)
    assert not Reflection.objects.exists()


def test_after_a_tampered_submission_key_pressing_send_again_works(link):
    client = opened(link)
    data = form_data(client, submission_key="not-a-uuid")
    response = client.post("/r/", data)
    assert "UUID" not in html_of(response)  # words a resident understands
    key = re.search(r'name="submission_key" value="([^"]*)"', html_of(response))
    assert key is not None
    uuid.UUID(key.group(1))
    data["submission_key"] = key.group(1)
    assert client.post("/r/", data).status_code == 200
    assert Reflection.objects.count() == 1


@pytest.mark.parametrize(
    "ref", ["", "tampered", "MQ:1abc:forged", "x" * 5000, "\x00"], ids=lambda r: repr(r[:12])
)
def test_a_tampered_link_ref_with_a_session_is_answered_not_a_500(link, ref):
    """The session names the link; a damaged reference is either ignored or sent back."""
    response = post_reflection(link, link_ref=ref)
    assert response.status_code == 200
    if "receipt" in response.context:
        assert Reflection.objects.get().shared_link_id == link.pk
    else:
        assert PROBLEM in html_of(response)
        assert escape(TEXT) in textarea_value(response)


@pytest.mark.parametrize("ref", ["tampered", "MQ:1abc:forged", "x" * 5000, "\x00"])
def test_a_tampered_link_ref_without_a_session_is_answered_not_a_500(link, ref):
    data = form_data(opened(link))
    data["link_ref"] = ref
    response = Client().post("/r/", data)
    assert response.status_code == 400
    assert "Open your link again" in html_of(response)
    assert not Reflection.objects.exists()
