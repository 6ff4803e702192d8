"""A resident's journey through a shared link, and the staff pages around it."""

import uuid

import pytest
from django.urls import reverse

from engagements import residents
from engagements.models import AuditEvent, Outbox, Reflection, SharedLink
from tests.conftest import verified_client
from tests.residents.helpers import form_data, html_of, without_csrf

pytestmark = pytest.mark.django_db


def test_a_resident_reflects_gets_a_receipt_and_withdraws(link, client, world):
    response = client.get(f"/r/{link.token}")
    assert response.status_code == 302
    assert response["Location"] == "/r/"
    page = client.get("/r/")
    assert page.status_code == 200
    assert link.token not in page.content.decode()
    assert "What helps people settle at home after hospital?" in page.content.decode()
    response = client.post("/r/", form_data(client))
    assert response.status_code == 200
    receipt = response.context["receipt"]
    reflection = Reflection.objects.get()
    assert reflection.author is None
    assert reflection.author_role == "resident"
    assert reflection.moderation == "held"
    assert receipt in response.content.decode()
    assert reflection.receipt_hash != receipt

    other = type(client)()
    response = other.post("/r/receipt/", {"code": receipt.lower().replace("-", " ")})
    assert response.status_code == 302
    view = other.get("/r/receipt/yours/").content.decode()
    assert "The bus to the clinic stopped running." in view
    download = other.get("/r/receipt/yours/download.json")
    assert download.json()["reflection"] == "The bus to the clinic stopped running."
    assert other.post("/r/receipt/yours/withdraw/").status_code == 200
    assert not Reflection.objects.exists()
    assert AuditEvent.objects.filter(action="resident.reflection_withdrawn").exists()
    response = other.post("/r/receipt/", {"code": receipt})
    assert response.status_code == 200
    assert "We found nothing sent with this code." in response.content.decode()


def test_a_double_submit_stores_one_reflection_and_shows_the_same_receipt(link, client):
    client.get(f"/r/{link.token}")
    data = form_data(client)
    first = client.post("/r/", data)
    second = client.post("/r/", data)
    assert Reflection.objects.count() == 1
    assert first.context["receipt"] == second.context["receipt"]
    assert SharedLink.objects.get().submissions == 1


def test_unknown_expired_and_revoked_links_say_the_same_thing(link, client, world):
    unknown = client.get("/r/" + "x" * 43)
    residents.link_revoke(link=link, by=world.personas.manager_a)
    revoked = client.get(f"/r/{link.token}")
    assert (unknown.status_code, revoked.status_code) == (404, 410)

    # Identical apart from the per-request security token.
    assert without_csrf(html_of(unknown)) == without_csrf(html_of(revoked))


def test_resident_pages_leak_nothing_onward(link, client):
    response = client.get(f"/r/{link.token}", follow=True)
    for header, value in [
        ("Referrer-Policy", "no-referrer"),
        ("X-Robots-Tag", "noindex, nofollow"),
    ]:
        assert response[header] == value
    assert "no-store" in response["Cache-Control"]
    assert "Disallow: /r/" in client.get("/robots.txt").content.decode()


def test_a_follow_up_email_is_queued_in_the_outbox(link, client):
    client.get(f"/r/{link.token}")
    client.post("/r/", form_data(client, follow_up="on", email="r@example.org"))
    job = Outbox.objects.get()
    assert job.task == residents.FOLLOW_UP
    assert Reflection.objects.get().follow_up_email == "r@example.org"


def test_staff_make_links_and_moderate(link, world, client):
    manager = verified_client(world.personas.manager_a)
    page = reverse("engagements:resident_links", args=[world.cycle_a.public_id])
    response = manager.post(page, {"label": "Library", "days": "10", "moderation_mode": "hold"})
    assert response.status_code == 302
    html = manager.get(page).content.decode()
    assert "/r/" in html
    assert "<svg" in html
    client.get(f"/r/{link.token}")
    client.post("/r/", form_data(client, text="My neighbour Jo Bloggs helped."))
    reflection = Reflection.objects.get()
    queue = manager.get(reverse("engagements:moderation")).content.decode()
    assert "My neighbour Jo Bloggs helped." in queue
    url = reverse("engagements:moderation_act", args=[reflection.public_id])
    manager.post(url, {"action": "redact", "remove": "Jo Bloggs"})
    manager.post(url, {"action": "approve"})
    reflection.refresh_from_db()
    assert reflection.text == "My neighbour […] helped."
    assert reflection.moderation == "published"
    assert verified_client(world.personas.outsider).post(url, {"action": "hide"}).status_code == 404


