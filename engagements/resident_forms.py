"""Forms residents and link owners fill in."""

from __future__ import annotations

import re
import uuid
from typing import Any

from django import forms
from django.core.validators import validate_email
from django.utils.translation import gettext_lazy as _

from engagements.models import Change, Feeling, Principle, SharedLink
from hls.lib.forms import AccessibleFormMixin

# Invisible characters that reorder text on screen (used to disguise words); removed.
_BIDI_OVERRIDES = re.compile("[\u202a-\u202e\u2066-\u2069]")


class ResidentReflectionForm(AccessibleFormMixin, forms.Form):
    text = forms.CharField(
        label=_("Your reflection"),
        max_length=5000,
        error_messages={
            "required": _("Write your reflection before sending it."),
            "max_length": _(
                "Your reflection is longer than 5,000 characters. Shorten it a little, or send "
                "it in two parts."
            ),
        },
        widget=forms.Textarea(attrs={"rows": 8, "data-charcount": "5000"}),
        help_text=_("Write as much or as little as you like, up to 5,000 characters."),
    )
    better_or_worse = forms.ChoiceField(
        label=_("Have things got better or worse for you?"),
        choices=[("", _("I would rather not say")), *Change.choices],
        widget=forms.RadioSelect,
        required=False,
    )
    feeling = forms.ChoiceField(
        label=_("How did it feel?"),
        choices=[("", _("I would rather not say")), *Feeling.choices],
        widget=forms.RadioSelect,
        required=False,
    )
    principles = forms.MultipleChoiceField(
        label=_("What does it touch on? (optional)"),
        choices=[
            (Principle.HUMAN, _("Human: how people are treated and supported")),
            (Principle.LEARNING, _("Learning: what could be learned or tried")),
            (Principle.SYSTEMS, _("Systems: how services and places fit together")),
        ],
        widget=forms.CheckboxSelectMultiple,
        required=False,
    )
    identity = forms.ChoiceField(
        label=_("How should we show your reflection?"),
        choices=[
            ("anonymous", _("Anonymously: no name")),
            ("named", _("With my first name")),
        ],
        widget=forms.RadioSelect,
        initial="anonymous",
    )
    first_name = forms.CharField(
        label=_("Your first name"),
        max_length=60,
        required=False,
        help_text=_("Only if you chose to show your first name."),
        widget=forms.TextInput(attrs={"autocomplete": "given-name"}),
    )
    consent = forms.BooleanField(
        label=_("I agree to my reflection being used as described above."),
        error_messages={
            "required": _("Tick the box to agree, or close the page if you do not want to send it.")
        },
    )
    follow_up = forms.BooleanField(
        label=_("Email me when the team has news about what changed"), required=False
    )
    email = forms.CharField(
        label=_("Your email address"),
        max_length=254,
        required=False,
        help_text=_("Only if you ticked the box above. We use it for nothing else."),
        widget=forms.EmailInput(attrs={"autocomplete": "email"}),
    )
    submission_key = forms.UUIDField(
        widget=forms.HiddenInput,
        error_messages={
            "required": _("Something went wrong with the page. Press the button again."),
            "invalid": _("Something went wrong with the page. Press the button again."),
        },
    )
    link_ref = forms.CharField(widget=forms.HiddenInput, required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.is_bound:
            self.initial.setdefault("submission_key", uuid.uuid4())

    def full_clean(self) -> None:
        if self.is_bound and "text" in self.data:
            # NUL bytes cannot be seen, so nobody could find and remove them: they go.
            data = self.data.copy()  # type: ignore[attr-defined]
            # Browsers send line breaks as two characters; the counter shows one.
            data["text"] = data["text"].replace("\x00", "").replace("\r\n", "\n")
            self.data = data
        super().full_clean()
        if "submission_key" in self.errors:
            # A fresh key, so pressing the button again works.
            data = self.data.copy()  # type: ignore[attr-defined]
            data["submission_key"] = str(uuid.uuid4())
            self.data = data

    def clean_text(self) -> str:
        text = _BIDI_OVERRIDES.sub("", self.cleaned_data["text"]).strip()
        if not text:
            raise forms.ValidationError(_("Write your reflection before sending it."))
        return text

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        if data.get("identity") == "named" and not (data.get("first_name") or "").strip():
            self.add_error("first_name", _("Write your first name, or choose to stay anonymous."))
        if data.get("identity") != "named":
            data["first_name"] = ""
        email = (data.get("email") or "").strip()
        if data.get("follow_up"):
            if not email:
                self.add_error("email", _("Write your email address so we can follow up."))
            else:
                try:
                    validate_email(email)
                except forms.ValidationError:
                    self.add_error("email", _("Enter an email address like name@example.com."))
        # An address without the box ticked is not kept.
        data["email"] = email if data.get("follow_up") else ""
        return data


class ReceiptForm(AccessibleFormMixin, forms.Form):
    code = forms.CharField(
        label=_("Receipt code"),
        max_length=40,
        help_text=_("Sixteen letters and numbers, for example ABCD-EFGH-IJKL-MNOP."),
        widget=forms.TextInput(
            attrs={"autocomplete": "off", "spellcheck": "false", "autocapitalize": "characters"}
        ),
    )


class SharedLinkForm(AccessibleFormMixin, forms.Form):
    label = forms.CharField(
        label=_("Label"),
        max_length=120,
        help_text=_("For you: where you will share it, for example “Tenants meeting, March”."),
    )
    days = forms.IntegerField(label=_("Works for (days)"), min_value=1, max_value=365, initial=30)
    max_submissions = forms.IntegerField(
        label=_("Maximum number of reflections"),
        min_value=1,
        max_value=100000,
        required=False,
        help_text=_("Leave empty for no limit."),
    )
    moderation_mode = forms.ChoiceField(
        label=_("Moderation"),
        choices=SharedLink.ModerationMode.choices,
        initial=SharedLink.ModerationMode.HOLD,
        widget=forms.RadioSelect,
    )


class ModerationForm(AccessibleFormMixin, forms.Form):
    action = forms.ChoiceField(
        choices=[("approve", "approve"), ("hide", "hide"), ("redact", "redact")]
    )
    remove = forms.CharField(
        label=_("Words to remove"),
        max_length=5000,
        required=False,
        help_text=_("Copy them exactly from the reflection; they are replaced by […]."),
    )
