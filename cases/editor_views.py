"""Facilitators' pages for the library: write and publish cases, import and export it all."""

from __future__ import annotations

import copy

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods

from cases import services
from cases.forms import CaseStudyForm, ImportForm
from cases.models import CaseStudy
from engagements import access
from engagements.services import Refused
from hls.lib.http import AuthedRequest

GET_POST = ["GET", "POST"]


def _facilitator(request: AuthedRequest, what: str, key: object) -> None:
    if not access.is_facilitator(request.user):
        access.deny(request.user, what, key)


@login_required
@require_http_methods(GET_POST)
def case_create(request: AuthedRequest) -> HttpResponse:
    _facilitator(request, "caselibrary", "create")
    form = CaseStudyForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        case = services.case_create(by=request.user, values=form.changed_values())
        messages.success(request, _("Case study saved."))
        return redirect("cases:detail", case.slug)
    return render(request, "cases/edit.html", {"form": form, "case": None})


@login_required
@require_http_methods(GET_POST)
def case_edit(request: AuthedRequest, slug: str) -> HttpResponse:
    _facilitator(request, "casestudy", slug)
    case = get_object_or_404(CaseStudy, slug=slug[:100])
    saved = copy.copy(case)  # the form writes what was typed into ``case``; the page names this
    form = CaseStudyForm(request.POST or None, instance=case)
    if request.method == "POST" and form.is_valid():
        try:
            case = services.case_update(
                case=case,
                by=request.user,
                version=form.cleaned_data.get("version"),
                values=form.changed_values(),
            )
        except Refused as refusal:
            form.add_error(None, refusal.message)
        else:
            messages.success(request, _("Case study saved."))
            return redirect("cases:detail", case.slug)
    return render(request, "cases/edit.html", {"form": form, "case": saved})


@login_required
@require_http_methods(GET_POST)
def library_import(request: AuthedRequest) -> HttpResponse:
    _facilitator(request, "caselibrary", "import")
    form = ImportForm(request.POST, request.FILES) if request.method == "POST" else ImportForm()
    report = None
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]
        try:
            report = services.import_library(
                data=upload.read(services.MAX_IMPORT_BYTES + 1),
                filename=upload.name,
                by=request.user,
            )
        except services.Malformed as problem:
            form.add_error("file", problem.message + " " + _("Nothing was imported."))
    return render(request, "cases/import.html", {"form": form, "report": report})


@login_required
@require_GET
def library_export(request: AuthedRequest, fmt: str) -> HttpResponseBase:
    _facilitator(request, "caselibrary", "export")
    if fmt not in ("csv", "json"):
        raise Http404
    stamp = timezone.localdate().isoformat()
    response: HttpResponseBase
    if fmt == "csv":
        response = StreamingHttpResponse(
            services.export_csv(), content_type="text/csv; charset=utf-8"
        )
    else:
        response = HttpResponse(
            services.export_json(), content_type="application/json; charset=utf-8"
        )
    response["Content-Disposition"] = f'attachment; filename="case-library-{stamp}.{fmt}"'
    access.audit(request.user, "case.exported", object_type="caselibrary", format=fmt)
    return response
