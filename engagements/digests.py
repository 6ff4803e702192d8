"""Learning digests (DESIGN.md §6): what happened in a period, compiled once, kept and emailed.

A digest is either **personal** (``scope="user"``: everything the person may see, through
``access.cycles_for``) or an **engagement** digest (every cycle of one engagement, for its
facilitators). Either way it holds, for its period:

- the newest published reflections (at most ``MAX_ITEMS``, with totals), each shown with its
  author's identity choice as the journal shows it (named, pseudonymous, anonymous, resident);
  held and hidden reflections never count;
- themes: the period's most frequent words, from PostgreSQL's ``ts_stat`` over a ``simple``
  text vector of those reflections, minus English and Ukrainian stopwords and short words,
  each with up to two quotes behind it;
- reflections by author role and by organisation, each group shown as "fewer than 5" when
  fewer than ``MIN_CONTRIBUTORS`` people stand behind it (see :func:`_suppress`);
- cycles that moved stage (or started), adaptations recorded, cycles gone quiet (active, and
  no published reflection for ``QUIET_WEEKS`` weeks), and the health-check rounds closed in
  the period, with their headline figures (``health.digest_items``, the same suppression).

The content is stored language-neutral (codes, names, ISO times); :func:`present` turns it
into labels in the reader's language and times in the digest's time zone.

**When.** A daily digest covers the previous local day, [yesterday 00:00, today 00:00), and is
due from 07:00 local; a weekly one covers the seven local days before the chosen weekday and
is due that day from 07:00. Local means the person's ``Profile.timezone``, so a day across a
daylight-saving change is 23 or 25 hours long. Engagement digests are weekly, Monday to Sunday
in the engagement's time zone, due Monday from 07:00 there: one digest per engagement and
week, emailed to each of its facilitators whose own digest is not off (they all read the same
week, whatever weekday their personal digest uses).

**Once.** Every 15 minutes the beat runs :func:`enqueue_due`, which finds the latest due
period of each subscriber and engagement, and enqueues a compile job for those without a
digest. The job (:func:`make_digest`) compiles, inserts the row with ``ON CONFLICT DO NOTHING``
on the unique (scope, user, engagement, frequency, period start) and, in the same transaction,
plans the email in the ledger (``engagements.mail``), whose own unique row per recipient means
two beats, a retried job or two workers give one digest and one email. A digest with nothing
new in it is kept (the app lists it) but not emailed, except a weekly one that names cycles
gone quiet (see :func:`worth_emailing`).

**Never twice.** A period already covered by the owner's latest digest is not made again,
whatever the time zone or weekday was then; one partly covered starts where the last one
ended (:func:`covered_until`). Jobs for one owner and frequency take turns on an advisory lock.
"""

from __future__ import annotations

import logging
import math
import re
import uuid
import zoneinfo
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.db import connection, transaction
from django.db.models import F, Max, OuterRef, Q, QuerySet, Subquery
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.formats import date_format
from django.utils.translation import gettext as _

from engagements import access, counting, health, mail, selectors
from engagements.models import (
    Adaptation,
    Digest,
    Email,
    Engagement,
    LearningCycle,
    Profile,
    Reflection,
    Stage,
    StageMove,
)

log = logging.getLogger(__name__)

CONTENT_VERSION = 1
MAX_ITEMS = 50  # newest reflections, moves, adaptations and quiet cycles listed
MAX_THEMES = 10
QUOTES_PER_THEME = 2
MIN_CONTRIBUTORS = access.MIN_GROUP  # a smaller breakdown group is not counted out
QUIET_WEEKS = 3
MIN_WORD_LENGTH = 4
MIN_THEME_REFLECTIONS = 2  # a word in one reflection only is that reflection, not a theme
# Themes read at most about this many reflections: parsing text is what ts_stat spends its
# time on (1.5 s for 50,000), and the most frequent words of a larger period show as clearly
# in an even sample of it. Counts from a sample are scaled up and shown as "about".
THEME_SAMPLE = 5000
TEXT_CHARS = 1000  # a listed reflection or adaptation is cut here (the cycle page has it all)
EXCERPT_CHARS = 240
DUE_AT = time(7, 0)  # local time from which a period's digest is due
ENGAGEMENT_WEEKDAY = Profile.Weekday.MONDAY

Frequency = Profile.DigestFrequency

# Common words that say nothing about a theme. Words shorter than MIN_WORD_LENGTH are dropped
# anyway, so only longer ones need listing.
STOPWORDS = frozenset(
    """
    about above across actually after again against almost along already also although always
    among another anyone anything around away back because been before behind being below
    between both came cannot come could didn does doesn doing done down during each either
    else enough even ever every everyone everything from further gave getting give given goes
    going gone good got great had hadn hasn have haven having hers herself himself into isn
    itself just keep kind know last less like made make makes making many maybe might more
    most much must myself need needed needs never next none nothing often once only onto other
    others ought ours ourselves over perhaps quite rather really said same seem seemed seems
    shall should shouldn since some someone something sometimes still such sure take taken
    than that thats their theirs them themselves then there these they thing things think
    this those though thought through thus today together told took toward towards under
    until upon used very want wanted wasn week weeks well went were weren what whatever when
    where whether which while whom whose will with within without won would wouldn year
    years yesterday your yours yourself yourselves
    адже багато буде будемо будуть була були було бути вами вона вони воно втім вже всей
    весь вона всього всіх всім всю вся відтак від дуже його зараз знову зовсім інакше інша
    інше інший інші іноді їхня їхнє їхній їхні коли кожен кожна кожне кожні котра котре
    котрий котрі лише майже мають мене мені можна може можуть має мати менше більше ними
    нього неї нема немає ніби ніж ніколи нічого отже отож поки потім потрібно після перед
    поруч просто разом саме свою своє свої свого своєї своїх свій себе собі справді також
    теді тепер тому треба тут туди усе усі цього цієї цими цих цьому чому щоб якби якщо
    який яка яке які якого якої яких яким якій ясно через тобто того тієї тими тих цей
    була було були завжди часто досить цілком дійсно навіть тільки також зокрема тоді
    """.split()  # noqa: RUF001, SIM905 (Cyrillic on purpose; a word list reads best as text)
)


