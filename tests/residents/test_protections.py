"""Issue 4, point 5: each protection of a resident link, proved on the real views."""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.conf import settings
from django.db import connection
from django.db.models import GenericIPAddressField
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from engagements import resident_views, residents
from engagements.models import AuditEvent, Outbox, Reflection, SharedLink
from hls.lib.logging import RedactTokens
from tests.residents.helpers import form_data, html_of, make_link, opened, without_csrf

pytestmark = pytest.mark.django_db

UNKNOWN = "x" * 43  # shaped like a real token, matching nothing
CLOSED_WORDS = "This link does not work"


def frozen() -> Any:
    """Stop the clock, so a fixed rate-limit window cannot roll over in the middle of a test."""
    return time_machine.travel(timezone.now(), tick=False)


# --- 410 / 404 ------------------------------------------------------------------------------


def test_an_expired_link_is_gone(link):
    with time_machine.travel(timezone.now() + timedelta(days=31)):
        response = Client().get(f"/r/{link.token}")
    assert response.status_code == 410
    assert CLOSED_WORDS in html_of(response)
    assert "ask the person or organisation who gave you the link" in html_of(response)


def test_a_revoked_link_is_gone(link, world):
    residents.link_revoke(link=link, by=world.personas.manager_a)
    response = Client().get(f"/r/{link.token}")
    assert response.status_code == 410
    assert CLOSED_WORDS in html_of(response)


def test_a_full_link_is_gone_and_a_late_post_keeps_the_words(world):
    link = make_link(world.cycle_a, world.personas.manager_a, max_submissions=1)
    first = opened(link)
    late = opened(link)
    late_data = form_data(late, text="I was second to write.")
    assert first.post("/r/", form_data(first)).status_code == 200
    assert SharedLink.objects.get().submissions == 1

    assert Client().get(f"/r/{link.token}").status_code == 410
    response = late.post("/r/", late_data)
    assert response.status_code == 410
    assert "I was second to write." in html_of(response)
    assert "This link has closed" in html_of(response)
    assert Reflection.objects.count() == 1


def test_an_unknown_token_is_not_found(link):
    response = Client().get(f"/r/{UNKNOWN}")
    assert response.status_code == 404
    assert CLOSED_WORDS in html_of(response)


def test_not_found_and_gone_pages_are_identical_apart_from_the_csrf_token(link, world):
    full = make_link(world.cycle_a, world.personas.manager_a, max_submissions=1)
    SharedLink.objects.filter(pk=full.pk).update(submissions=1)
    unknown = Client().get(f"/r/{UNKNOWN}")
    with time_machine.travel(timezone.now() + timedelta(days=31)):
        expired = Client().get(f"/r/{link.token}")
    gone_full = Client().get(f"/r/{full.token}")
    residents.link_revoke(link=link, by=world.personas.manager_a)
    revoked = Client().get(f"/r/{link.token}")
    assert [r.status_code for r in (unknown, expired, gone_full, revoked)] == [404, 410, 410, 410]
    baseline = without_csrf(html_of(unknown))
    for response in (expired, gone_full, revoked):
        assert without_csrf(html_of(response)) == baseline
        assert response["Content-Type"] == unknown["Content-Type"]


def test_unknown_and_closed_links_cost_the_same_single_hash_lookup(link, world):
    residents.link_revoke(link=link, by=world.personas.manager_a)
    with CaptureQueriesContext(connection) as unknown_queries:
        assert Client().get(f"/r/{UNKNOWN}").status_code == 404
    with CaptureQueriesContext(connection) as gone_queries:
        assert Client().get(f"/r/{link.token}").status_code == 410
    assert len(unknown_queries) == len(gone_queries) == 1
    for captured in (unknown_queries, gone_queries):
        sql = captured.captured_queries[0]["sql"]
        assert "token_hash" in sql
        assert link.token not in sql  # only the hash is ever looked up


# --- headers, robots.txt, other origins -----------------------------------------------------


def _resident_responses(link, world) -> list[tuple[str, Any]]:
    """One of every kind of response under /r/, error pages and receipt pages included."""
    seen: list[tuple[str, Any]] = []
    client = Client()
    seen.append(("open", client.get(f"/r/{link.token}")))
    seen.append(("form", client.get("/r/")))
    seen.append(("invalid form", client.post("/r/", form_data(client, text=""))))
    thanks = client.post("/r/", form_data(client))
    seen.append(("thanks", thanks))
    code = thanks.context["receipt"]
    seen.append(("receipt form", client.get("/r/receipt/")))
    seen.append(("receipt wrong", client.post("/r/receipt/", {"code": "AAAA-BBBB-CCCC-DDDD"})))
    seen.append(("receipt right", client.post("/r/receipt/", {"code": code})))
    seen.append(("receipt view", client.get("/r/receipt/yours/")))
    seen.append(("download json", client.get("/r/receipt/yours/download.json")))
    seen.append(("download txt", client.get("/r/receipt/yours/download.txt")))
    seen.append(("download other", client.get("/r/receipt/yours/download.exe")))
    seen.append(("withdraw confirm", client.get("/r/receipt/yours/withdraw/")))
    seen.append(("withdrawn", client.post("/r/receipt/yours/withdraw/")))
    seen.append(("withdrawn again", client.post("/r/receipt/yours/withdraw/")))
    seen.append(("no link", Client().get("/r/")))
    seen.append(("no link post", Client().post("/r/", {"text": "x"})))
    seen.append(("unknown", Client().get(f"/r/{UNKNOWN}")))
    seen.append(("not allowed", Client().put(f"/r/{link.token}")))
    seen.append(("no such page", Client().get("/r/receipt/nothing/here/")))
    csrf_client = Client(enforce_csrf_checks=True)
    seen.append(("csrf failure", csrf_client.post("/r/receipt/", {"code": code})))
    residents.link_revoke(link=link, by=world.personas.manager_a)
    seen.append(("revoked", Client().get(f"/r/{link.token}")))
    return seen


