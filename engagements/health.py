"""The HLS system health check (DESIGN.md §3, issue 7): rounds and answers.

Participants score the nine Lankelly Chase system behaviours (``models.Behaviour``, in the
three groups of ``models.BEHAVIOUR_GROUPS``) from 1 to 10 as they perceive them, each with an
optional comment. The scores are for discussion, never a target.

**Rounds.** A facilitator of the engagement opens a round for the whole engagement or for one
of its cycles, at most one open round per scope, so "the round before" is always clear; they
close it when the group is ready to talk about it. A round may name a last day for answers
(``closes_on``, in the engagement's time zone): after it answers are refused, and the round
waits for its facilitator to close it. Closing a round also closes its resident link.

**Who answers.** Whoever may see the round's cycle (``access.cycles_for``) or, for a round of
the whole engagement, the engagement (``access.engagements_for``); residents through the
round's link if the facilitator made one. A member answers once and may change their answer
while the round takes answers; each resident submission is one answer (see
:func:`perspective_of` for the perspective each answer is counted under).

**What they show** (the spread, changes, perspective gaps, suppression below
``MIN_RESPONDENTS``) is read in ``engagements.health_results`` and, for a round's page,
``engagements.health_round_page``; their selectors are re-exported here
(``health.round_results``, ``health.trends``, ``health.headlines``, ``health.digest_items``),
so callers need one module.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import date, timedelta
from typing import Any

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import Count, Exists, F, OuterRef, Q
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext as _

from engagements import access, residents
from engagements.access import AnyUser, audit
from engagements.health_results import MIN_RESPONDENTS as MIN_RESPONDENTS
from engagements.health_results import PERSPECTIVES as PERSPECTIVES
from engagements.health_results import SCORES as SCORES
from engagements.health_results import Headline as Headline
from engagements.health_results import Perspective as Perspective
from engagements.health_results import digest_items as digest_items
from engagements.health_results import headlines as headlines
from engagements.health_results import trends as trends
from engagements.health_round_page import RoundResults as RoundResults
from engagements.health_round_page import round_results as round_results
from engagements.models import (
    BEHAVIOUR_GROUPS,
    Behaviour,
    BehaviourGroup,
    Engagement,
    HealthResponse,
    HealthRound,
    HealthScore,
    LearningCycle,
    Membership,
    SharedLink,
    WithdrawnSubmission,
)
from engagements.services import Refused

COMMENT_CHARS = 1000


# --- refusals ---------------------------------------------------------------------------------


class RoundClosed(Refused):
    """The round no longer takes answers (closed, or past its last day)."""

    def __init__(self, health_round: HealthRound, *, resident: bool = False) -> None:
        if health_round.closed is not None:
            closed = date_format(timezone.localtime(health_round.closed), "j E Y")
            if resident:
                message = _("This health check closed on %(date)s, so your answers were not sent.")
            else:
                message = _(
                    "This round closed on %(date)s, so your answers were not saved. They are "
                    "still below if you want to copy them."
                )
            super().__init__(message % {"date": closed})
            return
        last = date_format(health_round.closes_on, "j E Y") if health_round.closes_on else ""
        super().__init__(
            _("This round stopped taking answers after %(date)s, so your answers were not saved.")
            % {"date": last}
        )


class AnswerWithdrawn(Refused):
    """The resident withdrew the answer this very submission key stored."""

    def __init__(self) -> None:
        super().__init__(_("You withdrew these answers, so they were not sent again."))


class WithdrawalChanged(Refused):
    """Answers closed between the withdrawal's confirmation page and its confirming."""

    def __init__(self) -> None:
        super().__init__(
            _(
                "Answers to this health check closed after you opened this page, so "
                "withdrawing now does something different. Read what it does below, then "
                "choose again."
            )
        )


class AlreadyClosed(Refused):
    def __init__(self, health_round: HealthRound) -> None:
        closed = health_round.closed or timezone.now()
        super().__init__(
            _("This round was already closed on %(date)s. Nothing changed.")
            % {"date": date_format(timezone.localtime(closed), "j E Y")}
        )


# --- who answers as what ----------------------------------------------------------------------


