"""Demo data for a local run: idempotent, so every `make run` can call it.

Passwords and TOTP secrets are random per checkout, kept in ``.data/demo-credentials.json``
(readable by its owner only) and printed by `make run`. The organisations and people are
invented.
"""

from __future__ import annotations

import json
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from engagements.models import Membership, Organisation

DEMO_LINK_LABEL = "Demo: leaflet in the discharge lounge"
NAMESPACE = uuid.UUID("6c1f0a52-3a51-4c3e-9a8e-2f1d5a0c7e11")

ORGANISATIONS = {
    "partner": (
        "Riverside Learning Partnership",
        Organisation.Kind.LEARNING_PARTNER,
        "United Kingdom",
        "Leeds",
    ),
    "north": (
        "Northbrook City Council",
        Organisation.Kind.LOCAL_AUTHORITY,
        "United Kingdom",
        "Northbrook",
    ),
    "east": (
        "Eastfield Community Health",
        Organisation.Kind.HEALTH_BODY,
        "United Kingdom",
        "Eastfield",
    ),
    "outside": ("Westmoor Housing Trust", Organisation.Kind.CHARITY, "United Kingdom", "Westmoor"),
}


@dataclass(frozen=True)
class DemoPerson:
    username: str
    first_name: str
    last_name: str
    organisation: str | None
    role: str | None
    describes: str
    superuser: bool = False


PEOPLE = [
    DemoPerson(
        "facilitator",
        "Fatima",
        "Rahman",
        "partner",
        Membership.Role.ADMIN,
        "facilitator, learning partner",
    ),
    DemoPerson(
        "manager.north",
        "Oksana",
        "Melnyk",
        "north",
        Membership.Role.MANAGER,
        "manager, Northbrook City Council",
    ),
    DemoPerson(
        "practitioner.north",
        "Tom",
        "Price",
        "north",
        Membership.Role.PRACTITIONER,
        "practitioner, Northbrook City Council",
    ),
    DemoPerson(
        "manager.east",
        "Aisha",
        "Bello",
        "east",
        Membership.Role.MANAGER,
        "manager, Eastfield Community Health",
    ),
    DemoPerson(
        "practitioner.east",
        "Dafydd",
        "Evans",
        "east",
        Membership.Role.PRACTITIONER,
        "practitioner, Eastfield Community Health",
    ),
    DemoPerson(
        "outsider",
        "Nino",
        "Beridze",
        "outside",
        Membership.Role.PRACTITIONER,
        "outsider, in no engagement",
    ),
    DemoPerson(
        "admin", "Site", "Administrator", None, None, "Django admin (superuser)", superuser=True
    ),
]


@dataclass(frozen=True)
class DemoLogin:
    username: str
    password: str
    describes: str
    otpauth_uri: str | None


def _credentials(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = {"passwords": {}, "totp_keys": {}}
    if path.exists():
        data.update(json.loads(path.read_text()))
    changed = False
    for person in PEOPLE:
        if person.username not in data["passwords"]:
            data["passwords"][person.username] = secrets.token_urlsafe(12)
            changed = True
        if person.username not in data["totp_keys"]:
            data["totp_keys"][person.username] = secrets.token_hex(20)
            changed = True
    if "resident_token" not in data:
        data["resident_token"] = secrets.token_urlsafe(32)
        changed = True
    if changed:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2))
        path.chmod(0o600)
    return data


@transaction.atomic
def load_demo(credentials_path: Path) -> list[DemoLogin]:
    from engagements.access import requires_two_factor

    credentials = _credentials(credentials_path)
    orgs: dict[str, Organisation] = {}
    for key, (name, kind, country, city) in ORGANISATIONS.items():
        orgs[key], _ = Organisation.objects.get_or_create(
            public_id=uuid.uuid5(NAMESPACE, key),
            defaults={"name": name, "kind": kind, "country": country, "city": city},
        )

    User = get_user_model()
    logins = []
    for person in PEOPLE:
        user, created = User.objects.get_or_create(
            username=person.username,
            defaults={
                "first_name": person.first_name,
                "last_name": person.last_name,
                "email": f"{person.username}@example.org",
                "is_staff": person.superuser,
                "is_superuser": person.superuser,
            },
        )
        if created:
            user.set_password(credentials["passwords"][person.username])
            user.save(update_fields=["password"])
        if person.organisation:
            Membership.objects.get_or_create(
                user=user, organisation=orgs[person.organisation], defaults={"role": person.role}
            )
        otpauth = None
        if requires_two_factor(user):
            device = TOTPDevice.objects.filter(user=user, confirmed=True).first()
            if device is None:
                device = TOTPDevice.objects.create(
                    user=user,
                    name="demo authenticator",
                    key=credentials["totp_keys"][person.username],
                    confirmed=True,
                )
            otpauth = device.config_url
        logins.append(
            DemoLogin(
                person.username,
                credentials["passwords"][person.username],
                person.describes,
                otpauth,
            )
        )
    _load_engagement(orgs, credentials)
    _ensure_resident_link(credentials)
    return logins


