"""Forms for editing the case library and importing it (the same checks for both)."""

from __future__ import annotations

import unicodedata
from typing import Any

from django import forms
from django.core.validators import URLValidator
from django.utils.translation import gettext_lazy as _

from cases.models import CaseStudy, Evidence
from engagements.forms import VersionedForm
from engagements.models import Principle

_URL = URLValidator(schemes=["http", "https"])
RESERVED_SLUGS = {"new", "library"}  # addresses of the library's own pages


def _lines(value: str, separator: str | None = None) -> list[str]:
    parts = value.split(separator) if separator else value.split()
    return [part.strip() for part in parts if part.strip()]


def facet_value(value: str) -> str:
    """A value people filter by, written the way a search address writes it (NFC, single
    spaces); otherwise ticking it in the library could find nothing."""
    return " ".join(unicodedata.normalize("NFC", value).split())


class CaseStudyForm(VersionedForm):
    sectors = forms.CharField(
        label=_("Sectors"),
        required=False,
        max_length=500,
        help_text=_("Separate several sectors with a semicolon (;)."),
    )
    principles = forms.MultipleChoiceField(
        label=_("HLS principles emphasised"),
        choices=Principle.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )
    evidence = forms.ChoiceField(
        label=_("Evidence grade"), choices=Evidence.choices, widget=forms.RadioSelect
    )
    sources = forms.CharField(
        label=_("Sources"),
        required=False,
        max_length=5000,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=_("One web address per line, starting with https:// or http://."),
    )
    year = forms.IntegerField(label=_("Year"), required=False, min_value=1900, max_value=2100)

    class Meta:
        model = CaseStudy
        fields = [
            "title",
            "slug",
            "organisation",
            "place",
            "country",
            "sectors",
            "scale",
            "organisation_type",
            "principles",
            "year",
            "evidence",
            "summary",
            "overview",
            "story_of_change",
            "title_uk",
            "summary_uk",
            "overview_uk",
            "story_of_change_uk",
            "sources",
            "facts",
            "published",
        ]
        widgets = {
            "summary": forms.Textarea(attrs={"rows": 3}),
            "overview": forms.Textarea(attrs={"rows": 6}),
            "story_of_change": forms.Textarea(attrs={"rows": 6}),
            "summary_uk": forms.Textarea(attrs={"rows": 3}),
            "overview_uk": forms.Textarea(attrs={"rows": 6}),
            "story_of_change_uk": forms.Textarea(attrs={"rows": 6}),
            "facts": forms.Textarea(attrs={"rows": 3}),
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None and not self.is_bound:
            self.initial["sectors"] = "; ".join(self.instance.sectors)
            self.initial["sources"] = "\n".join(self.instance.sources)

    def clean_slug(self) -> str:
        slug = self.cleaned_data["slug"]
        if slug in RESERVED_SLUGS:
            raise forms.ValidationError(_("This short name is used by the library's own pages."))
        return slug

    def clean_sectors(self) -> list[str]:
        sectors = [facet_value(s) for s in _lines(self.cleaned_data.get("sectors") or "", ";")]
        if any(len(sector) > 100 for sector in sectors):
            raise forms.ValidationError(_("Each sector can be at most 100 characters long."))
        return list(dict.fromkeys(sectors))  # each once

    def clean_principles(self) -> list[str]:
        return list(dict.fromkeys(self.cleaned_data.get("principles") or []))

    def clean_country(self) -> str:
        return facet_value(self.cleaned_data.get("country") or "")

    def clean_scale(self) -> str:
        return facet_value(self.cleaned_data.get("scale") or "")

    def clean_organisation_type(self) -> str:
        return facet_value(self.cleaned_data.get("organisation_type") or "")

    def clean_sources(self) -> list[str]:
        sources = _lines(self.cleaned_data.get("sources") or "")
        for url in sources:
            try:
                _URL(url)
            except forms.ValidationError:
                raise forms.ValidationError(
                    _("“%(url)s” is not a web address starting with https:// or http://."),
                    params={"url": url[:100]},
                ) from None
            if len(url) > 500:
                raise forms.ValidationError(_("A web address can be at most 500 characters."))
        return sources


class ImportForm(forms.Form):
    file = forms.FileField(
        label=_("Library file"),
        allow_empty_file=True,  # the import says the file is empty, and that nothing changed
        help_text=_("A CSV or JSON file exported from this library, or case-studies.csv."),
    )