def test_every_resident_response_leaks_nothing_onward(link, world):
    responses = _resident_responses(link, world)
    statuses = {name: response.status_code for name, response in responses}
    assert statuses["unknown"] == 404
    assert statuses["revoked"] == 410
    assert statuses["csrf failure"] == 403
    assert statuses["download other"] == 404
    assert statuses["not allowed"] == 405
    for name, response in responses:
        assert response.status_code < 500, name
        assert response["Referrer-Policy"] == "no-referrer", name
        assert "noindex" in response["X-Robots-Tag"], name
        cache_control = response["Cache-Control"]
        assert "no-store" in cache_control, name
        assert "max-age=0" in cache_control, name


def test_resident_pages_load_nothing_from_other_origins(link, world):
    for name, response in _resident_responses(link, world):
        if not response["Content-Type"].startswith("text/html") or not response.content:
            continue
        policy = response["Content-Security-Policy"]
        assert "default-src 'self'" in policy, name
        for directive in ("script-src", "style-src", "img-src", "font-src", "connect-src"):
            assert f"{directive} 'self'" in policy, (name, directive)
        html = html_of(response)
        # No element pulls anything from elsewhere (absolute or protocol-relative URLs).
        assert not re.search(r'\b(?:src|href|action)="(?:https?:)?//', html), name


def test_robots_txt_disallows_resident_links(client):
    response = client.get("/robots.txt")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    lines = response.content.decode().splitlines()
    assert "User-agent: *" in lines
    assert lines.index("Disallow: /r/") > lines.index("User-agent: *")


# --- rate limits ----------------------------------------------------------------------------


def test_link_lookups_are_limited_per_ip(link):
    client = Client(REMOTE_ADDR="192.0.2.10")
    with frozen():
        for _ in range(resident_views.LOOKUPS_PER_MINUTE):
            assert client.get(f"/r/{link.token}").status_code == 302
        refused = client.get(f"/r/{link.token}")
        other_ip = Client(REMOTE_ADDR="192.0.2.11").get(f"/r/{link.token}")
    assert refused.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert link.token not in html_of(refused)
    assert "too many attempts" in html_of(refused)
    assert refused["Referrer-Policy"] == "no-referrer"
    assert other_ip.status_code == 302


def test_after_too_many_unknown_tokens_even_a_valid_one_is_refused(link):
    client = Client(REMOTE_ADDR="192.0.2.20")
    with frozen():
        for n in range(resident_views.FAILED_LOOKUPS_PER_10_MINUTES):
            assert client.get(f"/r/{n:043d}").status_code == 404
        refused = client.get(f"/r/{link.token}")
        refused_unknown = client.get(f"/r/{UNKNOWN}")
        other_ip = Client(REMOTE_ADDR="192.0.2.21").get(f"/r/{link.token}")
    assert refused.status_code == refused_unknown.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= 600
    assert link.token not in html_of(refused)
    assert other_ip.status_code == 302


def test_submissions_are_limited_per_link_and_the_words_stay(link, world, settings):
    settings.RESIDENT_SUBMIT_LIMIT = 2
    other_link = make_link(world.cycle_a, world.personas.manager_a)
    with frozen():
        # Different people (addresses) through the same link: the limit is the link's.
        saved = []
        for n in range(2):
            client = opened(link, Client(REMOTE_ADDR=f"192.0.2.{30 + n}"))
            data = form_data(client, text=f"Reflection {n}")
            assert client.post("/r/", data).status_code == 200
            saved.append((client, data))
        late = opened(link, Client(REMOTE_ADDR="192.0.2.40"))
        refused = late.post("/r/", form_data(late, text="Words typed with care, not lost."))
        # A retried POST of a reflection already saved is not refused: same receipt again.
        client, data = saved[1]
        retried = client.post("/r/", data)
        elsewhere = opened(other_link, Client(REMOTE_ADDR="192.0.2.40"))
        other = elsewhere.post("/r/", form_data(elsewhere))
    assert refused.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= 60
    html = html_of(refused)
    assert "Words typed with care, not lost." in html
    assert "Many people are sending reflections right now" in html
    assert retried.status_code == 200
    assert "receipt" in retried.context
    assert other.status_code == 200
    assert Reflection.objects.filter(shared_link=link).count() == 2
    assert SharedLink.objects.get(pk=link.pk).submissions == 2


