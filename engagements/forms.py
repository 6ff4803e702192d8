from __future__ import annotations

import re
import zoneinfo
from functools import cache
from typing import Any

from django import forms
from django.conf import settings
from django.contrib.auth import forms as auth_forms
from django.contrib.auth import get_user_model, password_validation
from django.core.validators import MaxLengthValidator
from django.utils import timezone
from django.utils.text import Truncator
from django.utils.translation import gettext_lazy as _

from engagements.models import (
    Actor,
    Adaptation,
    Engagement,
    Experiment,
    Factor,
    LearningCycle,
    Membership,
    Organisation,
    Principle,
    Reflection,
    Stage,
)
from hls.lib.forms import AccessibleFormMixin


class LoginForm(AccessibleFormMixin, auth_forms.AuthenticationForm):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # AuthenticationForm sets max_length after the field is built, so no validator checks
        # it: an over-long username would reach authenticate() and the lockout log.
        username = self.fields["username"]
        username.validators.append(MaxLengthValidator(getattr(username, "max_length", None) or 150))
        self.fields["username"].widget.attrs.update(autocomplete="username", spellcheck="false")
        self.fields["username"].widget.attrs.pop("autofocus", None)
        self.fields["password"].widget.attrs["autocomplete"] = "current-password"


class PasswordChangeForm(AccessibleFormMixin, auth_forms.PasswordChangeForm):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["old_password"].widget.attrs.pop("autofocus", None)


class PasswordResetForm(AccessibleFormMixin, auth_forms.PasswordResetForm):
    pass


class SetPasswordForm(AccessibleFormMixin, auth_forms.SetPasswordForm):
    pass


class TokenForm(AccessibleFormMixin, forms.Form):
    """One box for a six-digit code from an authenticator app or an eight-character backup code."""

    token = forms.CharField(
        label=_("Code"),
        max_length=16,
        help_text=_(
            "The six digits your authenticator app shows now, or one of your backup codes."
        ),
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "inputmode": "text", "spellcheck": "false"}
        ),
    )

    def clean_token(self) -> str:
        # People type codes with spaces ("123 456"); devices compare without them.
        return "".join(self.cleaned_data["token"].split()).lower()


# --- engagements and learning cycles --------------------------------------------------------


STALE_FORM = _("This form is out of date. Copy anything you typed, then open the page again.")


def parse_version(value: str | None) -> int | None:
    """The hidden version a form carries; anything else (tampered, garbled) counts as none."""
    value = (value or "").strip()
    return int(value) if re.fullmatch(r"[0-9]{1,9}", value) else None


@cache  # the zoneinfo database is read from disk; once per process is enough
def _timezones() -> list[tuple[str, str]]:
    """Time zones named by a place (and UTC): not the system's aliases such as "localtime"."""
    return [
        (name, name.replace("_", " "))
        for name in sorted(zoneinfo.available_timezones())
        if "/" in name or name == "UTC"
    ]


