"""Retention and account erasure: exactly the right rows go, and the trail stays.

The engagement keeps resident input for 30 days. Residents reflect on day 0; on day 31 the
nightly job deletes what no adaptation cites and anonymises what one does; staff reflections,
recent resident input and other engagements' input within their period stay.
"""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from engagements import exports, health, retention, selectors, tasks
from engagements.models import (
    Adaptation,
    AuditEvent,
    Behaviour,
    Email,
    Engagement,
    Export,
    HealthResponse,
    HealthScore,
    Membership,
    ModerationEvent,
    Outbox,
    Profile,
    Reflection,
)
from engagements.residents import FOLLOW_UP
from hls.celery import app
from tests.conftest import verified_client
from tests.factories import PASSWORD, MembershipFactory, UserFactory, cycle_for, engagement_with

pytestmark = pytest.mark.django_db

DAY0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _export_dir(settings, tmp_path):
    settings.HLS_EXPORT_DIR = tmp_path / "exports"


def _resident(cycle, text: str, **fields) -> Reflection:
    values = {
        "author_role": Reflection.AuthorRole.RESIDENT,
        "identity": Reflection.Identity.NAMED,
        "first_name": "Olena",
        "follow_up_email": "olena@example.org",
        "submission_key": uuid.uuid4(),
        "receipt_hash": "a" * 64,
    }
    values.update(fields)
    return Reflection.objects.create(cycle=cycle, stage_id=cycle.stage_id, text=text, **values)


@pytest.fixture
def aged(world):
    """Day-0 input in an engagement that keeps it 30 days, and in one that keeps it a year."""
    Engagement.objects.filter(pk=world.engagement.pk).update(retention_days=30)
    other = engagement_with(
        learning_partner=world.personas.learning_partner,
        facilitator=world.personas.facilitator,
        partners=[world.personas.org_a],
        title="Kept a year",
    )
    Engagement.objects.filter(pk=other.pk).update(retention_days=365)
    other_cycle = cycle_for(other, world.personas.org_a, world.personas.manager_a)
    with time_machine.travel(DAY0, tick=False):
        uncited = _resident(world.cycle_a, "Old words nobody cited")
        held = _resident(world.cycle_b, "Old held words", moderation=Reflection.Moderation.HELD)
        cited = _resident(world.cycle_a, "Old words an adaptation cites")
        staff = Reflection.objects.create(
            cycle=world.cycle_a,
            stage_id=world.cycle_a.stage_id,
            text="A practitioner's old reflection",
            author=world.personas.practitioner_a,
            author_role=Reflection.AuthorRole.PRACTITIONER,
        )
        kept_a_year = _resident(other_cycle, "Within the other engagement's year")
        adaptation = Adaptation.objects.create(
            cycle=world.cycle_a,
            what_changed="We open on Saturdays",
            decided_by="The team",
            decided_on=DAY0.date(),
        )
        adaptation.reflections.set([cited])
        ModerationEvent.objects.create(
            reflection=uncited, cycle=world.cycle_a, action=ModerationEvent.Action.APPROVE
        )
        Outbox.objects.create(task=FOLLOW_UP, object_id=uncited.pk)
    with time_machine.travel(DAY0 + timedelta(days=20), tick=False):
        recent = _resident(world.cycle_a, "Recent words")
    return {
        "uncited": uncited,
        "held": held,
        "cited": cited,
        "staff": staff,
        "kept_a_year": kept_a_year,
        "recent": recent,
        "adaptation": adaptation,
    }


def _exists(reflection: Reflection) -> bool:
    return Reflection.objects.filter(pk=reflection.pk).exists()


def test_nothing_goes_before_the_retention_period_ends(aged):
    with time_machine.travel(DAY0 + timedelta(days=29), tick=False):
        outcome = retention.run()
    assert outcome["deleted"] == 0
    assert outcome["anonymised"] == 0
    assert all(_exists(r) for k, r in aged.items() if k != "adaptation")


