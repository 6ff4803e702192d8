"""The partner dashboard: its figures on known data, filters, who may see it, its query count,
and that it agrees with the digest and the export.

The known data (``board``), with "now" Wednesday 18 March 2026, 12:00 UTC (London is on GMT):

- Organisation A: cycle_a (team, first stage) and cycle_c (team, third stage: Experiment);
  Organisation B: cycle_b (place, first stage, the only one at that scale) and cycle_d (team,
  first stage). Every cycle started on 1 December 2025.
- Published reflections, by week of the last four (Mondays 23 Feb, 2 Mar, 9 Mar, 16 Mar):
  2 by manager A on cycle_a; none; 3 on cycle_b (manager B once, two residents); 6 on cycle_a
  by six practitioners of A; none in the eight weeks before. Before the default period (the
  last 12 weeks), one on cycle_c (20 December). Also one resident reflection held for review
  and one hidden, which never count.
- So: 11 reflections from 10 people in 2 cycles; cycle_c and cycle_d have gone quiet.
- Adaptations in the period: cycle_a 2, cycle_b 1, cycle_c 5; one on cycle_d before it
  (15 December).
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace

import pytest
import time_machine
from django.db import connection
from django.http import QueryDict
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from playwright.sync_api import expect

from engagements import charts, counting, dashboard, digests, exports, health
from engagements.dashboard_forms import DashboardFilterForm
from engagements.models import (
    Adaptation,
    AuditEvent,
    Behaviour,
    Digest,
    HealthResponse,
    HealthRound,
    HealthScore,
    LearningCycle,
    Membership,
    Reflection,
)
from tests.conftest import assert_accessible, verified_client
from tests.factories import (
    PASSWORD,
    MembershipFactory,
    OrganisationFactory,
    UserFactory,
    cycle_for,
    engagement_with,
    totp_code,
)

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 18, 12, tzinfo=UTC)
OLD = date(2025, 12, 20)
MONDAYS = [date(2026, 2, 23), date(2026, 3, 2), date(2026, 3, 9), date(2026, 3, 16)]
HTMX = {"HX-Request": "true", "HX-Target": "dashboard-body"}


@pytest.fixture
def now():
    with time_machine.travel(NOW, tick=False):
        yield NOW


def at(day: date, hour: int = 10) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def reflect(cycle, at_, *, author=None, role="practitioner", **fields) -> Reflection:
    reflection = Reflection.objects.create(
        cycle=cycle,
        text="We listened.",
        author=author,
        author_role=role,
        stage_id=cycle.stage_id,
        **fields,
    )
    Reflection.objects.filter(pk=reflection.pk).update(created=at_, updated=at_)
    return reflection


def adapt(cycle, at_, n=1) -> None:
    for _ in range(n):
        adaptation = Adaptation.objects.create(
            cycle=cycle, what_changed="We call first.", decided_by="The team", decided_on=at_
        )
        Adaptation.objects.filter(pk=adaptation.pk).update(created=at_)


@pytest.fixture
def board(world, now):
    p = world.personas
    engagement = world.engagement
    stages = list(engagement.stages.order_by("position"))
    cycle_a, cycle_b = world.cycle_a, world.cycle_b
    cycle_c = cycle_for(engagement, p.org_a, p.manager_a, title="Library visits")
    cycle_d = cycle_for(engagement, p.org_b, p.manager_b, title="Street meals")
    LearningCycle.objects.filter(pk=cycle_c.pk).update(stage=stages[2])
    LearningCycle.objects.filter(engagement=engagement).update(
        created=datetime(2025, 12, 1, tzinfo=UTC)
    )
    for cycle in (cycle_a, cycle_b, cycle_c, cycle_d):
        cycle.refresh_from_db()

    reflect(cycle_a, at(MONDAYS[0]), author=p.manager_a, role="manager")
    reflect(cycle_a, at(MONDAYS[0], 11), author=p.manager_a, role="manager")
    reflect(cycle_b, at(MONDAYS[2]), author=p.manager_b, role="manager")
    reflect(cycle_b, at(MONDAYS[2], 11), role="resident", first_name="Ann")
    reflect(cycle_b, at(MONDAYS[2], 12), role="resident", identity="anonymous")
    practitioners = [p.practitioner_a] + [
        MembershipFactory(organisation=p.org_a, user=UserFactory(username=f"prac{i}")).user
        for i in range(5)
    ]
    for i, person in enumerate(practitioners):
        reflect(cycle_a, at(MONDAYS[3], 1 + i), author=person)
    reflect(cycle_c, at(OLD), author=p.manager_a, role="manager")
    reflect(cycle_a, at(MONDAYS[3], 9), role="resident", moderation="held")
    reflect(cycle_b, at(MONDAYS[3], 9), role="resident", moderation="hidden")

    adapt(cycle_a, at(MONDAYS[1]), 2)
    adapt(cycle_b, at(MONDAYS[2]))
    adapt(cycle_c, at(MONDAYS[3]), 5)
    adapt(cycle_d, at(date(2025, 12, 15)))
    return SimpleNamespace(
        world=world,
        p=p,
        stages=stages,
        a=cycle_a,
        b=cycle_b,
        c=cycle_c,
        d=cycle_d,
        scope=dashboard.engagement_scope(engagement),
    )


def engagement_url(world) -> str:
    return reverse("engagements:engagement_dashboard", args=[world.engagement.public_id])


def build(board, **chosen) -> dashboard.Dashboard:
    """The engagement dashboard for the facilitator, with filters as the form makes them."""
    scope = board.scope
    choices = dashboard.filter_choices(scope)
    query = QueryDict(mutable=True)
    query.update(chosen)
    form = DashboardFilterForm(query, choices=choices, timezone=scope.timezone, url="/")
    filters = form.filters()
    assert not form.errors, form.errors
    return dashboard.dashboard(
        user=board.p.facilitator, scope=scope, filters=filters, choices=choices
    )


def figures(html: str) -> dict[str, int]:
    """The numbers a page shows in its data-figure elements."""
    return {
        name: int(value.replace(",", "").split()[0])
        for name, value in re.findall(r'data-figure="([a-z-]+)">([^<]+)<', html)
    }


# --- the panels on known data ---------------------------------------------------------------


def test_the_stage_matrix_counts_cycles_by_organisation_and_stage_in_name_order(board):
    matrix = build(board).matrix

    assert matrix.stages == tuple(s.name for s in board.stages)
    assert [(row.organisation, row.cells, row.total) for row in matrix.rows] == [
        ("Organisation A", (1, 0, 1, 0), 2),
        ("Organisation B", (2, 0, 0, 0), 2),
    ]
    assert matrix.stage_totals == (3, 0, 1, 0)
    assert matrix.total == 4


def test_the_rhythm_counts_published_reflections_per_week_with_the_empty_week(board):
    weeks = build(board, weeks="4").rhythm

    assert [(w.monday, w.reflections) for w in weeks] == list(
        zip(MONDAYS, [2, 0, 3, 6], strict=False)
    )


@pytest.mark.parametrize(
    ("zone", "late_sunday", "early_monday"),
    [
        # London moves to summer time on 29 March 2026: that Sunday ends at 23:00 UTC.
        (
            "Europe/London",
            datetime(2026, 3, 29, 22, 30, tzinfo=UTC),
            datetime(2026, 3, 29, 23, 30, tzinfo=UTC),
        ),
        # Tbilisi is four hours ahead all year: its Monday begins on Sunday at 20:00 UTC.
        (
            "Asia/Tbilisi",
            datetime(2026, 3, 29, 19, 30, tzinfo=UTC),
            datetime(2026, 3, 29, 20, 30, tzinfo=UTC),
        ),
    ],
)
def test_the_rhythm_cuts_weeks_at_local_midnight_on_monday(world, zone, late_sunday, early_monday):
    reflect(world.cycle_a, late_sunday)
    reflect(world.cycle_a, early_monday)
    reflect(world.cycle_a, early_monday + timedelta(days=7))
    filters = dashboard.Filters(
        first_day=date(2026, 3, 23), last_day=date(2026, 4, 12), timezone=zone
    )

    weeks = dashboard.rhythm(LearningCycle.objects.all(), filters)

    assert [(w.monday, w.reflections) for w in weeks] == [
        (date(2026, 3, 23), 1),
        (date(2026, 3, 30), 1),
        (date(2026, 4, 6), 1),
    ]


def test_the_totals_count_published_reflections_and_the_people_behind_them(board):
    counts = build(board).counts

    # Residents count one each; the held and hidden reflections not at all.
    assert (counts.reflections, counts.contributors, counts.cycles) == (11, 10, 2)


def test_voice_balance_shows_every_role_and_hides_groups_of_fewer_than_five(board):
    voice = {v.role: v for v in build(board).voice}

    assert (voice["practitioner"].reflections, voice["practitioner"].contributors) == (6, 6)
    assert not voice["practitioner"].suppressed
    for role in ("manager", "resident"):  # 2 people each
        assert voice[role].suppressed
        assert voice[role].reflections is None
        assert voice[role].contributors is None
    assert (voice["learning_partner"].reflections, voice["learning_partner"].suppressed) == (
        0,
        False,
    )
    assert list(voice) == ["practitioner", "manager", "resident", "learning_partner"]


def test_one_small_role_alone_takes_the_next_smallest_with_it(board):
    for i in range(3):  # managers: now 5 people
        person = MembershipFactory(
            organisation=board.p.org_b, user=UserFactory(username=f"boss{i}")
        ).user
        reflect(board.b, at(MONDAYS[3], 2 + i), author=person, role="manager")
    reflect(board.b, at(MONDAYS[3], 6), author=board.p.manager_a, role="manager")  # 5th

    voice = {v.role: v for v in build(board).voice}

    assert voice["resident"].suppressed
    # Otherwise the residents' count would follow from the total minus the rest: the smallest
    # other group goes with it, here the learning partner's, with nobody in it.
    assert voice["learning_partner"].suppressed
    assert voice["learning_partner"].reflections is None
    assert not voice["manager"].suppressed
    assert not voice["practitioner"].suppressed


def test_a_lone_small_role_is_not_given_away_by_the_totals(world, now):
    """Only residents reflected: the total is theirs, so a role with nobody is hidden too."""
    for hour in range(3):
        reflect(world.cycle_a, at(MONDAYS[3], hour), role="resident")
    scope = dashboard.engagement_scope(world.engagement)
    choices = dashboard.filter_choices(scope)
    filters = DashboardFilterForm(
        QueryDict(), choices=choices, timezone=scope.timezone, url="/"
    ).filters()
    board = dashboard.dashboard(
        user=world.personas.facilitator, scope=scope, filters=filters, choices=choices
    )

    assert board.counts.contributors == 3  # the engagement's own total is shown
    voice = {v.role: (v.reflections, v.suppressed) for v in board.voice}
    assert voice == {
        "practitioner": (None, True),
        "manager": (0, False),
        "resident": (None, True),
        "learning_partner": (0, False),
    }
    assert not board.withheld


def test_a_narrowed_selection_of_fewer_than_five_people_shows_no_reflection_counts(board, client):
    """Organisation B alone: 3 people (manager B, two residents), a breakdown the digest hides."""
    client = verified_client(board.p.facilitator)
    organisation = board.p.org_b.public_id
    narrowed = build(board, organisation=str(organisation))
    assert narrowed.withheld
    assert all(v.suppressed and v.reflections is None for v in narrowed.voice)

    html = client.get(
        engagement_url(board.world), {"organisation": organisation}, headers=HTMX
    ).content.decode()
    shown = figures(html)
    assert "reflections" not in shown
    assert "contributors" not in shown
    assert 'data-notice="withheld"' in html
    assert "chart-rhythm" not in html
    assert "chart-voice" not in html
    # The cycles and adaptations, which count no people, are still shown.
    assert shown["adaptations"] == 1
    # Organisation A (7 people) is counted as usual, and so is the whole engagement.
    assert not build(board, organisation=str(board.p.org_a.public_id)).withheld
    assert figures(client.get(engagement_url(board.world)).content.decode())["contributors"] == 10


def test_cycles_gone_quiet_follow_the_digest_rule(board):
    found = build(board)

    assert [(q.title, q.last_reflection) for q in found.quiet] == [
        ("Library visits", at(OLD)),
        ("Street meals", None),
    ]
    assert found.quiet_total == 2
    assert found.quiet_since == NOW - timedelta(weeks=digests.QUIET_WEEKS)
    content = digests.compile_engagement_digest(
        board.world.engagement, NOW - timedelta(weeks=1), NOW
    )
    assert {item["cycle"]["title"] for item in content["quiet"]} == {q.title for q in found.quiet}


def test_a_paused_cycle_or_one_just_started_is_not_quiet(board):
    LearningCycle.objects.filter(pk=board.d.pk).update(status=LearningCycle.Status.PAUSED)
    LearningCycle.objects.filter(pk=board.c.pk).update(created=NOW - timedelta(days=3))

    assert build(board).quiet_total == 0


def test_adaptations_per_cycle_spread_the_cycles_by_how_many_they_recorded(board):
    spread = build(board).adaptations

    assert spread.buckets == (("0", 1), ("1", 1), ("2", 1), ("3", 0), ("4+", 1))
    assert (spread.adaptations, spread.cycles) == (8, 4)
    assert spread.per_cycle == 2.0


def test_moderation_waiting_is_the_review_queue_count(board):
    client = verified_client(board.p.facilitator)

    page = client.get(engagement_url(board.world)).content.decode()
    queue = client.get(reverse("engagements:moderation")).content.decode()

    assert figures(page)["moderation"] == 1
    assert queue.count('class="card moderation-item"') == 1


def test_the_latest_digest_is_the_engagements_newest_and_links_to_it(board):
    engagement = board.world.engagement
    older, _ = digests.store(
        scope=Digest.Scope.ENGAGEMENT,
        owner_id=engagement.pk,
        period=digests.Period.starting("weekly", "Europe/London", date(2026, 3, 2)),
        content={},
    )
    newer, _ = digests.store(
        scope=Digest.Scope.ENGAGEMENT,
        owner_id=engagement.pk,
        period=digests.Period.starting("weekly", "Europe/London", date(2026, 3, 9)),
        content={},
    )

    page = verified_client(board.p.facilitator).get(engagement_url(board.world))

    assert build(board).latest_digest == newer
    assert reverse("engagements:digest", args=[newer.public_id]) in page.content.decode()
    assert reverse("engagements:digest", args=[older.public_id]) not in page.content.decode()


def test_the_page_shows_the_figures_it_computed(board):
    html = verified_client(board.p.facilitator).get(engagement_url(board.world)).content.decode()

    assert figures(html) == {
        "reflections": 11,
        "contributors": 10,
        "cycles": 2,
        "adaptations": 8,
        "quiet": 2,
        "cycles-total": 4,
        "moderation": 1,
    }
    assert "not targets" in html


def _round_with_answers(world, *, cycle, title, count, value, closed_at) -> None:
    """A health-check round answered by ``count`` people of each perspective, then closed."""
    with time_machine.travel(closed_at - timedelta(days=7), tick=False):
        opened, _link = health.round_open(
            engagement=world.engagement, cycle=cycle, by=world.personas.facilitator, title=title
        )
    made = HealthResponse.objects.bulk_create(
        [
            HealthResponse(round=opened, perspective=perspective)
            for perspective in ("practitioner", "manager")
            for _ in range(count)
        ]
    )
    HealthScore.objects.bulk_create(
        [
            HealthScore(
                response=response,
                behaviour=behaviour,
                score=value + (2 if response.perspective == "manager" else 0),
            )
            for response in made
            for behaviour in Behaviour.values
        ]
    )
    with time_machine.travel(closed_at, tick=False):
        health.round_close(health_round=opened, by=world.personas.facilitator)


def test_the_health_panel_shows_each_round_as_its_own_page_does(board):
    world = board.world
    _round_with_answers(
        world, cycle=None, title="Winter round", count=5, value=4, closed_at=at(MONDAYS[0])
    )
    _round_with_answers(
        world, cycle=None, title="Spring round", count=5, value=6, closed_at=at(MONDAYS[2])
    )
    _round_with_answers(
        world, cycle=world.cycle_a, title="Team round", count=2, value=5, closed_at=at(MONDAYS[3])
    )

    shown = build(board).health
    assert [row.headline.title for row in shown] == ["Winter round", "Spring round", "Team round"]
    spring = shown[1].headline
    [own] = health.headlines(HealthRound.objects.filter(title="Spring round"))
    assert spring == own  # the same figures as the round's own page
    assert spring.groups[0].median == 7  # practitioners 6, managers 8
    assert spring.groups[0].change == 2  # since the winter round's 5
    assert spring.groups[0].gap is not None
    assert spring.groups[0].gap.size == 2
    assert shown[2].headline.suppressed  # 4 answers in all

    html = verified_client(board.p.facilitator).get(engagement_url(world)).content.decode()
    assert "Spring round" in html
    assert "+2" in html
    assert "Fewer than 5 people answered, so no figures are shown." in html
    # Choosing an organisation keeps only its cycles' rounds; the period drops older rounds.
    only_a = build(board, organisation=str(board.p.org_a.public_id))
    assert [row.headline.title for row in only_a.health] == ["Team round"]
    recent = build(board, start="2026-03-10", end="2026-03-18")
    assert [row.headline.title for row in recent.health] == ["Team round"]


def test_without_rounds_the_health_panel_says_so(board):
    html = verified_client(board.p.facilitator).get(engagement_url(board.world)).content.decode()
    assert "No health-check round was open in this period" in html


# --- charts ---------------------------------------------------------------------------------


def test_each_chart_is_a_named_image_with_a_table_and_no_inline_style_or_script(board):
    html = verified_client(board.p.facilitator).get(engagement_url(board.world)).content.decode()
    main = html[html.index("<main") : html.index("</main>")]

    svgs = re.findall(r"<svg[^>]*>", main)
    assert len(svgs) == 4
    for svg in svgs:
        assert 'role="img"' in svg
        [name] = re.findall(r'aria-labelledby="([^"]+)"', svg)
        assert f'<figcaption id="{name}"' in main
        assert f'<caption id="table-{name.removeprefix("chart-")}">' in main
    assert " style=" not in main
    assert "<script" not in main
    assert "<style" not in main
    assert 'th scope="col"' in main
    assert 'th scope="row"' in main
    assert 'href="/static/css/print.css" media="print"' in html


def test_a_chart_scales_to_a_round_top_and_escapes_its_labels():
    assert charts.nice_top(0) == (1, 1)
    assert charts.nice_top(7) == (8, 2)
    assert charts.nice_top(11) == (15, 5)
    assert charts.nice_top(1234) == (1500, 500)

    svg = charts.columns([("<b>", 3)], labelledby="x")
    assert "&lt;b&gt;" in svg
    assert "<b>" not in svg
    bars = charts.bars([("Resident", None, "fewer than 5 people")], labelledby="y")
    assert "chart__bar--unknown" in bars
    assert "fewer than 5 people" in bars


# --- filters --------------------------------------------------------------------------------


def test_each_filter_narrows_the_panels(board):
    org_a = str(board.p.org_a.public_id)

    by_org = build(board, organisation=org_a)
    assert [row.organisation for row in by_org.matrix.rows] == ["Organisation A"]
    assert by_org.counts.reflections == 8

    by_scale = build(board, scale="place")
    assert by_scale.counts.reflections == 3
    assert by_scale.matrix.total == 1

    by_stage = build(board, stage=str(board.stages[2].public_id))
    assert by_stage.matrix.stages == (board.stages[2].name,)
    assert by_stage.counts.reflections == 0
    assert by_stage.quiet_total == 1

    shorter = build(board, weeks="4")
    assert shorter.counts.reflections == 11
    assert len(shorter.rhythm) == 4

    longer = build(board, weeks="26")
    assert longer.counts.reflections == 12
    assert len(longer.rhythm) == 26

    week = build(board, start="2026-03-09", end="2026-03-15")
    assert [(w.monday, w.reflections) for w in week.rhythm] == [(MONDAYS[2], 3)]
    assert week.counts.reflections == 3
    assert week.filters.weeks is None


def test_one_date_alone_runs_to_today_or_covers_the_weeks_before_it(board):
    since = build(board, start="2026-03-09")
    assert (since.filters.first_day, since.filters.last_day) == (
        date(2026, 3, 9),
        date(2026, 3, 18),
    )
    assert since.counts.reflections == 9

    until = build(board, end="2026-03-01")
    assert until.filters.last_day == date(2026, 3, 1)
    assert until.filters.first_day == date(2026, 3, 1) - timedelta(weeks=12) + timedelta(days=1)


def test_the_filtered_url_loads_the_same_dashboard_as_a_full_page_and_as_a_partial(board):
    client = verified_client(board.p.facilitator)
    url = (
        engagement_url(board.world) + f"?organisation={board.p.org_a.public_id}&weeks=4&scale=team"
    )

    full = client.get(url)
    partial = client.get(url, headers=HTMX)

    full_html, partial_html = full.content.decode(), partial.content.decode()
    assert full.status_code == partial.status_code == 200
    assert "<html" in full_html
    assert "<html" not in partial_html
    assert partial_html.lstrip().startswith('<div id="dashboard-body"')
    assert 'id="dashboard-status" hx-swap-oob="innerHTML"' in partial_html
    assert "hx-swap-oob" not in full_html
    assert figures(full_html) == figures(partial_html)
    assert figures(full_html)["reflections"] == 8
    # The form shows the filters the URL holds.
    for html in (full_html, partial_html):
        assert f'<option value="{board.p.org_a.public_id}" selected>' in html
        assert '<option value="team" selected>' in html
        assert '<option value="4" selected>' in html
    # The form updates the panels in place and puts its filters in the address bar.
    assert 'hx-target="#dashboard-body"' in full_html
    assert 'hx-push-url="true"' in full_html
    assert f'hx-get="{engagement_url(board.world)}"' in full_html


def test_an_htmx_request_for_another_target_gets_the_full_page(board):
    client = verified_client(board.p.facilitator)
    response = client.get(engagement_url(board.world), headers={"HX-Request": "true"})
    assert "<html" in response.content.decode()


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("organisation=STRANGER", "That organisation is not part of this dashboard"),
        ("organisation=NOWHERE", "That organisation is not part of this dashboard"),
        ("organisation=not-a-uuid", "That organisation is not part of this dashboard"),
        ("stage=OTHER_STAGE", "That stage is not part of this dashboard"),
        ("scale=galaxy", "That is not a system scale we know"),
        ("weeks=7", "Choose one of the periods offered"),
        ("weeks=%00", "Choose one of the periods offered"),
        ("start=2026-02-30", "Enter a real date"),
        ("start=yesterday&end=2026-03-01", "Enter a real date"),
        ("end=9999-12-31", "Choose a date between"),
        ("start=0001-01-01", "Choose a date between"),
        ("start=2026-03-10&end=2026-03-01", "The end date is before the start date"),
        ("start=2020-01-01&end=2026-03-01", "Choose a period of at most 731 days"),
        ("start=2001-01-01", "Choose a period of at most 731 days"),
    ],
)
def test_unknown_filter_values_get_a_message_and_fall_back(board, query, message):
    other = engagement_with(
        learning_partner=board.p.learning_partner,
        facilitator=board.p.facilitator,
        partners=[board.p.outsider_org],
        title="Elsewhere",
    )
    query = (
        query.replace("STRANGER", str(board.p.outsider_org.public_id))
        .replace("NOWHERE", str(uuid.uuid4()))
        .replace("OTHER_STAGE", str(other.stages.first().public_id))
    )
    client = verified_client(board.p.facilitator)

    for headers in ({}, HTMX):
        response = client.get(engagement_url(board.world) + "?" + query, headers=headers)
        html = response.content.decode()
        assert response.status_code == 200, query
        assert message in html, query
        assert 'class="error-summary"' in html
        # The rest of the dashboard is the unfiltered one; no stranger's name appears.
        assert figures(html)["reflections"] == 11
        assert "Outsider Org" not in html
        assert "Elsewhere" not in html


def test_a_typed_date_is_kept_in_the_form_after_an_error(board):
    html = (
        verified_client(board.p.facilitator)
        .get(engagement_url(board.world) + "?start=2026-02-30")
        .content.decode()
    )
    assert 'value="2026-02-30"' in html
    assert html.count('<option value="12" selected>') == 1  # the period it fell back to


# --- who may see it -------------------------------------------------------------------------


def test_a_manager_sees_their_organisation_and_what_partners_share(board):
    p = board.p
    url = reverse("engagements:organisation_dashboard", args=[p.org_a.public_id])
    client = verified_client(p.manager_a)

    private = client.get(url).content.decode()
    assert figures(private)["reflections"] == 8  # cycle_a only: cycle_b is B's own
    assert "Organisation B" not in private

    LearningCycle.objects.filter(pk=board.b.pk).update(
        visibility=LearningCycle.Visibility.ENGAGEMENT
    )
    shared = client.get(url).content.decode()
    assert figures(shared)["reflections"] == 11
    assert figures(shared)["cycles-total"] == 3  # cycle_d stays B's own
    assert "Street meals" not in shared

    org_b = str(p.org_b.public_id)
    only_b = client.get(url + f"?organisation={org_b}", headers=HTMX).content.decode()
    # B's shared cycle alone: three people, too few to count for another organisation.
    assert "reflections" not in figures(only_b)
    assert 'data-notice="withheld"' in only_b
    assert figures(only_b)["cycles-total"] == 1


def test_a_manager_cannot_reach_another_organisation_through_the_filter(board):
    p = board.p
    url = reverse("engagements:organisation_dashboard", args=[p.org_a.public_id])

    html = verified_client(p.manager_a).get(url + f"?organisation={p.org_b.public_id}").content
    assert "That organisation is not part of this dashboard" in html.decode()
    assert figures(html.decode())["reflections"] == 8


def dashboard_urls(board) -> list[str]:
    return [
        reverse("engagements:dashboard"),
        engagement_url(board.world),
        reverse("engagements:organisation_dashboard", args=[board.p.org_a.public_id]),
    ]


@pytest.mark.parametrize("persona", ["outsider", "manager_b", "practitioner_a"])
@pytest.mark.parametrize("htmx", [False, True], ids=["page", "partial"])
def test_everyone_else_gets_404_on_every_dashboard_url_and_partial(board, persona, htmx):
    user = getattr(board.p, persona)
    client = verified_client(user)

    for url in dashboard_urls(board):
        response = client.get(url + "?weeks=4", headers=HTMX if htmx else {})
        assert response.status_code == 404, (persona, url)
    assert AuditEvent.objects.filter(action="access.denied", actor=user).count() == 3


def test_who_gets_which_dashboard(board):
    p = board.p
    [mine, engagement, organisation_a] = dashboard_urls(board)
    organisation_b = reverse("engagements:organisation_dashboard", args=[p.org_b.public_id])
    expected = {
        "facilitator": {mine: 200, engagement: 200, organisation_a: 404, organisation_b: 404},
        "manager_a": {mine: 404, engagement: 404, organisation_a: 200, organisation_b: 404},
        "manager_b": {mine: 404, engagement: 404, organisation_a: 404, organisation_b: 200},
    }
    for persona, urls in expected.items():
        client = verified_client(getattr(p, persona))
        for url, status in urls.items():
            assert client.get(url).status_code == status, (persona, url)
    assert verified_client(p.facilitator).get(mine).status_code == 200


def test_an_organisation_admin_gets_the_dashboard_and_a_signed_out_visitor_signs_in(
    board, settings
):
    settings.TWO_FACTOR_REQUIRED = False  # the admin has no device here
    admin = MembershipFactory(
        organisation=board.p.org_a, user=UserFactory(username="admin.a"), role="admin"
    ).user
    url = reverse("engagements:organisation_dashboard", args=[board.p.org_a.public_id])

    assert verified_client(admin).get(url).status_code == 200
    response = Client().get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("accounts:login"))


def test_a_former_facilitator_loses_the_dashboard(board):
    p = board.p
    Membership.objects.filter(user=p.facilitator, organisation=p.learning_partner).delete()

    client = verified_client(p.facilitator)
    assert client.get(engagement_url(board.world)).status_code == 404
    assert client.get(reverse("engagements:dashboard")).status_code == 404


def test_the_facilitators_dashboard_spans_their_engagements(board):
    p = board.p
    other = engagement_with(
        learning_partner=p.learning_partner,
        facilitator=p.facilitator,
        partners=[p.outsider_org],
        title="Another place",
    )
    cycle = cycle_for(other, p.outsider_org, p.outsider, title="Bus routes")
    reflect(cycle, at(MONDAYS[3]), author=p.outsider)
    not_mine = engagement_with(
        learning_partner=OrganisationFactory(name="Other LP", kind="learning_partner"),
        facilitator=UserFactory(username="someone.else"),
        partners=[p.org_a],
        title="Not facilitated",
    )
    reflect(
        cycle_for(not_mine, p.org_a, p.manager_a, title="Hidden from me"),
        at(MONDAYS[3]),
        author=p.manager_a,
    )

    html = verified_client(p.facilitator).get(reverse("engagements:dashboard")).content.decode()

    assert figures(html)["reflections"] == 12  # 11, and 1 in the other engagement
    assert "Outsider Org" in html
    assert "Another place" in html
    assert "Hidden from me" not in html
    assert "Not facilitated" not in html
    # Stages of several engagements are offered by engagement.
    assert '<optgroup label="Another place">' in html


# --- scale: the same queries whatever the data ----------------------------------------------


def queries(client, url: str, **headers) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url, headers=headers)
    assert response.status_code == 200
    return len(captured)


def test_the_query_count_is_the_same_with_10_and_1000_reflections(world, now):
    p = world.personas
    client = verified_client(p.facilitator)
    url = engagement_url(world)
    filtered = url + f"?organisation={p.org_a.public_id}&weeks=26"
    stage = world.cycle_a.stage_id

    def grow(total: int) -> None:
        have = Reflection.objects.count()
        cycles = [world.cycle_a, world.cycle_b]
        people = [p.manager_a, p.practitioner_a, p.manager_b, None]
        rows = [
            Reflection(
                cycle=cycles[i % 2],
                text=f"Reflection {i}",
                author=people[i % 4],
                author_role=["manager", "practitioner", "manager", "resident"][i % 4],
                stage_id=stage,
                moderation="held" if i % 17 == 0 else "published",
            )
            for i in range(have, total)
        ]
        made = Reflection.objects.bulk_create(rows)
        for i, reflection in enumerate(made):  # spread over 30 weeks
            reflection.created = NOW - timedelta(days=i % 210, hours=i % 24)
        Reflection.objects.bulk_update(made, ["created"])
        adapt(world.cycle_b, NOW - timedelta(days=3), n=total // 100)

    _round_with_answers(world, cycle=None, title="Round", count=5, value=6, closed_at=NOW)
    _round_with_answers(world, cycle=world.cycle_a, title="Team", count=5, value=6, closed_at=NOW)
    grow(10)
    client.get(url)  # warm up (session, caches)
    few = (queries(client, url), queries(client, filtered, **HTMX))
    grow(1000)
    for hours in (1, 2):
        for cycle in (None, world.cycle_a):
            _round_with_answers(
                world,
                cycle=cycle,
                title="Later",
                count=50,
                value=5,
                closed_at=NOW - timedelta(hours=hours),
            )
    assert Reflection.objects.count() == 1000
    many = (queries(client, url), queries(client, filtered, **HTMX))

    assert many == few
    assert few[0] <= 20, few


def test_the_counts_are_made_in_sql_not_by_reading_reflections(board):
    with CaptureQueriesContext(connection) as captured:
        build(board)
    reading = [q["sql"] for q in captured.captured_queries if '"text"' in q["sql"]]
    assert reading == []


# --- numbers agree --------------------------------------------------------------------------


def test_the_dashboard_the_digest_and_the_export_agree(board, settings, tmp_path):
    settings.HLS_EXPORT_DIR = str(tmp_path)
    p = board.p
    engagement = board.world.engagement
    first, last = date(2025, 12, 1), date(2026, 3, 22)  # every reflection there is
    html = (
        verified_client(p.facilitator)
        .get(engagement_url(board.world) + f"?start={first}&end={last}")
        .content.decode()
    )
    shown = figures(html)

    start = datetime(2025, 12, 1, tzinfo=UTC)  # London is on GMT until 29 March
    content = digests.compile_engagement_digest(
        engagement, start, datetime(2026, 3, 23, tzinfo=UTC)
    )

    export, _ = exports.request_export(user=p.facilitator, engagement=engagement, fmt="json")
    assert exports.build(export.pk) == "done"
    export.refresh_from_db()
    data = json.loads((tmp_path / export.file_name).read_text())

    assert (
        shown["reflections"] == content["totals"]["reflections"] == len(data["reflections"]) == 12
    )
    assert shown["contributors"] == content["totals"]["contributors"] == 10
    assert shown["cycles"] == content["totals"]["cycles"]
    assert shown["adaptations"] == content["totals"]["adaptations"] == 9
    assert shown["cycles-total"] == len(data["cycles"])
    assert export.rows_total == len(data["cycles"]) + len(data["reflections"]) + len(
        data["adaptations"]
    )
    # One week, as the engagement's weekly digest covers it.
    week = build(board, start="2026-03-09", end="2026-03-15").counts
    content = digests.compile_engagement_digest(engagement, at(MONDAYS[2], 0), at(MONDAYS[3], 0))
    assert (
        (week.reflections, week.contributors)
        == (
            content["totals"]["reflections"],
            content["totals"]["contributors"],
        )
        == (3, 3)
    )


def test_the_shared_count_follows_the_journal_rule_for_a_reader(board):
    p = board.p
    engagement = board.world.engagement
    own_held = reflect(board.a, at(MONDAYS[3]), author=p.manager_a, role="manager")
    Reflection.objects.filter(pk=own_held.pk).update(moderation="held")
    cycles = exports.visible_cycles(p.manager_a, engagement)  # Organisation A's two

    # Published ones; the export adds the reader's own, whatever their state, as the journal.
    assert counting.reflection_counts(cycles=cycles).reflections == 9
    assert counting.reflection_counts(cycles=cycles, viewer=p.manager_a).reflections == 10
    assert exports.visible_reflections(p.manager_a, engagement).count() == 10


# --- in a browser ---------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_filters_change_the_panels_in_place_and_the_url_can_be_shared(page, world):
    from django_otp.plugins.otp_totp.models import TOTPDevice

    p = world.personas
    for i in range(3):
        reflect(world.cycle_a, datetime.now(UTC) - timedelta(days=i), author=p.manager_a)
    for i in range(4):  # Organisation A: five people, enough to be counted on its own
        person = MembershipFactory(organisation=p.org_a, user=UserFactory(username=f"b{i}")).user
        reflect(world.cycle_a, datetime.now(UTC) - timedelta(hours=i), author=person)
    reflect(world.cycle_b, datetime.now(UTC), author=p.manager_b, role="manager")
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(p.facilitator.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_label("Code").fill(totp_code(TOTPDevice.objects.get(user=p.facilitator)))
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(re.compile(r"^(?!.*two-factor)"))

    url = engagement_url(world)
    page.goto(url)
    figure = page.locator('[data-figure="reflections"]')
    expect(figure).to_have_text("8")
    assert_accessible(page, "on the dashboard")
    page.evaluate("window.dashboardMarker = 'still here'")

    page.locator("#id_organisation").focus()
    page.locator("#id_organisation").select_option(label="Organisation A")
    page.wait_for_url(re.compile(r"organisation="))
    expect(figure).to_have_text("7")
    assert page.evaluate("window.dashboardMarker") == "still here"  # no full page load
    expect(page.locator("#dashboard-status")).to_contain_text("Organisation A")
    expect(page.locator("#id_organisation")).to_be_focused()
    assert_accessible(page, "after filtering")

    shared = page.url
    page.goto(shared)  # the link as someone else would open it
    assert page.evaluate("window.dashboardMarker") is None
    expect(figure).to_have_text("7")
    expect(page.locator("#id_organisation")).to_have_value(str(p.org_a.public_id))

    # Organisation B alone is one person: its reflections are not counted, and the page says so.
    page.locator("#id_organisation").select_option(label="Organisation B")
    page.wait_for_url(re.compile(rf"organisation={p.org_b.public_id}"))
    expect(page.locator('[data-notice="withheld"]')).to_be_visible()
    expect(figure).to_have_count(0)
    assert_accessible(page, "with too few people to count")

    page.locator("#id_start").fill("2026-03-09")
    page.locator("#id_end").fill("2026-03-01")
    page.get_by_role("button", name="Apply filters").click()
    expect(page.locator(".error-summary")).to_contain_text("The end date is before the start date")
    assert_accessible(page, "with a filter error")

    page.goto(url + "?organisation=" + str(uuid.uuid4()))
    expect(page.locator(".error-summary")).to_contain_text("not part of this dashboard")
    expect(figure).to_have_text("8")
