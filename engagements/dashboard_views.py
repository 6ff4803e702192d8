"""The partner dashboard's pages: an engagement's, a facilitator's across engagements, and an
organisation's for its managers.

Who may see what (``engagements.access`` decides, 404 and an audit event otherwise):

- ``/engagements/<id>/dashboard/``: the engagement's facilitators;
- ``/dashboard/``: anyone who facilitates at least one engagement (all of them at once);
- ``/organisations/<id>/dashboard/``: the organisation's managers and admins, not its
  practitioners (the dashboard is for those who steer the organisation's learning).

Each URL answers an htmx request from its filter form with the ``dashboard`` partial only (the
form and the panels), and a polite status line out of band; the same URL loaded directly is the
full page with the same filters, so a filtered dashboard can be shared as a link.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import render
from django.utils.formats import date_format, number_format
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET

from engagements import access, charts, dashboard
from engagements.dashboard_forms import DashboardFilterForm
from hls.lib.http import AuthedRequest

TEMPLATE = "engagements/dashboard.html"
PARTIAL_TARGET = "dashboard-body"


@login_required
@require_GET
def facilitator_dashboard(request: AuthedRequest) -> HttpResponse:
    return _page(request, dashboard.facilitator_scope(request.user))


@login_required
@require_GET
def engagement_dashboard(request: AuthedRequest, engagement: uuid.UUID) -> HttpResponse:
    found = access.engagement_facilitated(request.user, engagement)
    return _page(request, dashboard.engagement_scope(found))


@login_required
@require_GET
def organisation_dashboard(request: AuthedRequest, organisation: uuid.UUID) -> HttpResponse:
    allowed = access.organisation_access(request.user, organisation)
    if allowed.role not in access.MANAGING_ROLES:
        access.deny(request.user, "organisation", organisation)
    return _page(request, dashboard.organisation_scope(request.user, allowed.organisation))


def _page(request: AuthedRequest, scope: dashboard.Scope) -> HttpResponse:
    choices = dashboard.filter_choices(scope)
    form = DashboardFilterForm(
        request.GET, choices=choices, timezone=scope.timezone, url=request.path
    )
    filters = form.filters()
    board = dashboard.dashboard(user=request.user, scope=scope, filters=filters, choices=choices)
    context = {
        "board": board,
        "scope": scope,
        "filters": filters,
        "form": form,
        "charts": _charts(board),
    }
    template = TEMPLATE
    if request.htmx and request.htmx.target == PARTIAL_TARGET:
        template += "#dashboard"
    return render(request, template, context)


@dataclass(frozen=True)
class Figure:
    """A chart with its data table (``includes/chart_figure.html``)."""

    name: str  # the caption's id is chart-<name>; the SVG is named by it
    title: str
    svg: SafeString
    headers: tuple[str, ...]
    rows: list[tuple[str, ...]]
    note: str = ""
    scroll: bool = False

    @property
    def table_caption(self) -> str:
        return _("%(chart)s: the figures") % {"chart": self.title}


def _n(value: int) -> str:
    return str(number_format(value, force_grouping=True))


def _charts(board: dashboard.Dashboard) -> dict[str, Figure]:
    """Each chart of the dashboard with the table beside it; the numbers are the board's."""
    fewer = _("fewer than %(n)s people") % {"n": board.min_contributors}
    matrix = board.matrix
    weeks = [(date_format(week.monday, "j M Y"), week.reflections) for week in board.rhythm]
    short = [(date_format(week.monday, "j M"), week.reflections) for week in board.rhythm]
    spread = board.adaptations
    return {
        "stages": Figure(
            "stages",
            _("Cycles at each stage"),
            charts.columns(
                list(zip(matrix.stages, matrix.stage_totals, strict=True)),
                labelledby="chart-stages",
            ),
            (_("Stage"), _("Cycles")),
            [(name, _n(n)) for name, n in zip(matrix.stages, matrix.stage_totals, strict=True)],
        ),
        "rhythm": Figure(
            "rhythm",
            _("Reflections per week"),
            charts.columns(
                short,
                labelledby="chart-rhythm",
                label_every=max(1, -(-len(short) // 9)),
                values=len(short) <= 16,
            ),
            (_("Week starting"), _("Reflections")),
            [(label, _n(n)) for label, n in weeks],
            note=_("A week's column is empty when nobody reflected that week."),
            scroll=len(weeks) > 12,
        ),
        "voice": Figure(
            "voice",
            _("Reflections by author role"),
            charts.bars(
                [(v.label, v.reflections, fewer) for v in board.voice], labelledby="chart-voice"
            ),
            (_("Role"), _("Reflections"), _("People")),
            [
                (v.label, fewer, fewer)
                if v.suppressed
                else (v.label, _n(v.reflections or 0), _n(v.contributors or 0))
                for v in board.voice
            ],
            note=_(
                "A role with fewer than %(n)s people behind it is not counted out, so no one "
                "can be picked out; when only one would be hidden, the next smallest is too."
            )
            % {"n": board.min_contributors},
        ),
        "adaptations": Figure(
            "adaptations",
            _("Cycles by the number of adaptations they recorded"),
            charts.columns(
                [(_adaptation_label(label), n) for label, n in spread.buckets],
                labelledby="chart-adaptations",
                height=200,
            ),
            (_("Adaptations recorded"), _("Cycles")),
            [(_adaptation_label(label), _n(n)) for label, n in spread.buckets],
        ),
    }


def _adaptation_label(bucket: str) -> str:
    if bucket.endswith("+"):
        return _("%(n)s or more") % {"n": bucket[:-1]}
    return bucket