# --- profiles -------------------------------------------------------------------------------


def profile_for(user: Any) -> Profile:
    """The person's profile, made with the defaults (digest off) the first time it is asked."""
    profile, _created = Profile.objects.get_or_create(user_id=user.pk)
    return profile


def zone(name: str) -> zoneinfo.ZoneInfo:
    """The named time zone; the site's own when the name is not one (an old or bad value)."""
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return zoneinfo.ZoneInfo(settings.TIME_ZONE)


# --- periods --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """Local days [first_day, end_day) in ``timezone``, as UTC instants."""

    frequency: str
    timezone: str
    first_day: date
    end_day: date  # the first day after the period

    @property
    def start(self) -> datetime:
        return _local_midnight(self.first_day, self.timezone)

    @property
    def end(self) -> datetime:
        return _local_midnight(self.end_day, self.timezone)

    @property
    def due(self) -> datetime:
        return datetime.combine(self.end_day, DUE_AT, tzinfo=zone(self.timezone)).astimezone(UTC)

    @property
    def last_day(self) -> date:
        return self.end_day - timedelta(days=1)

    @property
    def key(self) -> str:
        """The period as the email ledger names it."""
        return f"{self.frequency}:{self.first_day.isoformat()}"

    @classmethod
    def starting(cls, frequency: str, timezone_name: str, first_day: date) -> Period:
        days = 1 if frequency == Frequency.DAILY else 7
        return cls(frequency, timezone_name, first_day, first_day + timedelta(days=days))


def _local_midnight(day: date, timezone_name: str) -> datetime:
    # The same function gives one period's end and the next one's start, so periods tile.
    return datetime.combine(day, time(0), tzinfo=zone(timezone_name)).astimezone(UTC)


def latest_period(
    frequency: str, timezone_name: str, now: datetime, weekday: int = ENGAGEMENT_WEEKDAY
) -> Period:
    """The most recent period of ``frequency`` whose digest is due at ``now``."""
    local_today = now.astimezone(zone(timezone_name)).date()
    if frequency == Frequency.DAILY:
        period = Period.starting(frequency, timezone_name, local_today - timedelta(days=1))
    else:
        end_day = local_today - timedelta(days=(local_today.weekday() - weekday) % 7)
        period = Period.starting(frequency, timezone_name, end_day - timedelta(days=7))
    if now < period.due:  # today's is not due before 07:00: the one before is the latest
        step = timedelta(days=1 if frequency == Frequency.DAILY else 7)
        period = Period.starting(frequency, timezone_name, period.first_day - step)
    return period


# --- compiling ------------------------------------------------------------------------------


def compile_engagement_digest(
    engagement: Engagement,
    period_start: datetime,
    period_end: datetime,
    *,
    quiet_weeks: int = QUIET_WEEKS,
) -> dict[str, Any]:
    """The digest of every cycle in ``engagement`` for [period_start, period_end)."""
    cycles = LearningCycle.objects.filter(engagement_id=engagement.pk)
    return _compile(cycles, period_start, period_end, quiet_weeks)


def compile_user_digest(
    user: Any, period_start: datetime, period_end: datetime, *, quiet_weeks: int = QUIET_WEEKS
) -> dict[str, Any]:
    """The digest of the cycles ``user`` may see (``access.cycles_for``) for the period."""
    return _compile(access.cycles_for(user), period_start, period_end, quiet_weeks)


@dataclass(frozen=True)
class _Cycle:
    id: int
    public_id: uuid.UUID
    title: str
    organisation_id: int
    organisation: str
    engagement_id: int
    engagement: str

    def as_json(self) -> dict[str, Any]:
        return {
            "id": str(self.public_id),
            "title": self.title,
            "organisation": self.organisation,
            "engagement": self.engagement,
        }


def _tables() -> dict[str, str]:
    return {
        "reflection": Reflection._meta.db_table,
        "cycle": LearningCycle._meta.db_table,
        "move": StageMove._meta.db_table,
        "stage": Stage._meta.db_table,
        "adaptation": Adaptation._meta.db_table,
        "user": get_user_model()._meta.db_table,
    }


# The period's published reflections in the digest's cycles: every statement below filters so.
PERIOD = (
    "r.cycle_id = ANY(%(cycles)s) AND r.moderation = 'published' "
    "AND r.created >= %(start)s AND r.created < %(end)s"
)


