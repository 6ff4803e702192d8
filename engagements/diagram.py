"""The Stage I system map as a simple server-rendered SVG: actors around the cycle's question,
joined by lines whose style shows trust, and the factors listed beside them.

Only geometry is computed here; the template draws it, and the lists on the page are its
text alternative.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from django.utils.text import Truncator

from engagements.models import Actor, Factor

WIDTH = 720
RING_CX, RING_CY, RING_R = 230, 210, 150
HEIGHT_MIN = 430


def _coordinate(value: float) -> str:
    """SVG wants a dot for decimals whatever the page's language (templates would localise)."""
    return f"{value:.1f}"


@dataclass(frozen=True)
class Node:
    x: str
    y: str
    label: str
    trust: str
    anchor: str
    label_x: str
    label_y: str


@dataclass(frozen=True)
class FactorRow:
    number: int
    y: int
    label: str


@dataclass(frozen=True)
class Diagram:
    width: int
    height: int
    cx: int
    cy: int
    nodes: list[Node]
    factors: list[FactorRow]

    @property
    def empty(self) -> bool:
        return not self.nodes and not self.factors


def system_map(actors: list[Actor], factors: list[Factor]) -> Diagram:
    nodes = []
    count = len(actors)
    for index, actor in enumerate(actors):
        angle = -math.pi / 2 + (2 * math.pi * index / count if count else 0)
        x = RING_CX + RING_R * math.cos(angle)
        y = RING_CY + RING_R * math.sin(angle)
        right = math.cos(angle) >= -0.01
        nodes.append(
            Node(
                x=_coordinate(x),
                y=_coordinate(y),
                label=Truncator(actor.name).chars(22),
                trust=actor.trust,
                anchor="start" if right else "end",
                label_x=_coordinate(x + (14 if right else -14)),
                label_y=_coordinate(y + 5),
            )
        )
    rows = [
        FactorRow(number, 60 + 30 * (number - 1), Truncator(factor.description).chars(34))
        for number, factor in enumerate(factors, start=1)
    ]
    height = max(HEIGHT_MIN, 60 + 30 * len(rows) + 20)
    return Diagram(WIDTH, height, RING_CX, RING_CY, nodes, rows)