def _ensure_resident_link(credentials: dict[str, Any]) -> None:
    """The printed demo resident link works, even on data from before links existed."""
    from engagements import residents
    from engagements.models import LearningCycle, SharedLink

    token = credentials["resident_token"]
    if residents.link_by_token(token) is not None:
        return
    cycle = (
        LearningCycle.objects.filter(
            engagement__public_id=uuid.uuid5(NAMESPACE, "engagement"), title="Home from hospital"
        )
        .select_related("created_by")
        .first()
    )
    if cycle is None or cycle.created_by is None:
        return
    SharedLink.objects.filter(label=DEMO_LINK_LABEL, cycle=cycle).delete()
    residents.link_create(
        cycle=cycle, by=cycle.created_by, label=DEMO_LINK_LABEL, days=365, token=token
    )


def _load_engagement(orgs: dict[str, Organisation], credentials: dict[str, Any]) -> None:
    """One engagement with cycles at every stage, a system map, experiments, reflections in
    each role and identity mode, and adaptations. Skipped when it is already there."""
    from cases.models import CaseStudy
    from engagements import services
    from engagements.models import Engagement, EngagementPartner, Reflection, StageMove

    public_id = uuid.uuid5(NAMESPACE, "engagement")
    if Engagement.objects.filter(public_id=public_id).exists():
        return
    User = get_user_model()
    people = {u.username: u for u in User.objects.filter(username__in=[p.username for p in PEOPLE])}
    facilitator = people["facilitator"]
    today = timezone.localdate()
    engagement = services.engagement_create(
        learning_partner=orgs["partner"],
        by=facilitator,
        title="Living well after hospital",
        purpose=(
            "Northbrook City Council and Eastfield Community Health learn together how people "
            "can settle well at home after a hospital stay, and what gets in the way."
        ),
        starts_on=today - timedelta(days=120),
        ends_on=today + timedelta(days=245),
    )
    Engagement.objects.filter(pk=engagement.pk).update(public_id=public_id)
    for key in ("north", "east"):
        EngagementPartner.objects.create(
            engagement=engagement, organisation=orgs[key], joined=today - timedelta(days=110)
        )
    stages = list(engagement.stages.all())
    north_manager, north_practitioner = people["manager.north"], people["practitioner.north"]
    east_manager, east_practitioner = people["manager.east"], people["practitioner.east"]

    # Understand the system: a system map and first reflections.
    discharge = services.cycle_start(
        engagement=engagement,
        organisation=orgs["north"],
        by=north_manager,
        title="Home from hospital",
        team_name="Hospital discharge team",
        learning_question="What helps older people settle at home in the first week after hospital?",
        purpose="Fewer people going back into hospital because nobody noticed they were struggling.",
        scale="team",
        visibility="engagement",
    )
    for name, kind, trust in [
        ("Older residents and their families", "person", "mixed"),
        ("Ward discharge coordinators", "team", "high"),
        ("Home care agencies", "organisation", "low"),
        ("Neighbourhood volunteers", "group", "unknown"),
    ]:
        services.actor_add(cycle=discharge, by=north_manager, name=name, kind=kind, trust=trust)
    services.factor_add(
        cycle=discharge,
        by=north_manager,
        description="Discharge often happens late on a Friday, when services are closing.",
        whose_knowledge="Ward staff",
    )
    services.factor_add(
        cycle=discharge,
        by=north_practitioner,
        description="People say they felt rushed and did not know who to call.",
        whose_knowledge="Residents",
    )
    services.reflection_add(
        cycle=discharge,
        by=north_practitioner,
        author_role=Reflection.AuthorRole.PRACTITIONER,
        text="Three of the people I visited this week had no food in the house on their first night.",
        identity=Reflection.Identity.NAMED,
        principles=["human"],
    )
    services.reflection_add(
        cycle=discharge,
        by=north_manager,
        author_role=Reflection.AuthorRole.MANAGER,
        text="Our own timings push people out on Fridays. That is something we control.",
        identity=Reflection.Identity.PSEUDONYMOUS,
        principles=["systems", "learning"],
    )

    # Co-design.
    codesign = services.cycle_start(
        engagement=engagement,
        organisation=orgs["east"],
        by=east_manager,
        title="Community health conversations",
        learning_question="How can people shape the support they get after a diagnosis?",
        scale="place",
        visibility="engagement",
    )
    services.cycle_move_stage(
        cycle=codesign,
        to_stage=stages[1],
        note="We know who to involve now.",
        version=None,
        by=east_manager,
    )
    services.reflection_add(
        cycle=codesign,
        by=east_practitioner,
        author_role=Reflection.AuthorRole.PRACTITIONER,
        text="Residents asked for the first conversation to happen at home, not in clinic.",
        identity=Reflection.Identity.ANONYMOUS,
        principles=["human"],
    )

    # Experiment.
    calls = services.cycle_start(
        engagement=engagement,
        organisation=orgs["north"],
        by=north_manager,
        title="Friendly first-week calls",
        team_name="Adult social care",
        learning_question="Does a phone call on day two change how supported people feel?",
        scale="organisation",
    )
    for stage, note in [
        (stages[1], "Map agreed with the ward."),
        (stages[2], "Ready to try calls."),
    ]:
        services.cycle_move_stage(
            cycle=calls, to_stage=stage, note=note, version=None, by=north_manager
        )
    experiment = services.experiment_add(
        cycle=calls,
        by=north_manager,
        title="Day-two phone call",
        kind="hypothesis",
        premise="A call on the second day at home lets people raise worries before they grow.",
        starts_on=today - timedelta(days=30),
        ends_on=today - timedelta(days=2),
        what_happened="We called 40 people; most wanted to talk about practical things such as shopping.",
        what_we_learned="The call mattered less than having one named person to ring back.",
        what_we_will_change="Give every person a named contact before they leave the ward.",
    )
    named_contact = services.reflection_add(
        cycle=calls,
        by=north_practitioner,
        author_role=Reflection.AuthorRole.PRACTITIONER,
        text="People relaxed when they heard my name again: continuity, not the call itself.",
        identity=Reflection.Identity.NAMED,
        principles=["human", "learning"],
        experiment=experiment,
        # Wellbeing Teams plan support around each person's good day, not timed tasks.
        cases=CaseStudy.objects.filter(slug="wellbeing-teams", published=True),
    )
    services.reflection_add(
        cycle=calls,
        by=facilitator,
        author_role=Reflection.AuthorRole.LEARNING_PARTNER,
        text="This echoes what Eastfield heard about first conversations at home.",
        identity=Reflection.Identity.NAMED,
        principles=["systems"],
    )

    # Reflect and adapt.
    meals = services.cycle_start(
        engagement=engagement,
        organisation=orgs["east"],
        by=east_manager,
        title="Meals on the first night",
        learning_question="What would it take for nobody to come home to an empty fridge?",
        scale="person",
        visibility="engagement",
    )
    for stage in stages[1:]:
        services.cycle_move_stage(
            cycle=meals,
            to_stage=stage,
            note="Agreed at the team meeting.",
            version=None,
            by=east_manager,
        )
    services.adaptation_record(
        cycle=calls,
        by=north_manager,
        what_changed="Every person leaving the ward now gets the name and number of one contact.",
        because="The day-two calls showed continuity mattered more than the call.",
        decided_by="Adult social care team meeting",
        decided_on=today - timedelta(days=1),
        status="in_place",
        reflections=[named_contact],
        experiments=[experiment],
    )
    services.adaptation_record(
        cycle=discharge,
        by=north_manager,
        what_changed="No planned discharges after 3pm on Fridays, as a trial.",
        decided_by="Ward and council managers",
        decided_on=today,
        status="proposed",
    )
    services.cycle_link_add(cycle=calls, other=discharge, relation="part_of", by=north_manager)
    services.cycle_link_add(cycle=meals, other=discharge, relation="peer", by=east_manager)
    # Spread the history over past weeks so the journals read like real ones.
    for index, move in enumerate(StageMove.objects.filter(cycle__engagement=engagement)):
        StageMove.objects.filter(pk=move.pk).update(
            moved_at=timezone.now() - timedelta(days=100 - 12 * index)
        )
