from django.urls import path
from django.views.generic import RedirectView

from engagements import health_views, resident_views

app_name = "residents"

urlpatterns = [
    path("", resident_views.reflect, name="reflect"),
    path("receipt/", resident_views.receipt, name="receipt"),
    path("receipt/yours/", resident_views.receipt_view, name="receipt_view"),
    path(
        "receipt/yours/download.<str:fmt>",
        resident_views.receipt_download,
        name="receipt_download",
    ),
    path("receipt/yours/withdraw/", resident_views.receipt_withdraw, name="receipt_withdraw"),
    path("receipt", RedirectView.as_view(pattern_name="residents:receipt")),
    # A health-check round's link lands here (before the token patterns, which it would match).
    path("health/", health_views.resident_answer, name="health"),
    path("<str:token>", resident_views.open_link, name="open"),
    path("<str:token>/", resident_views.open_link),  # as some apps add a slash when sharing
]
