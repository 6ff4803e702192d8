"""The form that schedules a reflection session. Validation only; saving is a service."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.utils.translation import gettext_lazy as _

from engagements import sessions
from engagements.forms import VersionedForm, _timezones
from engagements.models import Engagement, LearningCycle, ReflectionSession, SharedLink
from engagements.selectors import display_name

SINGLE_LINE = _("Use a single line, without line breaks or control characters.")


class InviteeField(forms.ModelMultipleChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        name = display_name(obj)
        if not (obj.email or "").strip():
            return str(_("%(name)s (no email address)") % {"name": name})
        return name


class SessionForm(VersionedForm):
    timezone = forms.ChoiceField(label=_("Time zone"), choices=_timezones)
    duration_minutes = forms.IntegerField(
        label=_("Length (minutes)"), min_value=5, max_value=720, initial=60
    )
    invitees = InviteeField(
        label=_("Who to invite"),
        queryset=get_user_model().objects.none(),
        to_field_name="username",
        widget=forms.CheckboxSelectMultiple,
        help_text=_(
            "Members and facilitators who can see this cycle or engagement. Each gets the "
            "prompt by email, with a calendar invitation."
        ),
        error_messages={
            "required": _("Choose at least one person to invite."),
            "invalid_choice": _("Choose people from the list."),
            "invalid_pk_value": _("Choose people from the list."),
        },
    )
    shared_link = forms.ModelChoiceField(
        label=_("Resident link to mention"),
        queryset=SharedLink.objects.none(),
        to_field_name="public_id",
        required=False,
        empty_label=_("No resident link"),
        help_text=_(
            "The prompt names the link so invitees can ask you for it; the link itself is "
            "never emailed, because only you were shown it."
        ),
    )
    prompt_lead_hours = forms.IntegerField(
        label=_("Send the prompt this many hours before"), min_value=0, max_value=336, initial=24
    )
    reminder_after_hours = forms.IntegerField(
        label=_("Send the reminder this many hours after"),
        min_value=1,
        max_value=336,
        initial=24,
        help_text=_("Only to invitees who have not added a reflection since the prompt."),
    )

    class Meta:
        model = ReflectionSession
        fields = [
            "title",
            "first_date",
            "start_time",
            "duration_minutes",
            "timezone",
            "recurrence",
            "repeat_until",
            "location",
            "invitees",
            "questions",
            "shared_link",
            "prompt_lead_hours",
            "reminder_after_hours",
        ]
        widgets = {
            "first_date": forms.DateInput(format="%Y-%m-%d", attrs={"type": "date"}),
            "start_time": forms.TimeInput(format="%H:%M", attrs={"type": "time"}),
            "repeat_until": forms.DateInput(format="%Y-%m-%d", attrs={"type": "date"}),
            "recurrence": forms.RadioSelect,
            "questions": forms.Textarea(attrs={"rows": 6}),
        }
        labels = {"first_date": _("Date"), "location": _("Where")}
        help_texts = {
            "title": _("For example: “Monthly reflection, discharge team”."),
            "repeat_until": _("For a repeating session: the last date it may fall on."),
            "location": _("A place, or a link to the video call."),
            "questions": _("One question per line. They are in the prompt email."),
        }
        error_messages = {
            "title": {"required": _("Give the session a title.")},
            "first_date": {
                "required": _("Enter the date of the session."),
                "invalid": _("Enter a real date, for example 2026-03-27."),
            },
            "start_time": {
                "required": _("Enter the start time."),
                "invalid": _("Enter a time of day, for example 10:00."),
            },
            "repeat_until": {"invalid": _("Enter a real date, for example 2026-06-30.")},
        }

    def __init__(
        self,
        *args: Any,
        engagement: Engagement,
        cycle: LearningCycle | None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.engagement, self.cycle = engagement, cycle
        self.fields["recurrence"].choices = ReflectionSession.Recurrence.choices  # type: ignore[attr-defined]
        invitees = self.fields["invitees"]
        assert isinstance(invitees, forms.ModelMultipleChoiceField)
        invitees.queryset = sessions.invitee_candidates(engagement, cycle)
        link = self.fields["shared_link"]
        assert isinstance(link, forms.ModelChoiceField)
        if cycle is None:
            del self.fields["shared_link"]
        else:
            link.queryset = sessions.active_links(cycle)
        if self.instance.pk is None and not self.is_bound:
            self.initial.setdefault("timezone", engagement.timezone)
            self.initial.setdefault("questions", sessions.default_questions(engagement, cycle))

    def clean_title(self) -> str:
        return self._single_line("title")

    def clean_location(self) -> str:
        return self._single_line("location")

    def _single_line(self, name: str) -> str:
        value: str = self.cleaned_data.get(name) or ""
        if not sessions.single_line(value):
            raise forms.ValidationError(SINGLE_LINE)
        return value.strip()

    def clean_invitees(self) -> list[Any]:
        people = list(self.cleaned_data["invitees"])
        no_email = [display_name(p) for p in people if not (p.email or "").strip()]
        if no_email:
            raise forms.ValidationError(sessions.no_email_message(no_email))
        return people

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        if data.get("recurrence") == ReflectionSession.Recurrence.ONCE:
            data["repeat_until"] = None
        needed = ("first_date", "start_time", "timezone", "recurrence")
        if all(data.get(name) for name in needed) and "repeat_until" not in self.errors:
            problems = sessions.schedule_problems(
                first_date=data["first_date"],
                start_time=data["start_time"],
                zone=data["timezone"],
                recurrence=data["recurrence"],
                repeat_until=data.get("repeat_until"),
                current=self.instance if self.instance.pk is not None else None,
            )
            for refusal in problems:
                field = refusal.field if refusal.field in self.fields else None
                self.add_error(field, refusal.message)
        return data

    def session_values(self) -> tuple[dict[str, Any], list[Any]]:
        """The fields for the service, and the invitees apart."""
        values = self.changed_values()
        invitees = list(values.pop("invitees", []))
        return values, invitees
