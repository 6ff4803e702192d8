"""The dashboard's filters: a GET form that validates, and falls back field by field.

Each filter is checked on its own. A value that is not offered (an organisation outside the
dashboard, whether it exists or not, a stage of another engagement, an unknown scale, a date
that is not one) gets a message beside its field, and that filter alone falls back to its
default, so the dashboard still shows, never a 500.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any, cast

from django import forms
from django.utils.formats import date_format
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext, ngettext_lazy, pgettext_lazy

from engagements import dashboard
from engagements.models import Scale
from hls.lib.forms import AccessibleFormMixin

UNKNOWN_ORGANISATION = _(
    "That organisation is not part of this dashboard. Showing all organisations."
)
UNKNOWN_STAGE = _("That stage is not part of this dashboard. Showing all stages.")
UNKNOWN_SCALE = _("That is not a system scale we know. Showing all scales.")
UNKNOWN_PERIOD = _("Choose one of the periods offered. Showing the last 12 weeks.")
SELECTS = ("organisation", "stage", "scale", "weeks")
NOT_A_DATE = _("Enter a real date, like 2026-03-09. The dates were left out.")


class DateInput(forms.DateInput):
    input_type = "date"

    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        super().__init__(attrs, format="%Y-%m-%d")


class DashboardFilterForm(AccessibleFormMixin, forms.Form):
    organisation = forms.ChoiceField(
        label=_("Organisation"),
        required=False,
        error_messages={"invalid_choice": UNKNOWN_ORGANISATION},
    )
    stage = forms.ChoiceField(
        label=_("Stage"), required=False, error_messages={"invalid_choice": UNKNOWN_STAGE}
    )
    scale = forms.ChoiceField(
        label=_("System scale"),
        required=False,
        choices=[("", _("All scales")), *Scale.choices],
        error_messages={"invalid_choice": UNKNOWN_SCALE},
    )
    weeks = forms.TypedChoiceField(
        label=_("Period"),
        required=False,
        coerce=int,
        empty_value=None,
        choices=[
            (
                str(n),
                ngettext_lazy("Last %(weeks)s week", "Last %(weeks)s weeks", "weeks")
                % {"weeks": n},
            )
            for n in dashboard.PERIOD_WEEKS
        ],
        error_messages={"invalid_choice": UNKNOWN_PERIOD},
    )
    start = forms.DateField(
        label=pgettext_lazy("first day of a period", "From"),
        required=False,
        widget=DateInput(),
        input_formats=["%Y-%m-%d"],
        error_messages={"invalid": NOT_A_DATE},
    )
    end = forms.DateField(
        label=pgettext_lazy("last day of a period", "To"),
        required=False,
        widget=DateInput(),
        input_formats=["%Y-%m-%d"],
        error_messages={"invalid": NOT_A_DATE},
    )

    def __init__(
        self, data: Any, *, choices: dashboard.Choices, timezone: str, url: str, **kwargs: Any
    ) -> None:
        data = data.copy()  # a QueryDict: the lists show what the panels show (see filters())
        if not data.get("weeks"):
            data["weeks"] = str(dashboard.DEFAULT_WEEKS)
        super().__init__(data, **kwargs)
        self.query = data
        self.choices = choices
        self.timezone = timezone
        # A list changes the panels at once (htmx, with the whole form); dates wait for the
        # Apply button, so the panels do not change under someone still typing one.
        for name in SELECTS:
            self.fields[name].widget.attrs.update(
                {"hx-get": url, "hx-include": "closest form", "hx-trigger": "change"}
            )
        cast(forms.ChoiceField, self.fields["organisation"]).choices = [
            ("", _("All organisations"))
        ] + [(str(o.public_id), o.name) for o in choices.organisations]
        stage_choices: list[tuple[str, Any]] = [("", _("All stages"))]
        groups: dict[str, list[tuple[str, str]]] = {}
        for stage in choices.stages:
            groups.setdefault(stage.group, []).append((str(stage.public_id), stage.name))
        for group, options in groups.items():
            if group:
                stage_choices.append((group, options))
            else:
                stage_choices.extend(options)
        cast(forms.ChoiceField, self.fields["stage"]).choices = stage_choices
        self.fields["weeks"].initial = str(dashboard.DEFAULT_WEEKS)

    def clean_start(self) -> date | None:
        return self._in_calendar(self.cleaned_data.get("start"))

    def clean_end(self) -> date | None:
        return self._in_calendar(self.cleaned_data.get("end"))

    def _in_calendar(self, value: date | None) -> date | None:
        if value is not None and not dashboard.EARLIEST <= value <= dashboard.LATEST:
            raise forms.ValidationError(
                _("Choose a date between %(first)s and %(last)s. The dates were left out.")
                % {
                    "first": date_format(dashboard.EARLIEST, "j E Y"),
                    "last": date_format(dashboard.LATEST, "j E Y"),
                }
            )
        return value

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        start, end = data.get("start"), data.get("end")
        if start and not end and "end" not in self.errors:
            end = max(start, dashboard.local_today(self.timezone))  # a start alone runs to today
        if start and end and end < start:
            self.add_error(
                "end", _("The end date is before the start date. The dates were left out.")
            )
        elif start and end and (end - start) > timedelta(days=dashboard.MAX_DAYS - 1):
            self.add_error(
                "end",
                ngettext(
                    "Choose a period of at most %(days)s day. The dates were left out.",
                    "Choose a period of at most %(days)s days. The dates were left out.",
                    dashboard.MAX_DAYS,
                )
                % {"days": dashboard.MAX_DAYS},
            )
        return data

    def filters(self) -> dashboard.Filters:
        """The valid filters; each invalid one falls back to its default (its error stays)."""
        self.is_valid()
        data = self.cleaned_data
        for name in SELECTS:
            if name in self.errors:  # the list shows the value it fell back to
                self.query[name] = str(dashboard.DEFAULT_WEEKS) if name == "weeks" else ""
        dates_ok = not ({"start", "end"} & set(self.errors))
        organisations = {str(o.public_id): o for o in self.choices.organisations}
        stages = {str(s.public_id): s for s in self.choices.stages}
        first, last, weeks = dashboard.period(
            self.timezone,
            weeks=data.get("weeks"),
            first_day=data.get("start") if dates_ok else None,
            last_day=data.get("end") if dates_ok else None,
        )
        return dashboard.Filters(
            first_day=first,
            last_day=last,
            timezone=self.timezone,
            weeks=weeks,
            organisation=organisations.get(data.get("organisation") or ""),
            stage=stages.get(data.get("stage") or ""),
            scale=data.get("scale") or "",
        )
