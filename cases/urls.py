from django.urls import path

from cases import editor_views, views

app_name = "cases"

urlpatterns = [
    path("", views.case_list, name="list"),
    path("new/", editor_views.case_create, name="create"),
    path("library/import/", editor_views.library_import, name="import"),
    path("library/export.<str:fmt>", editor_views.library_export, name="export"),
    path("<slug:slug>/", views.case_detail, name="detail"),
    path("<slug:slug>/edit/", editor_views.case_edit, name="edit"),
]
