"""`tracemill bench search`: the session list and full-text search, p50/p95 over 10k sessions
and 1M events (the issue's figure; goal: search p95 under 200 ms).

The rows are generated in PostgreSQL (cluster/bench/search_data.py) in a private embedded
PostgreSQL in a temporary directory (or `--dsn`, a database this run may fill). Each figure
is the time of `search_repo.list_sessions`, the function `GET /v1/sessions` calls: the page
(limit 25, keyset) and the total count, over a connection, without HTTP.

Baseline in the same run, the design this one was chosen over: a GIN index over the events
themselves (an expression index on `interactions`: URL, title, element text), the search
query asking for the sessions that have a matching event. Its index build time and size are
printed beside the per-session document's.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg

from actors.storage.postgres import apply_migrations
from actors.storage.search_repo import SessionQuery, list_sessions, list_sql
from cluster.bench.search_data import generate
from cluster.results import write_result

__all__ = ["add_arguments", "run"]

GOAL_P95_MS = 200.0
_EVENT_DOC = ("to_tsvector('simple', coalesce(url, '') || ' ' || coalesce(payload->>'title', '')"
              " || ' ' || coalesce(target->>'text', ''))")

LIST_CASES: dict[str, dict[str, Any]] = {
    "newest": {},
    "quality, ready": {"sort": "-quality", "status": "ready"},
    "site + intent": {"site": "shop7.example", "intent": "search"},
    "frustrated, lowest quality": {"frustration": "true", "sort": "quality"},
    "most events": {"sort": "-events"},
}
SEARCH_CASES: dict[str, dict[str, Any]] = {
    "common word": {"q": "kettle"},
    "rare code": {"q": "sku42"},
    "two words": {"q": "kettle lamp"},
    "phrase": {"q": '"add kettle"'},
    "word + filters": {"q": "toaster", "status": "ready", "sort": "-quality"},
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--events-per-session", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=100, help="timed runs of each query")
    parser.add_argument("--dsn", help="use this database instead of a private embedded one (it is filled)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the events-level index baseline")
    parser.add_argument("--output", type=Path, help="write the figures as JSON (results/search.json)")


def _pcts(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return {"p50_ms": round(statistics.median(ordered), 2), "p95_ms": round(p95, 2)}


async def _timed(fn: Callable[[], Awaitable[Any]], repeats: int) -> dict[str, float]:
    await fn()  # warm: the plan and the pages the query reads
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        await fn()
        samples.append((time.perf_counter() - started) * 1000)
    return _pcts(samples)


async def _event_level(conn: asyncpg.Connection, org_id: uuid.UUID, params: dict[str, Any]) -> dict[str, Any]:
    """The baseline: the same page and total, with `q` answered from the events' index."""
    query = SessionQuery.model_validate({k: v for k, v in params.items() if k != "q"})
    page_sql, total_sql, args, total_args = list_sql(query, org_id)
    match = (f" AND s.session_id IN (SELECT i.session_id FROM interactions i WHERE {_EVENT_DOC}"
             " @@ websearch_to_tsquery('simple', $99))")
    page_sql = page_sql.replace(" ORDER BY", match + " ORDER BY", 1).replace("$99", f"${len(args) + 1}")
    total_sql = total_sql + match.replace("$99", f"${len(total_args) + 1}")
    rows = await conn.fetch(page_sql, *args, params["q"])
    total = await conn.fetchval(total_sql, *total_args, params["q"])
    return {"items": len(rows), "total": total}


async def _second_page(conn: asyncpg.Connection, org_id: uuid.UUID, params: dict[str, Any]) -> None:
    first = await list_sessions(conn, SessionQuery.model_validate(params), org_id)
    if first["next_cursor"]:
        await list_sessions(conn, SessionQuery.model_validate({**params, "cursor": first["next_cursor"]}), org_id)