def test_a_new_link_is_shown_once_and_a_reload_makes_no_second_link(world):
    manager = verified_client(world.personas.manager_a)
    page = reverse("engagements:resident_links", args=[world.cycle_a.public_id])
    form = {"label": "Library", "days": "10", "moderation_mode": "hold"}
    assert manager.post(page, form)["Location"] == page
    carried = manager.cookies["hls_new_link"].value
    shown = manager.get(page)
    token = shown.context["new_url"].rsplit("/r/", 1)[1]
    link = SharedLink.objects.get(label="Library")
    assert residents.link_by_token(token) == link
    assert "Library" in html_of(shown)
    again = manager.get(page)  # a reload: the token is gone, the link is not made twice
    assert "new_url" not in again.context
    assert token not in html_of(again)
    assert SharedLink.objects.filter(label="Library").count() == 1
    # The cookie copied into someone else's browser still needs the page's access rights.
    outsider = verified_client(world.personas.outsider)
    outsider.cookies["hls_new_link"] = carried
    assert outsider.get(page).status_code == 404


def test_a_forged_new_link_cookie_shows_nothing(world, link):
    manager = verified_client(world.personas.manager_a)
    page = reverse("engagements:resident_links", args=[world.cycle_a.public_id])
    manager.cookies["hls_new_link"] = f"{link.public_id}:{link.token}"  # not signed
    assert "new_url" not in manager.get(page).context


def test_no_page_echoes_a_token(link, client, world):
    opened_page = client.get(f"/r/{link.token}", follow=True)
    assert opened_page.redirect_chain == [("/r/", 302)]
    assert link.token not in opened_page.content.decode()
    unknown = client.get("/r/" + "y" * 43)
    assert unknown.status_code == 404
    assert "y" * 43 not in unknown.content.decode()


def test_an_expired_security_token_brings_the_form_back_with_the_words(link, world):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.get(f"/r/{link.token}")
    page = client.get("/r/")
    form = page.context["form"]
    client.cookies.pop("csrftoken", None)  # the security cookie is gone (an old page)
    response = client.post(
        "/r/",
        {
            "text": "Words typed over a long time",
            "identity": "anonymous",
            "consent": "on",
            "submission_key": str(form.initial["submission_key"]),
            "link_ref": form.initial["link_ref"],
        },
    )
    assert response.status_code == 403
    html = response.content.decode()
    assert "Words typed over a long time" in html
    assert "press “Send my reflection” once more" in html
    assert not Reflection.objects.exists()


