from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class OrganisationQuerySet(models.QuerySet["Organisation"]):
    def learning_partners(self) -> OrganisationQuerySet:
        return self.filter(kind=Organisation.Kind.LEARNING_PARTNER)


class Organisation(models.Model):
    """A tenant: every record the product keeps belongs, in the end, to one organisation."""

    class Kind(models.TextChoices):
        LOCAL_AUTHORITY = "local_authority", _("Local authority")
        HEALTH_BODY = "health_body", _("Health body")
        CHARITY = "charity", _("Charity or voluntary organisation")
        FUNDER = "funder", _("Funder")
        NATIONAL_AGENCY = "national_agency", _("National agency")
        INTERNATIONAL_BODY = "international_body", _("International body")
        LEARNING_PARTNER = "learning_partner", _("Learning partner")

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(_("name"), max_length=200)
    kind = models.CharField(_("kind"), max_length=32, choices=Kind.choices)
    country = models.CharField(_("country"), max_length=100, blank=True)
    city = models.CharField(_("city"), max_length=100, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    objects = OrganisationQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        verbose_name = _("organisation")
        verbose_name_plural = _("organisations")

    def __str__(self) -> str:
        return self.name

    @property
    def is_learning_partner(self) -> bool:
        return self.kind == self.Kind.LEARNING_PARTNER


class Membership(models.Model):
    class Role(models.TextChoices):
        ADMIN = "admin", _("Administrator")
        MANAGER = "manager", _("Manager")
        PRACTITIONER = "practitioner", _("Practitioner")

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    organisation = models.ForeignKey(
        Organisation, on_delete=models.CASCADE, related_name="memberships"
    )
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    role = models.CharField(_("role"), max_length=16, choices=Role.choices)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["organisation__name"]
        verbose_name = _("membership")
        verbose_name_plural = _("memberships")
        constraints = [
            models.UniqueConstraint(fields=["user", "organisation"], name="membership_once_per_org")
        ]

    def __str__(self) -> str:
        return f"{self.user}, {self.organisation} ({self.get_role_display()})"


class Invitation(models.Model):
    """An email invitation to join an organisation: expiring, single-use, stored hashed.

    The token is made (and only its SHA-256 kept) by the task that sends the email, so the
    link exists only in the recipient's inbox.
    """

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organisation = models.ForeignKey(
        Organisation, on_delete=models.CASCADE, related_name="invitations"
    )
    email = models.EmailField(_("email address"))
    role = models.CharField(_("role"), max_length=16, choices=Membership.Role.choices)
    language = models.CharField(max_length=8, default="en")
    token_hash = models.CharField(max_length=64, blank=True, db_index=True)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)
    expires = models.DateTimeField()
    sent = models.DateTimeField(null=True, blank=True)
    accepted = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    revoked = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created"]
        verbose_name = _("invitation")
        verbose_name_plural = _("invitations")

    def __str__(self) -> str:
        return f"{self.email} → {self.organisation}"

    @property
    def is_open(self) -> bool:
        from django.utils import timezone

        return self.accepted is None and self.revoked is None and self.expires > timezone.now()


class Engagement(models.Model):
    """A learning partnership: a learning partner helping several organisations learn together."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    title = models.CharField(_("title"), max_length=200)
    purpose = models.TextField(_("purpose"), max_length=5000, blank=True)
    learning_partner = models.ForeignKey(
        Organisation, on_delete=models.PROTECT, related_name="led_engagements"
    )
    facilitators = models.ManyToManyField(
        settings.AUTH_USER_MODEL, related_name="facilitated_engagements", blank=True
    )
    starts_on = models.DateField(_("start date"), null=True, blank=True)
    ends_on = models.DateField(_("end date"), null=True, blank=True)
    timezone = models.CharField(_("time zone"), max_length=64, default="Europe/London")
    language = models.CharField(_("language"), max_length=8, default="en")
    retention_days = models.PositiveIntegerField(_("keep resident input for (days)"), default=730)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)
    version = models.PositiveIntegerField(default=1)

    class Meta:
        ordering = ["title"]
        verbose_name = _("engagement")
        verbose_name_plural = _("engagements")
        constraints = [
            models.CheckConstraint(
                condition=models.Q(ends_on__isnull=True)
                | models.Q(starts_on__isnull=True)
                | models.Q(ends_on__gte=models.F("starts_on")),
                name="engagement_ends_after_start",
            )
        ]

    def __str__(self) -> str:
        return self.title


class EngagementPartner(models.Model):
    engagement = models.ForeignKey(Engagement, on_delete=models.CASCADE, related_name="partners")
    organisation = models.ForeignKey(
        Organisation, on_delete=models.CASCADE, related_name="partnerships"
    )
    joined = models.DateField(_("joined"))

    class Meta:
        ordering = ["organisation__name"]
        verbose_name = _("partner organisation")
        verbose_name_plural = _("partner organisations")
        constraints = [
            models.UniqueConstraint(
                fields=["engagement", "organisation"], name="partner_once_per_engagement"
            )
        ]

    def __str__(self) -> str:
        return f"{self.organisation} in {self.engagement}"


class Stage(models.Model):
    """One stage of an engagement's template; cycles move through them in position order."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    engagement = models.ForeignKey(Engagement, on_delete=models.CASCADE, related_name="stages")
    name = models.CharField(_("name"), max_length=100)
    questions = models.TextField(
        _("prompting questions"),
        max_length=5000,
        blank=True,
        help_text=_("One question per line."),
    )
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["engagement", "position", "id"]
        verbose_name = _("stage")
        verbose_name_plural = _("stages")

    def __str__(self) -> str:
        return self.name

    @property
    def question_list(self) -> list[str]:
        return [line.strip() for line in self.questions.splitlines() if line.strip()]