def test_old_resident_input_is_deleted_or_anonymised_and_the_rest_stays(aged, world):
    with time_machine.travel(DAY0 + timedelta(days=31), tick=False):
        outcome = retention.run()
    assert outcome["deleted"] == 2  # uncited and held
    assert outcome["anonymised"] == 1
    assert not _exists(aged["uncited"])
    assert not _exists(aged["held"])
    for key in ("staff", "kept_a_year", "recent"):
        assert _exists(aged[key]), key
    recent = Reflection.objects.get(pk=aged["recent"].pk)
    assert recent.first_name == "Olena"
    assert recent.follow_up_email

    cited = Reflection.objects.get(pk=aged["cited"].pk)
    assert cited.text == "Old words an adaptation cites"  # the accountability trail stands
    assert cited.first_name == ""
    assert cited.follow_up_email == ""
    assert cited.receipt_hash == ""
    assert cited.submission_key is None
    assert cited.shared_link_id is None
    assert cited.identity == Reflection.Identity.ANONYMOUS
    assert list(aged["adaptation"].reflections.all()) == [cited]

    # The follow-up job of a deleted reflection is closed; its moderation log stays, unlinked.
    assert Outbox.objects.get(task=FOLLOW_UP).done is not None
    assert ModerationEvent.objects.get().reflection_id is None

    (event,) = AuditEvent.objects.filter(action="retention.applied")
    assert event.object_id == str(world.engagement.public_id)
    assert event.detail == {
        "deleted": 2,
        "anonymised": 1,
        "health_anonymised": 0,
        "retention_days": 30,
    }


def test_running_twice_changes_nothing_more(aged):
    with time_machine.travel(DAY0 + timedelta(days=31), tick=False):
        retention.run()
        before = set(Reflection.objects.values_list("pk", "first_name", "identity", "updated"))
        events = AuditEvent.objects.filter(action__startswith="retention.").count()
        second = retention.run()
    assert second["deleted"] == 0
    assert second["anonymised"] == 0
    after = set(Reflection.objects.values_list("pk", "first_name", "identity", "updated"))
    assert before == after
    assert AuditEvent.objects.filter(action__startswith="retention.").count() == events


def test_work_past_the_time_budget_carries_on_next_run(aged, monkeypatch):
    monkeypatch.setattr(retention, "BATCH", 1)
    monkeypatch.setattr(retention, "TIME_BUDGET_SECONDS", -1)
    with time_machine.travel(DAY0 + timedelta(days=31), tick=False):
        first = retention.run()
        assert first["finished"] == 0
        assert first["deleted"] == 0
        monkeypatch.setattr(retention, "TIME_BUDGET_SECONDS", 60)
        second = retention.run()
    assert second["finished"] == 1
    assert second["deleted"] == 2
    assert second["anonymised"] == 1


def test_the_nightly_task_is_scheduled_once_and_runs(aged):
    entries = [
        e for e in app.conf.beat_schedule.values() if e["task"] == "engagements.run_retention"
    ]
    assert len(entries) == 1
    with time_machine.travel(DAY0 + timedelta(days=31), tick=False):
        result = tasks.run_retention.apply().get()
    assert result["deleted"] == 2


# --- health-check answers -------------------------------------------------------------------


def _answers(score: int, comment: str = "") -> dict[str, tuple[int, str]]:
    return dict.fromkeys(Behaviour.values, (score, comment))


def _resident_answers(link, score: int, comment: str) -> HealthResponse:
    response, _stored = health.resident_answer_submit(
        link_id=link.pk, submission_key=uuid.uuid4(), answers=_answers(score, comment)
    )
    return response


Held = tuple[int | None, int | None, uuid.UUID | None, tuple[tuple[str, int, str], ...]]


def _held(response: HealthResponse) -> Held:
    """What one answer holds: who and which link it came from, its key, its scores and
    comments."""
    response.refresh_from_db()
    scores = tuple(
        response.scores.order_by("behaviour").values_list("behaviour", "score", "comment")
    )
    return (response.respondent_id, response.shared_link_id, response.submission_key, scores)


