"""The person's own settings: language, time zone, learning digests and reminders."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.utils.translation import gettext_lazy as _

from engagements.forms import _timezones
from engagements.models import Profile
from hls.lib.forms import AccessibleFormMixin


class PreferencesForm(AccessibleFormMixin, forms.ModelForm):
    language = forms.ChoiceField(
        label=_("Language"),
        choices=settings.LANGUAGES,
        help_text=_("Pages and emails use this language."),
        error_messages={
            "required": _("Choose a language."),
            "invalid_choice": _("Choose English or Ukrainian."),
        },
    )
    timezone = forms.ChoiceField(
        label=_("Time zone"),
        choices=_timezones,
        help_text=_("Digests cover whole days in this time zone and arrive after 07:00."),
        error_messages={
            "required": _("Choose a time zone."),
            "invalid_choice": _("Choose a time zone from the list, for example Europe/Kyiv."),
        },
    )
    digest = forms.ChoiceField(
        label=_("Learning digest"),
        choices=Profile.DigestFrequency.choices,
        widget=forms.RadioSelect,
        help_text=_(
            "A summary of new reflections, themes, stage moves, adaptations and quiet cycles "
            "you can see, by email and in the app."
        ),
        error_messages={
            "required": _("Choose how often you want a digest, or Off."),
            "invalid_choice": _("Choose how often you want a digest, or Off."),
        },
    )
    digest_weekday = forms.TypedChoiceField(
        label=_("Day for the weekly digest"),
        choices=Profile.Weekday.choices,
        coerce=int,
        help_text=_("The weekly digest covers the seven days before this day."),
        error_messages={
            "required": _("Choose a day of the week."),
            "invalid_choice": _("Choose a day of the week from the list."),
        },
    )
    reminders = forms.BooleanField(
        label=_("Remind me after a reflection session if I have not reflected yet"),
        required=False,
    )

    class Meta:
        model = Profile
        fields = ["language", "timezone", "digest", "digest_weekday", "reminders"]