def _compile(
    scope: QuerySet[LearningCycle], start: datetime, end: datetime, quiet_weeks: int
) -> dict[str, Any]:
    """Eight queries, whatever the number of reflections: every count is made in SQL."""
    quiet_since = end - timedelta(weeks=quiet_weeks)
    last = (
        Reflection.objects.filter(
            cycle_id=OuterRef("pk"), moderation=Reflection.Moderation.PUBLISHED, created__lt=end
        )
        .order_by("-created")
        .values("created")[:1]
    )
    rows = list(
        scope.annotate(last_reflection=Subquery(last))
        .order_by("id")
        .values_list(
            "id",
            "public_id",
            "title",
            "organisation_id",
            "organisation__name",
            "engagement_id",
            "engagement__title",
            "status",
            "created",
            "last_reflection",
        )
    )
    cycles = {row[0]: _Cycle(*row[:7]) for row in rows}
    quiet = sorted(
        (
            (row[9], row[8], cycles[row[0]])
            for row in rows
            if row[7] == LearningCycle.Status.ACTIVE
            and row[8] < quiet_since
            and (row[9] is None or row[9] < quiet_since)
        ),
        key=lambda item: (item[0] or item[1], item[2].id),
    )
    content: dict[str, Any] = {
        "version": CONTENT_VERSION,
        "quiet_weeks": quiet_weeks,
        "min_contributors": MIN_CONTRIBUTORS,
        "totals": {
            "reflections": 0,
            "contributors": 0,
            "cycles": 0,
            "moves": 0,
            "adaptations": 0,
            "quiet": len(quiet),
        },
        "reflections": [],
        "themes": [],
        "by_role": [],
        "by_organisation": [],
        "moves": [],
        "adaptations": [],
        "quiet": [
            {
                "cycle": cycle.as_json(),
                "last_reflection": _iso(last_at),
                "since": _iso(created),
            }
            for last_at, created, cycle in quiet[:MAX_ITEMS]
        ],
        "health_checks": [],
    }
    if not cycles:
        return content
    content["health_checks"] = health.digest_items(
        cycle_ids=list(cycles),
        engagement_ids={cycle.engagement_id for cycle in cycles.values()},
        start=start,
        end=end,
    )
    params = {"cycles": list(cycles), "start": start, "end": end}
    with connection.cursor() as cursor:
        _counts(params, cycles, content)
        if content["totals"]["reflections"]:
            content["reflections"] = _newest(cursor, params, cycles)
            content["themes"] = _themes(cursor, params, cycles, content["totals"]["reflections"])
        content["moves"], content["totals"]["moves"] = _moves(cursor, params, cycles)
        content["adaptations"], content["totals"]["adaptations"] = _adaptations(
            cursor, params, cycles
        )
    return content


def _counts(params: dict[str, Any], cycles: dict[int, _Cycle], content: dict[str, Any]) -> None:
    """Totals and the two breakdowns in one pass: the count every page shares.

    ``counting.reflection_counts`` is the one count of published reflections and the people
    behind them, so the dashboard, this digest and the export agree (DESIGN.md §8).
    """
    counts = counting.reflection_counts(
        cycles=params["cycles"], start=params["start"], end=params["end"], breakdown=True
    )
    content["totals"].update(
        reflections=counts.reflections, contributors=counts.contributors, cycles=counts.cycles
    )
    if not counts.reflections:
        return
    # Every role and every organisation in scope, the empty ones too, so that a lone small group
    # has a partner to be hidden with (see _suppress).
    names = {c.organisation_id: c.organisation for c in cycles.values()}
    by_role: list[dict[str, Any]] = [  # in the roles' order
        {"role": g.key, "reflections": g.reflections, "contributors": g.contributors}
        for g in counting.every_group(counts.by_role, counting.ROLE_ORDER)
    ]
    by_organisation: list[dict[str, Any]] = [
        {"organisation": names[g.key], "reflections": g.reflections, "contributors": g.contributors}
        for g in counting.every_group(counts.by_organisation, names)
    ]
    # By name, never by count: a digest is not a league table of organisations.
    by_organisation.sort(key=lambda row: row["organisation"])
    content["by_role"] = _suppress(by_role)
    content["by_organisation"] = _suppress(by_organisation)


