"""The case study library (DESIGN.md §7): grounded HLS cases, searchable, citable."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVector, SearchVectorField
from django.db import models
from django.db.models import Q
from django.db.models.functions import Coalesce
from django.utils.translation import gettext_lazy as _

from engagements.models import Principle

SEARCH_CONFIG = "english"


class Evidence(models.TextChoices):
    """How a case is grounded (../shared/data/README.md)."""

    A = "A", _("A: an HLS case-study document or the e-book's own material")
    B = "B", _("B: a case study in an HLS-family report")
    S = "S", _("S: named among HLS implementers at the e-book's launch or by CPI")
    C = "C", _("C: documented HLS practice; inclusion in the e-book not confirmed")


def _weighted(field: str, weight: str) -> SearchVector:
    text = Coalesce(field, models.Value(""), output_field=models.TextField())
    return SearchVector(text, config=SEARCH_CONFIG, weight=weight)


class CaseStudy(models.Model):
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    slug = models.SlugField(_("short name in the address"), max_length=100, unique=True)
    title = models.CharField(_("title"), max_length=200)
    organisation = models.CharField(_("organisation"), max_length=200)
    place = models.CharField(_("place"), max_length=200, blank=True)
    country = models.CharField(_("country"), max_length=100, blank=True)
    sectors = ArrayField(models.CharField(max_length=100), default=list, blank=True)
    scale = models.CharField(_("scale"), max_length=40, blank=True)
    organisation_type = models.CharField(_("type of organisation"), max_length=100, blank=True)
    principles = ArrayField(
        models.CharField(max_length=16, choices=Principle.choices), default=list, blank=True
    )
    summary = models.TextField(_("summary"), max_length=2000)
    overview = models.TextField(_("overview"), max_length=10000, blank=True)
    story_of_change = models.TextField(_("story of change"), max_length=10000, blank=True)
    title_uk = models.CharField(_("title in Ukrainian"), max_length=200, blank=True)
    summary_uk = models.TextField(_("summary in Ukrainian"), max_length=2000, blank=True)
    overview_uk = models.TextField(_("overview in Ukrainian"), max_length=10000, blank=True)
    story_of_change_uk = models.TextField(
        _("story of change in Ukrainian"), max_length=10000, blank=True
    )
    facts = models.TextField(_("facts (notes the texts were written from)"), blank=True)
    year = models.PositiveSmallIntegerField(_("year"), null=True, blank=True)
    evidence = models.CharField(_("evidence grade"), max_length=1, choices=Evidence.choices)
    sources = ArrayField(models.URLField(max_length=500), default=list, blank=True)
    published = models.BooleanField(_("published"), default=False)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)
    version = models.PositiveIntegerField(default=1)
    # Kept by PostgreSQL itself: title weighs most, then summary, then everything else; the
    # Ukrainian texts count like the English ones, so a search in either language finds a case.
    search = models.GeneratedField(
        expression=(
            _weighted("title", "A")
            + _weighted("organisation", "A")
            + _weighted("summary", "B")
            + _weighted("overview", "C")
            + _weighted("story_of_change", "C")
            + _weighted("place", "D")
            + _weighted("title_uk", "A")
            + _weighted("summary_uk", "B")
            + _weighted("overview_uk", "C")
            + _weighted("story_of_change_uk", "C")
        ),
        output_field=SearchVectorField(),
        db_persist=True,
    )

    class Meta:
        ordering = ["title"]
        verbose_name = _("case study")
        verbose_name_plural = _("case studies")
        indexes = [
            GinIndex(fields=["search"], name="case_search"),
            models.Index(fields=["published", "title"], name="case_published_title"),
        ]

    def __str__(self) -> str:
        return self.title

    @property
    def evidence_meaning(self) -> str:
        """What the grade means, without the letter its label starts with ("A: ...")."""
        return str(self.get_evidence_display()).split(": ", 1)[-1]


class CaseCitation(models.Model):
    """A reflection or an adaptation on a cycle that cites a case study."""

    case = models.ForeignKey(CaseStudy, on_delete=models.CASCADE, related_name="citations")
    cycle = models.ForeignKey(
        "engagements.LearningCycle", on_delete=models.CASCADE, related_name="case_citations"
    )
    reflection = models.ForeignKey(
        "engagements.Reflection",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="case_citations",
    )
    adaptation = models.ForeignKey(
        "engagements.Adaptation",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="case_citations",
    )
    cited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(reflection__isnull=False, adaptation__isnull=True)
                    | Q(reflection__isnull=True, adaptation__isnull=False)
                ),
                name="citation_cites_one_record",
            ),
            models.UniqueConstraint(
                fields=["case", "reflection"], name="citation_once_per_reflection"
            ),
            models.UniqueConstraint(
                fields=["case", "adaptation"], name="citation_once_per_adaptation"
            ),
        ]
        indexes = [models.Index(fields=["case", "cycle"], name="citation_case_cycle")]

    def __str__(self) -> str:
        return f"{self.case} ← {self.reflection_id or self.adaptation_id}"
