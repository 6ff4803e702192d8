from __future__ import annotations

from typing import Any

import factory
from django.contrib.auth import get_user_model
from django_otp.plugins.otp_totp.models import TOTPDevice

from engagements.models import Membership, Organisation

PASSWORD = "correct horse battery staple"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"person{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.org")
    first_name = factory.Faker("first_name")
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def save_password(obj: Any, create: bool, extracted: Any, **kwargs: Any) -> None:
        if create:
            obj.save()


class OrganisationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Organisation

    name = factory.Sequence(lambda n: f"Organisation {n}")
    kind = Organisation.Kind.LOCAL_AUTHORITY
    country = "United Kingdom"
    city = "Leeds"


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    organisation = factory.SubFactory(OrganisationFactory)
    role = Membership.Role.PRACTITIONER


def totp_device(user) -> TOTPDevice:
    return TOTPDevice.objects.create(user=user, name="phone", confirmed=True)


def totp_code(device: TOTPDevice) -> str:
    from django_otp.oath import TOTP

    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    return f"{totp.token():0{device.digits}d}"


def engagement_with(*, learning_partner, facilitator, partners, title="Learning together"):
    """An engagement made the way the product makes one (default stages), with partners."""
    from django.utils import timezone

    from engagements import services
    from engagements.models import EngagementPartner

    engagement = services.engagement_create(
        learning_partner=learning_partner, by=facilitator, title=title, purpose="To learn."
    )
    for organisation in partners:
        EngagementPartner.objects.create(
            engagement=engagement, organisation=organisation, joined=timezone.localdate()
        )
    return engagement


def cycle_for(engagement, organisation, by, **fields):
    from engagements import services

    values = {
        "title": "Hospital discharge",
        "learning_question": "What helps people settle at home after hospital?",
        "scale": "team",
    }
    values.update(fields)
    return services.cycle_start(engagement=engagement, organisation=organisation, by=by, **values)