def _suppress(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Groups with fewer than MIN_CONTRIBUTORS people lose their counts ("fewer than 5").

    A group of nobody shows its zero: it reveals no one. When exactly one group would be
    hidden, the next smallest is hidden too, a group of nobody included (pass every group, the
    empty ones too): otherwise its counts would follow from the totals minus the groups shown.
    """
    small = [row for row in rows if 0 < row["contributors"] < MIN_CONTRIBUTORS]
    if len(small) == 1 and len(rows) > 1:
        shown = [row for row in rows if row is not small[0]]
        small.append(min(shown, key=lambda row: (row["contributors"], row["reflections"])))
    hidden = {id(row) for row in small}
    return [
        {**row, "reflections": None, "contributors": None, "suppressed": True}
        if id(row) in hidden
        else {**row, "suppressed": False}
        for row in rows
    ]


def _newest(cursor: Any, params: dict[str, Any], cycles: dict[int, _Cycle]) -> list[dict[str, Any]]:
    t = _tables()
    cursor.execute(
        f"""
        SELECT r.public_id, left(r.text, {TEXT_CHARS + 1}), r.author_id, r.author_role,
               r.identity, r.first_name, r.created, r.cycle_id, u.first_name, u.last_name,
               u.username
        FROM {t["reflection"]} r LEFT JOIN {t["user"]} u ON u.id = r.author_id
        WHERE {PERIOD}
        ORDER BY r.created DESC, r.id DESC
        LIMIT {MAX_ITEMS}
        """,  # noqa: S608
        params,
    )
    items = []
    for row in cursor.fetchall():
        public_id, text, author_id, role, identity, resident_name, created, cycle_id = row[:8]
        cycle = cycles[cycle_id]
        items.append(
            {
                "id": str(public_id),
                "cycle": cycle.as_json(),
                "author": _author(
                    author_id, role, identity, resident_name, cycle.engagement_id, row[8:]
                ),
                "role": role,
                "text": text[:TEXT_CHARS],
                "truncated": len(text) > TEXT_CHARS,
                "created": _iso(created),
            }
        )
    return items


def _themes(
    cursor: Any, params: dict[str, Any], cycles: dict[int, _Cycle], total: int
) -> list[dict[str, Any]]:
    """The period's most frequent words (ts_stat), each with up to two recent quotes.

    Above THEME_SAMPLE reflections, ts_stat reads every ``step``-th one by id (ids follow
    arrival, so the sample spreads evenly over the period and over everyone who wrote), and
    its counts are multiplied back by ``step``. Whatever the sample, the quotes come from all
    of the period's reflections.
    """
    t = _tables()
    step = max(1, math.ceil(total / THEME_SAMPLE))
    sample = f" AND mod(r.id, {step}) = 0" if step > 1 else ""
    ops: Any = connection.ops  # PostgreSQL's: compose_sql inlines the values, safely quoted
    documents = ops.compose_sql(
        f"SELECT to_tsvector('simple', r.text) FROM {t['reflection']} r WHERE {PERIOD}{sample}",  # noqa: S608
        params,
    )
    cursor.execute(
        f"""
        SELECT word, ndoc, nentry FROM ts_stat(%(documents)s)
        WHERE ndoc >= {MIN_THEME_REFLECTIONS} AND length(word) >= {MIN_WORD_LENGTH}
          AND word !~ '[0-9./@:_]'
          AND word <> ALL(%(stopwords)s)
        ORDER BY ndoc DESC, nentry DESC, word
        LIMIT {MAX_THEMES}
        """,  # noqa: S608
        {"documents": documents, "stopwords": sorted(STOPWORDS)},
    )
    themes = [
        {
            "term": word,
            "reflections": min(total, ndoc * step),
            "mentions": nentry * step,
            "approximate": step > 1,
            "quotes": [],
        }
        for word, ndoc, nentry in cursor.fetchall()
    ]
    if not themes:
        return themes
    # The newest few reflections behind each word: a backward scan of the period by time that
    # stops at the fourth match, which for a frequent word comes soon.
    cursor.execute(
        f"""
        SELECT t.n, q.* FROM unnest(%(terms)s::text[]) WITH ORDINALITY AS t(term, n)
        CROSS JOIN LATERAL (
            SELECT r.id, r.public_id, r.text, r.author_id, r.author_role, r.identity,
                   r.first_name, r.created, r.cycle_id, u.first_name, u.last_name, u.username
            FROM {t["reflection"]} r LEFT JOIN {t["user"]} u ON u.id = r.author_id
            WHERE {PERIOD}
              AND to_tsvector('simple', r.text) @@ plainto_tsquery('simple', t.term)
            ORDER BY r.created DESC, r.id DESC
            LIMIT {QUOTES_PER_THEME * 2}
        ) q (id, public_id, text, author_id, author_role, identity, resident_name, created,
             cycle_id, first_name, last_name, username)
        ORDER BY t.n, q.created DESC, q.id DESC
        """,  # noqa: S608
        {**params, "terms": [theme["term"] for theme in themes]},
    )
    used: set[int] = set()
    candidates: dict[int, list[tuple[Any, ...]]] = {}
    for n, *row in cursor.fetchall():
        candidates.setdefault(n - 1, []).append(tuple(row))
    for index, theme in enumerate(themes):
        rows = candidates.get(index, [])
        # Prefer reflections not quoted for another theme yet.
        ordered = [r for r in rows if r[0] not in used] + [r for r in rows if r[0] in used]
        for row in ordered[:QUOTES_PER_THEME]:
            pk, public_id, text, author_id, role, identity, resident_name, created, cycle_id = row[
                :9
            ]
            used.add(pk)
            cycle = cycles[cycle_id]
            theme["quotes"].append(
                {
                    "reflection": str(public_id),
                    "cycle": cycle.as_json(),
                    "author": _author(
                        author_id, role, identity, resident_name, cycle.engagement_id, row[9:]
                    ),
                    "role": role,
                    "excerpt": excerpt(text, theme["term"]),
                    "created": _iso(created),
                }
            )
    return themes


def _moves(
    cursor: Any, params: dict[str, Any], cycles: dict[int, _Cycle]
) -> tuple[list[dict[str, Any]], int]:
    t = _tables()
    cursor.execute(
        f"""
        SELECT m.cycle_id, fs.name, ts.name, m.moved_at, count(*) OVER ()
        FROM {t["move"]} m
        LEFT JOIN {t["stage"]} fs ON fs.id = m.from_stage_id
        JOIN {t["stage"]} ts ON ts.id = m.to_stage_id
        WHERE m.cycle_id = ANY(%(cycles)s) AND m.moved_at >= %(start)s AND m.moved_at < %(end)s
        ORDER BY m.moved_at DESC, m.id DESC
        LIMIT {MAX_ITEMS}
        """,  # noqa: S608
        params,
    )
    rows = cursor.fetchall()
    items = [
        {"cycle": cycles[cycle_id].as_json(), "from": before, "to": after, "at": _iso(at)}
        for cycle_id, before, after, at, _total in rows
    ]
    return items, rows[0][4] if rows else 0


def _adaptations(
    cursor: Any, params: dict[str, Any], cycles: dict[int, _Cycle]
) -> tuple[list[dict[str, Any]], int]:
    t = _tables()
    cursor.execute(
        f"""
        SELECT a.public_id, a.cycle_id, left(a.what_changed, {TEXT_CHARS + 1}), a.status,
               a.decided_on, a.created, count(*) OVER ()
        FROM {t["adaptation"]} a
        WHERE a.cycle_id = ANY(%(cycles)s) AND a.created >= %(start)s AND a.created < %(end)s
        ORDER BY a.created DESC, a.id DESC
        LIMIT {MAX_ITEMS}
        """,  # noqa: S608
        params,
    )
    rows = cursor.fetchall()
    items = [
        {
            "id": str(public_id),
            "cycle": cycles[cycle_id].as_json(),
            "what_changed": text[:TEXT_CHARS],
            "truncated": len(text) > TEXT_CHARS,
            "status": status,
            "decided_on": decided_on.isoformat(),
            "created": _iso(created),
        }
        for public_id, cycle_id, text, status, decided_on, created, _total in rows
    ]
    return items, rows[0][6] if rows else 0


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value is not None else None


def _author(
    author_id: int | None,
    role: str,
    identity: str,
    resident_name: str,
    engagement_id: int,
    user_names: Sequence[str | None],
) -> dict[str, str]:
    """Who wrote it, as the journal shows it (``selectors.reflection_entry``), kept neutral.

    Only what the reader may see is stored: a name for named reflections, the pseudonym's code
    for pseudonymous ones, nothing for anonymous ones.
    """
    if role == Reflection.AuthorRole.RESIDENT:
        named = identity == Reflection.Identity.NAMED and resident_name
        return {"kind": "resident", "name": resident_name if named else ""}
    if identity == Reflection.Identity.NAMED:
        if author_id is None:
            return {"kind": "named", "name": ""}
        first, last, username = user_names
        person = get_user_model()(
            first_name=first or "", last_name=last or "", username=username or ""
        )
        return {"kind": "named", "name": selectors.display_name(person)}
    if identity == Reflection.Identity.PSEUDONYMOUS and author_id is not None:
        return {"kind": "pseudonymous", "name": pseudonym_code(author_id, engagement_id)}
    return {"kind": "anonymous", "name": ""}


def pseudonym_code(user_id: int, engagement_id: int) -> str:
    """The code of ``selectors.pseudonym`` (the one rule), without its translated words."""
    with translation.override(None):
        return selectors.pseudonym(user_id, engagement_id).rsplit(" ", 1)[-1]


def author_label(author: dict[str, str]) -> str:
    """The stored author in the active language, as ``selectors.reflection_entry`` says it."""
    kind, name = author.get("kind"), author.get("name", "")
    if kind == "resident":
        return name or _("A resident")
    if kind == "named":
        return name or selectors.display_name(None)
    if kind == "pseudonymous" and name:
        return _("Participant %(code)s") % {"code": name}
    return _("Anonymous")


def excerpt(text: str, term: str, width: int = EXCERPT_CHARS) -> str:
    """A piece of ``text`` around the first whole-word ``term``, cut at spaces, with ellipses."""
    text = " ".join(text.split())
    if len(text) <= width:
        return text
    match = re.search(rf"(?<!\w){re.escape(term)}(?!\w)", text, re.IGNORECASE)
    middle = match.start() if match else 0
    start = max(0, min(middle - width // 3, len(text) - width))
    end = start + width
    if start > 0:
        space = text.find(" ", start)
        start = space + 1 if 0 <= space < middle else start
    if end < len(text):
        space = text.rfind(" ", start, end)
        end = space if space > (match.end() if match else start) else end
    return ("…" if start > 0 else "") + text[start:end].strip() + ("…" if end < len(text) else "")


def has_news(content: dict[str, Any]) -> bool:
    """Whether anything happened in the period: reflections, moves, adaptations, checks."""
    totals = content.get("totals", {})
    return any(totals.get(k) for k in ("reflections", "moves", "adaptations")) or bool(
        content.get("health_checks")
    )


def worth_emailing(content: dict[str, Any], frequency: str) -> bool:
    """A digest is emailed when something happened; a weekly one also to say cycles went
    quiet (daily, that alone would repeat every day)."""
    quiet = bool(content.get("totals", {}).get("quiet"))
    return has_news(content) or (quiet and frequency == Frequency.WEEKLY)


# --- storing, once --------------------------------------------------------------------------


def store(
    *,
    scope: str,
    owner_id: int,
    period: Period,
    content: dict[str, Any],
    start: datetime | None = None,
) -> tuple[Digest, bool]:
    """Insert the digest unless its (scope, owner, frequency, start) row exists; say which.

    ``start`` is the period's start unless an earlier digest already covered part of it (see
    :func:`covered_until`). ``INSERT ... ON CONFLICT DO NOTHING``: of two jobs that compiled
    the same period at once, one row is kept and both get it back.
    """
    start = start or period.start
    owner = {"user_id": owner_id} if scope == Digest.Scope.USER else {"engagement_id": owner_id}
    digest = Digest(
        scope=scope,
        frequency=period.frequency,
        period_start=start,
        period_end=period.end,
        timezone=period.timezone,
        content=content,
        **owner,
    )
    Digest.objects.bulk_create([digest], ignore_conflicts=True)
    kept = Digest.objects.get(scope=scope, frequency=period.frequency, period_start=start, **owner)
    return kept, kept.public_id == digest.public_id


def covered_until(scope: str, owner_id: int, frequency: str) -> datetime | None:
    """The end of the owner's latest digest of this frequency: no digest covers time twice.

    Periods follow the person's time zone and weekday as they are now. After a change, the
    latest period may overlap one already sent: if that digest reaches the period's end, the
    period is done; if it reaches part of it, the new digest starts where it ended, so nothing
    is sent twice and nothing falls between two digests.
    """
    owner = {"user_id": owner_id} if scope == Digest.Scope.USER else {"engagement_id": owner_id}
    found = Digest.objects.filter(scope=scope, frequency=frequency, **owner).aggregate(
        end=Max("period_end")
    )
    return found["end"]


def _subscribers() -> QuerySet[Profile]:
    """Profiles of people who want digests and can get them."""
    return (
        Profile.objects.exclude(digest=Frequency.OFF)
        .filter(erased=None, user__is_active=True)
        .exclude(user__email="")
    )


def _facilitator_recipients(engagement: Engagement) -> list[mail.Recipient]:
    """The engagement's facilitators (still at its learning partner) whose digest is not off."""
    people = (
        _subscribers()
        .filter(
            user__facilitated_engagements=engagement,
            user__memberships__organisation_id=engagement.learning_partner_id,
        )
        .values_list("user__email", "user_id")
        .distinct()
        .order_by("user_id")
    )
    return [mail.Recipient(email, user_id) for email, user_id in people]


