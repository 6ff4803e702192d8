"""The case study library's pages (DESIGN.md §7)."""

from __future__ import annotations

import hashlib
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils.cache import patch_vary_headers
from django.utils.http import urlencode
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_GET

from cases import search as library
from cases.models import CaseCitation, CaseStudy, Evidence
from engagements import access
from engagements.models import LearningCycle, Principle
from hls.lib.http import HtmxRequest

FACET_TITLES = {
    "sector": _("Sector"),
    "scale": _("Scale"),
    "country": _("Country"),
    "organisation_type": _("Type of organisation"),
    "principle": _("HLS principle"),
    "evidence": _("Evidence grade"),
}
SCALE_LABELS = {
    "local": _("Local"),
    "place": _("Place"),
    "region": _("Region"),
    "nation": _("Nation"),
    "national": _("National"),
    "international": _("International"),
    "organisation": _("Organisation"),
}


def value_label(facet: str, value: str) -> str:
    if facet == "scale":
        return str(SCALE_LABELS.get(value, value))
    if facet == "principle":
        return str(dict(Principle.choices).get(value, value))
    if facet == "evidence":
        return str(Evidence(value).label) if value in Evidence.values else value
    return value


def _page_number(raw: str | None) -> int:
    try:
        return max(1, min(int(raw or "1"), 10_000))
    except ValueError:
        return 1


@require_GET
def case_list(request: HtmxRequest) -> HttpResponse:
    filters = library.clean_filters(
        {name: request.GET.getlist(name) for name in library.FACET_NAMES}
    )
    results = library.search(
        request.user,
        request.GET.get("q", ""),
        filters,
        _page_number(request.GET.get("page")),
        correct=not request.GET.get("exact"),
    )
    facets = [
        {
            "name": name,
            "title": FACET_TITLES[name],
            "values": [
                {
                    "value": value,
                    "label": value_label(name, value),
                    "count": count,
                    "chosen": chosen,
                    "id": f"f-{name}-{hashlib.sha256(value.encode()).hexdigest()[:10]}",
                }
                for value, count, chosen in results.facets[name]
            ],
        }
        for name in library.FACET_NAMES
    ]

    def page_url(page: int) -> str:
        return "?" + urlencode(library.results_params(results, page=page), doseq=True)

    context: dict[str, Any] = {
        "results": results,
        "facets": facets,
        "chosen_any": bool(results.filters),
        "previous_url": page_url(results.page - 1) if results.page > 1 else "",
        "next_url": page_url(results.page + 1) if results.page < results.pages else "",
        "suggestion_url": "?"
        + urlencode(library.results_params(results, q=results.suggestion), doseq=True),
        # "exact": what was typed, without correcting it again.
        "original_url": "?"
        + urlencode({"q": results.corrected_from, **results.filters, "exact": "1"}, doseq=True),
        "can_edit": access.is_facilitator(request.user),
    }
    template = "cases/list.html"
    if request.htmx and request.htmx.target == "case-library":
        template += "#library"
    response = render(request, template, context)
    # The same address answers with the whole page or the library part: caches must tell.
    patch_vary_headers(response, ("HX-Request", "HX-Target"))
    return response


def localised(case: CaseStudy) -> dict[str, str]:
    """The case's texts in the reader's language where a translation exists."""
    ukrainian = library.reads_ukrainian()
    texts = {}
    for name in ("title", "summary", "overview", "story_of_change"):
        translated = getattr(case, f"{name}_uk") if ukrainian else ""
        texts[name] = translated or getattr(case, name)
    texts["translated"] = "yes" if ukrainian and case.summary_uk else ""
    return texts


@require_GET
def case_detail(request: HttpRequest, slug: str) -> HttpResponse:
    case = get_object_or_404(library.visible_cases(request.user), slug=slug[:100])
    cycle_ids = CaseCitation.objects.filter(case=case).values("cycle_id")
    citing = list(
        access.cycles_for(request.user)
        .filter(pk__in=cycle_ids)
        .select_related("organisation", "engagement")
        .order_by("title")
    )
    return render(
        request,
        "cases/detail.html",
        {
            "case": case,
            "texts": localised(case),
            "citing": citing,
            "scale_label": value_label("scale", case.scale) if case.scale else "",
            "principles": [value_label("principle", p) for p in case.principles],
            "can_edit": access.is_facilitator(request.user),
        },
    )


def related_for_cycle(cycle: LearningCycle, texts: list[str]) -> list[dict[str, Any]]:
    """Cases related to a cycle, from its question and recent reflections, with the reason."""
    found = library.related_to_text(" ".join([cycle.learning_question, *texts]))
    return [{"case": case, "words": words} for case, words in found]