class Scale(models.TextChoices):
    PERSON = "person", _("Person")
    TEAM = "team", _("Team")
    ORGANISATION = "organisation", _("Organisation")
    PLACE = "place", _("Place")
    REGION = "region", _("Region")
    NATION = "nation", _("Nation")


class LearningCycle(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", _("Active")
        PAUSED = "paused", _("Paused")
        CLOSED = "closed", _("Closed")

    class Visibility(models.TextChoices):
        ORGANISATION = "organisation", _("Our organisation and the facilitators")
        ENGAGEMENT = "engagement", _("Everyone in the engagement")

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    engagement = models.ForeignKey(Engagement, on_delete=models.CASCADE, related_name="cycles")
    organisation = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="cycles")
    team_name = models.CharField(_("team name"), max_length=200, blank=True)
    title = models.CharField(_("short name"), max_length=200)
    learning_question = models.TextField(_("learning question"), max_length=2000)
    purpose = models.TextField(_("purpose"), max_length=5000, blank=True)
    scale = models.CharField(_("system scale"), max_length=16, choices=Scale.choices)
    stage = models.ForeignKey(Stage, on_delete=models.PROTECT, related_name="cycles")
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.ACTIVE
    )
    visibility = models.CharField(
        _("who can see it"),
        max_length=16,
        choices=Visibility.choices,
        default=Visibility.ORGANISATION,
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)
    version = models.PositiveIntegerField(default=1)

    class Meta:
        ordering = ["-updated"]
        verbose_name = _("learning cycle")
        verbose_name_plural = _("learning cycles")
        indexes = [
            models.Index(fields=["engagement", "organisation"]),
            models.Index(fields=["engagement", "visibility"]),
        ]

    def __str__(self) -> str:
        return self.title