def perspective_of(user: AnyUser, health_round: HealthRound, *, facilitates: bool) -> str | None:
    """The perspective a member's answer is counted under; None if they have none here.

    - A facilitator of the engagement answers as its learning partner (``learning_partner``).
    - Anyone else by their membership role: in the organisation that owns the round's cycle
      if they belong to it, otherwise in the engagement's partner organisations (a round of the
      whole engagement, or a cycle another partner shared). An administrator or manager answers
      as a manager, a practitioner as a practitioner; belonging to several partners, the
      managing role counts.
    - Residents, through the round's link, answer as residents.
    """
    if facilitates:
        return Perspective.LEARNING_PARTNER
    in_scope = Q(organisation__partnerships__engagement_id=health_round.engagement_id)
    owner = health_round.cycle.organisation_id if health_round.cycle is not None else None
    if owner is not None:
        in_scope |= Q(organisation_id=owner)
    roles = dict(
        Membership.objects.filter(in_scope, user_id=int(user.pk or 0)).values_list(
            "organisation_id", "role"
        )
    )
    if not roles:
        return None
    chosen = [roles[owner]] if owner in roles else list(roles.values())
    if any(role != Membership.Role.PRACTITIONER for role in chosen):
        return Perspective.MANAGER
    return Perspective.PRACTITIONER


# --- services ---------------------------------------------------------------------------------


def local_today(engagement: Engagement) -> date:
    """Today in the engagement's time zone."""
    from engagements.digests import zone  # digests reads this module: imported when needed

    return timezone.localtime(timezone.now(), zone(engagement.timezone)).date()


# A round takes answers for at most a year: the health check is repeated over time.
LONGEST_ROUND_DAYS = 366


def takes_answers(health_round: HealthRound) -> bool:
    """Open, and not past its last day for answers (in the engagement's time zone)."""
    if health_round.closed is not None:
        return False
    closes_on = health_round.closes_on
    return closes_on is None or local_today(health_round.engagement) <= closes_on


def round_open(
    *,
    engagement: Engagement,
    by: User,
    title: str,
    cycle: LearningCycle | None = None,
    closes_on: date | None = None,
    resident_link: bool = False,
) -> tuple[HealthRound, tuple[SharedLink, str] | None]:
    """Open a round of the engagement or of one of its cycles, with a resident link if asked.

    The link's token is returned once, here, and never stored. Refused when a round of the
    same scope is still open, or when the last day for answers has already passed.
    """
    title = " ".join(title.split())
    if not title:
        raise Refused(_("Give the round a title."), "title")
    if cycle is not None and cycle.engagement_id != engagement.pk:
        raise Refused(_("Choose one of this engagement's cycles."))
    today = local_today(engagement)
    if closes_on is not None and closes_on < today:
        raise Refused(_("The last day for answers cannot be before today."), "closes_on")
    if closes_on is not None and closes_on > today + timedelta(days=LONGEST_ROUND_DAYS):
        raise Refused(_("The last day for answers can be at most a year from today."), "closes_on")
    busy = _("A round is already open here. Close it before opening another.")
    if HealthRound.objects.filter(engagement=engagement, cycle=cycle, closed=None).exists():
        raise Refused(busy)
    try:
        with transaction.atomic():
            health_round = HealthRound.objects.create(
                engagement=engagement, cycle=cycle, title=title, opened_by=by, closes_on=closes_on
            )
            link = None
            if resident_link:
                days = (closes_on - today).days + 1 if closes_on else residents.DEFAULT_DAYS
                link = residents.link_create(
                    health_round=health_round, by=by, label=title[:120], days=days
                )
            audit(by, "health_round.opened", health_round, resident_link=resident_link)
    except IntegrityError:  # someone opened one a moment ago (one_open_health_round_per_scope)
        raise Refused(busy) from None
    return health_round, link


@transaction.atomic
def round_close(*, health_round: HealthRound, by: User) -> HealthRound:
    """Close the round: no more answers, its resident link closed. Once only."""
    now = timezone.now()
    if not HealthRound.objects.filter(pk=health_round.pk, closed=None).update(
        closed=now, closed_by=by
    ):
        health_round.refresh_from_db(fields=["closed", "closed_by"])
        raise AlreadyClosed(health_round)
    SharedLink.objects.filter(health_round=health_round, revoked=None).update(
        revoked=now, revoked_by=by
    )
    audit(by, "health_round.closed", health_round)
    health_round.closed, health_round.closed_by = now, by
    return health_round


Answers = Mapping[str, tuple[int, str]]  # behaviour → (score, comment)


def _checked(answers: Answers) -> list[tuple[str, int, str]]:
    """All nine behaviours, each with a whole score from 1 to 10 (the form checks it first)."""
    rows = []
    for behaviour in Behaviour.values:
        score, comment = answers.get(behaviour, (None, ""))
        if not isinstance(score, int) or score not in SCORES:
            raise Refused(_("Give every behaviour a score from 1 to 10."))
        rows.append((behaviour, score, (comment or "").strip()[:COMMENT_CHARS]))
    return rows


