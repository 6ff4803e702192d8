"""``{{ user|person }}``: how a person is named on every page (selectors.display_name)."""

from __future__ import annotations

from typing import Any

from django import template

from engagements.selectors import display_name

register = template.Library()


@register.filter
def person(user: Any) -> str:
    """Full name, else username; "deleted participant" after erasure; never a query."""
    return display_name(user)