async def _measure(dsn: str, args: argparse.Namespace) -> dict[str, Any]:
    await apply_migrations(dsn)
    conn = await asyncpg.connect(dsn)
    try:
        org_id = uuid.uuid4()
        await conn.execute("INSERT INTO organizations (org_id, name) VALUES ($1, $2)", org_id, f"bench-{org_id}")
        started = time.perf_counter()
        await generate(conn, org_id, args.sessions, args.events_per_session)
        gen_s = time.perf_counter() - started
        events = int(await conn.fetchval("SELECT sum(event_count) FROM sessions WHERE org_id = $1", org_id))
        print(f"generated {args.sessions} sessions, {events} events in {gen_s:.1f} s", flush=True)
        result: dict[str, Any] = {"sessions": args.sessions, "events": int(events), "generate_s": round(gen_s, 1),
                                  "repeats": args.repeats, "goal_search_p95_ms": GOAL_P95_MS,
                                  "list": {}, "search": {}, "baseline_events_index": {}}
        for name, params in LIST_CASES.items():
            query = SessionQuery.model_validate(params)
            result["list"][name] = await _timed(lambda q=query: list_sessions(conn, q, org_id), args.repeats)
            result["list"][name]["total"] = (await list_sessions(conn, query, org_id))["total"]
        result["list"]["newest, page 2"] = await _timed(lambda: _second_page(conn, org_id, {}), args.repeats)
        for name, params in SEARCH_CASES.items():
            query = SessionQuery.model_validate(params)
            result["search"][name] = await _timed(lambda q=query: list_sessions(conn, q, org_id), args.repeats)
            result["search"][name]["total"] = (await list_sessions(conn, query, org_id))["total"]
        result["session_doc_index_mb"] = round(await conn.fetchval(
            "SELECT pg_relation_size('sessions_search_idx')") / 2**20, 1)
        if not args.no_baseline:
            started = time.perf_counter()
            await conn.execute(f"CREATE INDEX bench_events_fts_idx ON interactions USING gin ({_EVENT_DOC})")
            await conn.execute("ANALYZE interactions")
            result["baseline_index_build_s"] = round(time.perf_counter() - started, 1)
            result["baseline_index_mb"] = round(await conn.fetchval(
                "SELECT pg_relation_size('bench_events_fts_idx')") / 2**20, 1)
            for name, params in SEARCH_CASES.items():
                result["baseline_events_index"][name] = await _timed(
                    lambda p=params: _event_level(conn, org_id, p), max(args.repeats // 5, 5))
            await conn.execute("DROP INDEX bench_events_fts_idx")
        return result
    finally:
        await conn.close()


def _print(result: dict[str, Any]) -> None:
    print(f"\n{result['sessions']} sessions, {result['events']} events; times of list_sessions (page + total)")
    print(f"{'query':34} {'p50 ms':>8} {'p95 ms':>8} {'total':>7} {'events-index p95':>17} {'ratio':>6}")
    for kind in ("list", "search"):
        for name, fig in result[kind].items():
            base = result["baseline_events_index"].get(name) if kind == "search" else None
            extra = f"{base['p95_ms']:>17.1f} {base['p95_ms'] / max(fig['p95_ms'], 0.01):>5.1f}x" if base else ""
            print(f"{kind + ': ' + name:34} {fig['p50_ms']:>8.1f} {fig['p95_ms']:>8.1f} "
                  f"{fig.get('total', ''):>7} {extra}")
    worst = max(f["p95_ms"] for f in result["search"].values())
    print(f"worst search p95 {worst:.1f} ms (goal < {GOAL_P95_MS:.0f} ms); per-session document index "
          f"{result['session_doc_index_mb']} MB", end="")
    if "baseline_index_mb" in result:
        print(f"; events index {result['baseline_index_mb']} MB, built in {result['baseline_index_build_s']} s")
    else:
        print()
    result["worst_search_p95_ms"] = worst


def run(args: argparse.Namespace) -> int:
    if args.dsn:
        result = asyncio.run(_measure(args.dsn, args))
    else:
        from cluster.embedded_postgres import EmbeddedPostgres

        with tempfile.TemporaryDirectory(prefix="tm-bench-search-") as tmp:
            pg = EmbeddedPostgres(Path(tmp) / "pg")
            try:
                result = asyncio.run(_measure(pg.start(), args))
            finally:
                pg.stop()
    _print(result)
    write_result(args.output, {"benchmark": "search", **result})
    return 0
