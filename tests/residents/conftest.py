from __future__ import annotations

from typing import Any

import pytest

from tests.residents.helpers import make_link


@pytest.fixture
def link(world: Any) -> Any:
    """A link for cycle A (held for moderation), its token on ``link.token``."""
    return make_link(world.cycle_a, world.personas.manager_a)


@pytest.fixture
def publish_link(world: Any) -> Any:
    """A link whose reflections are published at once (they show on the staff cycle page)."""
    return make_link(world.cycle_a, world.personas.manager_a, moderation_mode="publish")