class StageMove(models.Model):
    """The dated history of a cycle's stages: who moved it, when, and why."""

    cycle = models.ForeignKey(LearningCycle, on_delete=models.CASCADE, related_name="moves")
    from_stage = models.ForeignKey(
        Stage, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    to_stage = models.ForeignKey(Stage, on_delete=models.PROTECT, related_name="+")
    moved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    moved_at = models.DateTimeField(auto_now_add=True)
    note = models.TextField(_("why"), max_length=5000, blank=True)

    class Meta:
        ordering = ["moved_at", "id"]
        verbose_name = _("stage move")
        verbose_name_plural = _("stage moves")

    def __str__(self) -> str:
        return f"{self.cycle}: {self.from_stage} → {self.to_stage}"


class CycleLink(models.Model):
    """A vertical (parent contains child, across scales) or horizontal (peer) link."""

    class Kind(models.TextChoices):
        PARENT = "parent", _("contains")
        PEER = "peer", _("peer")

    from_cycle = models.ForeignKey(
        LearningCycle, on_delete=models.CASCADE, related_name="links_out"
    )
    to_cycle = models.ForeignKey(LearningCycle, on_delete=models.CASCADE, related_name="links_in")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("cycle link")
        verbose_name_plural = _("cycle links")
        constraints = [
            models.UniqueConstraint(fields=["from_cycle", "to_cycle"], name="cycle_link_once"),
            models.CheckConstraint(
                condition=~models.Q(from_cycle=models.F("to_cycle")), name="cycle_link_not_self"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.from_cycle} {self.get_kind_display()} {self.to_cycle}"


class Actor(models.Model):
    class Kind(models.TextChoices):
        PERSON = "person", _("Person or household")
        GROUP = "group", _("Group or community")
        TEAM = "team", _("Team or service")
        ORGANISATION = "organisation", _("Organisation")
        OTHER = "other", _("Other")

    class Trust(models.TextChoices):
        UNKNOWN = "unknown", _("Not known yet")
        LOW = "low", _("Low")
        MIXED = "mixed", _("Mixed")
        HIGH = "high", _("High")

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    cycle = models.ForeignKey(LearningCycle, on_delete=models.CASCADE, related_name="actors")
    name = models.CharField(_("name"), max_length=200)
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices)
    trust = models.CharField(
        _("trust level"), max_length=16, choices=Trust.choices, default=Trust.UNKNOWN
    )
    created = models.DateTimeField(auto_now_add=True)
    version = models.PositiveIntegerField(default=1)

    class Meta:
        ordering = ["created", "id"]
        verbose_name = _("actor")
        verbose_name_plural = _("actors")

    def __str__(self) -> str:
        return self.name


class Factor(models.Model):
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    cycle = models.ForeignKey(LearningCycle, on_delete=models.CASCADE, related_name="factors")
    description = models.TextField(_("description"), max_length=2000)
    whose_knowledge = models.CharField(_("whose knowledge"), max_length=200, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    version = models.PositiveIntegerField(default=1)

    class Meta:
        ordering = ["created", "id"]
        verbose_name = _("factor")
        verbose_name_plural = _("factors")

    def __str__(self) -> str:
        return self.description[:60]


class Experiment(models.Model):
    class Kind(models.TextChoices):
        HYPOTHESIS = "hypothesis", _("Hypothesis test")
        PROBE = "probe", _("System probe")

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    cycle = models.ForeignKey(LearningCycle, on_delete=models.CASCADE, related_name="experiments")
    title = models.CharField(_("name"), max_length=200)
    kind = models.CharField(_("type"), max_length=16, choices=Kind.choices)
    premise = models.TextField(_("premise"), max_length=5000)
    starts_on = models.DateField(_("start date"), null=True, blank=True)
    ends_on = models.DateField(_("end date"), null=True, blank=True)
    what_happened = models.TextField(_("what happened"), max_length=10000, blank=True)
    what_we_learned = models.TextField(_("what we learned"), max_length=10000, blank=True)
    what_we_will_change = models.TextField(_("what we will change"), max_length=10000, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)
    version = models.PositiveIntegerField(default=1)

    class Meta:
        ordering = ["created", "id"]
        verbose_name = _("experiment")
        verbose_name_plural = _("experiments")
        constraints = [
            models.CheckConstraint(
                condition=models.Q(ends_on__isnull=True)
                | models.Q(starts_on__isnull=True)
                | models.Q(ends_on__gte=models.F("starts_on")),
                name="experiment_ends_after_start",
            )
        ]

    def __str__(self) -> str:
        return self.title

    @property
    def has_debrief(self) -> bool:
        return bool(self.what_happened or self.what_we_learned or self.what_we_will_change)


class Principle(models.TextChoices):
    HUMAN = "human", _("Human")
    LEARNING = "learning", _("Learning")
    SYSTEMS = "systems", _("Systems")


class Change(models.TextChoices):
    BETTER = "better", _("Better")
    SAME = "same", _("About the same")
    WORSE = "worse", _("Worse")


class Feeling(models.TextChoices):
    HOPEFUL = "hopeful", _("Hopeful")
    RELIEVED = "relieved", _("Relieved")
    FRUSTRATED = "frustrated", _("Frustrated")
    WORRIED = "worried", _("Worried")
    UNSURE = "unsure", _("Unsure")


class Reflection(models.Model):
    class AuthorRole(models.TextChoices):
        PRACTITIONER = "practitioner", _("Practitioner")
        MANAGER = "manager", _("Manager")
        RESIDENT = "resident", _("Resident")
        LEARNING_PARTNER = "learning_partner", _("Learning partner")

    class Identity(models.TextChoices):
        NAMED = "named", _("Named")
        PSEUDONYMOUS = "pseudonymous", _("Pseudonymous")
        ANONYMOUS = "anonymous", _("Anonymous")

    class Moderation(models.TextChoices):
        PUBLISHED = "published", _("Published")
        HELD = "held", _("Waiting for review")
        HIDDEN = "hidden", _("Hidden")

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    cycle = models.ForeignKey(LearningCycle, on_delete=models.CASCADE, related_name="reflections")
    text = models.TextField(_("reflection"), max_length=10000)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="reflections",
    )
    author_role = models.CharField(_("author role"), max_length=16, choices=AuthorRole.choices)
    identity = models.CharField(
        _("show me as"), max_length=16, choices=Identity.choices, default=Identity.NAMED
    )
    principles = ArrayField(
        models.CharField(max_length=16, choices=Principle.choices), default=list, blank=True
    )
    stage = models.ForeignKey(Stage, on_delete=models.PROTECT, related_name="+")
    experiment = models.ForeignKey(
        Experiment, null=True, blank=True, on_delete=models.SET_NULL, related_name="reflections"
    )
    moderation = models.CharField(
        max_length=16, choices=Moderation.choices, default=Moderation.PUBLISHED
    )
    language = models.CharField(max_length=8, blank=True)
    # Resident input (DESIGN.md §5): which link it came through, what they chose to tell us.
    # No IP address or user agent is ever stored with a reflection.
    shared_link = models.ForeignKey(
        "SharedLink", null=True, blank=True, on_delete=models.SET_NULL, related_name="reflections"
    )
    first_name = models.CharField(_("first name"), max_length=60, blank=True)
    better_or_worse = models.CharField(
        _("did things get better or worse"), max_length=16, choices=Change.choices, blank=True
    )
    feeling = models.CharField(_("how it felt"), max_length=16, choices=Feeling.choices, blank=True)
    consent = models.BooleanField(default=False)
    follow_up_email = models.EmailField(blank=True)
    submission_key = models.UUIDField(null=True, blank=True, unique=True, editable=False)
    receipt_hash = models.CharField(max_length=64, blank=True, db_index=True, editable=False)
    created = models.DateTimeField(auto_now_add=True, db_index=True)
    updated = models.DateTimeField(auto_now=True)
    version = models.PositiveIntegerField(default=1)

    class Meta:
        ordering = ["created", "id"]
        verbose_name = _("reflection")
        verbose_name_plural = _("reflections")
        indexes = [
            models.Index(fields=["cycle", "created"]),
            # The dashboard's and the digest's counts read only this index (dashboard.py).
            models.Index(
                fields=["cycle", "created"],
                include=["author", "author_role"],
                condition=models.Q(moderation="published"),
                name="reflection_published",
            ),
            # Residents' words waiting for review, counted on every dashboard.
            models.Index(
                fields=["cycle"],
                condition=models.Q(moderation="held", author_role="resident"),
                name="reflection_held",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_author_role_display()} reflection on {self.cycle}"


class Adaptation(models.Model):
    """What we changed because of what we learned: the HLS unit of accountability."""

    class Status(models.TextChoices):
        PROPOSED = "proposed", _("Proposed")
        IN_PLACE = "in_place", _("In place")
        DROPPED = "dropped", _("Dropped")

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    cycle = models.ForeignKey(LearningCycle, on_delete=models.CASCADE, related_name="adaptations")
    what_changed = models.TextField(_("what we changed"), max_length=5000)
    because = models.TextField(_("because we learned"), max_length=5000, blank=True)
    decided_by = models.CharField(_("decided by"), max_length=200)
    decided_on = models.DateField(_("date decided"))
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.PROPOSED
    )
    reflections = models.ManyToManyField(
        Reflection,
        blank=True,
        related_name="adaptations",
        verbose_name=_("prompted by reflections"),
    )
    experiments = models.ManyToManyField(
        Experiment,
        blank=True,
        related_name="adaptations",
        verbose_name=_("prompted by experiments"),
    )
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)
    version = models.PositiveIntegerField(default=1)

    class Meta:
        ordering = ["created", "id"]
        verbose_name = _("adaptation")
        verbose_name_plural = _("adaptations")
        indexes = [models.Index(fields=["cycle", "created"], name="adaptation_cycle_created")]

    def __str__(self) -> str:
        return self.what_changed[:60]