def _store_scores(response: HealthResponse, rows: list[tuple[str, int, str]]) -> None:
    HealthScore.objects.bulk_create(
        [HealthScore(response=response, behaviour=b, score=s, comment=c) for b, s, c in rows],
        update_conflicts=True,
        unique_fields=["response", "behaviour"],
        update_fields=["score", "comment"],
    )


def answer_save(
    *, health_round: HealthRound, by: User, perspective: str, answers: Answers
) -> tuple[HealthResponse, bool]:
    """Save a member's answer, or replace their earlier one while the round takes answers.

    Returns the answer and whether it is their first. The round's row is locked while the
    answer is written, so an answer and the round's closing never cross.
    """
    rows = _checked(answers)
    with transaction.atomic():
        locked = (
            HealthRound.objects.select_for_update(of=("self",))
            .select_related("engagement")
            .get(pk=health_round.pk)
        )
        if not takes_answers(locked):
            raise RoundClosed(locked)
        response, created = HealthResponse.objects.get_or_create(
            round=locked, respondent=by, defaults={"perspective": perspective}
        )
        if not created:
            response.perspective = perspective
            response.save(update_fields=["perspective", "updated"])
        _store_scores(response, rows)
        audit(by, "health.answered" if created else "health.answer_changed", locked)
    return response, created


def resident_answer_submit(
    *, link_id: int, submission_key: uuid.UUID, answers: Answers
) -> tuple[HealthResponse, bool]:
    """Save a resident's answer through a round's link once, whatever the clicks or retries.

    Returns the answer and whether this call stored it. The link's row is locked while its
    limits are checked and the answer written, so two copies of one POST store one answer,
    and a link closed a moment ago (with its round) takes nothing in. The answer keeps the
    hash of its receipt code, derived from the submission key as a reflection's is
    (``residents.receipt_code``), so a retried POST is shown the same code. Raises
    ``AnswerWithdrawn`` when the resident withdrew this very submission.
    """
    rows = _checked(answers)
    with transaction.atomic():
        link = (
            SharedLink.objects.select_for_update(of=("self",))
            .select_related("health_round__engagement")
            .filter(pk=link_id, health_round__isnull=False)
            .first()
        )
        existing = HealthResponse.objects.filter(submission_key=submission_key).first()
        if existing is not None:
            return existing, False
        if WithdrawnSubmission.objects.filter(key=submission_key).exists():
            raise AnswerWithdrawn()
        if link is None or link.health_round is None or not link.is_active:
            raise Refused(_("This link has closed, so your answers were not sent."))
        if not takes_answers(link.health_round):
            raise RoundClosed(link.health_round, resident=True)
        response = HealthResponse.objects.create(
            round=link.health_round,
            perspective=Perspective.RESIDENT,
            shared_link=link,
            submission_key=submission_key,
            receipt_hash=residents.receipt_hash(residents.receipt_code(submission_key)),
        )
        _store_scores(response, rows)
        SharedLink.objects.filter(pk=link.pk).update(
            submissions=F("submissions") + 1, last_used=timezone.now()
        )
        audit(None, "resident.health_answered", link.health_round, link=link.token_prefix)
    return response, True


# --- a resident's own answer, through its receipt code -----------------------------------------

# What withdrawing a resident's answer does (``resident_withdrawal``).
WITHDRAW_ANSWER = "answer"  # the round takes answers: the whole answer is deleted
WITHDRAW_COMMENTS = "comments"  # answers have closed: the comments go, the scores stay


def resident_withdrawal(health_round: HealthRound) -> str:
    """What withdrawing a resident's answer to the round does now.

    While the round takes answers no figure is shown, so the whole answer can go without
    anything being read back from the change. Once answers have closed its scores are in
    results people have read: taking them out would let anyone comparing before and after
    work out what this person scored, so only the comments go.
    """
    return WITHDRAW_ANSWER if takes_answers(health_round) else WITHDRAW_COMMENTS


def resident_round_status(health_round: HealthRound) -> str:
    """In plain words, whether the round still takes answers (residents see no results)."""
    if health_round.closed is not None:
        return _("This health check closed on %(date)s.") % {
            "date": date_format(timezone.localtime(health_round.closed), "j E Y")
        }
    if health_round.closes_on is None:
        return _("This health check still takes answers.")
    named = {"date": date_format(health_round.closes_on, "j E Y")}
    if takes_answers(health_round):
        return _("This health check takes answers until %(date)s.") % named
    return _("This health check stopped taking answers after %(date)s.") % named


