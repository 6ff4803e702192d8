"""The case library's search page and its htmx facet update, against the raw search SQL.

Generates 5,000 cases beside the 26 shipped ones (bulk_create; PostgreSQL fills the generated
``search`` column), with texts drawn from a public-service vocabulary whose word frequencies
follow a Zipf-like curve, so some searches match thousands of cases and others a handful;
about 5% are drafts. Then, as an anonymous reader (the library is public), through the full
middleware stack with production settings:

- the search page: GET /cases/?q=... for a mix of searches (a common word, a rare word, two
  words, a quoted phrase, a typo that "did you mean" corrects, no search at all);
- the htmx facet update: the same URL with facet choices and ``HX-Request`` / ``HX-Target``
  headers, which renders only the ``#library`` partial;
- the floor: the ranked full-text query alone (``search @@ websearch_to_tsquery(...)`` ordered
  by ``ts_rank``, first 20) plus its count, over the same searches (as typed: the typo's floor
  is its empty result) through the same Django connection.

Each kind cycles through its mix, is warmed up, then timed request by request. A breakdown
pass (not timed for the BENCH line) times every SQL statement a request runs, so the printout
shows how much of a request is the database and how much is Python and templates.
``BENCH_PROFILE=1`` adds a cProfile of the search page, ``BENCH_EXPLAIN=1`` the query
plans of one search. Goal (reported, not asserted):
p95 <= 20 ms and <= 3 x the floor's p95.
"""

from __future__ import annotations

import _harness

_harness.setup("case_search")

import cProfile  # noqa: E402
import io  # noqa: E402
import itertools  # noqa: E402
import os  # noqa: E402
import pstats  # noqa: E402
import random  # noqa: E402
import time  # noqa: E402
from collections import Counter, defaultdict  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402
from urllib.parse import urlencode  # noqa: E402

from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from cases import search as library  # noqa: E402
from cases.models import SEARCH_CONFIG, CaseStudy  # noqa: E402

GENERATED = 5_000
RUNS = int(os.environ.get("BENCH_RUNS", "300"))
WARMUP = 5  # rounds of each mix before timing
GOAL_P95_MS = 20.0
GOAL_RATIO = 3.0
TABLE = CaseStudy._meta.db_table
HTMX_HEADERS = {"HX-Request": "true", "HX-Target": "case-library"}


def words(text: str) -> list[str]:
    return text.split()


