from django.urls import path

from engagements import (
    dashboard_views,
    digest_views,
    export_views,
    health_views,
    session_views,
    views,
)

app_name = "engagements"

urlpatterns = [
    path("engagements/", views.engagement_list, name="engagements"),
    path("engagements/new/", views.engagement_create, name="engagement_create"),
    path("engagements/<uuid:engagement>/", views.engagement_detail, name="engagement"),
    path("engagements/<uuid:engagement>/edit/", views.engagement_edit, name="engagement_edit"),
    path("engagements/<uuid:engagement>/stages/", views.engagement_stages, name="stages"),
    path(
        "engagements/<uuid:engagement>/stages/<uuid:stage>/",
        views.stage_edit,
        name="stage_edit",
    ),
    path(
        "engagements/<uuid:engagement>/stages/<uuid:stage>/reorder/",
        views.stage_reorder,
        name="stage_reorder",
    ),
    path(
        "engagements/<uuid:engagement>/partners/new/", views.partner_invite, name="partner_invite"
    ),
    path("engagements/<uuid:engagement>/facilitators/", views.facilitators, name="facilitators"),
    path("engagements/<uuid:engagement>/cycles/", views.cycle_list, name="cycles"),
    path("engagements/<uuid:engagement>/cycles/new/", views.cycle_start, name="cycle_start"),
    path("cycles/<uuid:cycle>/", views.cycle_detail, name="cycle"),
    path("cycles/<uuid:cycle>/section/<slug:section>/", views.cycle_section, name="cycle_section"),
    path("cycles/<uuid:cycle>/edit/", views.cycle_edit, name="cycle_edit"),
    path("cycles/<uuid:cycle>/move/", views.cycle_move, name="cycle_move"),
    path("cycles/<uuid:cycle>/links/", views.cycle_links, name="cycle_links"),
    path("cycles/<uuid:cycle>/resident-links/", views.resident_links, name="resident_links"),
    path(
        "cycles/<uuid:cycle>/resident-links/<uuid:link>/close/",
        views.resident_link_revoke,
        name="resident_link_revoke",
    ),
    path("moderation/", views.moderation_queue, name="moderation"),
    path("moderation/<uuid:reflection>/", views.moderation_act, name="moderation_act"),
    path("cycles/<uuid:cycle>/<slug:kind>/new/", views.child_add, name="child_add"),
    path("records/<slug:kind>/<uuid:public_id>/edit/", views.child_edit, name="child_edit"),
    path("records/<slug:kind>/<uuid:public_id>/delete/", views.child_delete, name="child_delete"),
    path("organisations/<uuid:organisation>/members/", views.organisation_members, name="members"),
    path(
        "organisations/<uuid:organisation>/members/<uuid:member>/",
        views.member_update,
        name="member_update",
    ),
    path(
        "organisations/<uuid:organisation>/invitations/<uuid:invitation>/revoke/",
        views.invitation_revoke,
        name="invitation_revoke",
    ),
    path("invitations/<str:token>/", views.invitation_accept, name="invitation_accept"),
    # Reflection sessions. "schedule/", not "new/": cycles/<cycle>/<kind>/new/ is child_add.
    path("engagements/<uuid:engagement>/sessions/", session_views.session_list, name="sessions"),
    path(
        "engagements/<uuid:engagement>/sessions/schedule/",
        session_views.session_create,
        name="session_create",
    ),
    path("cycles/<uuid:cycle>/sessions/", session_views.cycle_session_list, name="cycle_sessions"),
    path(
        "cycles/<uuid:cycle>/sessions/schedule/",
        session_views.cycle_session_create,
        name="cycle_session_create",
    ),
    path("sessions/<uuid:session>/", session_views.session_detail, name="session"),
    path("sessions/<uuid:session>/edit/", session_views.session_edit, name="session_edit"),
    path("sessions/<uuid:session>/cancel/", session_views.session_cancel, name="session_cancel"),
    path(
        "sessions/<uuid:session>/calendar.ics",
        session_views.session_calendar,
        name="session_calendar",
    ),
    path("email/unsubscribe/<str:signed>/", session_views.unsubscribe, name="unsubscribe"),
    # Exports: the list and request page (anyone in the engagement), then the requester's own.
    path("engagements/<uuid:engagement>/exports/", export_views.export_list, name="exports"),
    path("exports/<uuid:export>/", export_views.export_detail, name="export"),
    path("exports/<uuid:export>/download/", export_views.export_download, name="export_download"),
    # Learning digests: the person's own and, for facilitators, their engagements'.
    path("digests/", digest_views.digest_list, name="digests"),
    path("digests/<uuid:digest>/", digest_views.digest_detail, name="digest"),
    # --- partner dashboard (issue 7): facilitators, per engagement and across; managers ---
    path("dashboard/", dashboard_views.facilitator_dashboard, name="dashboard"),
    path(
        "engagements/<uuid:engagement>/dashboard/",
        dashboard_views.engagement_dashboard,
        name="engagement_dashboard",
    ),
    path(
        "organisations/<uuid:organisation>/dashboard/",
        dashboard_views.organisation_dashboard,
        name="organisation_dashboard",
    ),
    # --- health check (issue 7): rounds of an engagement or a cycle, answers, results ---
    # "health/open/", not ".../new/": cycles/<cycle>/<kind>/new/ is child_add.
    path("engagements/<uuid:engagement>/health/", health_views.list_rounds, name="health_rounds"),
    path(
        "engagements/<uuid:engagement>/health/open/",
        health_views.open_round,
        name="health_round_open",
    ),
    path("cycles/<uuid:cycle>/health/", health_views.list_cycle_rounds, name="cycle_health_rounds"),
    path(
        "cycles/<uuid:cycle>/health/open/",
        health_views.open_cycle_round,
        name="cycle_health_round_open",
    ),
    path("health/<uuid:health_round>/", health_views.show_round, name="health_round"),
    path("health/<uuid:health_round>/answer/", health_views.answer_round, name="health_answer"),
    path("health/<uuid:health_round>/close/", health_views.close_round, name="health_close"),
]