def resident_answer_rows(response: HealthResponse) -> list[tuple[str, list[tuple[str, int, str]]]]:
    """The answer's scores and comments in the form's three groups: (group label, [(behaviour
    label, score, comment)])."""
    given = {s.behaviour: s for s in response.scores.all()}
    return [
        (
            str(BehaviourGroup(group).label),
            [
                (str(Behaviour(b).label), given[b].score, given[b].comment)
                for b in behaviours
                if b in given
            ],
        )
        for group, behaviours in BEHAVIOUR_GROUPS.items()
    ]


def resident_answer_export(response: HealthResponse) -> dict[str, Any]:
    """A resident's own answer, as they may download it."""
    health_round = response.round
    return {
        "health_check": health_round.title,
        "engagement": health_round.engagement.title,
        "cycle": health_round.cycle.title if health_round.cycle is not None else None,
        "submitted": response.created.isoformat(),
        "status": resident_round_status(health_round),
        "answers": [
            {"group": group, "behaviour": behaviour, "score": score, "comment": comment or None}
            for group, rows in resident_answer_rows(response)
            for behaviour, score, comment in rows
        ],
    }


def resident_answer_withdraw(*, response: HealthResponse, withdrawal: str) -> bool:
    """Withdraw a resident's answer at their request, as ``resident_withdrawal`` says.

    ``withdrawal`` is what the resident was told it would do; should answers have closed
    since, ``WithdrawalChanged`` is raised and nothing changes, so they read again and choose.
    Returns False when there was nothing left to withdraw (withdrawn already). Either way the
    submission key is kept as withdrawn, so a replayed form stores nothing, and the audit
    keeps only that it happened. The round's row is locked, so a withdrawal and the round's
    closing never cross.
    """
    with transaction.atomic():
        locked_round = (
            HealthRound.objects.select_for_update(of=("self",))
            .select_related("engagement")
            .filter(pk=response.round_id)
            .first()
        )
        locked = (
            HealthResponse.objects.select_for_update()
            .filter(pk=response.pk, perspective=Perspective.RESIDENT)
            .exclude(receipt_hash="")
            .first()
        )
        if locked_round is None or locked is None:
            return False
        if withdrawal != resident_withdrawal(locked_round):
            raise WithdrawalChanged()
        if locked.submission_key is not None:
            WithdrawnSubmission.objects.get_or_create(key=locked.submission_key)
        if withdrawal == WITHDRAW_ANSWER:
            audit(None, "resident.health_answer_withdrawn", locked_round)
            locked.delete()
            return True
        HealthScore.objects.filter(response=locked).exclude(comment="").update(comment="")
        # Nothing is left that leads back to the resident: not the receipt, the link or the
        # key (as after the retention period, engagements.retention).
        HealthResponse.objects.filter(pk=locked.pk).update(
            receipt_hash="", shared_link=None, submission_key=None
        )
        audit(None, "resident.health_comments_withdrawn", locked_round)
    return True


# --- lists ------------------------------------------------------------------------------------


def rounds_for(
    *, user: AnyUser, engagement: Engagement, cycle: LearningCycle | None = None
) -> list[HealthRound]:
    """The rounds of a cycle, or of an engagement (its own and those of the cycles the person
    sees), newest first, each with ``answers`` (how many) and ``mine`` (whether they answered).
    """
    found = HealthRound.objects.filter(engagement=engagement)
    if cycle is not None:
        found = found.filter(cycle=cycle)
    else:
        found = found.filter(Q(cycle=None) | Q(cycle__in=access.cycles_for(user)))
    return list(
        found.select_related("cycle__organisation")
        .annotate(
            answers=Count("responses"),
            mine=Exists(HealthResponse.objects.filter(round=OuterRef("pk"), respondent=user.pk)),
        )
        .order_by("-opened", "-id")
    )


def my_answer(health_round: HealthRound, user: AnyUser) -> dict[str, tuple[int, str]]:
    """The person's current answer to the round, behaviour → (score, comment); empty if none."""
    return {
        behaviour: (score, comment)
        for behaviour, score, comment in HealthScore.objects.filter(
            response__round=health_round, response__respondent=user.pk
        ).values_list("behaviour", "score", "comment")
    }
