"""Searching the case library: PostgreSQL full-text search, facets with counts, and "did you
mean" built from the library's own words (no contrib extension: the embedded PostgreSQL has
none).

Ranking weighs a match in the title (or organisation) above the summary, and the summary above
the rest. Within a facet, chosen values are alternatives (OR); across facets they all apply
(AND). Each facet's counts apply every other facet's choices but not its own, so the number
beside a value is the number of results a click on it gives.
"""

from __future__ import annotations

import re
import time
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.contrib.postgres.search import SearchHeadline, SearchQuery, SearchRank
from django.db import connection
from django.db.models import F, QuerySet, Value
from django.db.models.functions import Coalesce, NullIf
from django.utils import translation
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe
from rapidfuzz import fuzz, process

from cases.models import SEARCH_CONFIG, CaseStudy
from engagements.access import AnyUser, is_facilitator

MAX_QUERY = 200  # characters of a search that count; the rest is ignored
PAGE_SIZE = 20


@dataclass(frozen=True)
class Facet:
    name: str
    column: str
    array: bool = False


FACETS = (
    Facet("sector", "sectors", array=True),
    Facet("scale", "scale"),
    Facet("country", "country"),
    Facet("organisation_type", "organisation_type"),
    Facet("principle", "principles", array=True),
    Facet("evidence", "evidence"),
)
FACET_NAMES = tuple(facet.name for facet in FACETS)


def visible_cases(user: AnyUser) -> QuerySet[CaseStudy]:
    """Facilitators see drafts too; everyone else sees published cases only."""
    cases = CaseStudy.objects.all()
    return cases if is_facilitator(user) else cases.filter(published=True)


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


def clean_query(raw: str) -> str:
    """What of a typed search counts: no control or direction characters, one space between
    words, at most MAX_QUERY characters."""
    text = _CONTROL.sub(" ", unicodedata.normalize("NFC", raw or ""))
    return " ".join(text.split())[:MAX_QUERY]


def has_words(query: str) -> bool:
    return any(ch.isalnum() for ch in query)


def clean_filters(params: Mapping[str, Iterable[str]]) -> dict[str, list[str]]:
    """The facet choices from a query string: known facets only, short values, no duplicates."""
    chosen: dict[str, list[str]] = {}
    for name in FACET_NAMES:
        values = []
        for value in params.get(name, []):
            value = clean_query(value)[:100]
            if value and value not in values:
                values.append(value)
        if values:
            chosen[name] = values[:20]
    return chosen


@dataclass
class Hit:
    case: CaseStudy
    snippet: SafeString
    title: str = ""  # in the reader's language when the case has a translation
    title_lang: str = "en"
    lang: str = "en"  # the snippet's


def _reads_ukrainian() -> bool:
    return (translation.get_language() or "").startswith("uk")


@dataclass
class Results:
    query: str
    filters: dict[str, list[str]]
    total: int
    hits: list[Hit]
    facets: dict[str, list[tuple[str, int, bool]]]  # facet -> (value, count, chosen)
    page: int
    pages: int
    suggestion: str = ""  # "did you mean", from the library's own words
    corrected_from: str = ""  # the query as typed, when the results are for the suggestion
    searched: str = field(default="")  # the query the results are for


_START, _STOP = "\u2997", "\u2998"  # markers no case text uses; escaped text gets <mark> there


def _highlight(text: str) -> SafeString:
    marked = escape(text).replace(_START, "<mark>").replace(_STOP, "</mark>")
    return mark_safe(marked)  # noqa: S308 - the text is escaped; only our <mark> tags are added


def _tsquery(query: str) -> SearchQuery:
    return SearchQuery(query, search_type="websearch", config=SEARCH_CONFIG)


def _filtered(cases: QuerySet[CaseStudy], filters: dict[str, list[str]]) -> QuerySet[CaseStudy]:
    for facet in FACETS:
        values = filters.get(facet.name)
        if values:
            lookup = f"{facet.column}__overlap" if facet.array else f"{facet.column}__in"
            cases = cases.filter(**{lookup: values})
    return cases