# Content words, most common first: sampled with weight 1 / rank ** ZIPF_S.
VOCABULARY = words(
    """
people community care support council home young services learning health families local
staff work change hospital team residents needs children relationships system trust practice
approach housing partners time help school lives outcomes funding mental public social
workers adults money commissioning experience data working wellbeing village neighbourhood
group process together listening conversation voluntary sector police officers doctors
nurses carers parents volunteers leaders managers frontline budget contract providers
charity network projects programme pilot trial evidence learned asked reflection meetings
weekly monthly quarterly review plan goals purpose strengths assets trauma poverty debt
benefits employment jobs skills training college university library transport buses clinic
surgery pharmacy discharge ward beds waiting lists referrals assessment eligibility
thresholds forms paperwork targets measures performance accountability autonomy trusting
responsive flexible bespoke personal human systems complexity experiment adaptation
emergence coordination collaboration kindness dignity respect belonging loneliness isolation
older disabled homeless refugees migrants women men girls boys babies toddlers teenagers
students pupils teachers coaches mentors navigators link connectors peer groups circles hubs
centres cafes kitchens gardens parks streets estates towns cities coast rural urban district
county region nation government ministry department agency board committee cabinet mayor
councillors governance funders grants philanthropy foundation endowment investment savings
costs prevention early intervention crisis recovery resilience relapse addiction alcohol
drugs offending prison probation courts justice victims domestic abuse safeguarding
protection fostering adoption residential placements education exclusion attendance literacy
numeracy digital broadband phones apps online website portal records privacy consent
advocacy rights tenants landlords repairs damp heating energy food banks pantry meals
nutrition exercise sport walking swimming music arts theatre museum heritage culture faith
church mosque temple befriending visiting phoning shopping cleaning gardening cooking
sharing stories narratives journeys pathways transitions moving settling living dying
bereavement grief hospice palliative dementia stroke diabetes cancer asthma obesity smoking
vaccination screening dentistry optician hearing sight
"""
)
FUNCTION_WORDS = words(
    "the a of and to in with for on by from as at that this their our we they it is was were "
    "are be been has have had more less not only also but or so when where which who"
)
RARE_WORDS = ["lighthouse", "beekeeping", "ferryman", "allotments", "windmill"]
RARE_PROBABILITY = 0.01  # per case: about 50 cases carry one of these, about 10 each
ZIPF_S = 1.07
PLACES = words(
    "Plymouth Leeds Bradford Wigan Oxford Thurrock Camden Lambeth Gateshead Newcastle "
    "Sunderland Durham Carlisle Kendal Lancaster Preston Bolton Salford Stockport Sheffield "
    "Rotherham Doncaster Hull York Scarborough Whitby Lincoln Nottingham Derby Leicester "
    "Coventry Birmingham Wolverhampton Stoke Shrewsbury Hereford Worcester Gloucester Swindon "
    "Bristol Bath Exeter Barnstaple Truro Penzance Bournemouth Southampton Brighton Hastings "
    "Canterbury Margate Luton Ipswich Norwich Cambridge Peterborough Glasgow Edinburgh Dundee "
    "Aberdeen Inverness Cardiff Swansea Wrexham Belfast Derry Brisbane Melbourne Tampere Oulu "
    "Helsinki"
)
ORG_KINDS = [
    "City Council",
    "Borough Council",
    "County Council",
    "Community Trust",
    "Hospital Trust",
    "Health Partnership",
    "Housing Association",
    "Youth Project",
    "Family Hub",
    "Care Cooperative",
    "Foundation",
    "Community Action",
    "Learning Network",
    "Neighbourhood Forum",
]
TITLE_VERBS = [
    "Rethinking",
    "Learning from",
    "Trusting",
    "Rebuilding",
    "Listening to",
    "Funding",
    "Changing",
    "Growing",
    "Supporting",
    "Redesigning",
]

# Searches: what people type. The typo has no match; "did you mean" corrects it to Plymouth.
PAGE_QUERIES = [
    "care",
    "community",
    "lighthouse",
    "young people",
    '"home care"',
    "Plymoth",
    "",
    "hospital discharge",
    "council learning",
]


def zipf_sampler(rng: random.Random) -> Callable[[int], list[str]]:
    cumulative = list(
        itertools.accumulate(1 / rank**ZIPF_S for rank in range(1, len(VOCABULARY) + 1))
    )

    def words(n: int) -> list[str]:
        return rng.choices(VOCABULARY, cum_weights=cumulative, k=n)

    return words


def prose(rng: random.Random, content: Callable[[int], list[str]], n_words: int) -> str:
    """Sentences of 8-18 words, about half content words (Zipf) and half function words."""
    sentences = []
    left = n_words
    while left > 0:
        length = min(left, rng.randint(8, 18))
        picked = content(length)
        tokens = [
            word if rng.random() < 0.55 else rng.choice(FUNCTION_WORDS) + " " + word
            for word in picked
        ]
        sentence = " ".join(tokens)
        sentences.append(sentence[:1].upper() + sentence[1:] + ".")
        left -= length
    return " ".join(sentences)


