"""Small helpers shared by the resident-link tests (the ``link`` fixture is in conftest.py)."""

from __future__ import annotations

import re
from typing import Any

from django.test import Client
from django.urls import reverse

from engagements import residents

TEXT = "The bus to the clinic stopped running."

# The per-request security tokens are the only part of a page allowed to differ.
_CSRF = [
    re.compile(r'"X-CSRFToken": "[^"]+"'),
    re.compile(r'name="csrfmiddlewaretoken" value="[^"]+"'),
]


def make_link(cycle: Any, by: Any, **options: Any) -> Any:
    """A shared link with its one-time token kept on it as ``link.token`` for the test."""
    link: Any
    link, token = residents.link_create(cycle=cycle, by=by, label="Tenants meeting", **options)
    link.token = token
    return link


def form_data(client: Client, **overrides: Any) -> dict[str, Any]:
    """What the resident form posts: its hidden fields from a real GET, plus the answers."""
    page: Any = client.get(reverse("residents:reflect"))
    form = page.context["form"]
    data: dict[str, Any] = {
        "text": TEXT,
        "identity": "anonymous",
        "consent": "on",
        "submission_key": str(form.initial["submission_key"]),
        "link_ref": form.initial["link_ref"],
    }
    data.update(overrides)
    return data


def opened(link: Any, client: Client | None = None) -> Client:
    """A client that has opened ``link`` (token swapped for a session)."""
    client = client or Client()
    response = client.get(f"/r/{link.token}")
    assert response.status_code == 302, response.status_code
    return client


def without_csrf(html: str) -> str:
    for pattern in _CSRF:
        html = pattern.sub("", html)
    return html


def html_of(response: Any) -> str:
    return response.content.decode()