def test_old_resident_health_answers_keep_their_scores_and_lose_everything_else(world):
    """Past retention a resident's comments, link and key go; the scores stay, so the round's
    figures are what they were. Recent answers and staff answers are untouched."""
    Engagement.objects.filter(pk=world.engagement.pk).update(retention_days=30)
    world.engagement.refresh_from_db()
    with time_machine.travel(DAY0, tick=False):
        health_round, made = health.round_open(
            engagement=world.engagement,
            cycle=world.cycle_a,
            by=world.personas.facilitator,
            title="Spring check",
            resident_link=True,
        )
        assert made is not None
        link = made[0]
        old = [
            _resident_answers(link, score, f"I am {name}, at number {score} on our street")
            for score, name in [(3, "Olena"), (5, "Taras"), (8, "Iryna")]
        ]
        staff, _first = health.answer_save(
            health_round=health_round,
            by=world.personas.practitioner_a,
            perspective="practitioner",
            answers=_answers(6, "The team's view, kept"),
        )
    with time_machine.travel(DAY0 + timedelta(days=20), tick=False):
        recent = _resident_answers(link, 9, "Recent, still within the period")
    figures = health.round_results(health_round)
    before = {r.pk: _held(r) for r in [*old, staff, recent]}

    with time_machine.travel(DAY0 + timedelta(days=29), tick=False):
        assert retention.run()["health_anonymised"] == 0
    assert {r.pk: _held(r) for r in [*old, staff, recent]} == before

    with time_machine.travel(DAY0 + timedelta(days=31), tick=False):
        outcome = retention.run()
    assert outcome["health_anonymised"] == 3
    for response in old:
        respondent, link_id, key, scores = _held(response)
        assert (respondent, link_id, key) == (None, None, None)
        assert response.perspective == "resident"
        was = before[response.pk][3]
        assert [(b, s) for b, s, _c in scores] == [(b, s) for b, s, _c in was]
        assert {c for _b, _s, c in scores} == {""}
    assert _held(staff) == before[staff.pk]
    assert _held(recent) == before[recent.pk]
    # The same figures as before: only words went.
    after = health.round_results(health_round)
    assert after.headline == figures.headline
    assert [b.spread for g in after.groups for b in g.behaviours] == [
        b.spread for g in figures.groups for b in g.behaviours
    ]
    assert not HealthScore.objects.filter(comment__contains="our street").exists()
    # Nor does a receipt code open them any more.
    assert set(
        HealthResponse.objects.filter(pk__in=[r.pk for r in old]).values_list(
            "receipt_hash", flat=True
        )
    ) == {""}
    assert HealthResponse.objects.get(pk=recent.pk).receipt_hash != ""
    (event,) = AuditEvent.objects.filter(action="retention.applied")
    assert event.detail == {
        "deleted": 0,
        "anonymised": 0,
        "health_anonymised": 3,
        "retention_days": 30,
    }

    # A second run finds nothing more to do.
    with time_machine.travel(DAY0 + timedelta(days=31), tick=False):
        assert retention.run()["health_anonymised"] == 0
    assert AuditEvent.objects.filter(action="retention.applied").count() == 1


def test_erasure_keeps_health_scores_and_nothing_personal(world):
    p = world.personas
    health_round, _link = health.round_open(
        engagement=world.engagement, by=p.facilitator, title="Whole engagement"
    )
    mine, _first = health.answer_save(
        health_round=health_round,
        by=p.practitioner_a,
        perspective="practitioner",
        answers=_answers(4, "My manager never listens to me"),
    )
    theirs, _first = health.answer_save(
        health_round=health_round,
        by=p.manager_a,
        perspective="manager",
        answers=_answers(7, "Kept: not the erased person's"),
    )
    # Five practitioners in all, so their perspective's figures and comments are shown.
    for i in range(4):
        person: Any = UserFactory(username=f"answers.{i}")
        MembershipFactory(user=person, organisation=p.org_a)
        health.answer_save(
            health_round=health_round,
            by=person,
            perspective="practitioner",
            answers=_answers(5 + i, "A colleague's words stay" if i == 0 else ""),
        )
    figures = health.round_results(health_round)
    was = _held(mine)

    retention.erase_account(user=p.practitioner_a)

    respondent, link_id, key, scores = _held(mine)
    assert (respondent, link_id, key) == (None, None, None)
    assert mine.perspective == "practitioner"  # still counted as it was
    assert [(b, s) for b, s, _c in scores] == [(b, s) for b, s, _c in was[3]]
    assert {c for _b, _s, c in scores} == {""}
    assert not HealthResponse.objects.filter(respondent=p.practitioner_a).exists()
    assert _held(theirs)[0] == p.manager_a.pk
    assert {c for _b, _s, c in _held(theirs)[3]} == {"Kept: not the erased person's"}
    after = health.round_results(health_round)
    assert after.headline == figures.headline
    comments = [c for g in after.groups for b in g.behaviours for c in b.comments]
    assert "My manager never listens to me" not in comments
    assert "A colleague's words stay" in comments


