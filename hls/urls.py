from django.contrib import admin
from django.urls import include, path

from hls import views

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("robots.txt", views.robots_txt, name="robots_txt"),
    path("accounts/", include("engagements.account_urls")),
    path("", include("engagements.urls")),
    path("r/", include("engagements.resident_urls")),
    path("cases/", include("cases.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path("admin/", admin.site.urls),
]

handler500 = "hls.views.server_error"
