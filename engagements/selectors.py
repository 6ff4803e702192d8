"""Reads for pages. Each returns what one page needs, in a fixed number of queries."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from engagements.models import Membership


def memberships_for_user(*, user: AbstractBaseUser | AnonymousUser) -> list[Membership]:
    if not user.is_authenticated:
        return []
    return list(Membership.objects.filter(user_id=user.pk).select_related("organisation"))
