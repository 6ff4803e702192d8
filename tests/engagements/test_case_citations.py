"""Issue 5, point 5: reflections and adaptations cite case studies; cycles suggest related ones."""

import pytest
from django.urls import reverse

from cases.models import CaseCitation, CaseStudy
from engagements import services
from engagements.models import Reflection
from tests.conftest import verified_client

pytestmark = pytest.mark.django_db

PLYMOUTH = "plymouth-alliance"


def add_url(cycle, kind):
    return reverse("engagements:child_add", args=[cycle.public_id, kind])


def test_a_reflection_cites_a_case_and_the_journal_and_the_case_show_it(world):
    practitioner = verified_client(world.personas.practitioner_a)
    response = practitioner.post(
        add_url(world.cycle_a, "reflection"),
        {
            "reflection-text": "Like Plymouth, we stopped counting visits.",
            "reflection-identity": "named",
            "reflection-cases": [PLYMOUTH],
        },
    )
    assert response.status_code == 302
    reflection = Reflection.objects.get()
    citation = CaseCitation.objects.get()
    assert (citation.reflection, citation.cycle, citation.case.slug) == (
        reflection,
        world.cycle_a,
        PLYMOUTH,
    )
    journal = practitioner.get(reverse("engagements:cycle", args=[world.cycle_a.public_id]))
    case_url = reverse("cases:detail", args=[PLYMOUTH])
    assert f'href="{case_url}"' in journal.content.decode()
    case_page = practitioner.get(case_url).content.decode()
    assert world.cycle_a.title in case_page
    # Someone who may not see the cycle sees the case without it.
    outsider_page = verified_client(world.personas.outsider).get(case_url).content.decode()
    assert world.cycle_a.title not in outsider_page


def test_unticking_a_case_on_edit_removes_the_citation(world):
    plymouth = CaseStudy.objects.get(slug=PLYMOUTH)
    reflection = services.reflection_add(
        cycle=world.cycle_a,
        by=world.personas.practitioner_a,
        author_role="practitioner",
        text="Thinking of Plymouth",
        cases=[plymouth],
    )
    assert CaseCitation.objects.filter(reflection=reflection).count() == 1
    client = verified_client(world.personas.practitioner_a)
    url = reverse("engagements:child_edit", args=["reflection", reflection.public_id])
    form = client.get(url).context["form"]
    assert form.initial["cases"] == [PLYMOUTH]
    response = client.post(
        url,
        {
            "edit-text": "Thinking of Plymouth",
            "edit-identity": "named",
            "edit-version": str(reflection.version),
        },
    )
    assert response.status_code == 302
    assert CaseCitation.objects.count() == 0


def test_an_adaptation_cites_a_case(world):
    manager = verified_client(world.personas.manager_a)
    response = manager.post(
        add_url(world.cycle_a, "adaptation"),
        {
            "adaptation-what_changed": "Teams plan a good day, not timed tasks",
            "adaptation-decided_by": "Team meeting",
            "adaptation-decided_on": "2026-11-20",
            "adaptation-status": "in_place",
            "adaptation-cases": ["wellbeing-teams"],
        },
    )
    assert response.status_code == 302
    adaptation = CaseCitation.objects.get().adaptation
    assert adaptation is not None
    assert adaptation.what_changed.startswith("Teams plan")


def test_a_draft_or_unknown_case_cannot_be_cited_and_the_words_stay(world):
    CaseStudy.objects.filter(slug=PLYMOUTH).update(published=False)
    practitioner = verified_client(world.personas.practitioner_a)
    for slug in (PLYMOUTH, "no-such-case", "x" * 500):
        response = practitioner.post(
            add_url(world.cycle_a, "reflection"),
            {
                "reflection-text": "Words I typed",
                "reflection-identity": "named",
                "reflection-cases": [slug],
            },
        )
        assert response.status_code == 200
        assert "Words I typed" in response.content.decode()
    assert Reflection.objects.count() == 0
    assert CaseCitation.objects.count() == 0


def test_a_cycle_suggests_related_cases_and_says_why(world):
    cycle = world.cycle_a
    services.reflection_add(
        cycle=cycle,
        by=world.personas.practitioner_a,
        author_role="practitioner",
        text="The home care visits are timed tasks; people want a good day.",
    )
    page = verified_client(world.personas.practitioner_a).get(
        reverse("engagements:cycle", args=[cycle.public_id])
    )
    related = page.context["related_cases"]
    assert related
    assert any(item["case"].slug == "wellbeing-teams" for item in related)
    html = page.content.decode()
    assert "Suggested because both mention:" in html
    wellbeing = next(item for item in related if item["case"].slug == "wellbeing-teams")
    assert wellbeing["words"]