class AuditEvent(models.Model):
    """Append-only: who did what to which object, when. Never reflection text or tokens."""

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    action = models.CharField(max_length=64)
    object_type = models.CharField(max_length=64, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    at = models.DateTimeField(auto_now_add=True, db_index=True)
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name = _("audit event")
        verbose_name_plural = _("audit events")

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.action} {self.object_type} {self.object_id}"


class SharedLink(models.Model):
    """A capability link for residents (DESIGN.md §5). Only the token's SHA-256 is stored."""

    class ModerationMode(models.TextChoices):
        PUBLISH = "publish", _("Publish at once")
        HOLD = "hold", _("Hold each reflection for review")

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # A link is for reflections on one cycle, or for answers to one health-check round.
    cycle = models.ForeignKey(
        LearningCycle,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="shared_links",
    )
    health_round = models.ForeignKey(
        "HealthRound",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="shared_links",
    )
    label = models.CharField(_("label"), max_length=120)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    token_prefix = models.CharField(max_length=8, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)
    expires = models.DateTimeField(_("expires"))
    max_submissions = models.PositiveIntegerField(_("maximum reflections"), null=True, blank=True)
    submissions = models.PositiveIntegerField(default=0)
    moderation_mode = models.CharField(
        _("moderation"), max_length=8, choices=ModerationMode.choices, default=ModerationMode.HOLD
    )
    revoked = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    last_used = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created"]
        verbose_name = _("shared link")
        verbose_name_plural = _("shared links")
        constraints = [
            models.CheckConstraint(
                condition=models.Q(cycle__isnull=False, health_round__isnull=True)
                | models.Q(cycle__isnull=True, health_round__isnull=False),
                name="shared_link_for_cycle_or_health_round",
            )
        ]

    def __str__(self) -> str:
        return f"{self.label} ({self.token_prefix}…)"

    @property
    def is_active(self) -> bool:
        from django.utils import timezone

        return (
            self.revoked is None
            and self.expires > timezone.now()
            and (self.max_submissions is None or self.submissions < self.max_submissions)
        )


