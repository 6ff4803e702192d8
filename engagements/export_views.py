"""Pages for exports: ask for one, watch it being made, download it before it expires.

Anyone who takes part in an engagement may export it (``access.engagement_access``); what the
file holds is what they may see (``engagements.exports``). An export's page and its download
are its requester's alone: anyone else, or the requester once they have left the engagement,
gets 404. A download after the link's expiry gets 410 with a way to make a new one.
"""

from __future__ import annotations

import uuid

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_http_methods

from engagements import access, exports
from engagements.models import Export
from engagements.services import Refused
from engagements.views import GET_POST
from hls.lib.forms import AccessibleFormMixin
from hls.lib.http import AuthedRequest

# htmx stops polling when an answer has this status (and still swaps it in).
STOP_POLLING = 286


class ExportForm(AccessibleFormMixin, forms.Form):
    format = forms.ChoiceField(
        label=gettext_lazy("Format"),
        choices=Export.Format.choices,
        initial=Export.Format.XLSX,
        widget=forms.RadioSelect,
    )


@login_required
@require_http_methods(GET_POST)
def export_list(request: AuthedRequest, engagement: uuid.UUID) -> HttpResponse:
    allowed = access.engagement_access(request.user, engagement)
    form = ExportForm(request.POST if request.method == "POST" else None)
    # A format that is not offered is bad input (400); a refusal is an answer (200).
    status = 200
    if request.method == "POST" and not form.is_valid():
        status = 400
    elif request.method == "POST":
        try:
            export, created = exports.request_export(
                user=request.user, engagement=allowed.engagement, fmt=form.cleaned_data["format"]
            )
        except Refused as refusal:
            form.add_error("format", refusal.message)
        else:
            if not created:
                messages.info(request, _("This export was already being prepared, so here it is."))
            return redirect("engagements:export", export.public_id)
    return render(
        request,
        "engagements/export_list.html",
        {
            "engagement": allowed.engagement,
            "form": form,
            "exports": exports.recent_exports(request.user, allowed.engagement),
            "hours": settings.HLS_EXPORT_HOURS,
            "max_rows": settings.HLS_EXPORT_MAX_ROWS,
        },
        status=status,
    )


def _status_context(export: Export) -> dict[str, object]:
    expired = exports.is_expired(export)
    total = max(export.rows_total, export.rows_done)
    return {
        "export": export,
        "engagement": export.engagement,
        "expired": expired,
        "finished": exports.is_finished(export),
        "ready": export.status == Export.Status.DONE and not expired,
        "total": total,
        "percent": round(100 * export.rows_done / total) if total else 0,
        "error": exports.error_message(export),
    }


@login_required
@require_GET
def export_detail(request: AuthedRequest, export: uuid.UUID) -> HttpResponse:
    found = exports.export_for(request.user, export)
    context = _status_context(found)
    if request.htmx:
        return render(
            request,
            "engagements/export_detail.html#status",
            context,
            status=STOP_POLLING if context["finished"] else 200,
        )
    return render(request, "engagements/export_detail.html", context)


@login_required
@require_GET
def export_download(request: AuthedRequest, export: uuid.UUID) -> HttpResponseBase:
    found = exports.export_for(request.user, export)
    if exports.is_expired(found):
        return _gone(request, found)
    if found.status != Export.Status.DONE:
        return redirect("engagements:export", found.public_id)
    path = exports.file_path(found)
    if path is None:  # removed from the disk already: as good as expired
        return _gone(request, found)
    access.audit(request.user, "export.downloaded", found, format=found.format)
    response = FileResponse(path.open("rb"), content_type=exports.CONTENT_TYPES[found.format])
    response["Content-Disposition"] = exports.content_disposition(found)
    response["Content-Length"] = str(path.stat().st_size)
    return response


def _gone(request: AuthedRequest, export: Export) -> HttpResponse:
    return render(
        request,
        "engagements/export_expired.html",
        {"export": export, "engagement": export.engagement},
        status=410,
    )
