import json

import pytest
from django.contrib.auth import get_user_model

from engagements.access import is_facilitator, requires_two_factor
from engagements.demo import PEOPLE, load_demo
from engagements.models import Membership, Organisation

pytestmark = pytest.mark.django_db


def test_the_demo_loads_every_persona_and_can_load_again(tmp_path):
    credentials = tmp_path / "demo.json"
    first = load_demo(credentials)
    second = load_demo(credentials)
    assert [login.password for login in first] == [login.password for login in second]
    assert get_user_model().objects.count() == len(PEOPLE)
    assert Organisation.objects.count() == 4
    assert Membership.objects.count() == len(PEOPLE) - 1
    saved = json.loads(credentials.read_text())
    User = get_user_model()
    for login in first:
        assert User.objects.get(username=login.username).check_password(
            saved["passwords"][login.username]
        )


def test_the_demo_has_the_roles_the_product_needs(tmp_path):
    logins = {login.username: login for login in load_demo(tmp_path / "demo.json")}
    User = get_user_model()
    facilitator = User.objects.get(username="facilitator")
    assert is_facilitator(facilitator)
    assert requires_two_factor(facilitator)
    assert (logins["facilitator"].otpauth_uri or "").startswith("otpauth://totp/")
    for username in ("manager.north", "practitioner.north", "manager.east", "practitioner.east"):
        assert not requires_two_factor(User.objects.get(username=username))
        assert logins[username].otpauth_uri is None
    outsider = User.objects.get(username="outsider")
    assert outsider.memberships.get().organisation.name == "Westmoor Housing Trust"
    assert (tmp_path / "demo.json").stat().st_mode & 0o077 == 0


def test_the_demo_engagement_shows_a_whole_learning_cycle(tmp_path):
    from engagements.models import (
        Actor,
        Adaptation,
        Engagement,
        Experiment,
        Factor,
        LearningCycle,
        Reflection,
    )

    load_demo(tmp_path / "demo.json")
    load_demo(tmp_path / "demo.json")
    engagement = Engagement.objects.get()
    cycles = LearningCycle.objects.filter(engagement=engagement)
    # A cycle at every stage of the default template.
    assert {c.stage_id for c in cycles} == set(engagement.stages.values_list("id", flat=True))
    assert Actor.objects.count() >= 2
    assert Factor.objects.exists()
    assert Experiment.objects.exclude(what_we_learned="").exists()
    reflections = Reflection.objects.filter(cycle__engagement=engagement)
    assert set(reflections.values_list("identity", flat=True)) == set(Reflection.Identity.values)
    assert {"practitioner", "manager", "learning_partner"} <= set(
        reflections.values_list("author_role", flat=True)
    )
    assert Adaptation.objects.filter(reflections__isnull=False).exists()
    assert engagement.facilitators.filter(username="facilitator").exists()


def test_the_demo_prints_a_resident_link_that_opens(tmp_path, client):
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("demo", credentials=tmp_path / "demo.json", force=True, stdout=out)
    line = next(line for line in out.getvalue().splitlines() if "/r/" in line)
    path = line[line.index("/r/") :].strip()
    response = client.get(path)
    assert response.status_code == 302
    assert client.get(response["Location"]).status_code == 200


def test_an_older_demo_gains_a_working_resident_link(tmp_path, client):
    import json

    from engagements import residents
    from engagements.models import SharedLink

    credentials = tmp_path / "demo.json"
    load_demo(credentials)
    SharedLink.objects.all().delete()  # as on data loaded before resident links existed
    load_demo(credentials)
    token = json.loads(credentials.read_text())["resident_token"]
    link = residents.link_by_token(token)
    assert link is not None
    assert link.is_active
