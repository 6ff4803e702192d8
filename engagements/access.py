"""The one access layer: who may see and do what.

Every view, htmx partial, export and task asks here. Objects outside a person's reach answer
404, never 403, so nothing is revealed about what exists (DESIGN.md §4).
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from engagements.models import Membership, Organisation

AnyUser = AbstractBaseUser | AnonymousUser


def is_facilitator(user: AnyUser) -> bool:
    """Learning-partner staff: members of a learning-partner organisation."""
    if not user.is_authenticated:
        return False
    return Membership.objects.filter(
        user_id=user.pk, organisation__kind=Organisation.Kind.LEARNING_PARTNER
    ).exists()


def is_org_admin(user: AnyUser) -> bool:
    if not user.is_authenticated:
        return False
    return Membership.objects.filter(user_id=user.pk, role=Membership.Role.ADMIN).exists()


def requires_two_factor(user: AnyUser) -> bool:
    """Facilitators and admins (organisation admins and Django staff) must use two-factor."""
    if not user.is_authenticated or not settings.TWO_FACTOR_REQUIRED:
        return False
    return bool(
        getattr(user, "is_staff", False)
        or getattr(user, "is_superuser", False)
        or is_facilitator(user)
        or is_org_admin(user)
    )
