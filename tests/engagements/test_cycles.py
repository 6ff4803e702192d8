"""Learning cycles through the pages a person uses: the behaviour, not the markup."""

from typing import Any

import pytest
from django.urls import reverse

from engagements import services
from engagements.models import (
    Actor,
    Adaptation,
    AuditEvent,
    Engagement,
    LearningCycle,
    Reflection,
    StageMove,
)
from tests.conftest import verified_client

pytestmark = pytest.mark.django_db


def cycle_url(cycle, name="engagements:cycle"):
    return reverse(name, args=[cycle.public_id])


def test_a_facilitator_creates_an_engagement_with_the_default_stages(personas):
    client = verified_client(personas.facilitator)
    response = client.post(
        reverse("engagements:engagement_create"),
        {
            "title": "Learning together",
            "purpose": "Why we meet",
            "timezone": "Europe/Kyiv",
            "language": "uk",
            "retention_days": "365",
        },
    )
    engagement = Engagement.objects.get()
    assert response.status_code == 302
    assert engagement.learning_partner == personas.learning_partner
    assert list(engagement.facilitators.all()) == [personas.facilitator]
    # Stored in the engagement's language, each stage with its prompting questions.
    stages = list(engagement.stages.all())
    assert [s.name for s in stages] == [
        "Зрозуміти систему",
        "Спільне проєктування",
        "Експеримент",
        "Осмислити й адаптувати",
    ]
    assert all(s.question_list for s in stages)


def test_only_learning_partner_staff_create_engagements(personas):
    response = verified_client(personas.manager_a).get(reverse("engagements:engagement_create"))
    assert response.status_code == 404


def test_a_facilitator_renames_adds_and_reorders_stages(world):
    client = verified_client(world.personas.facilitator)
    engagement = world.engagement
    first, second = list(engagement.stages.all())[:2]
    client.post(
        reverse("engagements:stage_edit", args=[engagement.public_id, first.public_id]),
        {f"s{first.pk}-name": "Listen", f"s{first.pk}-questions": "Who lives here?\nWho helps?"},
    )
    client.post(
        reverse("engagements:stages", args=[engagement.public_id]),
        {"new-name": "Share", "new-questions": "Who else should hear this?"},
    )
    client.post(
        reverse("engagements:stage_reorder", args=[engagement.public_id, second.public_id]),
        {"direction": "up"},
    )
    names = list(engagement.stages.values_list("name", flat=True))
    assert names[:2] == [second.name, "Listen"]
    assert names[-1] == "Share"
    first.refresh_from_db()
    assert first.question_list == ["Who lives here?", "Who helps?"]


def test_a_cycle_moves_stage_with_a_dated_note_and_the_journal_shows_it(world):
    client = verified_client(world.personas.manager_a)
    cycle = world.cycle_a
    co_design = world.engagement.stages.all()[1]
    response = client.post(
        cycle_url(cycle, "engagements:cycle_move"),
        {
            "move-stage": str(co_design.public_id),
            "move-note": "We know who to involve.",
            "move-version": str(cycle.version),
        },
    )
    assert response.status_code == 302
    cycle.refresh_from_db()
    assert cycle.stage == co_design
    move = StageMove.objects.filter(cycle=cycle).last()
    assert move is not None
    assert (move.moved_by, move.note) == (world.personas.manager_a, "We know who to involve.")
    page = client.get(cycle_url(cycle)).content.decode()
    assert "We know who to involve." in page
    assert "Moved from" in page


def test_a_stage_move_needs_a_note_and_keeps_what_was_typed(world):
    client = verified_client(world.personas.manager_a)
    co_design = world.engagement.stages.all()[1]
    response = client.post(
        cycle_url(world.cycle_a, "engagements:cycle_move"),
        {"move-stage": str(co_design.public_id), "move-note": "", "move-version": "1"},
    )
    assert response.status_code == 200
    assert "This field is required." in response.content.decode()
    assert StageMove.objects.filter(cycle=world.cycle_a).count() == 1