def test_wrong_receipt_codes_are_limited_per_ip(link):
    client = opened(link, Client(REMOTE_ADDR="192.0.2.50"))
    code = client.post("/r/", form_data(client)).context["receipt"]
    guesser = Client(REMOTE_ADDR="192.0.2.50")
    with frozen():
        for n in range(resident_views.FAILED_LOOKUPS_PER_10_MINUTES):
            response = guesser.post("/r/receipt/", {"code": f"AAAA-BBBB-CCCC-{n:04d}"})
            assert response.status_code == 200
        refused = guesser.post("/r/receipt/", {"code": code})  # even the right one, now
        other_ip = Client(REMOTE_ADDR="192.0.2.51").post("/r/receipt/", {"code": code})
    assert refused.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= 600
    assert other_ip.status_code == 302


# --- nothing about the person is stored -----------------------------------------------------


def test_a_reflection_has_no_ip_address_or_user_agent_field():
    names = {field.name for field in Reflection._meta.get_fields()}
    for forbidden in ("ip", "ip_address", "remote_addr", "user_agent", "useragent", "agent"):
        assert forbidden not in names
    assert not [n for n in names if "addr" in n or "agent" in n or n.endswith("_ip")]
    assert not [f for f in Reflection._meta.get_fields() if isinstance(f, GenericIPAddressField)]


def test_a_stored_resident_reflection_holds_no_address_or_user_agent(link):
    address, agent = "198.51.100.213", "Mozilla/5.0 (Distinctive-Agent 9.9.9)"
    client = Client(REMOTE_ADDR=address, HTTP_USER_AGENT=agent)
    opened(link, client)
    response = client.post("/r/", form_data(client, follow_up="on", email="r@example.org"))
    assert response.status_code == 200
    reflection = Reflection.objects.get()
    rows = [
        Reflection.objects.filter(pk=reflection.pk).values().get(),
        *AuditEvent.objects.values(),
        *Outbox.objects.values(),
        *SharedLink.objects.values(),
    ]
    for row in rows:
        flat = repr(row)
        assert address not in flat
        assert "Distinctive-Agent" not in flat


# --- tokens never reach the logs ------------------------------------------------------------


def test_the_configured_log_handlers_redact_tokens():
    config: Any = settings.LOGGING
    for name, handler in config["handlers"].items():
        assert "redact_tokens" in handler.get("filters", []), name
    assert config["filters"]["redact_tokens"]["()"] == "hls.lib.logging.RedactTokens"


def test_tokens_never_appear_in_logs(link, world, caplog):
    caplog.handler.addFilter(RedactTokens())
    caplog.set_level(logging.DEBUG)
    client = Client()
    client.get(f"/r/{link.token}")  # the token exchange
    client.post("/r/", form_data(client))
    not_found = Client().get(f"/r/{UNKNOWN}")
    residents.link_revoke(link=link, by=world.personas.manager_a)
    gone = Client().get(f"/r/{link.token}")
    assert (not_found.status_code, gone.status_code) == (404, 410)

    messages = [record.getMessage() for record in caplog.records]
    # Django did log the 404 and the 410 (with the path), only redacted.
    assert any("Not Found: /r/[redacted]" in m for m in messages), messages
    assert any("Gone: /r/[redacted]" in m for m in messages), messages
    for record in caplog.records:
        assert link.token not in repr(vars(record))
        assert UNKNOWN not in repr(vars(record))
        assert getattr(record, "request", None) is None
    assert link.token not in caplog.text
    assert UNKNOWN not in caplog.text


# --- GET changes nothing --------------------------------------------------------------------


def _state() -> tuple[int, int, int, int, list[tuple[Any, int]]]:
    return (
        SharedLink.objects.count(),
        Reflection.objects.count(),
        AuditEvent.objects.count(),
        Outbox.objects.count(),
        list(SharedLink.objects.order_by("pk").values_list("last_used", "submissions")),
    )


def test_opening_a_link_changes_no_data(link, world):
    client = Client()
    opened(link, client)
    client.post("/r/", form_data(client))  # so last_used has a value to keep
    before = _state()
    assert before[4][0][0] is not None
    for _ in range(3):
        assert Client().get(f"/r/{link.token}").status_code == 302
        assert client.get("/r/").status_code == 200
    assert Client().get(f"/r/{UNKNOWN}").status_code == 404
    assert _state() == before
    residents.link_revoke(link=link, by=world.personas.manager_a)
    before = _state()
    assert Client().get(f"/r/{link.token}").status_code == 410
    assert _state() == before


def test_the_token_leaves_the_address_bar_and_the_page(link):
    response = Client().get(f"/r/{link.token}", follow=True)
    assert response.redirect_chain == [("/r/", 302)]
    assert link.token not in html_of(response)
