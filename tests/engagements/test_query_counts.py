"""Each list page runs the same number of queries with 2 rows as with 50 (no N+1).

Every test warms the page up once (sessions, caches), counts the queries with 2 rows of what
the page lists, grows the data to 50 rows through ``engagements.services`` (or bulk_create
where a service would be slow and adds nothing), and counts again.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from engagements import services
from engagements.models import (
    EngagementPartner,
    Invitation,
    LearningCycle,
    Membership,
    Reflection,
    Stage,
)
from tests.conftest import verified_client
from tests.factories import (
    MembershipFactory,
    OrganisationFactory,
    UserFactory,
    cycle_for,
    engagement_with,
    totp_device,
)

pytestmark = pytest.mark.django_db

SMALL, LARGE = 2, 50
HTMX_RESULTS = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": "cycle-results"}


def url(name: str, *args: object) -> str:
    return reverse(f"engagements:{name}", args=args)


def queries(client, path: str, **headers: str) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(path, **headers)
    assert response.status_code == 200, path
    return [q["sql"] for q in captured.captured_queries]


def shape(sql: str) -> str:
    """A query with its values and cursor names taken out, to see which ones repeat."""
    sql = re.sub(r'"_django_curs_[^"]+"', "cursor", sql)
    sql = re.sub(r"'(?:[^']|'')*'", "?", sql)
    sql = re.sub(r"\b\d+\b", "?", sql)
    return re.sub(r"IN \(\?(?:, \?)*\)", "IN (...)", sql)


def assert_same(small: list[str], large: list[str], what: str) -> None:
    if len(small) == len(large):
        return
    grown = Counter(map(shape, large))
    grown.subtract(Counter(map(shape, small)))
    detail = "\n".join(f"{n:+d}x {sql[:300]}" for sql, n in grown.most_common() if n)
    raise AssertionError(
        f"{what}: {len(small)} queries with {SMALL} rows, {len(large)} with {LARGE}.\n"
        f"Queries that repeat with the rows:\n{detail}"
    )


# --- engagement list ------------------------------------------------------------------------


def grow_engagements(world, n: int) -> None:
    p = world.personas
    have = EngagementPartner.objects.filter(organisation=p.org_a).count()
    for i in range(have, n):
        engagement = engagement_with(
            learning_partner=p.learning_partner,
            facilitator=p.facilitator,
            partners=[p.org_a, p.org_b] + ([p.outsider_org] if i % 3 else []),
            title=f"Engagement {i:02d}",
        )
        if i % 2:
            engagement.facilitators.add(p.manager_a)
        if i % 4:
            engagement.starts_on = timezone.localdate() - timedelta(days=i)
            engagement.ends_on = engagement.starts_on + timedelta(days=90)
            engagement.save()


@pytest.mark.parametrize("persona", ["manager_a", "facilitator"])
def test_engagement_list(world, persona):
    client = verified_client(getattr(world.personas, persona))
    path = url("engagements")
    grow_engagements(world, SMALL)
    queries(client, path)
    small = queries(client, path)
    grow_engagements(world, LARGE)
    large = queries(client, path)
    assert client.get(path).content.decode().count('class="card"') >= LARGE
    assert_same(small, large, "engagement list")


# --- engagement overview --------------------------------------------------------------------


def grow_overview(world, n: int) -> None:
    """Partners, facilitators, stages and cycles of the engagement, each to ``n``."""
    engagement = world.engagement
    p = world.personas
    for i in range(engagement.partners.count(), n):
        organisation: Any = OrganisationFactory(
            name=f"Partner {i:02d}", city="" if i % 2 else "York"
        )
        EngagementPartner.objects.create(
            engagement=engagement, organisation=organisation, joined=timezone.localdate()
        )
    for i in range(engagement.facilitators.count(), n):
        user: Any = UserFactory(username=f"facilitator{i:02d}", first_name="" if i % 3 else "Sam")
        Membership.objects.create(
            user=user, organisation=p.learning_partner, role=Membership.Role.PRACTITIONER
        )
        services.facilitator_add(engagement=engagement, user=user, by=p.facilitator)
    for i in range(engagement.stages.count(), n):
        services.stage_add(
            engagement=engagement, name=f"Stage {i}", questions="Q?", by=p.facilitator
        )
    stages = list(engagement.stages.all())
    for i in range(engagement.cycles.count(), n):
        cycle = cycle_for(engagement, p.org_a, p.manager_a, title=f"Cycle {i:02d}")
        LearningCycle.objects.filter(pk=cycle.pk).update(stage=stages[i % len(stages)])


@pytest.mark.parametrize("persona", ["manager_a", "facilitator"])
def test_engagement_overview(world, persona):
    client = verified_client(getattr(world.personas, persona))
    path = url("engagement", world.engagement.public_id)
    grow_overview(world, SMALL)
    queries(client, path)
    small = queries(client, path)
    grow_overview(world, LARGE)
    large = queries(client, path)
    assert "Partner 49" in client.get(path).content.decode()
    assert_same(small, large, "engagement overview")


# --- cycle list and its htmx results --------------------------------------------------------


def grow_cycles(world, n: int) -> None:
    """Cycles manager_a can see: Organisation A's, and B's shared with the engagement."""
    p = world.personas
    LearningCycle.objects.filter(pk=world.cycle_b.pk).update(
        visibility=LearningCycle.Visibility.ENGAGEMENT
    )
    stages = list(world.engagement.stages.all())
    visible = LearningCycle.objects.filter(engagement=world.engagement)
    for i in range(visible.count(), n):
        own = i % 2 == 0
        cycle = cycle_for(
            world.engagement,
            p.org_a if own else p.org_b,
            p.manager_a if own else p.manager_b,
            title=f"Cycle {i:02d}",
            team_name="Team" if i % 3 else "",
            scale=["team", "place", "person"][i % 3],
            visibility="organisation" if own else "engagement",
        )
        LearningCycle.objects.filter(pk=cycle.pk).update(
            stage=stages[i % len(stages)], status=["active", "paused", "closed"][i % 3]
        )
        Reflection.objects.bulk_create(
            Reflection(
                cycle=cycle,
                author=p.manager_a,
                author_role="manager",
                text=f"Reflection {j}",
                stage=stages[0],
                moderation="published" if j else "held",
            )
            for j in range(i % 4)
        )


@pytest.mark.parametrize(
    ("headers", "query"),
    [
        pytest.param({}, "", id="page"),
        pytest.param({}, "?scale=team&status=active", id="page-filtered"),
        pytest.param(HTMX_RESULTS, "", id="htmx-results"),
        pytest.param(HTMX_RESULTS, "?status=paused", id="htmx-results-filtered"),
    ],
)
@pytest.mark.parametrize("persona", ["manager_a", "facilitator"])
def test_cycle_list(world, persona, headers, query):
    client = verified_client(getattr(world.personas, persona))
    path = url("cycles", world.engagement.public_id) + query
    grow_cycles(world, SMALL)
    queries(client, path, **headers)
    small = queries(client, path, **headers)
    grow_cycles(world, LARGE)
    large = queries(client, path, **headers)
    page = client.get(path, **headers).content.decode()
    if headers:
        assert "<html" not in page
    if not query:
        assert page.count('class="card"') == LARGE
    assert_same(small, large, f"cycle list {query} {'htmx' if headers else 'page'}")


# --- one cycle: journal, system map, links --------------------------------------------------


def grow_cycle(world, n: int) -> None:
    """Give cycle_a ``n`` of each: reflections, experiments, adaptations (citing reflections
    and experiments), actors, factors, stage moves and links."""
    p = world.personas
    cycle = LearningCycle.objects.get(pk=world.cycle_a.pk)
    stages = list(world.engagement.stages.all())
    authors = [p.manager_a, p.practitioner_a, p.facilitator]
    roles = {
        p.manager_a: "manager",
        p.practitioner_a: "practitioner",
        p.facilitator: "learning_partner",
    }
    for i in range(cycle.experiments.count(), n):
        services.experiment_add(
            cycle=cycle,
            by=authors[i % 2],
            title=f"Experiment {i:02d}",
            kind="probe" if i % 2 else "hypothesis",
            premise="Premise",
            what_happened="It happened" if i % 2 else "",
            starts_on=timezone.localdate() if i % 3 else None,
        )
    experiments = list(cycle.experiments.all())
    for i in range(cycle.reflections.count(), n):
        author = authors[i % 3]
        reflection = services.reflection_add(
            cycle=cycle,
            by=author,
            author_role=roles[author],
            text=f"Reflection {i:02d}",
            identity=["named", "pseudonymous", "anonymous"][i % 3],
            principles=["human", "systems"][: i % 3],
            experiment=experiments[i % len(experiments)] if i % 2 else None,
        )
        if i % 5 == 4:
            Reflection.objects.filter(pk=reflection.pk).update(moderation="held")
    reflections = list(cycle.reflections.all())
    for i in range(cycle.adaptations.count(), n):
        services.adaptation_record(
            cycle=cycle,
            by=authors[i % 2],
            reflections=reflections[i % len(reflections) : i % len(reflections) + 3],
            experiments=experiments[i % len(experiments) : i % len(experiments) + 2],
            what_changed=f"Change {i:02d}",
            because="Because" if i % 2 else "",
            decided_by="Team",
            decided_on=services.today(),
        )
    for i in range(cycle.actors.count(), n):
        services.actor_add(
            cycle=cycle, by=p.manager_a, name=f"Actor {i:02d}", kind="team", trust="low"
        )
    for i in range(cycle.factors.count(), n):
        services.factor_add(
            cycle=cycle,
            by=p.manager_a,
            description=f"Factor {i:02d}",
            whose_knowledge="Residents" if i % 2 else "",
        )
    for i in range(cycle.moves.count(), n):
        cycle.refresh_from_db()
        target = stages[1] if cycle.stage_id == stages[0].pk else stages[0]
        services.cycle_move_stage(
            cycle=cycle, to_stage=target, note=f"Move {i}", version=None, by=p.manager_a
        )
    linked = cycle.links_out.count() + cycle.links_in.count()
    for i in range(linked, n):
        other = cycle_for(
            world.engagement,
            [p.org_a, p.org_b][i % 2],
            p.manager_a,
            title=f"Linked {i:02d}",
            visibility="engagement",
        )
        services.cycle_link_add(
            cycle=cycle,
            other=other,
            relation=["part_of", "contains", "peer"][i % 3],
            by=p.manager_a,
        )


CYCLE_PAGES = [
    pytest.param(lambda c: url("cycle", c.public_id), {}, id="page"),
    pytest.param(
        lambda c: url("cycle_section", c.public_id, "journal"),
        {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": "journal"},
        id="journal-section",
    ),
    pytest.param(
        lambda c: url("cycle_section", c.public_id, "map"),
        {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": "map"},
        id="map-section",
    ),
]


@pytest.mark.parametrize(("path_of", "headers"), CYCLE_PAGES)
@pytest.mark.parametrize("persona", ["manager_a", "practitioner_a", "facilitator"])
def test_cycle_detail(world, persona, path_of, headers):
    client = verified_client(getattr(world.personas, persona))
    path = path_of(world.cycle_a)
    grow_cycle(world, SMALL)
    queries(client, path, **headers)
    small = queries(client, path, **headers)
    grow_cycle(world, LARGE)
    large = queries(client, path, **headers)
    page = client.get(path, **headers).content.decode()
    assert "Change 49" in page or "Actor 49" in page
    assert_same(small, large, f"cycle detail ({persona}, {path})")


# --- organisation members -------------------------------------------------------------------


def grow_members(organisation, inviter, n: int) -> None:
    for i in range(Membership.objects.filter(organisation=organisation).count(), n):
        MembershipFactory(
            user=UserFactory(username=f"member{i:02d}", first_name="" if i % 3 else "Alex"),
            organisation=organisation,
            role=[Membership.Role.PRACTITIONER, Membership.Role.MANAGER][i % 2],
        )
    now = timezone.now()
    have = Invitation.objects.filter(organisation=organisation).count()
    Invitation.objects.bulk_create(
        Invitation(
            organisation=organisation,
            email=f"invitee{i:02d}@example.org",
            role=Membership.Role.PRACTITIONER,
            invited_by=inviter if i % 2 else None,
            # Some have expired: the page says so instead of a date.
            expires=now + timedelta(days=7 if i % 4 else -1),
        )
        for i in range(have, n)
    )


@pytest.mark.parametrize("role", ["admin", "manager", "practitioner"])
def test_organisation_members(personas, role):
    organisation = personas.org_a
    viewer = {
        "manager": personas.manager_a,
        "practitioner": personas.practitioner_a,
    }.get(role)
    if viewer is None:
        viewer = MembershipFactory(
            user=UserFactory(username="admin.a"),
            organisation=organisation,
            role=Membership.Role.ADMIN,
        ).user
        totp_device(viewer)
    client = verified_client(viewer)
    path = url("members", organisation.public_id)
    # manager_a and practitioner_a are already members: 2 (or 3 with the admin) to start.
    grow_members(organisation, personas.manager_a, SMALL)
    queries(client, path)
    small = queries(client, path)
    grow_members(organisation, personas.manager_a, LARGE)
    large = queries(client, path)
    page = client.get(path).content.decode()
    assert "member49@example.org" in page
    assert_same(small, large, f"organisation members ({role})")


def test_the_seeding_really_grows_the_lists(world):
    """Guard against a silently empty measurement: the helpers reach 50 of everything."""
    grow_cycle(world, LARGE)
    cycle = world.cycle_a
    assert cycle.reflections.count() == LARGE
    assert cycle.experiments.count() == LARGE
    assert cycle.adaptations.count() == LARGE
    assert cycle.actors.count() == LARGE
    assert cycle.factors.count() == LARGE
    assert cycle.moves.count() == LARGE
    assert cycle.links_out.count() + cycle.links_in.count() == LARGE
    assert Stage.objects.filter(engagement=world.engagement).count() == 4