@dataclass(frozen=True)
class Due:
    scope: str
    owner_id: int
    period: Period

    def task_args(self) -> tuple[Any, ...]:
        return (
            self.scope,
            self.owner_id,
            self.period.frequency,
            self.period.first_day.isoformat(),
            self.period.timezone,
        )


def due(now: datetime | None = None) -> list[Due]:
    """Every subscriber's and running engagement's latest due period that has no digest yet."""
    now = now or timezone.now()
    wanted: list[Due] = []
    for user_id, frequency, weekday, tz in _subscribers().values_list(
        "user_id", "digest", "digest_weekday", "timezone"
    ):
        period = latest_period(frequency, zone(tz).key, now, weekday)
        wanted.append(Due(Digest.Scope.USER, user_id, period))
    for engagement_id, tz, starts_on, ends_on in Engagement.objects.values_list(
        "id", "timezone", "starts_on", "ends_on"
    ):
        period = latest_period(Frequency.WEEKLY, zone(tz).key, now, ENGAGEMENT_WEEKDAY)
        running = (starts_on is None or starts_on <= period.last_day) and (
            ends_on is None or ends_on >= period.first_day
        )
        if running:
            wanted.append(Due(Digest.Scope.ENGAGEMENT, engagement_id, period))
    if not wanted:
        return []
    # The end of each owner's latest digest, among those that could reach a wanted period's
    # end (see covered_until): a period ending before it is done already.
    earliest = min(item.period.end for item in wanted)
    ends = {
        (scope, user, engagement, frequency): end
        for scope, user, engagement, frequency, end in Digest.objects.filter(
            period_end__gte=earliest
        )
        .values_list("scope", "user_id", "engagement_id", "frequency")
        .annotate(end=Max("period_end"))
        .order_by()
    }

    def covered(item: Due) -> bool:
        user = item.owner_id if item.scope == Digest.Scope.USER else None
        engagement = item.owner_id if item.scope == Digest.Scope.ENGAGEMENT else None
        end = ends.get((item.scope, user, engagement, item.period.frequency))
        return end is not None and end >= item.period.end

    return [item for item in wanted if not covered(item)]