def generate_cases(rng: random.Random) -> None:
    real = list(CaseStudy.objects.all())
    content = zipf_sampler(rng)
    sector_pool = [sector for case in real for sector in case.sectors]
    batch = []
    for i in range(GENERATED):
        # Each facet value is drawn from a random shipped case: their distribution, not uniform.
        place = rng.choice(PLACES)
        topic = " ".join(content(rng.randint(1, 3)))
        title = f"{rng.choice(TITLE_VERBS)} {topic} in {place}"
        summary = prose(rng, content, rng.randint(25, 60))
        overview = prose(rng, content, rng.randint(60, 200))
        story = prose(rng, content, rng.randint(40, 150)) if rng.random() < 0.4 else ""
        if rng.random() < RARE_PROBABILITY:
            overview += f" The {rng.choice(RARE_WORDS)} group met every week."
        sectors = list(dict.fromkeys(rng.sample(sector_pool, k=rng.choice([1, 1, 1, 2]))))
        batch.append(
            CaseStudy(
                slug=f"bench-{i:05d}",
                title=title[:200],
                organisation=f"{place} {rng.choice(ORG_KINDS)}",
                place=place,
                country=rng.choice(real).country,
                sectors=sectors,
                scale=rng.choice(real).scale,
                organisation_type=rng.choice(real).organisation_type,
                principles=rng.choice(real).principles,
                summary=summary,
                overview=overview,
                story_of_change=story,
                year=rng.randint(2012, 2024),
                evidence=rng.choice(real).evidence,
                sources=[f"https://example.org/cases/{i}"],
                published=rng.random() >= 0.05,
            )
        )
    CaseStudy.objects.bulk_create(batch, batch_size=500)  # `search` is left to PostgreSQL
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {TABLE}")


def htmx_mix(sectors: list[str]) -> list[dict[str, str | list[str]]]:
    top = sectors[:6]
    return [
        {"q": "care", "sector": [top[0]], "evidence": ["A"]},
        {"q": "young people", "sector": [top[1], top[2]], "evidence": ["B", "C"]},
        {"q": "", "sector": [top[0]], "evidence": ["S"]},
        {"q": "community", "sector": [top[3]], "evidence": ["A"], "scale": ["local"]},
        {"q": '"home care"', "sector": [top[4]], "evidence": ["C"]},
        {"q": "Plymoth", "sector": [top[0]], "evidence": ["A", "B"]},
        {"q": "lighthouse", "sector": [top[5]], "evidence": ["B"]},
        {"q": "hospital discharge", "sector": [top[2]], "evidence": ["A"], "principle": ["human"]},
    ]


def url(params: dict[str, str | list[str]]) -> str:
    return "/cases/?" + urlencode({k: v for k, v in params.items() if v}, doseq=True)


FLOOR_COLUMNS = "id, slug, title, organisation, place, evidence, published, summary"


def floor_statements(query: str) -> list[tuple[str, list[str]]]:
    """The ranked search and its count, as a hand-written page would run them."""
    if not library.has_words(query):
        return [
            (f"SELECT count(*) FROM {TABLE} WHERE published", []),
            (
                f"SELECT {FLOOR_COLUMNS} FROM {TABLE} WHERE published ORDER BY title, id LIMIT 20",
                [],
            ),
        ]
    tsquery = f"websearch_to_tsquery('{SEARCH_CONFIG}'::regconfig, %s)"
    return [
        (f"SELECT count(*) FROM {TABLE} WHERE published AND search @@ {tsquery}", [query]),
        (
            f"SELECT {FLOOR_COLUMNS}, ts_rank(search, {tsquery}) AS rank FROM {TABLE} "
            f"WHERE published AND search @@ {tsquery} ORDER BY rank DESC, title, id LIMIT 20",
            [query, query],
        ),
    ]


def summary_line(label: str, timings: list[float], extra: str = "") -> str:
    return (
        f"{label}: p50 {_harness.p50(timings):.2f} ms, p95 {_harness.p95(timings):.2f} ms, "
        f"max {max(timings):.2f} ms over {len(timings)} timed{extra}"
    )


def classify(sql: str) -> str:
    text = sql.lstrip().upper()
    if "TS_STAT" in text:
        return "vocabulary (ts_stat)"
    if text.startswith("SELECT WEBSEARCH_TO_TSQUERY"):
        return "did-you-mean check"
    if text.startswith("WITH HITS"):
        return "facet counts"
    if text.startswith("SELECT COUNT(*)"):
        return "count"
    if "TS_HEADLINE" in text:
        return "ranked page + ts_headline"
    if f'FROM "{TABLE.upper()}"' in text:
        return "page of cases (no search)"
    return "other"