def test_identity_choices_are_kept_on_the_server(world):
    practitioner = world.personas.practitioner_a
    practitioner.first_name, practitioner.last_name = "Petra", "Quill"
    practitioner.save()
    cycle = world.cycle_a
    client = verified_client(world.personas.facilitator)
    for identity in ("anonymous", "pseudonymous"):
        services.reflection_add(
            cycle=cycle,
            by=practitioner,
            author_role="practitioner",
            text=identity,
            identity=identity,
        )
    page = client.get(cycle_url(cycle)).content.decode()
    # Not in the journal, nor in the labels of the adaptation form's reflection choices.
    assert "Petra" not in page
    assert "Quill" not in page
    assert "Anonymous (Practitioner)" in page
    assert "Participant " in page
    services.reflection_add(
        cycle=cycle, by=practitioner, author_role="practitioner", text="mine", identity="named"
    )
    assert "Petra Quill (Practitioner)" in client.get(cycle_url(cycle)).content.decode()


def test_a_pseudonym_is_stable_in_an_engagement_and_differs_between_engagements(world):
    from engagements.selectors import pseudonym

    user = world.personas.practitioner_a
    for text in ("first", "second"):
        services.reflection_add(
            cycle=world.cycle_a,
            by=user,
            author_role="practitioner",
            text=text,
            identity="pseudonymous",
        )
    page = verified_client(user).get(cycle_url(world.cycle_a)).content.decode()
    # Both reflections carry the one name the engagement gives this person.
    assert page.count(pseudonym(user.pk, world.engagement.pk)) >= 2
    assert pseudonym(user.pk, world.engagement.pk) != pseudonym(user.pk, world.engagement.pk + 1)


def test_an_adaptation_records_what_prompted_it(world):
    client = verified_client(world.personas.manager_a)
    cycle = world.cycle_a
    reflection = services.reflection_add(
        cycle=cycle, by=world.personas.practitioner_a, author_role="practitioner", text="Noticed"
    )
    response = client.post(
        reverse("engagements:child_add", args=[cycle.public_id, "adaptation"]),
        {
            "adaptation-what_changed": "We call on day two",
            "adaptation-decided_by": "Team meeting",
            "adaptation-decided_on": "2026-11-20",
            "adaptation-status": "in_place",
            "adaptation-reflections": [str(reflection.public_id)],
        },
    )
    assert response.status_code == 302
    adaptation = Adaptation.objects.get()
    assert list(adaptation.reflections.all()) == [reflection]
    assert adaptation.recorded_by == world.personas.manager_a


