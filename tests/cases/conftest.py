"""Helpers for the case library's tests: the shipped library, clients, and row snapshots."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from cases import search
from cases.models import CaseStudy
from cases.seed import shipped_cases
from tests.conftest import verified_client

# Everything a case holds that an import may change (not its id, stamps or version).
DATA_FIELDS = [
    f.name
    for f in CaseStudy._meta.concrete_fields
    if f.name not in {"id", "public_id", "created", "updated", "version", "search"}
]


@pytest.fixture(autouse=True)
def _fresh_vocabulary() -> Iterator[None]:
    """The "did you mean" words are kept per process; a test starts and ends without them."""
    search.forget_vocabulary()
    yield
    search.forget_vocabulary()


@pytest.fixture
def library(db) -> list[dict[str, Any]]:
    """The 26 shipped cases, published (the data migration seeds them; a transactional test
    elsewhere may have flushed them)."""
    shipped = shipped_cases()
    for values in shipped:
        CaseStudy.objects.update_or_create(slug=values["slug"], defaults=values)
    return shipped


def snapshot() -> list[tuple[Any, ...]]:
    """Every row of the library, all columns (version and stamps included)."""
    return list(CaseStudy.objects.order_by("pk").values_list())


def data_snapshot() -> dict[str, dict[str, Any]]:
    """What each case says, by slug (not its version or stamps)."""
    return {row["slug"]: row for row in CaseStudy.objects.values(*DATA_FIELDS)}


def make_case(**fields: Any) -> CaseStudy:
    values: dict[str, Any] = {
        "organisation": "Test Organisation",
        "summary": "A short summary.",
        "evidence": "C",
        "published": True,
    }
    values.update(fields)
    values.setdefault("title", values["organisation"])
    values.setdefault("slug", values["title"].lower().replace(" ", "-")[:100])
    case = CaseStudy.objects.create(**values)
    search.forget_vocabulary()
    return case


@pytest.fixture
def facilitator_client(personas) -> Client:
    return verified_client(personas.facilitator)
