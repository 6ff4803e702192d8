import pytest

from tests.conftest import verified_client

pytestmark = pytest.mark.django_db


def test_every_page_sends_a_strict_content_security_policy(client):
    response = client.get("/accounts/login/")
    csp = response["Content-Security-Policy"]
    assert "default-src 'self'" in csp
    assert "script-src 'self'" in csp
    assert "style-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert "unsafe-eval" not in csp


def test_every_page_sends_the_other_security_headers(client):
    response = client.get("/accounts/login/")
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"


def test_production_sends_hsts_and_secure_cookies(client, settings):
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    response = client.get("/accounts/login/", secure=True)
    assert response["Strict-Transport-Security"].startswith("max-age=31536000")


def test_private_pages_are_never_stored(personas):
    response = verified_client(personas.practitioner_a).get("/")
    assert "no-store" in response["Cache-Control"]


def test_templates_carry_no_inline_script_or_style(client, personas):
    for response in (
        client.get("/"),
        client.get("/accounts/login/"),
        verified_client(personas.manager_a).get("/"),
    ):
        html = response.content.decode()
        assert "<style" not in html
        assert 'style="' not in html
        assert " onclick=" not in html
        for tag in html.split("<script")[1:]:
            assert tag.lstrip().startswith("src=") or ' src="' in tag.split(">")[0], tag[:80]
            assert tag.split(">", 1)[1].startswith("</script"), "script tags must be empty"


def test_robots_txt_keeps_crawlers_out_of_private_and_resident_pages(client):
    response = client.get("/robots.txt")
    assert response.status_code == 200
    assert "Disallow: /r/" in response.content.decode()


def test_the_body_carries_the_csrf_header_for_htmx(personas):
    html = verified_client(personas.manager_a).get("/").content.decode()
    assert 'hx-headers=\'{"X-CSRFToken": "' in html


def test_htmx_is_configured_defensively(client):
    html = client.get("/").content.decode()
    assert '"selfRequestsOnly": true' in html
    assert '"allowEval": false' in html
    assert '"allowScriptTags": false' in html
    assert '"historyCacheSize": 0' in html
    assert '"includeIndicatorStyles": false' in html
