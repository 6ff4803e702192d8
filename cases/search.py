"""Searching the case library: PostgreSQL full-text search, facets with counts, and "did you
mean" built from the library's own words (no contrib extension: the embedded PostgreSQL has
none).

Ranking weighs a match in the title (or organisation) above the summary, and the summary above
the rest. Within a facet, chosen values are alternatives (OR); across facets they all apply
(AND). Each facet's counts apply every other facet's choices but not its own, so the number
beside a value is the number of results a click on it gives.
"""

from __future__ import annotations

import contextlib
import re
import time
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.contrib.postgres.search import SearchHeadline, SearchQuery, SearchRank
from django.core.cache import cache
from django.db import connection
from django.db.models import Count, F, Max, QuerySet, Value
from django.db.models.expressions import RawSQL
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


def reads_ukrainian() -> bool:
    return (translation.get_language() or "").startswith("uk")


@dataclass
class Results:
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
    cases = visible_cases(user)
    results = _search(cases, query, filters, page)
    if query and has_words(query):
        suggestion = suggest(query)
        if suggestion and results.total == 0 and correct:
            corrected = _search(cases, suggestion, filters, page)
            if corrected.total:
                corrected.corrected_from = query
                return corrected
        results.suggestion = suggestion
    return results


def _search(
    cases: QuerySet[CaseStudy], query: str, filters: dict[str, list[str]], page: int
) -> Results:
    tsquery = _tsquery(query) if has_words(query) else None
    if tsquery is not None:
        cases = cases.filter(search=tsquery)
    total, facets = facet_counts(cases, filters)
    chosen = _filtered(cases, filters).only(*LISTED)
    pages = max(1, -(-total // PAGE_SIZE))
    page = min(max(1, page), pages)
    start = (page - 1) * PAGE_SIZE
    ukrainian = reads_ukrainian()
    # A reader of Ukrainian gets the translated summary where there is one.
    summary: Any = Coalesce(NullIf("summary_uk", Value("")), "summary") if ukrainian else "summary"
    if not total:
        hits: list[Hit] = []
    elif tsquery is not None:
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
        filters=filters,
        total=total,
        hits=hits,
        facets=facets,
        page=page,
        pages=pages,
        searched=query,
    )


# What a result in the list shows (the ranked query reads nothing else back).
LISTED = (
    "public_id",
    "slug",
    "title",
    "title_uk",
    "organisation",
    "place",
    "evidence",
    "published",
    "summary",
    "summary_uk",
)


def _condition(facet: Facet) -> str:
    return f"{facet.column} {'&&' if facet.array else '= ANY'} (%s)"


def facet_counts(
    matching: QuerySet[CaseStudy], filters: dict[str, list[str]]
) -> tuple[int, dict[str, list[tuple[str, int, bool]]]]:
    """The number of results, and every facet's values with their counts, in one query.

    The matching cases' facet columns are read once (the full-text match runs once), then
    counted per facet under every other facet's choices.
    """
    columns = ["id", *(facet.column for facet in FACETS)]
    hits_sql, hits_params = matching.order_by().values(*columns).query.sql_with_params()
    chosen = [facet for facet in FACETS if filters.get(facet.name)]
    parts: list[str] = []
    params: list[Any] = []
    every = " AND ".join(_condition(facet) for facet in chosen) or "TRUE"
    parts.append(f"SELECT '' AS facet, '' AS value, count(*) AS n FROM hits WHERE {every}")  # noqa: S608
    params += [list(filters[facet.name]) for facet in chosen]
    for facet in FACETS:
        others = [other for other in chosen if other is not facet]
        where = " AND ".join(_condition(other) for other in others) or "TRUE"
        if facet.array:
            # DISTINCT: a case naming a sector or principle twice is still one result.
            parts.append(
                f"SELECT %s, v, count(DISTINCT id) FROM (SELECT id, unnest({facet.column})::text AS v "  # noqa: S608
                f"FROM hits WHERE {where}) AS each_value WHERE v <> '' GROUP BY v"
            )
        else:
            parts.append(
                f"SELECT %s, {facet.column}::text, count(*) FROM hits "  # noqa: S608
                f"WHERE {where} AND {facet.column} <> '' GROUP BY {facet.column}"
            )
        params += [facet.name, *(list(filters[other.name]) for other in others)]
    sql = f"WITH hits AS MATERIALIZED ({hits_sql}) " + " UNION ALL ".join(parts)
    with connection.cursor() as cursor:
        cursor.execute(sql, [*hits_params, *params])
        rows = cursor.fetchall()
    total = 0
    counts: dict[str, list[tuple[str, int, bool]]] = {facet.name: [] for facet in FACETS}
    for name, value, n in rows:
        if name == "":
            total = n
        else:
            counts[name].append((value, n, value in filters.get(name, [])))
    for name, options in counts.items():
        known = {value for value, _n, _chosen in options}
        # A chosen value with no results left still shows, at 0, so it can be unticked.
        options.extend((value, 0, True) for value in filters.get(name, []) if value not in known)
        options.sort(key=lambda item: (-item[1], item[0].lower()))
    return total, counts


# --- "did you mean" ----------------------------------------------------------------------------

_VOCABULARY_SECONDS = 60
_vocabulary: tuple[float, str, frozenset[str], list[str]] | None = None
_WORD = re.compile(r"\w+", re.UNICODE)


def _library_version() -> str:
    """Changes whenever a case is added, edited, published or deleted."""
    state = CaseStudy.objects.aggregate(n=Count("id"), last=Max("updated"))
    return f"{state['n']}:{state['last'].timestamp() if state['last'] else 0}"


def vocabulary() -> tuple[frozenset[str], list[str]]:
    """The published library's words, unstemmed (PostgreSQL's ts_stat over a simple tsvector
    of the titles, names, places, sectors and summaries).

    Built once per version of the library and shared through the cache; each process keeps
    its copy and checks the version at most once a minute.
    """
    global _vocabulary
    now = time.monotonic()
    if _vocabulary is not None and now - _vocabulary[0] < _VOCABULARY_SECONDS:
        return _vocabulary[2], _vocabulary[3]
    version = _library_version()
    if _vocabulary is not None and _vocabulary[1] == version:
        _vocabulary = (now, version, _vocabulary[2], _vocabulary[3])
        return _vocabulary[2], _vocabulary[3]
    key = f"cases:vocabulary:{version}"
    try:
        words = cache.get(key)
    except Exception:  # the cache (Redis) is down: build it here
        words = None
    if words is None:
        table = CaseStudy._meta.db_table
        inner = (
            "SELECT to_tsvector('simple', concat_ws(' ', title, organisation, place, country, "  # noqa: S608
            "array_to_string(sectors, ' '), summary, title_uk, summary_uk)) "
            f"FROM {table} WHERE published"
        )
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT word FROM ts_stat(%s) WHERE length(word) >= 3 ORDER BY ndoc DESC",
                [inner],
            )
            words = [row[0] for row in cursor.fetchall() if row[0].isalpha()]
        with contextlib.suppress(Exception):
            cache.set(key, words, 24 * 60 * 60)
    _vocabulary = (now, version, frozenset(words), words)
    return _vocabulary[2], _vocabulary[3]


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


