"""Learning digests to read in the app, and the person's own preferences.

A personal digest is read by its person only; an engagement digest by the engagement's
facilitators only. Anyone else gets 404 (``digests.digest_for`` asks ``engagements.access``).
"""

from __future__ import annotations

import uuid

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models.fields.json import KT
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.utils import translation
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods

from engagements import access, digests
from engagements.accounts import set_language_cookie
from engagements.models import Digest, Profile
from engagements.preference_forms import PreferencesForm
from engagements.views import GET_POST, _parse_uuid
from hls.lib.http import AuthedRequest

PER_PAGE = 30


@login_required
@require_GET
def digest_list(request: AuthedRequest) -> HttpResponse:
    # The list needs one number from each digest's content, not the content.
    found = (
        digests.digests_for(request.user)
        .select_related("engagement")
        .defer("content")
        .annotate(new_reflections=KT("content__totals__reflections"))
    )
    engagement = None
    wanted = _parse_uuid(request.GET.get("engagement"))
    if wanted is not None:
        engagement = access.engagement_to_manage(request.user, wanted).engagement
        found = found.filter(scope=Digest.Scope.ENGAGEMENT, engagement=engagement)
    page = Paginator(found.order_by("-period_end", "-id"), PER_PAGE).get_page(
        request.GET.get("page")
    )
    rows = [(digest, digests.digest_title(digest)) for digest in page.object_list]
    return render(
        request,
        "engagements/digest_list.html",
        {
            "page": page,
            "rows": rows,
            "engagement": engagement,
            "profile": Profile.objects.filter(user_id=request.user.pk).first(),
        },
    )


@login_required
@require_GET
def digest_detail(request: AuthedRequest, digest: uuid.UUID) -> HttpResponse:
    found = digests.digest_for(request.user, digest)
    return render(
        request,
        "engagements/digest_detail.html",
        {"view": digests.present(found, request.user), "base_url": ""},
    )


@login_required
@require_http_methods(GET_POST)
def preferences(request: AuthedRequest) -> HttpResponse:
    profile = digests.profile_for(request.user)
    form = PreferencesForm(request.POST or None, instance=profile)
    if request.method == "POST" and form.is_valid():
        form.save()
        language = form.cleaned_data["language"]
        translation.activate(language)
        messages.success(request, _("Your preferences are saved."))
        response = redirect("accounts:preferences")
        set_language_cookie(response, language)
        return response
    return render(request, "accounts/preferences.html", {"form": form})