def breakdown(label: str, client: Client, urls: list[str], headers: dict[str, str]) -> None:
    """Time every SQL statement of each request; the rest is Python and templates."""
    spent: dict[str, float] = defaultdict(float)
    counted: Counter[str] = Counter()

    def timer(
        execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict[str, Any]
    ) -> Any:
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            kind = classify(sql)
            spent[kind] += (time.perf_counter() - started) * 1000
            counted[kind] += 1

    rounds = 5
    total = 0.0
    with connection.execute_wrapper(timer):
        for _ in range(rounds):
            for address in urls:
                started = time.perf_counter()
                client.get(address, headers=headers)
                total += (time.perf_counter() - started) * 1000
    n = rounds * len(urls)
    sql_ms = sum(spent.values()) / n
    parts = ", ".join(
        f"{kind} {spent[kind] / n:.2f} ms ({counted[kind] / n:.1f}x)"
        for kind in sorted(spent, key=lambda k: -spent[k])
    )
    print(
        f"  where {label} time goes (mean of {n} requests, {total / n:.2f} ms each): SQL "
        f"{sql_ms:.2f} ms = {parts}; Python, middleware and templates {total / n - sql_ms:.2f} ms"
    )


def explain(client: Client, address: str) -> None:
    """EXPLAIN ANALYZE of every statement one request runs (BENCH_EXPLAIN=1)."""
    with CaptureQueriesContext(connection) as captured:
        client.get(address)
    with connection.cursor() as cursor:
        for query in captured.captured_queries:
            print(f"-- {classify(query['sql'])}: {query['sql'][:300]}")
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + query["sql"])
            print("\n".join(row[0] for row in cursor.fetchall()))


def per_item(label: str, timings: list[float], items: list[str], totals: dict[str, int]) -> None:
    """The timings split by the item of the cycled mix each one was for."""
    by_item: dict[str, list[float]] = defaultdict(list)
    for item, ms in zip(itertools.cycle(items), timings, strict=False):
        by_item[item].append(ms)
    for item in items:
        values = by_item[item]
        print(
            f"  {label} {item}: {totals[item]} results, p50 {_harness.p50(values):.2f} "
            f"ms, p95 {_harness.p95(values):.2f} ms"
        )