def related_to_text(text: str, *, limit: int = 3) -> list[tuple[CaseStudy, list[str]]]:
    """Published cases most like ``text`` (a cycle's question and recent reflections), each
    with the shared words that made it come up, in one query."""
    words = [w.lower() for w in _WORD.findall(text or "") if len(w) >= 4 and w.isalpha()]
    if not words:
        return []
    unique = list(dict.fromkeys(words))[:60]
    query = SearchQuery(" OR ".join(unique), search_type="websearch", config=SEARCH_CONFIG)
    table = CaseStudy._meta.db_table
    shared = RawSQL(  # noqa: S611 - only the model's table name is formatted in
        # The words each case matches, from its own search vector (evaluated for the few
        # cases returned, after ranking).
        f"ARRAY(SELECT DISTINCT w FROM unnest(%s::text[]) w "  # noqa: S608
        f"WHERE {table}.search @@ plainto_tsquery(%s::regconfig, w) ORDER BY w)",
        (unique, SEARCH_CONFIG),
    )
    found = (
        CaseStudy.objects.filter(published=True, search=query)
        .annotate(rank=SearchRank(F("search"), query), shared=shared)
        .order_by("-rank", "title")[:limit]
    )
    return [(case, list(case.shared)[:5]) for case in found]


def results_params(results: Results, **changes: Any) -> dict[str, Any]:
    params: dict[str, Any] = {"q": results.searched} if results.searched else {}
    params.update(results.filters)
    params.update(changes)
    return {key: value for key, value in params.items() if value not in ("", None, [])}