def enqueue_due(now: datetime | None = None) -> int:
    """Hand each missing digest to a compile job. A broker outage loses nothing: the next beat
    finds the same digests still missing."""
    from engagements.tasks import compile_digest

    items = due(now)
    for index, item in enumerate(items):
        try:
            compile_digest.apply_async(args=item.task_args(), retry=False)
        except Exception:
            log.warning("broker unreachable; %d digests left for the next beat", len(items) - index)
            return index
    return len(items)


def make_digest(
    scope: str,
    owner_id: int,
    frequency: str,
    first_day: str,
    timezone_name: str,
    *,
    now: datetime | None = None,
) -> Digest | None:
    """Compile, store and plan the emails of one due digest; nothing if it exists or is not
    (or no longer) wanted. Safe to run twice, or twice at once."""
    now = now or timezone.now()
    if frequency not in (Frequency.DAILY, Frequency.WEEKLY):
        return None
    try:
        period = Period.starting(frequency, zone(timezone_name).key, date.fromisoformat(first_day))
    except ValueError:
        return None
    covered = covered_until(scope, owner_id, frequency)
    if now < period.due or (covered is not None and covered >= period.end):
        return None
    start = max(period.start, covered) if covered is not None else period.start
    if scope == Digest.Scope.USER:
        profile = _subscribers().filter(user_id=owner_id).select_related("user").first()
        if profile is None or profile.digest != frequency:
            return None
        content = compile_user_digest(profile.user, start, period.end)
        recipients = [mail.Recipient(profile.user.email, profile.user_id)]
        engagement_id = None
    elif scope == Digest.Scope.ENGAGEMENT and frequency == Frequency.WEEKLY:
        engagement = Engagement.objects.filter(pk=owner_id).first()
        if engagement is None:
            return None
        content = compile_engagement_digest(engagement, start, period.end)
        recipients = _facilitator_recipients(engagement)
        engagement_id = engagement.pk
    else:
        return None
    with transaction.atomic():
        # One job at a time per owner and frequency, so two overlapping periods (a time zone
        # changed between beats) cannot both be kept.
        lock_key = f"digest:{scope}:{owner_id}:{frequency}"
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [lock_key])
        if covered_until(scope, owner_id, frequency) != covered:
            return None  # another job kept a digest meanwhile; the next beat looks again
        digest, created = store(
            scope=scope, owner_id=owner_id, period=period, content=content, start=start
        )
        if created and worth_emailing(content, frequency):
            mail.plan(
                Email.Kind.DIGEST,
                digest.pk,
                period.key,
                recipients,
                engagement_id=engagement_id,
            )
    return digest


# --- reading --------------------------------------------------------------------------------


def digests_for(user: Any) -> QuerySet[Digest]:
    """The person's own digests and those of the engagements they facilitate."""
    if not user.is_authenticated:
        return Digest.objects.none()
    return Digest.objects.filter(
        Q(scope=Digest.Scope.USER, user_id=user.pk)
        | Q(
            scope=Digest.Scope.ENGAGEMENT,
            engagement_id__in=access._facilitated_engagement_ids(user),
        )
    )


def digest_for(user: Any, public_id: uuid.UUID | str) -> Digest:
    """One digest the person may read; anyone else gets 404 (and an audit event)."""
    digest = digests_for(user).select_related("engagement").filter(public_id=public_id).first()
    if digest is None:
        access.deny(user, "digest", public_id)
    return digest


@dataclass
class Breakdown:
    label: str
    reflections: int | None
    contributors: int | None
    suppressed: bool


@dataclass
class Entry:
    """A reflection, quote, move, adaptation or quiet cycle, ready for a template."""

    cycle: dict[str, Any]
    text: str = ""
    author: str = ""
    role: str = ""
    when: datetime | None = None
    truncated: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Theme:
    term: str
    reflections: int
    mentions: int
    quotes: list[Entry]
    approximate: bool = False

    @property
    def about(self) -> int:
        """The count as a sample can tell it: two significant figures."""
        return int(float(f"{self.reflections:.2g}")) if self.approximate else self.reflections


