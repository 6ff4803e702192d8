import logging
import uuid
import pytest
from django.test import Client
from engagements.models import Reflection, Outbox
from tests.residents.helpers import make_link, opened, form_data, TEXT

pytestmark = pytest.mark.django_db


def test_two_tabs_wrong_cycle(world):
    la = make_link(world.cycle_a, world.personas.manager_a)
    lb = make_link(world.cycle_b, world.personas.manager_b)
    c = opened(la)
    data_a = form_data(c)           # tab 1: form for cycle A
    opened(lb, c)                   # tab 2: resident opens link B
    r = c.post("/r/", data_a)       # submits tab 1
    assert r.status_code == 200
    refl = Reflection.objects.get()
    print("cycle of reflection:", refl.cycle.title, "expected", world.cycle_a.title)
    assert refl.cycle_id == world.cycle_b.pk  # demonstrates bug


def test_csrf_rescue_then_key_replay_gives_receipt(world):
    link = make_link(world.cycle_a, world.personas.manager_a)
    # attacker learns link_ref by opening the link themselves
    attacker = opened(link)
    atk = form_data(attacker)
    chosen_key = str(uuid.uuid4())
    # cross-site POST into the victim's browser: no CSRF token, no session
    victim = Client(enforce_csrf_checks=True)
    r = victim.post("/r/", {"link_ref": atk["link_ref"], "submission_key": chosen_key, "text": "prefilled"},
                    HTTP_ORIGIN="https://evil.example", HTTP_SEC_FETCH_SITE="cross-site")
    print("rescue status", r.status_code)
    html = r.content.decode()
    assert chosen_key in html
    # victim submits the rescued form (valid csrf now)
    csrf = victim.cookies["csrftoken"].value
    import re
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)
    r = victim.post("/r/", {"csrfmiddlewaretoken": token, "link_ref": atk["link_ref"], "submission_key": chosen_key,
                            "text": "my private words", "identity": "anonymous", "consent": "on",
                            "follow_up": "on", "email": "victim@example.org"})
    assert r.status_code == 200 and "receipt" in r.context, r.status_code
    # attacker replays the key
    r = attacker.post("/r/", dict(atk, submission_key=chosen_key, text="x"))
    print("attacker receipt:", r.context.get("receipt"))
    v = attacker.get("/r/receipt/yours/")
    assert "my private words" in v.content.decode()
    d = attacker.get("/r/receipt/yours/download.json")
    print(d.content.decode())


def test_404_logged(world, caplog):
    c = Client()
    with caplog.at_level(logging.WARNING, logger="django.request"):
        c.get("/r/" + "A" * 43)
    print([rec.getMessage() for rec in caplog.records])


def test_crlf_length(world):
    link = make_link(world.cycle_a, world.personas.manager_a)
    c = opened(link)
    text = ("x" * 99 + "\r\n") * 49 + "y" * 50   # browser-side length = 100*49+50 = 4950
    r = c.post("/r/", form_data(c, text=text))
    print(r.status_code, r.context["form"].errors if r.context and "form" in r.context else "")
    print("server len", len(text), "browser len", len(text.replace("\r\n", "\n")))


def test_receipt_confusables(world):
    link = make_link(world.cycle_a, world.personas.manager_a)
    c = opened(link)
    r = c.post("/r/", form_data(c))
    code = r.context["receipt"]
    print("code", code)


def test_receipt_path_without_slash(world):
    c = Client()
    r = c.get("/r/receipt")
    print("/r/receipt ->", r.status_code)
