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
from pathlib import Path

from django.contrib.auth import get_user_model
from django.db import transaction
from django_otp.plugins.otp_totp.models import TOTPDevice

from engagements.models import Membership, Organisation

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


def _credentials(path: Path) -> dict[str, dict[str, str]]:
    data: dict[str, dict[str, str]] = {"passwords": {}, "totp_keys": {}}
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
    return logins