@dataclass
class DigestView:
    digest: Digest
    title: str
    timezone: str
    totals: dict[str, int]
    reflections: list[Entry]
    themes: list[Theme]
    by_role: list[Breakdown]
    by_organisation: list[Breakdown]
    moves: list[Entry]
    adaptations: list[Entry]
    quiet: list[Entry]
    health_checks: list[Any]
    quiet_weeks: int
    min_contributors: int
    has_news: bool
    many_engagements: bool

    @property
    def is_engagement(self) -> bool:
        return self.digest.scope == Digest.Scope.ENGAGEMENT

    @property
    def breakdowns(self) -> list[tuple[str, str, list[Breakdown]]]:
        """(caption, first column's header, rows) of each breakdown with rows."""
        tables = [
            (_("Reflections by author role"), _("Role"), self.by_role),
            (_("Reflections by organisation"), _("Organisation"), self.by_organisation),
        ]
        return [table for table in tables if table[2]]

    @property
    def more_reflections(self) -> int:
        return max(0, self.totals.get("reflections", 0) - len(self.reflections))

    @property
    def more_moves(self) -> int:
        return max(0, self.totals.get("moves", 0) - len(self.moves))

    @property
    def more_adaptations(self) -> int:
        return max(0, self.totals.get("adaptations", 0) - len(self.adaptations))

    @property
    def more_quiet(self) -> int:
        return max(0, self.totals.get("quiet", 0) - len(self.quiet))


def _when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def digest_title(digest: Digest) -> str:
    first = timezone.localtime(digest.period_start, zone(digest.timezone)).date()
    last = timezone.localtime(digest.period_end, zone(digest.timezone)).date() - timedelta(days=1)
    dates = _date_range(first, last)
    if digest.scope == Digest.Scope.ENGAGEMENT and digest.engagement is not None:
        return _("%(engagement)s: learning digest, %(dates)s") % {
            "engagement": digest.engagement.title,
            "dates": dates,
        }
    if digest.frequency == Frequency.DAILY:
        return _("Your daily learning digest, %(dates)s") % {"dates": dates}
    return _("Your weekly learning digest, %(dates)s") % {"dates": dates}


def _date_range(first: date, last: date) -> str:
    # "E" is the month as a date says it: "March" in English, "березня" in Ukrainian.
    if first == last:
        return date_format(first, "j E Y")
    return _("%(first)s to %(last)s") % {
        "first": date_format(first, "j E Y"),
        "last": date_format(last, "j E Y"),
    }


def _current_texts(content: dict[str, Any]) -> dict[str, str]:
    """The digest's reflections as they stand now, by public id: published ones only.

    A digest is kept, but words withdrawn, hidden, removed in part or deleted by retention
    since it was compiled must not live on in it; one query finds what is still there.
    """
    ids = {item.get("id") for item in content.get("reflections", [])}
    for theme in content.get("themes", []):
        ids.update(quote.get("reflection") for quote in theme.get("quotes", []))
    wanted = [value for value in ids if value]
    if not wanted:
        return {}
    return {
        str(public_id): text
        for public_id, text in Reflection.objects.filter(
            public_id__in=wanted, moderation=Reflection.Moderation.PUBLISHED
        ).values_list("public_id", "text")
    }


def _still_there(
    items: Iterable[dict[str, Any]], key: str, texts: dict[str, str], field: str
) -> list[dict[str, Any]]:
    """The stored items whose reflection still stands, with its words as they are now."""
    kept = []
    for item in items:
        now = texts.get(str(item.get(key)))
        if now is None:
            continue
        stored = str(item.get(field, "")).strip("…").strip()
        if stored and stored not in now and stored not in " ".join(now.split()):
            # Changed since (a part removed): its words as they are now.
            item = {**item, field: now[:TEXT_CHARS], "truncated": len(now) > TEXT_CHARS}
        kept.append(item)
    return kept


def _cycle_id(item: dict[str, Any]) -> str:
    return str((item.get("cycle") or {}).get("id", ""))


def _for_reader(content: dict[str, Any], reader: Any) -> dict[str, Any]:
    """The content with only the cycles ``reader`` may see now (``access.cycles_for``).

    A kept digest outlives the access it was compiled under: someone who has since left an
    organisation no longer reads its cycles' words, stage moves or adaptations in it.
    """
    lists = ("reflections", "moves", "adaptations", "quiet")
    named = {_cycle_id(item) for key in lists for item in content.get(key, [])}
    for theme in content.get("themes", []):
        named.update(_cycle_id(quote) for quote in theme.get("quotes", []))
    named.update(_cycle_id(item) for item in content.get("health_checks", []))
    named.discard("")
    visible = {
        str(public_id)
        for public_id in access.cycles_for(reader)
        .filter(public_id__in=named)
        .values_list("public_id", flat=True)
    }
    content = {
        **content,
        **{key: [i for i in content.get(key, []) if _cycle_id(i) in visible] for key in lists},
    }
    content["themes"] = [
        {**theme, "quotes": [q for q in theme.get("quotes", []) if _cycle_id(q) in visible]}
        for theme in content.get("themes", [])
    ]
    # A round of a whole engagement names no cycle: it stays.
    content["health_checks"] = [
        item
        for item in content.get("health_checks", [])
        if not item.get("cycle") or _cycle_id(item) in visible
    ]
    return content