# --- expired exports ------------------------------------------------------------------------


def test_expired_export_files_are_deleted_and_their_exports_marked(world):
    user = world.personas.manager_a
    old, _created = exports.request_export(user=user, engagement=world.engagement, fmt="csv")
    exports.build(old.pk)
    fresh, _created = exports.request_export(user=user, engagement=world.engagement, fmt="json")
    exports.build(fresh.pk)
    old.refresh_from_db()
    fresh.refresh_from_db()
    old_path, fresh_path = exports.file_path(old), exports.file_path(fresh)
    assert old_path is not None
    assert fresh_path is not None
    stray = exports.export_dir() / f"{uuid.uuid4()}.xlsx.part"
    stray.write_text("left by a killed job")
    hour_ago = time.time() - 7200
    os.utime(stray, (hour_ago, hour_ago))
    Export.objects.filter(pk=old.pk).update(expires=timezone.now() - timedelta(minutes=1))

    outcome = retention.run()
    assert outcome["exports_expired"] == 1
    old.refresh_from_db()
    assert old.status == Export.Status.EXPIRED
    assert old.file_name == ""
    assert not old_path.exists()
    assert not stray.exists()
    assert fresh_path.exists()
    assert retention.run()["exports_expired"] == 0


# --- account erasure ------------------------------------------------------------------------


def _erase(client: Client, password: str = PASSWORD):
    return client.post(reverse("accounts:erase"), {"password": password})


def test_the_erase_page_explains_and_asks_for_the_password(world):
    client = verified_client(world.personas.practitioner_a)
    page = client.get(reverse("accounts:erase"))
    html = page.content.decode()
    assert page.status_code == 200
    assert "deleted participant" in html
    assert 'type="password"' in html
    assert 'autocomplete="current-password"' in html


def test_a_wrong_password_erases_nothing(world):
    person = world.personas.practitioner_a
    response = _erase(verified_client(person), "not my password")
    assert response.status_code == 200
    assert "That is not your password." in response.content.decode()
    person.refresh_from_db()
    assert person.is_active
    assert person.email


def test_guessing_the_password_is_stopped_after_five_tries(world):
    client = verified_client(world.personas.practitioner_a)
    for _attempt in range(5):
        _erase(client, "guess")
    response = _erase(client)  # even the right password waits now
    assert "Too many wrong passwords" in response.content.decode()
    assert get_user_model().objects.get(pk=world.personas.practitioner_a.pk).is_active


def test_erasure_removes_personal_data_keeps_contributions_and_signs_out(world):
    person = world.personas.practitioner_a
    username = person.username
    TOTPDevice.objects.create(user=person, name="phone", confirmed=True)
    Reflection.objects.create(
        cycle=world.cycle_a,
        stage_id=world.cycle_a.stage_id,
        text="What I learned, under my name",
        author=person,
        author_role=Reflection.AuthorRole.PRACTITIONER,
        identity=Reflection.Identity.NAMED,
    )
    Email.objects.create(
        kind=Email.Kind.DIGEST, object_id=1, recipient=person.email, period="p", user=person
    )
    elsewhere = verified_client(person)  # signed in on another device too
    elsewhere.get(reverse("home"))
    client = verified_client(person)

    response = _erase(client)
    assert response.status_code == 302
    assert response["Location"] == reverse("accounts:erase_done")
    done = client.get(response["Location"])
    assert "Your account has been erased" in done.content.decode()

    person.refresh_from_db()
    assert person.username.startswith("deleted-")
    assert username not in person.username
    assert (person.first_name, person.last_name, person.email) == ("", "", "")
    assert not person.is_active
    assert not person.has_usable_password()
    assert not Membership.objects.filter(user=person).exists()
    assert not TOTPDevice.objects.filter(user=person).exists()
    assert Profile.objects.get(user=person).erased is not None
    assert Email.objects.get(user=person).recipient.startswith("erased-")
    assert not [
        s for s in Session.objects.all() if s.get_decoded().get("_auth_user_id") == str(person.pk)
    ]
    assert AuditEvent.objects.filter(action="account.erased", object_id=str(person.pk)).exists()
    # Signed out here and everywhere, and cannot sign in again.
    assert client.get(reverse("engagements:engagements")).status_code == 302
    assert elsewhere.get(reverse("engagements:engagements")).status_code == 302
    login = Client().post(reverse("accounts:login"), {"username": username, "password": PASSWORD})
    assert login.status_code == 200
    assert "_auth_user_id" not in login.client.session

    # The journal keeps the reflection and calls its author a deleted participant.
    journal = verified_client(world.personas.manager_a).get(
        reverse("engagements:cycle", args=[world.cycle_a.public_id])
    )
    html = journal.content.decode()
    assert "What I learned, under my name" in html
    assert "deleted participant" in html