def search(
    user: AnyUser,
    query: str,
    filters: dict[str, list[str]],
    page: int = 1,
    *,
    correct: bool = True,
) -> Results:
    """The results for ``query``; when it finds nothing and a correction does, the results for
    the correction (unless ``correct`` is off: "search for what I typed instead")."""
    query = clean_query(query)
    results = _search(user, query, filters, page)
    if query and has_words(query):
        suggestion = suggest(query)
        if suggestion and results.total == 0 and correct:
            corrected = _search(user, suggestion, filters, page)
            if corrected.total:
                corrected.corrected_from = query
                return corrected
        results.suggestion = suggestion
    return results


def _search(user: AnyUser, query: str, filters: dict[str, list[str]], page: int) -> Results:
    cases = visible_cases(user)
    tsquery = _tsquery(query) if has_words(query) else None
    if tsquery is not None:
        cases = cases.filter(search=tsquery)
    matching = cases
    chosen = _filtered(cases, filters)
    total = chosen.count()
    pages = max(1, -(-total // PAGE_SIZE))
    page = min(max(1, page), pages)
    start = (page - 1) * PAGE_SIZE
    ukrainian = _reads_ukrainian()
    # A reader of Ukrainian gets the translated summary where there is one.
    summary: Any = Coalesce(NullIf("summary_uk", Value("")), "summary") if ukrainian else "summary"
    if tsquery is not None:
        ordered = chosen.annotate(
            rank=SearchRank(F("search"), tsquery),
            snippet=SearchHeadline(
                summary,
                tsquery,
                config=SEARCH_CONFIG,
                start_sel=_START,
                stop_sel=_STOP,
                max_words=40,
                min_words=15,
                highlight_all=True,
            ),
        ).order_by("-rank", "title", "pk")
        ranked: list[Any] = list(ordered[start : start + PAGE_SIZE])
        hits = [Hit(case, _highlight(case.snippet)) for case in ranked]
    else:
        page_cases = list(chosen.order_by("title", "pk")[start : start + PAGE_SIZE])
        hits = [
            Hit(
                case, _highlight(case.summary_uk if ukrainian and case.summary_uk else case.summary)
            )
            for case in page_cases
        ]
    for hit in hits:
        hit.title = (hit.case.title_uk if ukrainian else "") or hit.case.title
        hit.title_lang = "uk" if ukrainian and hit.case.title_uk else "en"
        hit.lang = "uk" if ukrainian and hit.case.summary_uk else "en"
    return Results(
        query=query,
        filters=filters,
        total=total,
        hits=hits,
        facets=facet_counts(matching, filters),
        page=page,
        pages=pages,
        searched=query,
    )


def facet_counts(
    matching: QuerySet[CaseStudy], filters: dict[str, list[str]]
) -> dict[str, list[tuple[str, int, bool]]]:
    """Every facet's values with their counts, in one query over the matching cases."""
    hits_sql, hits_params = matching.values("id").query.sql_with_params()
    table = CaseStudy._meta.db_table
    parts: list[str] = []
    params: list[Any] = []
    for facet in FACETS:
        conditions: list[str] = []
        condition_params: list[Any] = []
        for other in FACETS:
            values = filters.get(other.name)
            if other is facet or not values:
                continue
            operator = "&&" if other.array else "= ANY"
            conditions.append(f"c.{other.column} {operator} (%s)")
            condition_params.append(list(values))
        where = " AND ".join(conditions) or "TRUE"
        value = "v" if facet.array else f"c.{facet.column}"
        source = f", unnest(c.{facet.column}) v" if facet.array else ""
        parts.append(
            # DISTINCT: a case naming a sector or principle twice is still one result.
            f"SELECT %s AS facet, {value}::text AS value, count(DISTINCT c.id) AS n "  # noqa: S608
            f"FROM hits c{source} WHERE {where} AND {value} <> '' GROUP BY {value}"
        )
        params += [facet.name, *condition_params]
    sql = (
        f"WITH hits AS (SELECT * FROM {table} WHERE id IN ({hits_sql})) "  # noqa: S608
        + " UNION ALL ".join(parts)
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*hits_params, *params])
        rows = cursor.fetchall()
    counts: dict[str, list[tuple[str, int, bool]]] = {facet.name: [] for facet in FACETS}
    for name, value, n in rows:
        counts[name].append((value, n, value in filters.get(name, [])))
    for name, options in counts.items():
        known = {value for value, _n, _chosen in options}
        # A chosen value with no results left still shows, at 0, so it can be unticked.
        options.extend((value, 0, True) for value in filters.get(name, []) if value not in known)
        options.sort(key=lambda item: (-item[1], item[0].lower()))
    return counts


# --- "did you mean" ----------------------------------------------------------------------------

_VOCABULARY_SECONDS = 300
_vocabulary: tuple[float, frozenset[str], list[str]] | None = None
_WORD = re.compile(r"\w+", re.UNICODE)


def vocabulary() -> tuple[frozenset[str], list[str]]:
    """The published library's words, unstemmed (PostgreSQL's ts_stat over a simple
    tsvector), kept for five minutes in each process."""
    global _vocabulary
    now = time.monotonic()
    if _vocabulary is None or now - _vocabulary[0] > _VOCABULARY_SECONDS:
        table = CaseStudy._meta.db_table
        inner = (
            "SELECT to_tsvector('simple', concat_ws(' ', title, organisation, place, country, "  # noqa: S608
            "array_to_string(sectors, ' '), summary, overview, story_of_change, title_uk, "
            f"summary_uk, overview_uk, story_of_change_uk)) FROM {table} WHERE published"
        )
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT word FROM ts_stat(%s) WHERE length(word) >= 3 ORDER BY ndoc DESC",
                [inner],
            )
            words = [row[0] for row in cursor.fetchall() if row[0].isalpha()]
        _vocabulary = (now, frozenset(words), words)
    return _vocabulary[1], _vocabulary[2]


