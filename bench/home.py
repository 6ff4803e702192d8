"""The signed-in home page against a bare Django view, through the same middleware stack.

Seeds a user with memberships in 20 organisations (a busy facilitator's shape), then times
GET / and GET of a view that returns a fixed response. The ratio shows what the page itself
costs above Django's own request cycle (sessions, auth, CSP, locale ...).
"""

from __future__ import annotations

import _harness

_harness.setup("home")

from django.http import HttpRequest, HttpResponse  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import override_settings  # noqa: E402
from django.urls import include, path  # noqa: E402

from engagements.models import Membership, Organisation  # noqa: E402

RUNS = 300


def bare(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


urlpatterns = [path("__bare__", bare), path("", include("hls.urls"))]


def main() -> None:
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user("bench", "bench@example.org", "bench-password-123")
    organisations = Organisation.objects.bulk_create(
        Organisation(name=f"Organisation {i}", kind=Organisation.Kind.LOCAL_AUTHORITY, city="Leeds")
        for i in range(20)
    )
    Membership.objects.bulk_create(
        Membership(user=user, organisation=org, role=Membership.Role.PRACTITIONER)
        for org in organisations
    )
    client = Client()
    client.force_login(user)

    def page() -> None:
        response = client.get("/")
        assert response.status_code == 200, response.status_code

    def floor() -> None:
        response = client.get("/__bare__")
        assert response.status_code == 200, response.status_code

    with override_settings(ROOT_URLCONF=__name__):
        page_ms = _harness.measure(page, runs=RUNS)
        floor_ms = _harness.measure(floor, runs=RUNS)
    print(
        f"home page: p50 {_harness.p50(page_ms):.2f} ms, p95 {_harness.p95(page_ms):.2f} ms over {RUNS} requests"
    )
    print(
        f"bare view: p50 {_harness.p50(floor_ms):.2f} ms, p95 {_harness.p95(floor_ms):.2f} ms over {RUNS} requests"
    )
    _harness.report(
        "home",
        p50_ms=_harness.p50(page_ms),
        p95_ms=_harness.p95(page_ms),
        floor_p50_ms=_harness.p50(floor_ms),
        ratio_to_floor=_harness.p50(page_ms) / _harness.p50(floor_ms),
    )


if __name__ == "__main__":
    main()
