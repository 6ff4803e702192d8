"""The WSGI application and URLconf gunicorn serves in bench/resident_submit.py.

It is the product's own application (``hls.urls``, every middleware, production settings from
the environment) plus one URL only this bench has: ``bench-floor/``, a bare view that inserts one
row into the same table as a resident's reflection. That view is the floor the submission is
measured against. Not a bench itself (the leading underscore keeps ``make bench`` off it).

The capacity run raises the per-link flood guard with its documented setting,
``HLS_RESIDENT_SUBMIT_LIMIT``, so it measures the submission path rather than the 429 page.
"""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hls.settings")
application = get_wsgi_application()

from django.conf import settings  # noqa: E402
from django.http import HttpRequest, HttpResponse  # noqa: E402
from django.urls import include, path  # noqa: E402
from django.views.decorators.csrf import csrf_exempt  # noqa: E402

from engagements.models import Reflection  # noqa: E402

settings.ROOT_URLCONF = __name__


FLOOR_CYCLE = int(os.environ.get("BENCH_FLOOR_CYCLE_ID", "0"))
FLOOR_STAGE = int(os.environ.get("BENCH_FLOOR_STAGE_ID", "0"))


@csrf_exempt
def floor(request: HttpRequest) -> HttpResponse:
    Reflection.objects.create(
        cycle_id=FLOOR_CYCLE,
        stage_id=FLOOR_STAGE,
        text="floor",
        author_role=Reflection.AuthorRole.RESIDENT,
    )
    return HttpResponse("ok")


urlpatterns = [path("", include("hls.urls")), path("bench-floor/", floor)]
handler500 = "hls.views.server_error"