class VersionedForm(AccessibleFormMixin, forms.ModelForm):
    """Carries the version the person started from, so a stale save is refused."""

    version = forms.CharField(widget=forms.HiddenInput, required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None and not self.is_bound:
            self.initial["version"] = str(getattr(self.instance, "version", ""))
        if self.instance.pk is None:
            del self.fields["version"]

    def clean_version(self) -> int | None:
        version = parse_version(self.cleaned_data.get("version"))
        if version is None and self.instance.pk is not None:
            # Without it a stale copy could overwrite a colleague's edit unnoticed.
            raise forms.ValidationError(STALE_FORM)
        return version

    def changed_values(self) -> dict[str, Any]:
        return {
            name: self.cleaned_data[name]
            for name in self._meta.fields or ()
            if name in self.cleaned_data
        }


class EngagementForm(VersionedForm):
    timezone = forms.ChoiceField(label=_("Time zone"), choices=_timezones, initial="Europe/London")
    language = forms.ChoiceField(
        label=_("Language"),
        choices=settings.LANGUAGES,
        help_text=_("The language residents see first on this engagement's shared links."),
    )

    learning_partner_choice = forms.ModelChoiceField(
        label=_("Learning partner"),
        queryset=Organisation.objects.none(),
        to_field_name="public_id",
        help_text=_("You belong to more than one learning partner: which one leads this?"),
    )

    class Meta:
        model = Engagement
        fields = [
            "title",
            "purpose",
            "starts_on",
            "ends_on",
            "timezone",
            "language",
            "retention_days",
        ]
        widgets = {
            "starts_on": forms.DateInput(attrs={"type": "date"}),
            "ends_on": forms.DateInput(attrs={"type": "date"}),
            "purpose": forms.Textarea(attrs={"rows": 4}),
        }
        help_texts = {
            "retention_days": _("Resident reflections older than this are deleted or anonymised."),
        }

    def __init__(
        self, *args: Any, learning_partners: list[Organisation] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.learning_partners = learning_partners or []
        field = self.fields["learning_partner_choice"]
        if len(self.learning_partners) > 1:
            assert isinstance(field, forms.ModelChoiceField)
            field.queryset = Organisation.objects.filter(
                pk__in=[o.pk for o in self.learning_partners]
            )
        else:
            del self.fields["learning_partner_choice"]

    def learning_partner(self) -> Organisation:
        chosen = self.cleaned_data.get("learning_partner_choice")
        return chosen if chosen is not None else self.learning_partners[0]

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        starts, ends = data.get("starts_on"), data.get("ends_on")
        if starts and ends and ends < starts:
            self.add_error("ends_on", _("The end date must be on or after the start date."))
        return data


class StageForm(AccessibleFormMixin, forms.ModelForm):
    class Meta:
        model = Stage
        fields = ["name", "questions"]
        widgets = {"questions": forms.Textarea(attrs={"rows": 5})}


class PartnerInviteForm(AccessibleFormMixin, forms.Form):
    name = forms.CharField(label=_("Organisation name"), max_length=200)
    kind = forms.ChoiceField(
        label=_("Kind of organisation"),
        choices=[
            c for c in Organisation.Kind.choices if c[0] != Organisation.Kind.LEARNING_PARTNER
        ],
    )
    country = forms.CharField(label=_("Country"), max_length=100, required=False)
    city = forms.CharField(label=_("City or place"), max_length=100, required=False)
    admin_email = forms.EmailField(
        label=_("Email address of its first administrator"),
        max_length=150,  # it becomes the username, which holds 150 characters
        help_text=_("They get an invitation to set a password, then invite their colleagues."),
    )


class PersonChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        return str(obj.get_full_name() or obj.get_username())


class CycleChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        return f"{obj.title} ({obj.organisation.name})"


class ReflectionChoiceField(forms.ModelMultipleChoiceField):
    """Labels reflections as the journal shows them: identity choices kept."""

    labels: dict[Any, str]

    def label_from_instance(self, obj: Any) -> str:
        return self.labels.get(obj.public_id, "")


class FacilitatorForm(AccessibleFormMixin, forms.Form):
    person = PersonChoiceField(
        label=_("Colleague"), queryset=get_user_model().objects.none(), to_field_name="username"
    )

    def __init__(self, *args: Any, candidates: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["person"]
        assert isinstance(field, forms.ModelChoiceField)
        field.queryset = candidates


class InviteMemberForm(AccessibleFormMixin, forms.Form):
    email = forms.EmailField(label=_("Email address"), max_length=150)
    role = forms.ChoiceField(label=_("Role"))

    def __init__(self, *args: Any, roles: list[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["role"].choices = roles  # type: ignore[attr-defined]
        self.fields["role"].initial = Membership.Role.PRACTITIONER


class MemberRoleForm(AccessibleFormMixin, forms.Form):
    role = forms.ChoiceField(label=_("Role"), choices=Membership.Role.choices)


class AcceptInvitationForm(AccessibleFormMixin, forms.Form):
    first_name = forms.CharField(label=_("First name"), max_length=150)
    last_name = forms.CharField(label=_("Last name"), max_length=150, required=False)
    password1 = forms.CharField(
        label=_("Choose a password"),
        strip=False,
        max_length=128,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text=password_validation.password_validators_help_text_html(),
    )
    password2 = forms.CharField(
        label=_("Type the password again"),
        strip=False,
        max_length=128,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def __init__(self, *args: Any, email: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.email = email

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        first, second = data.get("password1"), data.get("password2")
        if first and second and first != second:
            self.add_error("password2", _("The two passwords are different."))
        elif first:
            from django.contrib.auth import get_user_model

            probe = get_user_model()(
                username=self.email, email=self.email, first_name=data.get("first_name", "")
            )
            try:
                password_validation.validate_password(first, probe)
            except forms.ValidationError as error:
                self.add_error("password1", error)
        return data


class CycleForm(VersionedForm):
    organisation = forms.ModelChoiceField(
        label=_("Organisation"), queryset=Organisation.objects.none(), to_field_name="public_id"
    )

    class Meta:
        model = LearningCycle
        fields = [
            "title",
            "learning_question",
            "purpose",
            "team_name",
            "scale",
            "visibility",
            "status",
        ]
        widgets = {
            "learning_question": forms.Textarea(attrs={"rows": 3}),
            "purpose": forms.Textarea(attrs={"rows": 4}),
            "visibility": forms.RadioSelect,
        }
        help_texts = {
            "title": _("A few words to recognise the cycle in lists."),
            "learning_question": _("What are we trying to learn?"),
            "team_name": _("Optional: the team that runs this cycle."),
        }

    def __init__(self, *args: Any, organisations: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is None:
            del self.fields["status"]
            field = self.fields["organisation"]
            assert isinstance(field, forms.ModelChoiceField)
            field.queryset = organisations
            choices = list(organisations)
            if len(choices) == 1:
                field.initial = choices[0].public_id
                field.widget = forms.HiddenInput()
        else:
            del self.fields["organisation"]


class MoveStageForm(AccessibleFormMixin, forms.Form):
    stage = forms.ModelChoiceField(
        label=_("Move to stage"), queryset=Stage.objects.none(), to_field_name="public_id"
    )
    note = forms.CharField(
        label=_("Why now?"),
        max_length=5000,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=_("A note for the journal: what tells you the cycle is ready to move."),
    )
    version = forms.CharField(widget=forms.HiddenInput, required=False)

    def __init__(self, *args: Any, cycle: LearningCycle, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["stage"]
        assert isinstance(field, forms.ModelChoiceField)
        field.queryset = Stage.objects.filter(engagement_id=cycle.engagement_id).exclude(
            pk=cycle.stage_id
        )
        if not self.is_bound:
            self.initial["version"] = str(cycle.version)

    def clean_version(self) -> int:
        version = parse_version(self.cleaned_data.get("version"))
        if version is None:
            raise forms.ValidationError(STALE_FORM)
        return version


class CycleLinkForm(AccessibleFormMixin, forms.Form):
    RELATIONS = [
        ("part_of", _("This cycle is part of it (it works at a wider scale)")),
        ("contains", _("This cycle contains it (it works at a narrower scale)")),
        ("peer", _("It is a peer: we learn alongside each other")),
    ]
    other = CycleChoiceField(
        label=_("Cycle"), queryset=LearningCycle.objects.none(), to_field_name="public_id"
    )
    relation = forms.ChoiceField(
        label=_("How they connect"), choices=RELATIONS, widget=forms.RadioSelect, initial="peer"
    )

    def __init__(self, *args: Any, candidates: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["other"]
        assert isinstance(field, forms.ModelChoiceField)
        field.queryset = candidates


class ActorForm(VersionedForm):
    class Meta:
        model = Actor
        fields = ["name", "kind", "trust"]


class FactorForm(VersionedForm):
    class Meta:
        model = Factor
        fields = ["description", "whose_knowledge"]
        widgets = {"description": forms.Textarea(attrs={"rows": 3})}
        help_texts = {
            "whose_knowledge": _("Who knows this: for example residents, front-line staff, data."),
        }


class ExperimentForm(VersionedForm):
    class Meta:
        model = Experiment
        fields = [
            "title",
            "kind",
            "premise",
            "starts_on",
            "ends_on",
            "what_happened",
            "what_we_learned",
            "what_we_will_change",
        ]
        widgets = {
            "kind": forms.RadioSelect,
            "premise": forms.Textarea(attrs={"rows": 3}),
            "starts_on": forms.DateInput(attrs={"type": "date"}),
            "ends_on": forms.DateInput(attrs={"type": "date"}),
            "what_happened": forms.Textarea(attrs={"rows": 3}),
            "what_we_learned": forms.Textarea(attrs={"rows": 3}),
            "what_we_will_change": forms.Textarea(attrs={"rows": 3}),
        }
        help_texts = {
            "premise": _("What you believe, or what you want to find out about the system."),
            "what_happened": _("The debrief: fill these in when the experiment ends."),
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Radio buttons need no blank "---------" choice: the type is required.
        self.fields["kind"].choices = Experiment.Kind.choices  # type: ignore[attr-defined]

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        starts, ends = data.get("starts_on"), data.get("ends_on")
        if starts and ends and ends < starts:
            self.add_error("ends_on", _("The end date must be on or after the start date."))
        return data


class CitesCasesMixin:
    """A reflection or adaptation may cite published case studies (DESIGN.md §7)."""

    def add_cases_field(self) -> None:
        from cases.models import CaseStudy

        form: Any = self
        form.fields["cases"] = forms.ModelMultipleChoiceField(
            label=_("Case studies it draws on"),
            queryset=CaseStudy.objects.filter(published=True).only(
                "pk", "slug", "title", "published"
            ),
            to_field_name="slug",
            widget=forms.CheckboxSelectMultiple,
            required=False,
            help_text=_("From the case study library; leave all unticked if none."),
        )
        if form.instance.pk is not None and not form.is_bound:
            form.initial["cases"] = [
                citation.case.slug
                for citation in form.instance.case_citations.select_related("case")
            ]

    def changed_values(self) -> dict[str, Any]:
        values: dict[str, Any] = super().changed_values()  # type: ignore[misc]
        values["cases"] = list(self.cleaned_data.get("cases") or [])  # type: ignore[attr-defined]
        return values


class ReflectionForm(CitesCasesMixin, VersionedForm):
    principles = forms.MultipleChoiceField(
        label=_("HLS principles it touches"),
        choices=Principle.choices,
        widget=forms.CheckboxSelectMultiple,
        required=False,
    )
    experiment = forms.ModelChoiceField(
        label=_("About an experiment"),
        queryset=Experiment.objects.none(),
        to_field_name="public_id",
        required=False,
        empty_label=_("No experiment in particular"),
    )

    class Meta:
        model = Reflection
        fields = ["text", "identity", "principles", "experiment"]
        widgets = {"text": forms.Textarea(attrs={"rows": 5}), "identity": forms.RadioSelect}
        help_texts = {
            "identity": _(
                "Pseudonymous shows the same made-up name on all your reflections in this "
                "engagement; anonymous shows only your role."
            ),
        }

    def __init__(self, *args: Any, cycle: LearningCycle, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["experiment"]
        assert isinstance(field, forms.ModelChoiceField)
        field.queryset = Experiment.objects.filter(cycle=cycle)
        self.add_cases_field()


class AdaptationForm(CitesCasesMixin, VersionedForm):
    reflections = ReflectionChoiceField(
        label=_("Reflections that prompted it"),
        queryset=Reflection.objects.none(),
        to_field_name="public_id",
        widget=forms.CheckboxSelectMultiple,
        required=False,
    )
    experiments = forms.ModelMultipleChoiceField(
        label=_("Experiments that prompted it"),
        queryset=Experiment.objects.none(),
        to_field_name="public_id",
        widget=forms.CheckboxSelectMultiple,
        required=False,
    )

    class Meta:
        model = Adaptation
        fields = [
            "what_changed",
            "because",
            "decided_by",
            "decided_on",
            "status",
            "reflections",
            "experiments",
        ]
        widgets = {
            "what_changed": forms.Textarea(attrs={"rows": 3}),
            "because": forms.Textarea(attrs={"rows": 3}),
            "decided_on": forms.DateInput(attrs={"type": "date"}),
            "status": forms.RadioSelect,
        }
        help_texts = {"decided_by": _("A person, a team or a meeting.")}

    def __init__(self, *args: Any, cycle: LearningCycle, viewer: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from engagements.selectors import reflection_entry, visible_reflections

        reflections = list(
            visible_reflections(cycle, viewer).select_related("author", "stage", "experiment")
        )
        field = self.fields["reflections"]
        assert isinstance(field, ReflectionChoiceField)
        field.queryset = Reflection.objects.filter(pk__in=[r.pk for r in reflections])
        field.labels = {}
        for reflection in reflections:
            entry = reflection_entry(reflection, viewer=viewer, engagement_id=cycle.engagement_id)
            field.labels[reflection.public_id] = (
                f"{entry.author_label}: {Truncator(reflection.text).chars(90)}"
            )
        experiments = self.fields["experiments"]
        assert isinstance(experiments, forms.ModelMultipleChoiceField)
        experiments.queryset = Experiment.objects.filter(cycle=cycle)
        if not self.is_bound and self.instance.pk is None:
            self.initial.setdefault("decided_on", timezone.localdate())
        self.add_cases_field()

    def clean_reflections(self) -> list[Reflection]:
        """Citations the editor cannot see (held for review, say) stay as they were."""
        chosen = list(self.cleaned_data["reflections"])
        if self.instance.pk is not None:
            offered = self.fields["reflections"].queryset  # type: ignore[attr-defined]
            chosen += list(self.instance.reflections.exclude(pk__in=offered.values("pk")))
        return chosen