def main() -> None:
    rng = random.Random(20210501)
    started = time.perf_counter()
    generate_cases(rng)
    published = CaseStudy.objects.filter(published=True).count()
    print(
        f"library: {CaseStudy.objects.count()} cases ({published} published), generated in "
        f"{time.perf_counter() - started:.1f} s"
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT s, count(*) FROM {TABLE}, unnest(sectors) s GROUP BY s ORDER BY 2 DESC, 1"
        )
        sectors = [row[0] for row in cursor.fetchall()]

    client = Client()
    page_urls = [url({"q": q}) for q in PAGE_QUERIES]
    htmx_urls = [url(params) for params in htmx_mix(sectors)]

    totals: dict[str, int] = {}
    queries: dict[str, list[int]] = {"page": [], "htmx": []}
    for kind, urls, headers in (("page", page_urls, {}), ("htmx", htmx_urls, HTMX_HEADERS)):
        for address in urls:
            with CaptureQueriesContext(connection) as captured:
                response = client.get(address, headers=headers)
            assert response.status_code == 200, (address, response.status_code)
            body = response.content.decode()
            assert ("<html" in body) == (kind == "page"), address
            assert 'id="case-library"' in body, address
            queries[kind].append(len(captured))
            params = {
                name: values
                for name, values in response.wsgi_request.GET.lists()
                if name in library.FACET_NAMES
            }
            results = library.search(
                response.wsgi_request.user,
                response.wsgi_request.GET.get("q", ""),
                library.clean_filters(params),
            )
            totals[address] = results.total

    started = time.perf_counter()
    library.forget_vocabulary()
    library.vocabulary()
    vocabulary_ms = (time.perf_counter() - started) * 1000

    def timed(urls: list[str], headers: dict[str, str]) -> list[float]:
        addresses = itertools.cycle(urls)

        def one() -> None:
            response = client.get(next(addresses), headers=headers)
            assert response.status_code == 200, response.status_code

        for _ in range(WARMUP):  # whole rounds of the mix, outside the timed cycle
            for address in urls:
                client.get(address, headers=headers)
        return _harness.measure(one, runs=RUNS, warmup=0)

    page_ms = timed(page_urls, {})
    htmx_ms = timed(htmx_urls, HTMX_HEADERS)

    floor_queries = itertools.cycle(PAGE_QUERIES)

    def floor() -> None:
        with connection.cursor() as cursor:
            for sql, params in floor_statements(next(floor_queries)):
                cursor.execute(sql, params)
                cursor.fetchall()

    for _ in range(WARMUP):
        floor()
    floor_queries = itertools.cycle(PAGE_QUERIES)  # timing starts at the mix's first query
    floor_ms = _harness.measure(floor, runs=RUNS, warmup=0)

    page_p95 = _harness.p95(page_ms)
    floor_p95 = _harness.p95(floor_ms)
    ratio = page_p95 / floor_p95
    print(
        summary_line(
            "search page (full page)",
            page_ms,
            f", {min(queries['page'])}-{max(queries['page'])} SQL queries per request",
        )
    )
    per_item("page", page_ms, page_urls, totals)
    print(
        summary_line(
            "htmx facet update (#library)",
            htmx_ms,
            f", {min(queries['htmx'])}-{max(queries['htmx'])} SQL queries per request",
        )
    )
    per_item("htmx", htmx_ms, htmx_urls, totals)
    print(summary_line("floor (ranked search SQL + count)", floor_ms, ", 2 SQL queries each"))
    floor_totals: dict[str, int] = {}
    with connection.cursor() as cursor:
        for query in PAGE_QUERIES:
            count_sql, count_params = floor_statements(query)[0]
            cursor.execute(count_sql, count_params)
            floor_totals[repr(query)] = cursor.fetchone()[0]
    per_item("floor", floor_ms, [repr(q) for q in PAGE_QUERIES], floor_totals)
    print(
        f"vocabulary rebuild for 'did you mean' (ts_stat, once per process every "
        f"{library._VOCABULARY_SECONDS} s): {vocabulary_ms:.1f} ms"
    )
    breakdown("page", client, page_urls, {})
    breakdown("htmx", client, htmx_urls, HTMX_HEADERS)
    htmx_p95 = _harness.p95(htmx_ms)
    for label, p95 in (("search page", page_p95), ("htmx update", htmx_p95)):
        verdict = "meets" if p95 <= GOAL_P95_MS and p95 <= GOAL_RATIO * floor_p95 else "misses"
        print(
            f"goal (p95 <= {GOAL_P95_MS:.0f} ms and <= {GOAL_RATIO:.0f} x floor "
            f"{floor_p95:.2f} ms): {label} p95 {p95:.2f} ms, {p95 / floor_p95:.1f} x floor: "
            f"{verdict}"
        )

    if os.environ.get("BENCH_EXPLAIN"):
        explain(client, page_urls[0])

    if os.environ.get("BENCH_PROFILE"):
        profile = cProfile.Profile()
        profile.enable()
        for address in page_urls * 10:
            client.get(address)
        profile.disable()
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats("cumulative").print_stats(40)
        print(out.getvalue())

    _harness.report(
        "case_search",
        p50_ms=_harness.p50(page_ms),
        p95_ms=page_p95,
        floor_p95_ms=floor_p95,
        ratio_to_floor=ratio,
        htmx_p50_ms=_harness.p50(htmx_ms),
        htmx_p95_ms=htmx_p95,
        floor_p50_ms=_harness.p50(floor_ms),
    )


if __name__ == "__main__":
    main()