def test_when_the_database_is_down_the_page_says_so(link, client, monkeypatch):
    from django.db import OperationalError

    client.get(f"/r/{link.token}")
    data = form_data(client)

    def down(**kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(residents, "submit", down)
    client.raise_request_exception = False
    response = client.post("/r/", data)
    assert response.status_code == 503
    assert "your words are still kept in this browser tab" in response.content.decode()


def test_a_no_referrer_page_can_still_post_to_its_own_site(link, world, settings):
    """Browsers send Origin: null from a no-referrer page; Sec-Fetch-Site vouches for it."""
    from django.test import Client

    settings.SESSION_COOKIE_SECURE = False
    client = Client(enforce_csrf_checks=True)
    client.get(f"/r/{link.token}")
    page = client.get("/r/")
    data = form_data(client)
    data["csrfmiddlewaretoken"] = page.context["csrf_token"]
    same_site = client.post(
        "/r/", data, headers={"Origin": "null", "Sec-Fetch-Site": "same-origin"}
    )
    assert same_site.status_code == 200
    assert "receipt" in same_site.context
    data["submission_key"] = str(uuid.uuid4())
    cross_site = client.post(
        "/r/", data, headers={"Origin": "null", "Sec-Fetch-Site": "cross-site"}
    )
    assert cross_site.status_code == 403
    assert Reflection.objects.count() == 1


def test_an_older_browser_without_sec_fetch_site_can_post_with_its_token(link, settings):
    """Safari before 16.4 sends Origin: null and no Sec-Fetch-Site; the CSRF token decides."""
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.get(f"/r/{link.token}")
    page = client.get("/r/")
    data = form_data(client)
    data["csrfmiddlewaretoken"] = page.context["csrf_token"]
    assert client.post("/r/", data, headers={"Origin": "null"}).status_code == 200
    forged = {**data, "submission_key": str(uuid.uuid4()), "csrfmiddlewaretoken": "x" * 64}
    refused = client.post("/r/", forged, headers={"Origin": "null"})
    assert refused.status_code == 403  # the form comes back with the words, nothing stored
    assert Reflection.objects.count() == 1
    # Outside the resident pages an Origin of null is still refused.
    staff = Client(enforce_csrf_checks=True)
    login = staff.get("/accounts/login/")
    response = staff.post(
        "/accounts/login/",
        {"username": "x", "password": "y", "csrfmiddlewaretoken": login.context["csrf_token"]},
        headers={"Origin": "null"},
    )
    assert response.status_code == 403


def test_each_link_opens_in_its_own_engagements_language(link, world, client):
    from engagements.models import Engagement

    client.get(f"/r/{link.token}")
    assert 'lang="en"' in client.get("/r/").content.decode()
    Engagement.objects.filter(pk=world.engagement.pk).update(language="uk")
    client.get(f"/r/{link.token}")
    assert 'lang="uk"' in client.get("/r/").content.decode()


def test_a_receipt_typed_with_cyrillic_lookalike_letters_still_works():
    code = residents.receipt_code(uuid.UUID(int=7))
    cyrillic = code.translate(str.maketrans("ABEKMHOPCTX", "АВЕКМНОРСТХ"))
    assert residents.normalise_receipt(cyrillic.lower()) == code


def test_another_session_replaying_a_key_gets_neither_the_words_nor_the_receipt(link, client):
    from django.test import Client

    client.get(f"/r/{link.token}")
    data = form_data(client, text="Mine alone")
    assert "receipt" in client.post("/r/", data).context
    stranger = Client()
    stranger.get(f"/r/{link.token}")
    response = stranger.post("/r/", {**data, "text": "Something else"})
    html = response.content.decode()
    assert "Mine alone" not in html
    assert residents.receipt_code(uuid.UUID(data["submission_key"])) not in html
    assert stranger.get("/r/receipt/yours/").status_code == 302  # nothing to show them
    assert Reflection.objects.count() == 1


def test_a_refresh_after_the_link_filled_up_still_thanks_the_resident(link, client):
    SharedLink.objects.filter(pk=link.pk).update(max_submissions=1)
    client.get(f"/r/{link.token}")
    data = form_data(client)
    first = client.post("/r/", data)
    again = client.post("/r/", data)
    assert again.status_code == 200
    assert again.context["receipt"] == first.context["receipt"]


def test_two_tabs_with_two_links_each_send_to_their_own_cycle(link, world, client):
    _other, other_token = residents.link_create(
        cycle=world.cycle_b, by=world.personas.manager_b, label="Warm spaces"
    )
    client.get(f"/r/{link.token}")
    tab_a = form_data(client, text="For cycle A")
    client.get(f"/r/{other_token}")  # the second tab takes over the session
    client.post("/r/", tab_a)
    assert Reflection.objects.get().cycle == world.cycle_a


def test_line_breaks_count_once_as_the_counter_shows(link, client):
    client.get(f"/r/{link.token}")
    text = "\r\n".join(["x" * 99] * 50)  # 4,950 letters and 49 breaks: 4,999 as shown
    response = client.post("/r/", form_data(client, text=text))
    assert "receipt" in response.context
    assert Reflection.objects.get().text == text.replace("\r\n", "\n")


def test_moderating_a_withdrawn_reflection_is_refused_not_a_server_error(link, client, world):
    client.get(f"/r/{link.token}")
    client.post("/r/", form_data(client))
    reflection = Reflection.objects.get()
    stale = Reflection.objects.get(pk=reflection.pk)
    residents.withdraw(reflection=reflection)
    with pytest.raises(residents.Refused):
        residents.moderate(reflection=stale, action="approve", by=world.personas.manager_a)


def test_receipt_codes_forgive_digits_that_look_like_letters():
    code = residents.receipt_code(uuid.UUID(int=99))
    typed = code.replace("O", "0").replace("I", "1").replace("B", "8")
    assert residents.normalise_receipt(typed) == code
