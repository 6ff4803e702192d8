"""Who gets what on every URL of the engagements app: one table, every pattern, every persona.

cycle_a belongs to Organisation A and is private to it ("organisation" visibility), so
Organisation B's manager and the outsider must get 404 on everything under it, and every 404
must leave an ``access.denied`` audit event. A URL added to ``engagements.urls`` without a row
here fails ``test_every_url_pattern_is_in_the_table``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import time, timedelta
from types import SimpleNamespace

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from engagements import digests, exports, health, residents, services, sessions, urls, views
from engagements.models import AuditEvent, Digest, Invitation, LearningCycle, Membership
from tests.conftest import verified_client
from tests.factories import MembershipFactory, UserFactory, totp_device

pytestmark = pytest.mark.django_db

PERSONAS = ("facilitator", "manager_a", "practitioner_a", "manager_b", "outsider", "anonymous")
LOGIN = "login"  # a 302 to the sign-in page

# Expected status per persona, in PERSONAS order.
SIGNED_IN = (200, 200, 200, 200, 200, LOGIN)
FACILITATOR_ONLY = (200, 404, 404, 404, 404, LOGIN)
IN_ENGAGEMENT = (200, 200, 200, 200, 404, LOGIN)  # org B is a partner of the engagement
CYCLE_A_READERS = (200, 200, 200, 404, 404, LOGIN)  # cycle_a is private to org A
CYCLE_A_MANAGERS = (200, 200, 404, 404, 404, LOGIN)  # practitioner_a did not start cycle_a
REFLECTION_AUTHOR = (404, 200, 404, 404, 404, LOGIN)  # manager_a wrote the reflection
ORG_A_MEMBERS = (404, 200, 200, 404, 404, LOGIN)  # the facilitator is not a member of org A
REQUESTER_ONLY = (404, 200, 404, 404, 404, LOGIN)  # manager_a asked for the export


@dataclass(frozen=True)
class Row:
    name: str
    expect: tuple[int | str, ...]
    variant: str = ""  # the kind or section, for the URLs that take one
    method: str = "get"
    htmx: bool = False

    @property
    def label(self) -> str:
        extras = [
            self.variant,
            "POST" if self.method == "post" else "",
            "htmx" if self.htmx else "",
        ]
        return "-".join([self.name, *filter(None, extras)])


ROWS = [
    Row("engagements", SIGNED_IN),
    Row("engagement_create", FACILITATOR_ONLY),
    Row("engagement", IN_ENGAGEMENT),
    Row("engagement_edit", FACILITATOR_ONLY),
    Row("stages", FACILITATOR_ONLY),
    # An empty POST re-renders the stages page with the form's errors.
    Row("stage_edit", FACILITATOR_ONLY, method="post"),
    # No direction means "later": the stage moves and the page redirects back.
    Row("stage_reorder", (302, 404, 404, 404, 404, LOGIN), method="post"),
    Row("partner_invite", FACILITATOR_ONLY),
    Row("facilitators", FACILITATOR_ONLY),
    Row("cycles", IN_ENGAGEMENT),
    Row("cycle_start", IN_ENGAGEMENT),  # any member of a partner organisation may start one
    Row("cycle", CYCLE_A_READERS),
    *(Row("cycle_section", CYCLE_A_READERS, s, htmx=True) for s in sorted(views.SECTIONS)),
    Row("cycle_edit", CYCLE_A_MANAGERS),
    Row("cycle_move", CYCLE_A_MANAGERS),
    Row("cycle_links", CYCLE_A_MANAGERS),
    *(Row("child_add", CYCLE_A_READERS, kind) for kind in views.KINDS),
    *(
        Row(
            "child_edit",
            REFLECTION_AUTHOR if kind == "reflection" else CYCLE_A_READERS,
            kind,
            htmx=h,
        )
        for kind in views.KINDS
        for h in (True, False)
    ),
    # An empty POST deletes the actor or factor and redirects to the system map.
    *(
        Row("child_delete", (302, 302, 302, 404, 404, LOGIN), kind, method="post")
        for kind in ("actor", "factor")
    ),
    Row("members", ORG_A_MEMBERS),
    # Only organisation admins manage members; no persona here is one.
    Row("member_update", (404, 404, 404, 404, 404, LOGIN), method="post"),
    # Admins and managers withdraw invitations; the empty POST revokes and redirects.
    Row("invitation_revoke", (404, 302, 404, 404, 404, LOGIN), method="post"),
    # No sign-in needed: the token is the key.
    Row("invitation_accept", (200, 200, 200, 200, 200, 200)),
    Row("resident_links", CYCLE_A_MANAGERS),
    Row("resident_link_revoke", (302, 302, 404, 404, 404, LOGIN), method="post"),
    # Everyone signed in has a review queue: theirs may be empty.
    Row("moderation", SIGNED_IN),
    # An empty POST is refused with a message and a redirect; outsiders to cycle_a get 404.
    Row("moderation_act", (302, 302, 404, 404, 404, LOGIN), method="post"),
    # Reflection sessions: a session of cycle_a, scheduled by its manager.
    Row("sessions", IN_ENGAGEMENT),
    Row("session_create", FACILITATOR_ONLY),
    Row("cycle_sessions", CYCLE_A_READERS),
    Row("cycle_session_create", CYCLE_A_MANAGERS),
    Row("session", CYCLE_A_READERS),
    Row("session_edit", CYCLE_A_MANAGERS),
    Row("session_calendar", CYCLE_A_READERS),
    Row("session_cancel", (302, 302, 404, 404, 404, LOGIN), method="post"),
    # No sign-in needed: the signed link in the email is the key.
    Row("unsubscribe", (200, 200, 200, 200, 200, 200)),
    # Exports: anyone in the engagement asks for one; only its requester (manager_a) opens it.
    Row("exports", IN_ENGAGEMENT),
    Row("export", REQUESTER_ONLY),
    # htmx's 286 "stop polling": the export is ready.
    Row("export", (404, 286, 404, 404, 404, LOGIN), htmx=True),
    Row("export_download", REQUESTER_ONLY),
    # Everyone signed in has a list of digests; an engagement digest is for its facilitators.
    Row("digests", SIGNED_IN),
    Row("digest", FACILITATOR_ONLY),
    # --- partner dashboard (issue 7): page and htmx partial alike ---
    # Facilitators: theirs across engagements, and each engagement's.
    *(Row("dashboard", FACILITATOR_ONLY, htmx=h) for h in (False, True)),
    *(Row("engagement_dashboard", FACILITATOR_ONLY, htmx=h) for h in (False, True)),
    # Organisation A's managers and admins only: not its practitioners, not the facilitator.
    *(
        Row("organisation_dashboard", (404, 200, 404, 404, 404, LOGIN), htmx=h)
        for h in (False, True)
    ),
    # --- health check (issue 7): a round of cycle_a, open, opened by the facilitator ---
    Row("health_rounds", IN_ENGAGEMENT),
    Row("health_round_open", FACILITATOR_ONLY),
    Row("cycle_health_rounds", CYCLE_A_READERS),
    Row("cycle_health_round_open", FACILITATOR_ONLY),
    *(Row("health_round", CYCLE_A_READERS, htmx=h) for h in (False, True)),
    Row("health_answer", CYCLE_A_READERS),
    # The empty POST closes the round and redirects to it.
    Row("health_close", (302, 404, 404, 404, 404, LOGIN), method="post"),
]
CASES = [
    pytest.param(row, persona, expected, id=f"{row.label}-{persona}")
    for row in ROWS
    for persona, expected in zip(PERSONAS, row.expect, strict=True)
]


@pytest.fixture
def things(world):
    """Every object the URLs name, made the way the product makes them."""
    p, cycle, by = world.personas, world.cycle_a, world.personas.manager_a
    records = {
        "actor": services.actor_add(cycle=cycle, by=by, name="Ward nurse", kind="person"),
        "factor": services.factor_add(cycle=cycle, by=by, description="Transport home is late."),
        "experiment": services.experiment_add(
            cycle=cycle, by=by, title="Call the day after", kind="probe", premise="A call helps."
        ),
        "reflection": services.reflection_add(
            cycle=cycle, by=by, author_role="manager", text="People felt less alone."
        ),
        "adaptation": services.adaptation_record(
            cycle=cycle,
            by=by,
            what_changed="We call everyone.",
            decided_by="The team",
            decided_on=timezone.localdate(),
        ),
    }
    invitation = Invitation.objects.create(
        organisation=p.org_a,
        email="new.colleague@example.org",
        role=Membership.Role.PRACTITIONER,
        invited_by=by,
        expires=timezone.now() + timedelta(days=7),
    )
    link, _token = residents.link_create(cycle=cycle, by=by, label="Library")
    resident_reflection, _ = residents.submit(
        link_id=link.pk,
        submission_key=uuid.uuid4(),
        text="The clinic moved.",
        identity="anonymous",
        first_name="",
        better_or_worse="",
        feeling="",
        principles=[],
        follow_up_email="",
        language="en",
    )
    session = sessions.session_create(
        engagement=world.engagement,
        cycle=cycle,
        by=by,
        invitees=[p.practitioner_a],
        title="Monthly reflection",
        first_date=timezone.localdate() + timedelta(days=3),
        start_time=time(10, 0),
    )
    export, _ = exports.request_export(user=by, engagement=world.engagement, fmt="csv")
    exports.build(export.pk)
    digest, _ = digests.store(
        scope=Digest.Scope.ENGAGEMENT,
        owner_id=world.engagement.pk,
        period=digests.latest_period("weekly", "Europe/London", timezone.now()),
        content={},
    )
    health_round, _link = health.round_open(
        engagement=world.engagement, cycle=cycle, by=p.facilitator, title="Spring round"
    )
    values = {
        "health_round": health_round.public_id,
        "session": session.public_id,
        "signed": sessions.unsubscribe_token(p.practitioner_a.pk),
        "export": export.public_id,
        "digest": digest.public_id,
        "link": link.public_id,
        "reflection": resident_reflection.public_id,
        "engagement": world.engagement.public_id,
        "stage": cycle.stage.public_id,
        "cycle": cycle.public_id,
        "organisation": p.org_a.public_id,
        "member": Membership.objects.get(user=p.practitioner_a, organisation=p.org_a).public_id,
        "invitation": invitation.public_id,
        "token": services.invitation_issue_token(invitation),
    }
    return SimpleNamespace(world=world, records=records, values=values)


PATTERNS = {pattern.name: pattern for pattern in urls.urlpatterns}


def url_for(things, name: str, variant: str = "") -> str:
    values = dict(things.values)
    if variant:
        values.update(kind=variant, section=variant)
        if variant in things.records:
            values["public_id"] = things.records[variant].public_id
    params = PATTERNS[name].pattern.converters  # the route's <converter:name> parameters
    return reverse(f"engagements:{name}", kwargs={key: values[key] for key in params})


def client_for(things, persona: str) -> Client:
    if persona == "anonymous":
        return Client()
    return verified_client(getattr(things.world.personas, persona))


def request(client: Client, method: str, url: str, *, htmx: bool = False):
    headers = {"HX-Request": "true"} if htmx else {}
    return getattr(client, method)(url, headers=headers)


def test_every_url_pattern_is_in_the_table():
    assert urls.app_name == "engagements"
    assert all(pattern.name for pattern in urls.urlpatterns), "every pattern needs a name"
    assert set(PATTERNS) == {row.name for row in ROWS}, "add the new URL to ROWS"
    assert len(PATTERNS) == len(urls.urlpatterns), "two patterns share a name"
    by_name: dict[str, set[str]] = {}
    for row in ROWS:
        by_name.setdefault(row.name, set()).add(row.variant)
    # Every kind and section a view accepts is exercised.
    assert by_name["cycle_section"] == views.SECTIONS
    assert by_name["child_add"] == by_name["child_edit"] == set(views.KINDS)
    assert by_name["child_delete"] == {"actor", "factor"}


@pytest.mark.parametrize(("row", "persona", "expected"), CASES)
def test_access(things, row, persona, expected):
    url = url_for(things, row.name, row.variant)
    response = request(client_for(things, persona), row.method, url, htmx=row.htmx)

    if expected == LOGIN and row.htmx:
        # An htmx request whose session ended gets 401, so no sign-in page is swapped in.
        assert response.status_code == 401, f"{persona} htmx {row.method.upper()} {url}"
        return
    if expected == LOGIN:
        assert response.status_code == 302, f"{persona} {row.method.upper()} {url}"
        assert response["Location"].startswith(reverse("accounts:login"))
        return
    assert response.status_code == expected, f"{persona} {row.method.upper()} {url}"
    if expected == 302:
        assert not response["Location"].startswith(reverse("accounts:login"))
    # Every refusal is a recorded access.denied; nothing else is.
    actor = getattr(things.world.personas, persona, None)
    denied = AuditEvent.objects.filter(action="access.denied", actor=actor).exists()
    assert denied == (expected == 404), f"{persona} {url}: access.denied audit is {denied}"


def test_refusals_name_the_object_in_the_audit_trail(things):
    p = things.world.personas
    cycle_url = url_for(things, "cycle")
    assert verified_client(p.outsider).get(cycle_url).status_code == 404
    event = AuditEvent.objects.get(action="access.denied", actor=p.outsider)
    assert (event.object_type, event.object_id) == (
        "learningcycle",
        str(things.world.cycle_a.public_id),
    )

    reflection_url = url_for(things, "child_edit", "reflection")
    response = verified_client(p.manager_b).get(reflection_url, headers={"HX-Request": "true"})
    assert response.status_code == 404
    event = AuditEvent.objects.get(action="access.denied", actor=p.manager_b)
    assert (event.object_type, event.object_id) == (
        "reflection",
        str(things.records["reflection"].public_id),
    )


def test_a_cycle_shared_with_the_engagement_is_readable_not_writable_by_other_partners(things):
    cycle = things.world.cycle_a
    cycle.visibility = LearningCycle.Visibility.ENGAGEMENT
    cycle.save(update_fields=["visibility"])
    manager_b = verified_client(things.world.personas.manager_b)

    assert manager_b.get(url_for(things, "cycle")).status_code == 200
    for section in sorted(views.SECTIONS):
        url = url_for(things, "cycle_section", section)
        assert manager_b.get(url, headers={"HX-Request": "true"}).status_code == 200, url
    refused = [url_for(things, "cycle_edit"), url_for(things, "cycle_move")]
    refused += [url_for(things, "cycle_links")]
    refused += [url_for(things, "child_add", kind) for kind in views.KINDS]
    refused += [url_for(things, "child_edit", kind) for kind in views.KINDS]
    for url in refused:
        assert manager_b.get(url).status_code == 404, url
    assert manager_b.post(url_for(things, "child_delete", "actor")).status_code == 404
    # The outsider is in no engagement, so sharing changes nothing for them.
    outsider = verified_client(things.world.personas.outsider)
    assert outsider.get(url_for(things, "cycle")).status_code == 404


def test_an_organisation_admin_manages_members(things):
    """member_update refuses every persona above; an admin of org A gets through."""
    p = things.world.personas
    admin = MembershipFactory(
        user=UserFactory(username="admin.a"), organisation=p.org_a, role=Membership.Role.ADMIN
    ).user
    totp_device(admin)
    response = verified_client(admin).post(url_for(things, "member_update"))  # no role chosen
    assert response.status_code == 302
    assert response["Location"] == url_for(things, "members")
    member = Membership.objects.get(public_id=things.values["member"])
    assert member.role == Membership.Role.PRACTITIONER


def test_post_only_views_refuse_get(things):
    client = verified_client(things.world.personas.facilitator)
    for row in ROWS:
        if row.method == "post":
            url = url_for(things, row.name, row.variant)
            assert client.get(url).status_code == 405, url


def test_unknown_kinds_and_sections_are_404(things):
    client = verified_client(things.world.personas.facilitator)
    actor = things.records["actor"].public_id
    cycle = things.values["cycle"]
    assert client.get(reverse("engagements:cycle_section", args=[cycle, "nope"])).status_code == 404
    assert client.get(reverse("engagements:child_add", args=[cycle, "stage"])).status_code == 404
    assert client.get(reverse("engagements:child_edit", args=["stage", actor])).status_code == 404
    experiment = things.records["experiment"].public_id
    url = reverse("engagements:child_delete", args=["experiment", experiment])
    assert client.post(url).status_code == 404


def test_leaving_the_learning_partner_ends_facilitating(things):
    p = things.world.personas
    Membership.objects.filter(user=p.facilitator, organisation=p.learning_partner).delete()
    client = verified_client(p.facilitator)
    for url in (url_for(things, "cycle"), url_for(things, "engagement_edit")):
        assert client.get(url).status_code == 404, url


def test_removing_a_member_of_the_learning_partner_removes_them_as_facilitator(things):
    from engagements import services

    p = things.world.personas
    membership = Membership.objects.get(user=p.facilitator, organisation=p.learning_partner)
    services.member_remove(membership=membership, by=p.facilitator)
    assert not things.world.engagement.facilitators.filter(pk=p.facilitator.pk).exists()
