"""Forms of the health check: opening a round, and answering it. Validation only."""

from __future__ import annotations

import uuid
from typing import Any

from django import forms
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from engagements import health
from engagements.models import BEHAVIOUR_GROUPS, Behaviour, BehaviourGroup
from engagements.resident_forms import _BIDI_OVERRIDES, ResidentReflectionForm
from hls.lib.forms import AccessibleFormMixin


class RoundForm(AccessibleFormMixin, forms.Form):
    title = forms.CharField(
        label=gettext_lazy("Title"),
        max_length=200,
        help_text=gettext_lazy("For example: “Health check, spring”. Everyone answering sees it."),
        error_messages={"required": gettext_lazy("Give the round a title.")},
    )
    closes_on = forms.DateField(
        label=gettext_lazy("Last day for answers"),
        required=False,
        widget=forms.DateInput(format="%Y-%m-%d", attrs={"type": "date"}),
        help_text=gettext_lazy(
            "Leave empty to take answers until you close the round. After this day nobody can "
            "answer, and the round waits for you to close it."
        ),
        error_messages={"invalid": gettext_lazy("Enter a real date, for example 2026-06-30.")},
    )
    resident_link = forms.BooleanField(
        label=gettext_lazy("Residents can answer too, through a link"),
        required=False,
        help_text=gettext_lazy(
            "You see the link once, right after opening the round, to share where you choose. "
            "Residents answer without an account and are counted as residents. The link stops "
            "working when the round closes."
        ),
    )

    def clean_title(self) -> str:
        title = " ".join(self.cleaned_data["title"].split())
        if not title:
            raise forms.ValidationError(_("Give the round a title."))
        return title


class AnswerForm(AccessibleFormMixin, forms.Form):
    """A score from 1 to 10 and an optional comment for each of the nine behaviours.

    Fields are ``score_<behaviour>`` and ``comment_<behaviour>``; :meth:`sections` gives them
    in their three groups for the template, :meth:`answers` the cleaned values for the service.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for behaviour, label in Behaviour.choices:
            named = {"behaviour": label}
            self.fields[f"score_{behaviour}"] = forms.TypedChoiceField(
                label=label,
                choices=[(n, str(n)) for n in health.SCORES],
                coerce=int,
                widget=forms.RadioSelect(attrs={"class": "scale__input"}),
                help_text=_("1: not at all, 10: fully."),
                error_messages={
                    "required": _("Choose a score from 1 to 10 for “%(behaviour)s”.") % named,
                    "invalid_choice": _(
                        "Scores go from 1 to 10: choose one of them for “%(behaviour)s”."
                    )
                    % named,
                },
            )
            self.fields[f"comment_{behaviour}"] = forms.CharField(
                label=_("Comment on “%(behaviour)s”") % named,
                max_length=health.COMMENT_CHARS,
                required=False,
                widget=forms.Textarea(attrs={"rows": 2}),
                error_messages={
                    "max_length": _("Keep the comment on “%(behaviour)s” under 1,000 characters.")
                    % named
                },
            )

    @classmethod
    def initial_from(cls, answers: dict[str, tuple[int, str]]) -> dict[str, Any]:
        initial: dict[str, Any] = {}
        for behaviour, (score, comment) in answers.items():
            initial[f"score_{behaviour}"] = score
            initial[f"comment_{behaviour}"] = comment
        return initial

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        for behaviour in Behaviour.values:
            name = f"comment_{behaviour}"
            if name in data:
                # Invisible characters that reorder text on screen go (as in reflections).
                data[name] = _BIDI_OVERRIDES.sub("", data[name]).strip()
        return data

    def sections(self) -> list[tuple[str, str, list[tuple[forms.BoundField, forms.BoundField]]]]:
        """(group key, group label, [(score field, comment field)]) in the order of the check."""
        return [
            (
                group,
                str(BehaviourGroup(group).label),
                [(self[f"score_{b}"], self[f"comment_{b}"]) for b in BEHAVIOUR_GROUPS[group]],
            )
            for group in BehaviourGroup.values
        ]

    def answers(self) -> dict[str, tuple[int, str]]:
        data = self.cleaned_data
        return {b: (data[f"score_{b}"], data.get(f"comment_{b}", "")) for b in Behaviour.values}


class ResidentAnswerForm(AnswerForm):
    """The same questions for a resident, with the submission key that makes sending once."""

    # The reflection form's own hidden fields (forms copy their fields for each instance).
    submission_key = ResidentReflectionForm.base_fields["submission_key"]
    link_ref = ResidentReflectionForm.base_fields["link_ref"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.is_bound:
            self.initial.setdefault("submission_key", uuid.uuid4())

    def full_clean(self) -> None:
        super().full_clean()
        if "submission_key" in self.errors:
            # A fresh key, so pressing the button again works.
            data = self.data.copy()  # type: ignore[attr-defined]
            data["submission_key"] = str(uuid.uuid4())
            self.data = data
