from pathlib import Path

import polib
import pytest

LOCALE = Path(__file__).resolve().parents[2] / "locale"

pytestmark = pytest.mark.django_db


def test_the_ukrainian_catalogue_is_complete():
    catalogue = polib.pofile(str(LOCALE / "uk" / "LC_MESSAGES" / "django.po"))
    untranslated = [entry.msgid for entry in catalogue.untranslated_entries()]
    fuzzy = [entry.msgid for entry in catalogue.fuzzy_entries()]
    assert not untranslated, f"untranslated: {untranslated}"
    assert not fuzzy, f"fuzzy: {fuzzy}"


def test_choosing_ukrainian_translates_the_page_and_is_remembered(client):
    response = client.post(
        "/i18n/setlang/", {"language": "uk", "next": "/accounts/login/"}, follow=True
    )
    html = response.content.decode()
    assert '<html lang="uk">' in html
    assert "Увійти" in html
    # Remembered on the next visit, without asking again.
    assert '<html lang="uk">' in client.get("/").content.decode()


def test_a_ukrainian_error_message_comes_back_in_ukrainian(client):
    client.cookies["django_language"] = "uk"
    response = client.post("/accounts/login/", {"username": "", "password": ""})
    html = response.content.decode()
    assert "Помилка:" in html
    assert "Виникла проблема" in html


@pytest.mark.parametrize(
    "text",
    [
        "ქართული ენა",  # Georgian
        "Հայերեն լեզու",  # Armenian
        "Azərbaycan dili: ğ, ı, ə, ş",  # Azerbaijani
        "Limba română: ă, â, î, ș, ț",  # Romanian
    ],
)
def test_text_in_other_scripts_round_trips_through_a_form(client, text):
    response = client.post("/accounts/login/", {"username": text, "password": "x"})
    assert f'value="{text}"' in response.content.decode()