def forget_vocabulary() -> None:
    global _vocabulary
    _vocabulary = None


def suggest(query: str) -> str:
    """The query with each unknown word replaced by the library's closest word, or ""."""
    known, words = vocabulary()
    if not words:
        return ""
    changed = False

    def replace(match: re.Match[str]) -> str:
        nonlocal changed
        word = match.group(0)
        lower = word.lower()
        if len(lower) < 4 or lower in known or not lower.isalpha():
            return word
        best = process.extractOne(lower, words, scorer=fuzz.ratio, score_cutoff=80)
        if best is None:
            return word
        changed = True
        return str(best[0]).capitalize() if word[:1].isupper() else str(best[0])

    suggestion = _WORD.sub(replace, query)
    if not changed or _same_search(query, suggestion):
        # "councils" is not a typo of "council": both search for the same stems.
        return ""
    return suggestion


def _same_search(query: str, other: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT websearch_to_tsquery(%s::regconfig, %s)::text "
            "= websearch_to_tsquery(%s::regconfig, %s)::text",
            [SEARCH_CONFIG, query, SEARCH_CONFIG, other],
        )
        return bool(cursor.fetchone()[0])


def related_to_text(
    user: AnyUser, text: str, *, limit: int = 3
) -> list[tuple[CaseStudy, list[str]]]:
    """Published cases most like ``text`` (a cycle's question and recent reflections), each
    with the shared words that made it come up."""
    words = [w.lower() for w in _WORD.findall(text or "") if len(w) >= 4 and w.isalpha()]
    if not words:
        return []
    unique = list(dict.fromkeys(words))[:60]
    query = SearchQuery(" OR ".join(unique), search_type="websearch", config=SEARCH_CONFIG)
    found = list(
        CaseStudy.objects.filter(published=True, search=query)
        .annotate(rank=SearchRank(F("search"), query))
        .order_by("-rank", "title")[:limit]
    )
    if not found:
        return []
    related: list[tuple[CaseStudy, list[str]]] = []
    with connection.cursor() as cursor:
        for case in found:
            cursor.execute(
                "SELECT array_agg(DISTINCT w) FROM unnest(%s::text[]) w "
                "WHERE to_tsvector(%s::regconfig, %s) @@ plainto_tsquery(%s::regconfig, w)",
                [unique, SEARCH_CONFIG, _case_text(case), SEARCH_CONFIG],
            )
            shared = sorted(cursor.fetchone()[0] or [])[:5]
            related.append((case, shared))
    return related


def _case_text(case: CaseStudy) -> str:
    return " ".join(
        [
            case.title,
            case.organisation,
            case.summary,
            case.overview,
            case.story_of_change,
            case.place,
            case.title_uk,
            case.summary_uk,
            case.overview_uk,
            case.story_of_change_uk,
        ]
    )


def results_params(results: Results, **changes: Any) -> dict[str, Any]:
    params: dict[str, Any] = {"q": results.searched} if results.searched else {}
    params.update(results.filters)
    params.update(changes)
    return {key: value for key, value in params.items() if value not in ("", None, [])}