def test_display_name_knows_an_erased_account_without_a_query(world, django_assert_num_queries):
    person = world.personas.practitioner_a
    person.username = "deleted-0123456789abcdef"
    with django_assert_num_queries(0):
        assert selectors.display_name(person) == "deleted participant"
    # An email address that happens to start the same way is a person, not an erased account.
    person.username = "deleted-items@example.org"
    person.first_name, person.last_name = "Dee", "Leted"
    with django_assert_num_queries(0):
        assert selectors.display_name(person) == "Dee Leted"


def test_the_only_facilitator_must_hand_over_first(world):
    person = world.personas.facilitator
    client = verified_client(person)
    page = client.get(reverse("accounts:erase"))
    html = page.content.decode()
    assert "You are the only facilitator of “Learning together”" in html
    assert reverse("engagements:facilitators", args=[world.engagement.public_id]) in html
    assert 'type="password"' not in html
    response = _erase(client)
    assert response.status_code == 200
    assert "You are the only facilitator" in response.content.decode()
    person.refresh_from_db()
    assert person.is_active
    assert person.username == "facilitator"

    # With a second facilitator, the first may go; the engagement keeps the other.
    colleague = MembershipFactory(
        user=UserFactory(username="colleague"),
        organisation=world.personas.learning_partner,
        role=Membership.Role.MANAGER,
    ).user
    world.engagement.facilitators.add(colleague)
    assert _erase(client).status_code == 302
    assert list(world.engagement.facilitators.all()) == [colleague]


def test_the_only_administrator_of_an_organisation_with_members_must_hand_over(world):
    Membership.objects.filter(user=world.personas.manager_a).update(role=Membership.Role.ADMIN)
    blockers = retention.erasure_blockers(world.personas.manager_a)
    assert [message for message, _url in blockers] == [
        "You are the only administrator of Organisation A. Make one of its members an "
        "administrator first."
    ]
    Membership.objects.filter(user=world.personas.practitioner_a).update(role=Membership.Role.ADMIN)
    assert retention.erasure_blockers(world.personas.manager_a) == []


def test_erasure_needs_a_signed_in_person(db):
    response = Client().get(reverse("accounts:erase"))
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]
    assert Client().get(reverse("accounts:erase_done")).status_code == 200


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_erasing_an_account_in_the_browser(world, page):
    from playwright.sync_api import expect

    from tests.conftest import assert_accessible

    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(world.personas.practitioner_a.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.goto(reverse("accounts:erase"))
    assert_accessible(page, "on the erase page")
    page.get_by_label("Your password").fill("wrong password")
    page.get_by_role("button", name="Erase my account").click()
    expect(page.get_by_text("That is not your password.").first).to_be_visible()
    assert_accessible(page, "on the erase page with an error")
    page.get_by_label("Your password").fill(PASSWORD)
    page.get_by_role("button", name="Erase my account").click()
    expect(page.get_by_role("heading", name="Your account has been erased")).to_be_visible()
    assert_accessible(page, "on the erased page")
    expect(page.get_by_role("link", name="Sign in")).to_be_visible()