class ModerationEvent(models.Model):
    """Who approved, hid or redacted which resident reflection, and when. Never the text."""

    class Action(models.TextChoices):
        APPROVE = "approve", _("Approved")
        HIDE = "hide", _("Hidden")
        REDACT = "redact", _("Part removed")

    reflection = models.ForeignKey(
        Reflection, null=True, on_delete=models.SET_NULL, related_name="moderation_events"
    )
    cycle = models.ForeignKey(LearningCycle, on_delete=models.CASCADE, related_name="+")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    action = models.CharField(max_length=16, choices=Action.choices)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name = _("moderation event")
        verbose_name_plural = _("moderation events")

    def __str__(self) -> str:
        return f"{self.get_action_display()} {self.at:%Y-%m-%d %H:%M}"


class Outbox(models.Model):
    """A job to run after a commit, written in the same transaction as the data it is about.

    It is enqueued once the transaction commits; if the broker was unreachable, the sweeper
    enqueues it later. Tasks are idempotent, so a row enqueued twice does no harm.
    """

    task = models.CharField(max_length=100)
    object_id = models.BigIntegerField()
    created = models.DateTimeField(auto_now_add=True)
    enqueued = models.DateTimeField(null=True, blank=True)
    done = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["created", "id"]
        verbose_name = _("outbox job")
        verbose_name_plural = _("outbox jobs")
        indexes = [models.Index(fields=["done", "created"], name="outbox_pending")]

    def __str__(self) -> str:
        return f"{self.task}({self.object_id})"


class WithdrawnSubmission(models.Model):
    """The submission key of withdrawn words, so a replayed form cannot bring them back."""

    key = models.UUIDField(primary_key=True)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("withdrawn submission")
        verbose_name_plural = _("withdrawn submissions")

    def __str__(self) -> str:
        return f"withdrawn {self.at:%Y-%m-%d}"


# --- issue 6: sessions, email, digests, exports (DESIGN.md §6) -------------------------------


class Profile(models.Model):
    """A person's own settings: language, time zone, digests and reminders."""

    class DigestFrequency(models.TextChoices):
        OFF = "off", _("Off")
        DAILY = "daily", _("Daily")
        WEEKLY = "weekly", _("Weekly")

    class Weekday(models.IntegerChoices):
        MONDAY = 0, _("Monday")
        TUESDAY = 1, _("Tuesday")
        WEDNESDAY = 2, _("Wednesday")
        THURSDAY = 3, _("Thursday")
        FRIDAY = 4, _("Friday")
        SATURDAY = 5, _("Saturday")
        SUNDAY = 6, _("Sunday")

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="profile"
    )
    language = models.CharField(_("language"), max_length=8, default="en")
    timezone = models.CharField(_("time zone"), max_length=64, default="Europe/London")
    digest = models.CharField(
        _("learning digest"),
        max_length=8,
        choices=DigestFrequency.choices,
        default=DigestFrequency.OFF,
    )
    digest_weekday = models.PositiveSmallIntegerField(
        _("weekly digest day"), choices=Weekday.choices, default=Weekday.MONDAY
    )
    reminders = models.BooleanField(_("reminders after reflection sessions"), default=True)
    erased = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("profile")
        verbose_name_plural = _("profiles")
        indexes = [models.Index(fields=["digest"], name="profile_digest")]

    def __str__(self) -> str:
        return f"profile of {self.user_id}"