def present(digest: Digest, reader: Any = None) -> DigestView:
    """The stored content with labels in the active language (times stay aware, in UTC).

    Reflections and quotes are shown only while they still stand (see ``_current_texts``);
    with a ``reader``, only of the cycles they may see now (see ``_for_reader``).
    """
    content = dict(digest.content or {})
    if reader is not None:
        content = _for_reader(content, reader)
    texts = _current_texts(content)
    content["reflections"] = _still_there(content.get("reflections", []), "id", texts, "text")
    content["themes"] = [
        {
            **theme,
            "quotes": _still_there(theme.get("quotes", []), "reflection", texts, "excerpt"),
        }
        for theme in content.get("themes", [])
    ]
    roles = dict(Reflection.AuthorRole.choices)
    statuses = dict(Adaptation.Status.choices)
    tz = zone(digest.timezone)

    def reflection(item: dict[str, Any], text_key: str = "text") -> Entry:
        return Entry(
            cycle=item.get("cycle", {}),
            text=item.get(text_key, ""),
            author=author_label(item.get("author", {})),
            role=str(roles.get(item.get("role", ""), "")),
            when=_when(item.get("created")),
            truncated=bool(item.get("truncated")),
        )

    def breakdown(rows: Iterable[dict[str, Any]], name: str) -> list[Breakdown]:
        return [
            Breakdown(
                str(roles.get(row[name], row[name])) if name == "role" else row[name],
                row.get("reflections"),
                row.get("contributors"),
                bool(row.get("suppressed")),
            )
            for row in rows
        ]

    cycles = [item.get("cycle", {}) for item in content.get("reflections", [])]
    engagements = {c.get("engagement") for c in cycles}
    return DigestView(
        digest=digest,
        title=digest_title(digest),
        timezone=tz.key,
        totals=content.get("totals", {}),
        reflections=[reflection(item) for item in content.get("reflections", [])],
        themes=[
            Theme(
                theme["term"],
                theme.get("reflections", 0),
                theme.get("mentions", 0),
                [reflection(q, "excerpt") for q in theme.get("quotes", [])],
                bool(theme.get("approximate")),
            )
            for theme in content.get("themes", [])
        ],
        by_role=breakdown(content.get("by_role", []), "role"),
        by_organisation=breakdown(content.get("by_organisation", []), "organisation"),
        moves=[
            Entry(
                cycle=item["cycle"],
                when=_when(item.get("at")),
                extra={"from": item.get("from"), "to": item.get("to")},
            )
            for item in content.get("moves", [])
        ],
        adaptations=[
            Entry(
                cycle=item["cycle"],
                text=item.get("what_changed", ""),
                when=_when(item.get("created")),
                truncated=bool(item.get("truncated")),
                extra={
                    "status": str(statuses.get(item.get("status", ""), "")),
                    "decided_on": date.fromisoformat(item["decided_on"])
                    if item.get("decided_on")
                    else None,
                },
            )
            for item in content.get("adaptations", [])
        ],
        quiet=[
            Entry(
                cycle=item["cycle"],
                when=_when(item.get("last_reflection")),
                extra={"since": _when(item.get("since"))},
            )
            for item in content.get("quiet", [])
        ],
        health_checks=[
            health.Headline.from_json(item) for item in content.get("health_checks", [])
        ],
        quiet_weeks=int(content.get("quiet_weeks", QUIET_WEEKS)),
        min_contributors=int(content.get("min_contributors", MIN_CONTRIBUTORS)),
        has_news=has_news(content),
        many_engagements=len(engagements) > 1,
    )


# --- emailing -------------------------------------------------------------------------------


def _still_wanted(rows: Sequence[Email], digests: dict[int, Digest]) -> set[int]:
    """Rows whose recipient still wants digests and may still read this one."""
    user_ids = {row.user_id for row in rows if row.user_id is not None}
    wanting = set(_subscribers().filter(user_id__in=user_ids).values_list("user_id", flat=True))
    engagement_ids = {d.engagement_id for d in digests.values() if d.engagement_id is not None}
    # Facilitating, as access says it: named a facilitator and still at the learning partner.
    facilitating = set(
        Engagement.facilitators.through.objects.filter(
            engagement_id__in=engagement_ids,
            user_id__in=user_ids,
            user__memberships__organisation_id=F("engagement__learning_partner_id"),
        ).values_list("engagement_id", "user_id")
    )
    ok = set()
    for row in rows:
        digest = digests.get(row.object_id)
        if digest is None or row.user_id not in wanting:
            continue
        if (digest.scope == Digest.Scope.USER and digest.user_id == row.user_id) or (
            digest.scope == Digest.Scope.ENGAGEMENT
            and (digest.engagement_id, row.user_id) in facilitating
        ):
            ok.add(row.pk)
    return ok


@mail.builder(Email.Kind.DIGEST)
def build_emails(rows: Sequence[Email]) -> dict[int, EmailMessage | None]:
    """One message per ledger row, in the recipient's language; None when no longer wanted."""
    digests = {
        d.pk: d
        for d in Digest.objects.filter(pk__in={row.object_id for row in rows}).select_related(
            "engagement", "user"
        )
    }
    languages = dict(
        Profile.objects.filter(user_id__in={row.user_id for row in rows}).values_list(
            "user_id", "language"
        )
    )
    wanted = _still_wanted(rows, digests)
    codes = dict(settings.LANGUAGES)
    # An engagement digest reads the same for every facilitator of one language: made once.
    rendered: dict[tuple[int, str], tuple[str, str, str]] = {}
    messages: dict[int, EmailMessage | None] = {}
    for row in rows:
        if row.pk not in wanted:
            messages[row.pk] = None
            continue
        digest = digests[row.object_id]
        language = (languages.get(row.user_id) if row.user_id else None) or settings.LANGUAGE_CODE
        if language not in codes:
            language = settings.LANGUAGE_CODE
        key = (digest.pk, language)
        if key not in rendered:
            rendered[key] = _render(digest, language)
        subject, text, html = rendered[key]
        # A message of its own per row: the ledger sets its recipient and Message-ID.
        message = EmailMultiAlternatives(subject, text, to=[])
        message.attach_alternative(html, "text/html")
        messages[row.pk] = message
    return messages


def _render(digest: Digest, language: str) -> tuple[str, str, str]:
    """The digest email's subject, text and HTML in ``language``."""
    # A personal digest has one reader, who may have lost access since it was compiled; an
    # engagement digest goes only to those who still facilitate it (_still_wanted).
    reader = digest.user if digest.scope == Digest.Scope.USER else None
    with translation.override(language), timezone.override(zone(digest.timezone)):
        view = present(digest, reader)
        context = {
            "view": view,
            "base_url": settings.SITE_URL,
            "link": settings.SITE_URL + reverse("engagements:digest", args=[digest.public_id]),
            "preferences": settings.SITE_URL + reverse("accounts:preferences"),
            "LANGUAGE_CODE": language,
        }
        subject = " ".join(render_to_string("emails/digest_subject.txt", context).split())
        text = render_to_string("emails/digest.txt", context)
        html = render_to_string("emails/digest.html", context)
    return subject, text, html
