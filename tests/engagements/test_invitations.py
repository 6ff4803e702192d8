"""Invitations by email: a real worker sends them to a local SMTP sink."""

import re
from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from engagements import services
from engagements.models import EngagementPartner, Invitation, Membership, Organisation
from engagements.tasks import send_invitation
from tests.conftest import verified_client
from tests.factories import MembershipFactory, UserFactory, totp_device

pytestmark = pytest.mark.django_db(transaction=True)


def link_in(message) -> str:
    body = message.get_payload()[0].get_payload(decode=True).decode()
    match = re.search(r"http://\S+/invitations/(\S+)/", body)
    assert match, body
    return f"/invitations/{match.group(1)}/"


@pytest.fixture
def org_admin(personas):
    admin = MembershipFactory(
        user=UserFactory(username="admin.a"),
        organisation=personas.org_a,
        role=Membership.Role.ADMIN,
    ).user
    totp_device(admin)
    return admin


def test_an_invited_colleague_accepts_once_by_setting_a_password(
    personas, org_admin, celery_worker, smtp_sink, client
):
    response = verified_client(org_admin).post(
        reverse("engagements:members", args=[personas.org_a.public_id]),
        {"email": "New.Person@example.org", "role": "manager"},
    )
    assert response.status_code == 302
    [message] = smtp_sink.wait_for(1)
    assert message["To"] == "New.Person@example.org"
    assert "Organisation A" in message["Subject"]
    url = link_in(message)
    invitation = Invitation.objects.get()
    assert invitation.token_hash
    assert url.split("/")[2] not in invitation.token_hash

    page = client.get(url)
    assert page.status_code == 200
    assert get_user_model().objects.filter(email__iexact="new.person@example.org").count() == 0
    response = client.post(
        url,
        {
            "first_name": "Nadia",
            "last_name": "Kovalenko",
            "password1": "a long and unusual phrase",
            "password2": "a long and unusual phrase",
        },
    )
    assert response.status_code == 302
    user = get_user_model().objects.get(email="New.Person@example.org")
    assert user.username == "new.person@example.org"
    assert user.check_password("a long and unusual phrase")
    assert Membership.objects.get(user=user).role == "manager"
    # The link works once: a second click of the new member goes home, anyone else is told.
    assert client.get(url).status_code == 302
    assert Client().get(url).status_code == 410


def test_mismatched_or_weak_passwords_are_refused_with_the_name_kept(personas, org_admin):
    invitation = services.invitation_create(
        organisation=personas.org_a,
        email="x@example.org",
        role="practitioner",
        invited_by=org_admin,
    )
    token = services.invitation_issue_token(invitation)
    response = verified_client(org_admin).post(
        f"/invitations/{token}/",
        {"first_name": "Ola", "password1": "one long phrase", "password2": "another phrase"},
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert "The two passwords are different." in html
    assert 'value="Ola"' in html
    assert not get_user_model().objects.filter(email="x@example.org").exists()


def test_inviting_someone_with_an_account_adds_them_at_once(
    personas, org_admin, celery_worker, smtp_sink
):
    services.invitation_create(
        organisation=personas.org_a,
        email=personas.manager_b.email.upper(),
        role="practitioner",
        invited_by=org_admin,
    )
    assert Membership.objects.filter(user=personas.manager_b, organisation=personas.org_a).exists()
    [message] = smtp_sink.wait_for(1)
    assert "added" in message["Subject"]
    assert "/invitations/" not in message.get_payload()[0].get_payload(decode=True).decode()


def test_an_expired_invitation_says_so_and_an_unknown_one_is_not_found(personas, org_admin, client):
    invitation = services.invitation_create(
        organisation=personas.org_a,
        email="late@example.org",
        role="practitioner",
        invited_by=org_admin,
    )
    token = services.invitation_issue_token(invitation)
    with time_machine.travel(timezone.now() + timedelta(days=15)):
        response = client.get(f"/invitations/{token}/")
    assert response.status_code == 410
    assert "at Organisation A to invite you again." in response.content.decode()
    assert client.get("/invitations/not-a-real-token/").status_code == 404


def test_a_withdrawn_invitation_sends_nothing(personas, org_admin, smtp_sink):
    invitation = services.invitation_create(
        organisation=personas.org_a,
        email="gone@example.org",
        role="practitioner",
        invited_by=org_admin,
    )
    verified_client(org_admin).post(
        reverse(
            "engagements:invitation_revoke", args=[personas.org_a.public_id, invitation.public_id]
        )
    )
    assert send_invitation(invitation.pk) == "skipped"
    assert smtp_sink.messages == []


def test_managers_invite_but_cannot_make_admins(personas):
    client = verified_client(personas.manager_a)
    url = reverse("engagements:members", args=[personas.org_a.public_id])
    response = client.post(url, {"email": "boss@example.org", "role": "admin"})
    assert response.status_code == 200
    assert "Select a valid choice." in response.content.decode()
    assert not Invitation.objects.exists()
    assert (
        verified_client(personas.practitioner_a)
        .post(url, {"email": "p@example.org", "role": "practitioner"})
        .status_code
        == 404
    )


def test_the_last_admin_cannot_be_removed(personas, org_admin):
    membership = Membership.objects.get(user=org_admin)
    response = verified_client(org_admin).post(
        reverse("engagements:member_update", args=[personas.org_a.public_id, membership.public_id]),
        {"action": "remove"},
        follow=True,
    )
    assert "at least one administrator" in response.content.decode()
    assert Membership.objects.filter(pk=membership.pk).exists()


def test_a_facilitator_invites_a_partner_organisation_and_its_admin(
    world, celery_worker, smtp_sink
):
    response = verified_client(world.personas.facilitator).post(
        reverse("engagements:partner_invite", args=[world.engagement.public_id]),
        {
            "name": "Southside Trust",
            "kind": "charity",
            "country": "Ukraine",
            "city": "Львів",
            "admin_email": "lead@southside.example",
        },
    )
    assert response.status_code == 302
    organisation = Organisation.objects.get(name="Southside Trust")
    assert organisation.city == "Львів"
    assert EngagementPartner.objects.filter(
        engagement=world.engagement, organisation=organisation
    ).exists()
    assert Invitation.objects.get(organisation=organisation).role == "admin"
    [message] = smtp_sink.wait_for(1)
    assert message["To"] == "lead@southside.example"


def test_invitation_tokens_never_reach_the_logs(personas, org_admin, client, caplog):
    import logging

    from hls.lib.logging import RedactTokens

    invitation = services.invitation_create(
        organisation=personas.org_a,
        email="late@example.org",
        role="practitioner",
        invited_by=org_admin,
    )
    token = services.invitation_issue_token(invitation)
    Invitation.objects.filter(pk=invitation.pk).update(revoked=timezone.now())
    caplog.handler.addFilter(RedactTokens())
    with caplog.at_level(logging.INFO):
        assert client.get(f"/invitations/{token}/").status_code == 410
    assert caplog.records, "the 410 is logged"
    assert all(token not in caplog.handler.format(r) for r in caplog.records)
    assert "/invitations/[redacted]" in caplog.text