class ReflectionSession(models.Model):
    """A reflection session for one cycle or a whole engagement, once or repeating."""

    class Recurrence(models.TextChoices):
        ONCE = "once", _("Does not repeat")
        WEEKLY = "weekly", _("Weekly")
        FORTNIGHTLY = "fortnightly", _("Fortnightly")
        MONTHLY = "monthly", _("Monthly")

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    engagement = models.ForeignKey(Engagement, on_delete=models.CASCADE, related_name="sessions")
    cycle = models.ForeignKey(
        LearningCycle, null=True, blank=True, on_delete=models.CASCADE, related_name="sessions"
    )
    title = models.CharField(_("title"), max_length=200)
    first_date = models.DateField(_("date"))
    start_time = models.TimeField(_("start time"))
    duration_minutes = models.PositiveSmallIntegerField(_("length (minutes)"), default=60)
    timezone = models.CharField(_("time zone"), max_length=64, default="Europe/London")
    recurrence = models.CharField(
        _("repeats"), max_length=16, choices=Recurrence.choices, default=Recurrence.ONCE
    )
    repeat_until = models.DateField(_("repeat until"), null=True, blank=True)
    location = models.CharField(_("where"), max_length=500, blank=True)
    invitees = models.ManyToManyField(
        settings.AUTH_USER_MODEL, related_name="reflection_sessions", verbose_name=_("invitees")
    )
    questions = models.TextField(_("prompt questions"), max_length=5000, blank=True)
    shared_link = models.ForeignKey(
        SharedLink,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="sessions",
        verbose_name=_("resident link to include"),
    )
    prompt_lead_hours = models.PositiveSmallIntegerField(
        _("send the prompt this many hours before"), default=24
    )
    reminder_after_hours = models.PositiveSmallIntegerField(
        _("send the reminder this many hours after"), default=24
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)
    cancelled = models.DateTimeField(null=True, blank=True)
    version = models.PositiveIntegerField(default=1)

    class Meta:
        ordering = ["first_date", "start_time", "id"]
        verbose_name = _("reflection session")
        verbose_name_plural = _("reflection sessions")
        constraints = [
            models.CheckConstraint(
                condition=models.Q(recurrence="once") | models.Q(repeat_until__isnull=False),
                name="session_repeats_until",
            )
        ]

    def __str__(self) -> str:
        return self.title


