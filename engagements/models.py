from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class OrganisationQuerySet(models.QuerySet["Organisation"]):
    def learning_partners(self) -> OrganisationQuerySet:
        return self.filter(kind=Organisation.Kind.LEARNING_PARTNER)


class Organisation(models.Model):
    """A tenant: every record the product keeps belongs, in the end, to one organisation."""

    class Kind(models.TextChoices):
        LOCAL_AUTHORITY = "local_authority", _("Local authority")
        HEALTH_BODY = "health_body", _("Health body")
        CHARITY = "charity", _("Charity or voluntary organisation")
        FUNDER = "funder", _("Funder")
        NATIONAL_AGENCY = "national_agency", _("National agency")
        INTERNATIONAL_BODY = "international_body", _("International body")
        LEARNING_PARTNER = "learning_partner", _("Learning partner")

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(_("name"), max_length=200)
    kind = models.CharField(_("kind"), max_length=32, choices=Kind.choices)
    country = models.CharField(_("country"), max_length=100, blank=True)
    city = models.CharField(_("city"), max_length=100, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    objects = OrganisationQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        verbose_name = _("organisation")
        verbose_name_plural = _("organisations")

    def __str__(self) -> str:
        return self.name

    @property
    def is_learning_partner(self) -> bool:
        return self.kind == self.Kind.LEARNING_PARTNER


class Membership(models.Model):
    class Role(models.TextChoices):
        ADMIN = "admin", _("Administrator")
        MANAGER = "manager", _("Manager")
        PRACTITIONER = "practitioner", _("Practitioner")

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    organisation = models.ForeignKey(
        Organisation, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(_("role"), max_length=16, choices=Role.choices)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["organisation__name"]
        verbose_name = _("membership")
        verbose_name_plural = _("memberships")
        constraints = [
            models.UniqueConstraint(fields=["user", "organisation"], name="membership_once_per_org")
        ]

    def __str__(self) -> str:
        return f"{self.user}, {self.organisation} ({self.get_role_display()})"