def test_htmx_add_returns_the_section_with_an_announcement(world):
    client = verified_client(world.personas.practitioner_a)
    response = client.post(
        reverse("engagements:child_add", args=[world.cycle_a.public_id, "actor"]),
        {"actor-name": "Neighbours", "actor-kind": "group", "actor-trust": "high"},
        headers={"HX-Request": "true"},
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith('<section id="map"')
    assert "Actor added to the system map." in html
    assert "Neighbours" in html
    assert Actor.objects.get().name == "Neighbours"


def test_an_htmx_edit_with_errors_replaces_only_the_form(world):
    experiment = services.experiment_add(
        cycle=world.cycle_a,
        by=world.personas.manager_a,
        title="Calls",
        kind="probe",
        premise="Maybe",
    )
    response = verified_client(world.personas.manager_a).post(
        reverse("engagements:child_edit", args=["experiment", experiment.public_id]),
        {"edit-title": "", "edit-kind": "probe", "edit-premise": "Kept words", "edit-version": "1"},
        headers={"HX-Request": "true"},
    )
    assert response.headers["HX-Retarget"] == f"#item-{experiment.public_id}"
    assert "Kept words" in response.content.decode()


def test_only_the_author_edits_a_reflection(world):
    reflection = services.reflection_add(
        cycle=world.cycle_a, by=world.personas.practitioner_a, author_role="practitioner", text="x"
    )
    url = reverse("engagements:child_edit", args=["reflection", reflection.public_id])
    assert verified_client(world.personas.manager_a).get(url).status_code == 404
    assert verified_client(world.personas.practitioner_a).get(url).status_code == 200


def test_links_show_both_ways_and_only_to_cycles_the_reader_may_see(world):
    cycle_a, cycle_b = world.cycle_a, world.cycle_b
    services.cycle_update(
        cycle=cycle_b, version=None, by=world.personas.manager_b, visibility="engagement"
    )
    client = verified_client(world.personas.manager_a)
    response = client.post(
        cycle_url(cycle_a, "engagements:cycle_links"),
        {"other": str(cycle_b.public_id), "relation": "part_of"},
    )
    assert response.status_code == 302
    assert "Warm spaces" in client.get(cycle_url(cycle_a)).content.decode()
    # From B's side the link reads the other way, but cycle A is private to organisation A.
    page_b = verified_client(world.personas.manager_b).get(cycle_url(cycle_b)).content.decode()
    assert cycle_a.title not in page_b
    services.cycle_update(
        cycle=cycle_a, version=None, by=world.personas.manager_a, visibility="engagement"
    )
    page_b = verified_client(world.personas.manager_b).get(cycle_url(cycle_b)).content.decode()
    assert "Contains" in page_b
    assert cycle_a.title in page_b


def test_the_cycle_list_filters_by_organisation_stage_scale_and_status(world):
    client = verified_client(world.personas.facilitator)
    url = reverse("engagements:cycles", args=[world.engagement.public_id])
    assert "2 cycles shown" in client.get(url).content.decode()
    page = client.get(url, {"scale": "place"}).content.decode()
    assert "Warm spaces" in page
    assert "Hospital discharge" not in page
    page = client.get(url, {"organisation": str(world.personas.org_a.public_id)}).content.decode()
    assert "Hospital discharge" in page
    assert "Warm spaces" not in page
    page = client.get(url, {"status": "closed"}).content.decode()
    assert "No cycles match these filters." in page
    partial = client.get(
        url, {"scale": "team"}, headers={"HX-Request": "true", "HX-Target": "cycle-results"}
    ).content.decode()
    assert partial.lstrip().startswith('<div id="cycle-results"')
    assert "<html" not in partial


def test_a_refused_object_writes_an_audit_event_without_content(world):
    client = verified_client(world.personas.outsider)
    assert client.get(cycle_url(world.cycle_a)).status_code == 404
    event = AuditEvent.objects.get(action="access.denied")
    assert event.actor == world.personas.outsider
    assert event.object_id == str(world.cycle_a.public_id)


def test_a_closed_cycle_is_read_only(world):
    cycle = world.cycle_a
    services.cycle_update(cycle=cycle, version=None, by=world.personas.manager_a, status="closed")
    client = verified_client(world.personas.manager_a)
    page = client.get(cycle_url(cycle)).content.decode()
    assert "This cycle is closed." in page
    response = client.post(
        reverse("engagements:child_add", args=[cycle.public_id, "reflection"]),
        {"reflection-text": "Late thought", "reflection-identity": "named"},
    )
    assert response.status_code == 200
    assert "This cycle is closed. Reopen it to add to it." in response.content.decode()
    assert "Late thought" in response.content.decode()
    assert not Reflection.objects.exists()
    assert LearningCycle.objects.get(pk=cycle.pk).status == "closed"


def test_an_edit_without_its_version_is_refused_rather_than_overwriting(world):
    experiment = services.experiment_add(
        cycle=world.cycle_a, by=world.personas.manager_a, title="Calls", kind="probe", premise="x"
    )
    response = verified_client(world.personas.manager_a).post(
        reverse("engagements:child_edit", args=["experiment", experiment.public_id]),
        {"edit-title": "Mine", "edit-kind": "probe", "edit-premise": "Typed words"},
    )
    html = response.content.decode()
    assert "This form is out of date." in html
    assert "Typed words" in html
    experiment.refresh_from_db()
    assert experiment.title == "Calls"


def test_an_htmx_request_after_the_session_ended_is_refused_without_a_swap(world, client):
    url = reverse("engagements:child_add", args=[world.cycle_a.public_id, "reflection"])
    data = {"reflection-text": "kept", "reflection-identity": "named"}
    assert client.post(url, data, headers={"HX-Request": "true"}).status_code == 401
    # Without htmx, the usual trip to the sign-in page.
    assert client.post(url, data).status_code == 302
    assert not Reflection.objects.exists()


def test_the_system_map_diagram_keeps_svg_numbers_in_ukrainian(world):
    for name in ("Residents", "Ward staff", "Volunteers"):
        services.actor_add(
            cycle=world.cycle_a, by=world.personas.manager_a, name=name, kind="group"
        )
    client = verified_client(world.personas.manager_a)
    client.cookies["django_language"] = "uk"
    html = client.get(cycle_url(world.cycle_a)).content.decode()
    assert 'lang="uk"' in html
    assert "<svg" in html
    svg = html[html.index("<svg") : html.index("</svg>")]
    import re

    coordinates = re.findall(r' (?:x|y|x2|y2|cx|cy)="([^"]+)"', svg)
    assert coordinates
    assert all(re.fullmatch(r"-?[0-9]+(\.[0-9]+)?", c) for c in coordinates), coordinates


def test_an_edited_reflection_says_so_and_the_cycle_moves_up_the_list(world):
    from datetime import timedelta

    import time_machine
    from django.utils import timezone

    reflection = services.reflection_add(
        cycle=world.cycle_a, by=world.personas.practitioner_a, author_role="practitioner", text="a"
    )
    before = LearningCycle.objects.get(pk=world.cycle_a.pk).updated
    with time_machine.travel(timezone.now() + timedelta(hours=2)):
        services.child_update(
            obj=reflection, version=reflection.version, by=world.personas.practitioner_a, text="b"
        )
    reflection.refresh_from_db()
    assert (reflection.updated - reflection.created) > timedelta(hours=1)
    assert LearningCycle.objects.get(pk=world.cycle_a.pk).updated > before
    page = verified_client(world.personas.manager_a).get(cycle_url(world.cycle_a)).content.decode()
    assert "edited" in page


def test_odd_values_in_management_forms_are_not_server_errors(world):
    client = verified_client(world.personas.facilitator)
    engagement = world.engagement
    response = client.post(
        reverse("engagements:facilitators", args=[engagement.public_id]), {"remove": "a\x00b"}
    )
    assert response.status_code == 404
    response = client.post(
        reverse("engagements:partner_invite", args=[engagement.public_id]),
        {"name": "Long", "kind": "charity", "admin_email": "a" * 170 + "@example.org"},
    )
    assert response.status_code == 200
    assert "at most 150 characters" in response.content.decode()


def test_two_inline_edit_forms_have_ids_of_their_own(world):
    first, second = (
        services.actor_add(cycle=world.cycle_a, by=world.personas.manager_a, name=n, kind="group")
        for n in ("One", "Two")
    )
    client = verified_client(world.personas.manager_a)
    forms = [
        client.get(
            reverse("engagements:child_edit", args=["actor", actor.public_id]),
            headers={"HX-Request": "true"},
        ).content.decode()
        for actor in (first, second)
    ]
    import re

    ids = [set(re.findall(r' id="([^"]+)"', html)) for html in forms]
    assert ids[0]
    assert not ids[0] & ids[1]


def test_a_facilitator_of_two_learning_partners_chooses_which_leads(personas):
    from engagements.models import Organisation
    from tests.factories import MembershipFactory, OrganisationFactory

    second: Any = OrganisationFactory(
        name="Second Partner", kind=Organisation.Kind.LEARNING_PARTNER
    )
    MembershipFactory(user=personas.facilitator, organisation=second)
    client = verified_client(personas.facilitator)
    url = reverse("engagements:engagement_create")
    data = {"title": "Two", "timezone": "Europe/London", "language": "en", "retention_days": "30"}
    response = client.post(url, data)
    assert response.status_code == 200
    assert not Engagement.objects.exists()
    response = client.post(url, {**data, "learning_partner_choice": str(second.public_id)})
    assert response.status_code == 302
    assert Engagement.objects.get().learning_partner == second
