"""The resident's short session lives in one signed cookie, and a send is one statement."""

import pytest
from django.contrib.sessions.models import Session
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from engagements import resident_session
from engagements.models import AuditEvent, Outbox, Reflection, SharedLink
from tests.residents.helpers import TEXT, form_data, html_of, opened

pytestmark = pytest.mark.django_db


def test_opening_and_sending_write_no_server_session(link):
    client = opened(link)
    cookie = client.cookies[resident_session.COOKIE]
    assert cookie["path"] == "/r/"
    assert cookie["httponly"]
    assert cookie["samesite"] == "Lax"
    assert int(cookie["max-age"]) == resident_session.SECONDS
    response = client.post("/r/", form_data(client))
    assert response.status_code == 200
    assert "receipt" in response.context
    assert Session.objects.count() == 0
    assert "sessionid" not in client.cookies


def test_a_tampered_cookie_is_no_session_and_the_words_come_back(link):
    client = opened(link)
    data = form_data(client)
    value = client.cookies[resident_session.COOKIE].value
    client.cookies[resident_session.COOKIE] = value[:-3] + ("AAA" if value[-3:] != "AAA" else "BBB")
    response = client.post("/r/", data)
    assert response.status_code == 200
    assert TEXT in html_of(response)
    assert response.context["resumed"] is True
    assert Reflection.objects.count() == 0


def test_an_old_cookie_has_expired(link, time_machine):
    time_machine.move_to("2026-11-01 09:00", tick=False)
    client = opened(link)
    time_machine.move_to("2026-11-01 21:01", tick=False)  # twelve hours and a minute later
    page = client.get("/r/")
    assert page.status_code == 200
    assert page.templates[0].name == "residents/no_link.html"


def test_an_everyday_send_reads_nothing_first_and_writes_in_one_statement(link):
    client = opened(link)
    data = form_data(client, email="me@example.org", follow_up="on")
    with CaptureQueriesContext(connection) as queries:
        response = client.post("/r/", data)
    assert response.status_code == 200
    assert [q["sql"].split()[0] for q in queries.captured_queries] == ["WITH"]
    reflection = Reflection.objects.get()
    assert reflection.cycle_id == link.cycle_id
    assert reflection.stage_id == link.cycle.stage_id
    assert reflection.moderation == Reflection.Moderation.HELD
    assert reflection.follow_up_email == "me@example.org"
    assert Outbox.objects.get().object_id == reflection.pk
    event = AuditEvent.objects.get(action="resident.reflection_added")
    assert event.object_id == str(reflection.public_id)
    assert event.detail == {"link": link.token_prefix}
    assert event.actor_id is None
    assert SharedLink.objects.get().submissions == 1
    assert f'data-draft-sent="reflection-{link.public_id}"' in html_of(response)


def test_a_publish_at_once_link_publishes_and_no_follow_up_writes_no_outbox(publish_link):
    client = opened(publish_link)
    response = client.post("/r/", form_data(client))
    assert response.status_code == 200
    assert Reflection.objects.get().moderation == Reflection.Moderation.PUBLISHED
    assert Outbox.objects.count() == 0


def test_the_cycle_moving_stage_after_the_link_opened_files_the_reflection_at_the_new_stage(
    link, world
):
    client = opened(link)
    data = form_data(client)
    later = link.cycle.engagement.stages.exclude(pk=link.cycle.stage_id).first()
    type(link.cycle).objects.filter(pk=link.cycle_id).update(stage=later)
    assert client.post("/r/", data).status_code == 200
    assert Reflection.objects.get().stage_id == later.pk


def test_a_full_link_takes_nothing_more_and_keeps_the_words(link):
    SharedLink.objects.filter(pk=link.pk).update(max_submissions=1)
    first, second = opened(link), opened(link, Client())
    first_data, second_data = form_data(first), form_data(second, text="Second words.")
    assert first.post("/r/", first_data).status_code == 200
    response = second.post("/r/", second_data)
    assert response.status_code == 410
    assert "Second words." in html_of(response)
    assert Reflection.objects.count() == 1
    assert SharedLink.objects.get().submissions == 1


def test_a_link_deleted_while_they_typed_gives_the_words_back(link):
    client = opened(link)
    data = form_data(client, text="Words to keep.")
    SharedLink.objects.filter(pk=link.pk).delete()
    response = client.post("/r/", data)
    assert response.status_code == 400
    assert "Words to keep." in html_of(response)
    assert Reflection.objects.count() == 0


def test_a_replayed_key_after_withdrawal_is_refused_with_the_words(link):
    client = opened(link)
    data = form_data(client)
    assert client.post("/r/", data).status_code == 200
    client.get("/r/receipt/yours/withdraw/")
    assert client.post("/r/receipt/yours/withdraw/").status_code == 200
    assert Reflection.objects.count() == 0
    other = opened(link, Client())
    response = other.post("/r/", data)
    assert response.status_code == 200
    assert TEXT in html_of(response)
    assert "You withdrew this reflection" in html_of(response)
    assert Reflection.objects.count() == 0
