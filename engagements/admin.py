from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from engagements.models import (
    Actor,
    Adaptation,
    AuditEvent,
    CycleLink,
    Engagement,
    EngagementPartner,
    Experiment,
    Factor,
    HealthResponse,
    HealthRound,
    HealthScore,
    Invitation,
    LearningCycle,
    Membership,
    ModerationEvent,
    Organisation,
    Outbox,
    Reflection,
    SharedLink,
    Stage,
    StageMove,
    WithdrawnSubmission,
)


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Organisation)
class OrganisationAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "country", "city"]
    list_filter = ["kind", "country"]
    search_fields = ["name", "city"]
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "organisation", "role"]
    list_filter = ["role", "organisation__kind"]
    search_fields = ["user__username", "user__email", "organisation__name"]
    autocomplete_fields = ["user", "organisation"]


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    list_display = ["email", "organisation", "role", "created", "expires", "accepted", "revoked"]
    list_filter = ["role"]
    search_fields = ["email", "organisation__name"]
    exclude = ["token_hash"]
    readonly_fields = ["sent", "accepted", "accepted_by"]
    autocomplete_fields = ["organisation", "invited_by"]


class PartnerInline(admin.TabularInline):
    model = EngagementPartner
    extra = 0
    autocomplete_fields = ["organisation"]


class StageInline(admin.TabularInline):
    model = Stage
    extra = 0
    fields = ["position", "name", "questions"]


@admin.register(Engagement)
class EngagementAdmin(admin.ModelAdmin):
    list_display = ["title", "learning_partner", "starts_on", "ends_on", "language"]
    search_fields = ["title"]
    autocomplete_fields = ["learning_partner", "facilitators"]
    inlines = [PartnerInline, StageInline]
    exclude = ["version", "created_by"]


@admin.register(EngagementPartner)
class EngagementPartnerAdmin(admin.ModelAdmin):
    list_display = ["organisation", "engagement", "joined"]
    autocomplete_fields = ["organisation", "engagement"]


@admin.register(Stage)
class StageAdmin(admin.ModelAdmin):
    list_display = ["name", "engagement", "position"]
    list_filter = ["engagement"]
    search_fields = ["name"]


class MoveInline(admin.TabularInline):
    model = StageMove
    extra = 0
    fields = ["moved_at", "from_stage", "to_stage", "moved_by", "note"]
    readonly_fields = ["moved_at"]
    autocomplete_fields = ["moved_by"]


@admin.register(LearningCycle)
class LearningCycleAdmin(admin.ModelAdmin):
    list_display = ["title", "organisation", "engagement", "stage", "scale", "status", "visibility"]
    list_filter = ["status", "scale", "visibility", "engagement"]
    search_fields = ["title", "learning_question", "organisation__name"]
    autocomplete_fields = ["engagement", "organisation", "created_by"]
    exclude = ["version"]
    inlines = [MoveInline]


@admin.register(StageMove)
class StageMoveAdmin(admin.ModelAdmin):
    list_display = ["cycle", "from_stage", "to_stage", "moved_by", "moved_at"]
    autocomplete_fields = ["cycle", "moved_by"]


@admin.register(CycleLink)
class CycleLinkAdmin(admin.ModelAdmin):
    list_display = ["from_cycle", "kind", "to_cycle"]
    autocomplete_fields = ["from_cycle", "to_cycle", "created_by"]


@admin.register(Actor)
class ActorAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "trust", "cycle"]
    list_filter = ["kind", "trust"]
    search_fields = ["name"]
    autocomplete_fields = ["cycle"]
    exclude = ["version"]


@admin.register(Factor)
class FactorAdmin(admin.ModelAdmin):
    list_display = ["__str__", "whose_knowledge", "cycle"]
    search_fields = ["description"]
    autocomplete_fields = ["cycle"]
    exclude = ["version"]


@admin.register(Experiment)
class ExperimentAdmin(admin.ModelAdmin):
    list_display = ["title", "kind", "cycle", "starts_on", "ends_on"]
    list_filter = ["kind"]
    search_fields = ["title", "premise"]
    autocomplete_fields = ["cycle", "created_by"]
    exclude = ["version"]


@admin.register(Reflection)
class ReflectionAdmin(admin.ModelAdmin):
    list_display = ["__str__", "author_role", "identity", "moderation", "created"]
    list_filter = ["author_role", "identity", "moderation"]
    search_fields = ["cycle__title"]
    autocomplete_fields = ["cycle", "author", "experiment", "shared_link"]
    exclude = ["version", "receipt_hash", "submission_key"]


@admin.register(Adaptation)
class AdaptationAdmin(admin.ModelAdmin):
    list_display = ["__str__", "status", "decided_by", "decided_on", "cycle"]
    list_filter = ["status"]
    search_fields = ["what_changed", "decided_by"]
    autocomplete_fields = ["cycle", "reflections", "experiments", "recorded_by"]
    exclude = ["version"]


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Append-only: administrators read the trail; nobody edits or deletes it here."""

    list_display = ["at", "actor", "action", "object_type", "object_id"]
    list_filter = ["action", "object_type"]
    search_fields = ["object_id", "actor__username"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(SharedLink)
class SharedLinkAdmin(admin.ModelAdmin):
    list_display = [
        "label",
        "token_prefix",
        "cycle",
        "health_round",
        "expires",
        "submissions",
        "revoked",
    ]
    list_filter = ["moderation_mode"]
    search_fields = ["label", "token_prefix"]
    exclude = ["token_hash"]
    readonly_fields = ["token_prefix", "submissions", "last_used"]
    autocomplete_fields = ["cycle", "health_round", "created_by", "revoked_by"]


@admin.register(ModerationEvent)
class ModerationEventAdmin(admin.ModelAdmin):
    list_display = ["at", "actor", "action", "cycle"]
    list_filter = ["action"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Outbox)
class OutboxAdmin(admin.ModelAdmin):
    list_display = ["task", "object_id", "created", "enqueued", "done", "attempts"]
    list_filter = ["task"]


@admin.register(WithdrawnSubmission)
class WithdrawnSubmissionAdmin(admin.ModelAdmin):
    list_display = ["at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


# --- health check (issue 7) --------------------------------------------------------------------


class HealthScoreInline(admin.TabularInline):
    model = HealthScore
    extra = 0


@admin.register(HealthRound)
class HealthRoundAdmin(admin.ModelAdmin):
    list_display = ["title", "engagement", "cycle", "opened", "closes_on", "closed"]
    search_fields = ["title", "engagement__title", "cycle__title"]
    autocomplete_fields = ["engagement", "cycle", "opened_by", "closed_by"]


@admin.register(HealthResponse)
class HealthResponseAdmin(admin.ModelAdmin):
    list_display = ["round", "perspective", "created", "updated"]
    list_filter = ["perspective"]
    autocomplete_fields = ["round", "shared_link"]
    # Scores and comments are shown without their person, here as on every page.
    exclude = ["submission_key", "respondent"]
    inlines = [HealthScoreInline]