class SessionOccurrence(models.Model):
    """One meeting of a session, in UTC; prompts and reminders are due from it."""

    session = models.ForeignKey(
        ReflectionSession, on_delete=models.CASCADE, related_name="occurrences"
    )
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    prompt_at = models.DateTimeField()
    reminder_at = models.DateTimeField()
    prompted = models.DateTimeField(null=True, blank=True)
    reminded = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["starts_at", "id"]
        verbose_name = _("session date")
        verbose_name_plural = _("session dates")
        constraints = [
            models.UniqueConstraint(
                fields=["session", "starts_at"], name="one_occurrence_per_start"
            )
        ]
        indexes = [
            models.Index(
                fields=["prompt_at"],
                name="occurrence_prompt_due",
                condition=models.Q(prompted=None),
            ),
            models.Index(
                fields=["reminder_at"],
                name="occurrence_reminder_due",
                condition=models.Q(reminded=None),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.session} at {self.starts_at:%Y-%m-%d %H:%M}"


class Email(models.Model):
    """The email ledger: one row per (kind, object, recipient, period), claimed before sending.

    The unique constraint is what stops a second beat, a retried task or a redelivered message
    from sending twice; the status says whether the email went, is on its way, or failed.
    """

    class Kind(models.TextChoices):
        PROMPT = "prompt", _("Session prompt")
        REMINDER = "reminder", _("Session reminder")
        DIGEST = "digest", _("Learning digest")
        EXPORT = "export", _("Export ready")

    class Status(models.TextChoices):
        PENDING = "pending", _("Waiting to send")
        SENDING = "sending", _("Sending")
        # The whole message is with the server; only the final "." is still to go (mail.py).
        HANDED = "handed", _("Sending")
        SENT = "sent", _("Sent")
        FAILED = "failed", _("Could not be sent")
        SKIPPED = "skipped", _("Not needed")

    kind = models.CharField(max_length=16, choices=Kind.choices)
    object_id = models.BigIntegerField()
    recipient = models.CharField(max_length=254)
    period = models.CharField(max_length=40)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    engagement = models.ForeignKey(
        Engagement, null=True, blank=True, on_delete=models.CASCADE, related_name="emails"
    )
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    created = models.DateTimeField(auto_now_add=True)
    claimed = models.DateTimeField(null=True, blank=True)
    sent = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    # After a temporary failure: not to be tried again before this time (backoff).
    next_try = models.DateTimeField(null=True, blank=True)
    error = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["created", "id"]
        verbose_name = _("email")
        verbose_name_plural = _("emails")
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "object_id", "recipient", "period"], name="one_email_per_period"
            )
        ]
        indexes = [
            models.Index(
                fields=["status", "created"],
                name="email_unsent",
                condition=models.Q(status__in=["pending", "sending", "handed"]),
            ),
            models.Index(
                fields=["engagement", "status"],
                name="email_failed",
                condition=models.Q(status="failed"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.object_id} to {self.recipient} ({self.status})"


class Digest(models.Model):
    """A learning digest, compiled once per (scope, period) and kept to read in the app."""

    class Scope(models.TextChoices):
        USER = "user", _("Personal")
        ENGAGEMENT = "engagement", _("Engagement")

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    scope = models.CharField(max_length=16, choices=Scope.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="digests",
    )
    engagement = models.ForeignKey(
        Engagement, null=True, blank=True, on_delete=models.CASCADE, related_name="digests"
    )
    frequency = models.CharField(max_length=8, choices=Profile.DigestFrequency.choices)
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    timezone = models.CharField(max_length=64)
    content = models.JSONField(default=dict)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-period_end", "-id"]
        # The beat looks up the recent digests by their end (digests.due).
        indexes = [models.Index(fields=["period_end"], name="digest_period_end")]
        verbose_name = _("learning digest")
        verbose_name_plural = _("learning digests")
        constraints = [
            models.UniqueConstraint(
                fields=["scope", "user", "engagement", "frequency", "period_start"],
                name="one_digest_per_period",
                nulls_distinct=False,
            ),
            models.CheckConstraint(
                condition=(
                    models.Q(scope="user", user__isnull=False, engagement__isnull=True)
                    | models.Q(scope="engagement", engagement__isnull=False, user__isnull=True)
                ),
                name="digest_scope_matches",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.scope} digest {self.period_start:%Y-%m-%d}"


class Export(models.Model):
    """An engagement exported as a file by a job, downloadable by its requester until expiry."""

    class Format(models.TextChoices):
        CSV = "csv", "CSV"
        XLSX = "xlsx", _("Excel (XLSX)")
        JSON = "json", "JSON"

    class Status(models.TextChoices):
        QUEUED = "queued", _("Waiting to start")
        RUNNING = "running", _("Being prepared")
        DONE = "done", _("Ready")
        FAILED = "failed", _("Failed")
        EXPIRED = "expired", _("Expired")

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    engagement = models.ForeignKey(Engagement, on_delete=models.CASCADE, related_name="exports")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="exports"
    )
    format = models.CharField(_("format"), max_length=8, choices=Format.choices)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.QUEUED)
    rows_total = models.PositiveIntegerField(default=0)
    rows_done = models.PositiveIntegerField(default=0)
    file_name = models.CharField(max_length=200, blank=True)
    size = models.BigIntegerField(default=0)
    error = models.CharField(max_length=300, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    finished = models.DateTimeField(null=True, blank=True)
    expires = models.DateTimeField()

    class Meta:
        ordering = ["-created", "-id"]
        verbose_name = _("export")
        verbose_name_plural = _("exports")

    def __str__(self) -> str:
        return f"{self.format} export of {self.engagement_id} ({self.status})"


# --- issue 7: the HLS system health check (engagements.health) --------------------------------


class BehaviourGroup(models.TextChoices):
    PERSPECTIVE = "perspective", _("Perspective")
    PARTICIPATION = "participation", _("Participation")
    POWER = "power", _("Power")


class Behaviour(models.TextChoices):
    """The nine Lankelly Chase system behaviours. The keys are stored: never rename them."""

    INTERCONNECTED = (
        "interconnected",
        _("People see themselves as part of an interconnected whole"),
    )
    STRENGTHS = "strengths", _("People are seen as resourceful and bringing strengths")
    SHARED_VISION = "shared_vision", _("People share a vision")
    DIALOGUE = (
        "dialogue",
        _("Open, trusting relationships allow real dialogue, including disagreement"),
    )
    LEADERSHIP = "leadership", _("Leadership is collaborative and at every level")
    FEEDBACK = "feedback", _("Feedback and collective learning drive adaptation")
    SHARED_POWER = "shared_power", _("Power is shared and equal voice is promoted")
    DEVOLVED = "devolved", _("Decision-making is devolved")
    ACCOUNTABILITY = "accountability", _("Accountability is mutual")


# Each behaviour's group, in the order the form and the results show them.
BEHAVIOUR_GROUPS: dict[str, tuple[str, ...]] = {
    BehaviourGroup.PERSPECTIVE: (
        Behaviour.INTERCONNECTED,
        Behaviour.STRENGTHS,
        Behaviour.SHARED_VISION,
    ),
    BehaviourGroup.PARTICIPATION: (
        Behaviour.DIALOGUE,
        Behaviour.LEADERSHIP,
        Behaviour.FEEDBACK,
    ),
    BehaviourGroup.POWER: (
        Behaviour.SHARED_POWER,
        Behaviour.DEVOLVED,
        Behaviour.ACCOUNTABILITY,
    ),
}


class HealthRound(models.Model):
    """One round of the health check, for a whole engagement or for one of its cycles.

    At most one round of a scope is open at a time, so "the round before" is always clear.
    """

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    engagement = models.ForeignKey(
        Engagement, on_delete=models.CASCADE, related_name="health_rounds"
    )
    cycle = models.ForeignKey(
        LearningCycle,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="health_rounds",
    )
    title = models.CharField(_("title"), max_length=200)
    opened_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    opened = models.DateTimeField(default=timezone.now)
    closes_on = models.DateField(_("last day for answers"), null=True, blank=True)
    closed = models.DateTimeField(null=True, blank=True)
    closed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-opened", "-id"]
        verbose_name = _("health-check round")
        verbose_name_plural = _("health-check rounds")
        constraints = [
            models.UniqueConstraint(
                fields=["engagement", "cycle"],
                condition=models.Q(closed=None),
                nulls_distinct=False,
                name="one_open_health_round_per_scope",
            )
        ]
        indexes = [models.Index(fields=["engagement", "opened"], name="health_round_by_date")]

    def __str__(self) -> str:
        return self.title

    @property
    def is_closed(self) -> bool:
        return self.closed is not None


class HealthResponse(models.Model):
    """One person's answer to a round: a member's (one each, changed while the round is open)
    or a resident's through the round's link (one per submission key)."""

    round = models.ForeignKey(HealthRound, on_delete=models.CASCADE, related_name="responses")
    respondent = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="health_responses",
    )
    perspective = models.CharField(max_length=16, choices=Reflection.AuthorRole.choices)
    shared_link = models.ForeignKey(
        "SharedLink",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="health_responses",
    )
    submission_key = models.UUIDField(null=True, blank=True, unique=True, editable=False)
    # A resident's receipt code, hashed as a reflection's is (``residents.receipt_code``).
    receipt_hash = models.CharField(max_length=64, blank=True, db_index=True, editable=False)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created", "id"]
        verbose_name = _("health-check answer")
        verbose_name_plural = _("health-check answers")
        constraints = [
            models.UniqueConstraint(
                fields=["round", "respondent"], name="one_health_response_per_member"
            )
        ]
        # The results and the dashboard aggregate a round's answers by perspective.
        indexes = [models.Index(fields=["round", "perspective"], name="health_response_round")]

    def __str__(self) -> str:
        return f"{self.get_perspective_display()} answer to {self.round}"


class HealthScore(models.Model):
    """One behaviour's score (1 to 10, as the person perceives it) and optional comment.

    One row per behaviour rather than nine columns: a round's spread, medians and gaps are then
    one GROUP BY over (behaviour, perspective), for the results page and the dashboard alike.
    """

    response = models.ForeignKey(HealthResponse, on_delete=models.CASCADE, related_name="scores")
    behaviour = models.CharField(max_length=16, choices=Behaviour.choices)
    score = models.PositiveSmallIntegerField()
    comment = models.TextField(max_length=1000, blank=True)

    class Meta:
        verbose_name = _("health-check score")
        verbose_name_plural = _("health-check scores")
        constraints = [
            models.UniqueConstraint(
                fields=["response", "behaviour"], name="one_health_score_per_behaviour"
            ),
            models.CheckConstraint(
                condition=models.Q(score__gte=1, score__lte=10), name="health_score_1_to_10"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.behaviour}: {self.score}"
