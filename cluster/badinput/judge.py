"""Run the bad-input corpus (cluster.badinput.corpus) against a tracemill endpoint and judge it.

Every answer must be a 4xx the case allows, in the one error shape, with `request_id` equal to
the `X-Request-ID` header (the id the runner sent when that is plain, else a fresh plain one);
no 5xx; the endpoint ready after;
and, given a database URL, no row more or less in sessions, interactions, screenshots,
datasets or finetunes of the keys' organisation. Everything is bounded: a fixed number of
requests, `concurrency` at a time, each with its own timeout.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections import Counter
from typing import Any

import asyncpg
import httpx
from pydantic import BaseModel
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from cluster.badinput.corpus import BadCase, corpus
from cluster.badinput.slow import send_slow

__all__ = ["CaseOutcome", "CorpusResult", "run_corpus", "run_corpus_async", "format_table"]

_CODE = re.compile(r"^[a-z][a-z0-9_]*$")
# PROTOCOL.md: a client's X-Request-ID is kept when it is at most 128 of these; else replaced.
_PLAIN_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_TABLES = {
    "sessions": "SELECT count(*) FROM sessions WHERE org_id = $1",
    "interactions": "SELECT count(*) FROM interactions i JOIN sessions s USING (session_id) WHERE s.org_id = $1",
    "screenshots": "SELECT count(*) FROM screenshots i JOIN sessions s USING (session_id) WHERE s.org_id = $1",
    "datasets": "SELECT count(*) FROM datasets WHERE org_id = $1",
    "finetunes": "SELECT count(*) FROM finetunes WHERE org_id = $1",
    "consent_records": "SELECT count(*) FROM consent_records WHERE org_id = $1",
    "consent_notices": "SELECT count(*) FROM consent_notices WHERE org_id = $1",
}


class CaseOutcome(BaseModel):
    label: str
    category: str
    route: str
    method: str
    status: int | None  # HTTP status, or the WebSocket close code
    verdict: str  # "4xx" (as expected, in shape), "5xx", or "other"
    problem: str | None = None
    seconds: float


class CorpusResult(BaseModel):
    outcomes: list[CaseOutcome]
    rows_before: dict[str, int] | None
    rows_after: dict[str, int] | None
    ready_after: bool
    seconds: float

    @property
    def failures(self) -> list[CaseOutcome]:
        return [o for o in self.outcomes if o.verdict != "4xx"]

    @property
    def ok(self) -> bool:
        return not self.failures and self.ready_after and self.rows_before == self.rows_after

    def table(self) -> list[dict[str, Any]]:
        """Rows of (category, route): requests, 4xx, 5xx, other."""
        counts: dict[tuple[str, str], Counter[str]] = {}
        for o in self.outcomes:
            counts.setdefault((o.category, f"{o.method} {o.route}"), Counter())[o.verdict] += 1
        return [{"category": c, "route": r, "requests": sum(n.values()), "4xx": n["4xx"], "5xx": n["5xx"],
                 "other": n["other"]} for (c, r), n in sorted(counts.items())]


def format_table(result: CorpusResult) -> str:
    rows = result.table()
    width = max(len(r["route"]) for r in rows)
    lines = [f"| {'category':<14} | {'route':<{width}} | requests | 4xx | 5xx | other |",
             f"| {'-' * 14} | {'-' * width} | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['category']:<14} | {r['route']:<{width}} | {r['requests']:>8} | {r['4xx']:>3} |"
                     f" {r['5xx']:>3} | {r['other']:>5} |")
    total = Counter(o.verdict for o in result.outcomes)
    lines.append(f"| {'**total**':<14} | {'':<{width}} | {len(result.outcomes):>8} | {total['4xx']:>3} |"
                 f" {total['5xx']:>3} | {total['other']:>5} |")
    return "\n".join(lines)


def check_error(status: int, headers: dict[str, str], body: bytes, case: BadCase, sent_id: str) -> str | None:
    """Why an HTTP answer is not what the case allows, or None."""
    if status not in case.expect:
        return f"status {status}, expected {sorted(case.expect)}: {body[:200]!r}"
    try:
        doc = json.loads(body)
    except ValueError:
        return f"not JSON: {body[:120]!r}"
    problem = _shape(doc, headers.get("x-request-id"))
    if problem is None and "set-cookie" in headers:  # e.g. injected through an echoed header
        problem = f"the error set a cookie: {headers['set-cookie'][:80]!r}"
    answered_id, plain = headers.get("x-request-id") or "", _PLAIN_ID.match(sent_id) is not None
    if problem is None and plain and answered_id != sent_id:
        problem = f"X-Request-ID {answered_id!r} is not the one sent ({sent_id})"
    if problem is None and not plain and (answered_id == sent_id or not _PLAIN_ID.match(answered_id)):
        problem = f"X-Request-ID {answered_id[:80]!r}: an id that is not plain must be replaced by a plain one"
    if problem is None and case.field is not None:
        fields = [str(d.get("field") or "") for d in doc["error"]["details"] if isinstance(d, dict)]
        if not any(case.field in f for f in fields):
            problem = f"no details entry names {case.field!r}: {fields}"
    return problem


def _shape(doc: Any, request_id: str | None) -> str | None:
    if not isinstance(doc, dict) or set(doc) != {"error"} or not isinstance(doc["error"], dict):
        return f"not the error shape: {str(doc)[:160]}"
    error = doc["error"]
    if set(error) != {"code", "message", "details", "request_id"}:
        return f"error keys {sorted(error)}"
    if not isinstance(error["code"], str) or not _CODE.match(error["code"]):
        return f"code {error['code']!r} is not snake_case"
    if not isinstance(error["message"], str) or not error["message"]:
        return "empty message"
    if not isinstance(error["details"], list):
        return "details is not a list"
    if request_id is not None and error["request_id"] != request_id:
        return f"request_id {error['request_id']!r} != X-Request-ID {request_id!r}"
    return None


def _fill(text: str, ctx: dict[str, str]) -> str:
    for name, value in ctx.items():
        text = text.replace(f"@{name}@", value)
    return text


def _headers(case: BadCase, keys: dict[str, str], sent_id: str) -> dict[str, str]:
    headers = {"X-Request-ID": sent_id, **dict(case.headers)}
    if case.auth is not None and case.method != "WS":
        headers["Authorization"] = f"Bearer {keys[case.auth]}"
    return headers


async def _http(client: httpx.AsyncClient, case: BadCase, keys: dict[str, str], ctx: dict[str, str],
                sent_id: str) -> tuple[int | None, str | None]:
    body = _fill(case.body.decode("latin-1"), ctx).encode("latin-1") if case.body is not None else None
    r = await client.request(case.method, _fill(case.path, ctx), content=body,
                             headers=_headers(case, keys, sent_id))
    return r.status_code, check_error(r.status_code, {k.lower(): v for k, v in r.headers.items()}, r.content,
                                      case, sent_id)


async def _ws(endpoint: str, case: BadCase, keys: dict[str, str], ctx: dict[str, str],
              sent_id: str) -> tuple[int | None, str | None]:
    url = endpoint.replace("http://", "ws://") + _fill(case.path, ctx)
    frames = [json.dumps({"type": "auth", "api_key": keys[case.auth or "ingest"]}) if f == "@auth@"
              else (_fill(f, ctx) if isinstance(f, str) else f) for f in case.ws_frames]
    refusal = 1000 not in case.expect
    errors: list[dict[str, Any]] = []
    async with connect(url, additional_headers={"X-Request-ID": sent_id, **dict(case.headers)},
                       open_timeout=10, close_timeout=3, max_size=2**24) as ws:
        try:
            for frame in frames:
                await ws.send(frame)
            expected = 0 if refusal else len(frames) - 1
            while refusal or len(errors) < expected:
                message = await asyncio.wait_for(ws.recv(), timeout=max(case.ws_wait_s, 15.0))
                errors.append(json.loads(message))
        except ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd is not None else None
            if refusal:
                return code, _ws_refusal(code, errors, case, sent_id)
            return code, f"the server closed the stream ({code}) after {len(errors)} answers"
        except asyncio.TimeoutError:
            return None, f"no answer within the bound after {len(errors)} answers"
        await ws.close()
    problems = [_ws_error(e, case, sent_id) for e in errors]
    return 1000, next((p for p in problems if p), None)


def _ws_error(frame: dict[str, Any], case: BadCase, sent_id: str) -> str | None:
    if frame.get("type") != "error":
        return f"a bad frame got {str(frame)[:120]}"
    problem = _shape({"error": frame.get("error")}, None)
    error = frame["error"]
    if problem is None and _PLAIN_ID.match(sent_id) and not str(error["request_id"]).startswith(sent_id):
        problem = f"request_id {error['request_id']!r} is not of this stream ({sent_id})"
    if problem is None and case.ws_errors and error["code"] not in case.ws_errors:
        problem = f"error code {error['code']!r}, expected one of {sorted(case.ws_errors)}"
    return problem


def _ws_refusal(code: int | None, frames: list[dict[str, Any]], case: BadCase, sent_id: str) -> str | None:
    if code not in case.expect:
        return f"close code {code}, expected {sorted(case.expect)}"
    if code == 1009:  # refused by the WebSocket layer as too big: no room for an error frame
        return None
    if len(frames) != 1:
        return f"expected one error frame before the close, got {len(frames)}"
    return _ws_error(frames[0], case, sent_id)


async def _one(index: int, case: BadCase, endpoint: str, keys: dict[str, str], ctx: dict[str, str],
               client: httpx.AsyncClient, gate: asyncio.Semaphore) -> CaseOutcome:
    # A case may send a hostile id of its own; it must then be echoed verbatim.
    sent_id = dict(case.headers).get("X-Request-ID") or f"badinput-{index}-{uuid.uuid4().hex[:8]}"
    async with gate:
        started = time.monotonic()
        try:
            if case.method == "WS":
                status, problem = await _ws(endpoint, case, keys, ctx, sent_id)
            elif case.slow is not None:
                answer = await send_slow(endpoint, case, _fill(case.path, ctx), _headers(case, keys, sent_id))
                status = answer[0] if answer else None
                problem = check_error(*answer, case, sent_id) if answer else "closed without an answer"
            else:
                status, problem = await _http(client, case, keys, ctx, sent_id)
        except Exception as exc:  # noqa: BLE001 - a transport failure is this case's outcome
            status, problem = None, f"{type(exc).__name__}: {exc}"[:300]
    verdict = "5xx" if status is not None and 500 <= status < 600 else ("other" if problem else "4xx")
    return CaseOutcome(label=case.label, category=case.category, route=case.route, method=case.method,
                       status=status, verdict=verdict, problem=problem, seconds=round(time.monotonic() - started, 3))


async def _setup(client: httpx.AsyncClient, keys: dict[str, str], dsn: str | None) -> dict[str, str]:
    """The sessions and dataset the placeholders name, made before the rows are counted."""
    auth = {"Authorization": f"Bearer {keys['ingest']}"}
    ctx: dict[str, str] = {"uuid": str(uuid.uuid4())}
    for name in ("session", "finish", "closed"):
        r = await client.post("/v1/sessions", json={"type": "automated", "task": f"bad-input {name}"}, headers=auth)
        r.raise_for_status()
        ctx[name] = r.json()["session_id"]
    (await client.post(f"/v1/sessions/{ctx['closed']}/finish", json={}, headers=auth)).raise_for_status()
    ctx["dataset"] = str(uuid.uuid4())
    if dsn:  # a dataset row that is not built: file and fine-tune cases then reach their real checks
        from actors.storage.training_repo import insert_dataset

        conn = await asyncpg.connect(dsn)
        try:
            org = await conn.fetchval("SELECT org_id FROM sessions WHERE session_id = $1", uuid.UUID(ctx["session"]))
            await insert_dataset(conn, uuid.UUID(ctx["dataset"]), org, "bad-input", {"name": "bad-input"}, "corpus")
            ctx["org"] = str(org)
            ctx["workspace"] = str(await conn.fetchval("SELECT workspace_id FROM sessions WHERE session_id = $1",
                                                       uuid.UUID(ctx["session"])))
        finally:
            await conn.close()
    return ctx


async def _rows(dsn: str | None, org: str | None) -> dict[str, int] | None:
    if not dsn or not org:
        return None
    conn = await asyncpg.connect(dsn)
    try:
        return {name: int(await conn.fetchval(sql, uuid.UUID(org))) for name, sql in _TABLES.items()}
    finally:
        await conn.close()


async def _ready(client: httpx.AsyncClient, within_s: float = 15.0) -> bool:
    deadline = time.monotonic() + within_s
    while True:
        try:
            if (await client.get("/readyz")).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.5)


async def run_corpus_async(endpoint: str, keys: dict[str, str], dsn: str | None = None,
                           cases: list[BadCase] | None = None, concurrency: int = 8,
                           timeout_s: float = 20.0) -> CorpusResult:
    """`keys` maps "ingest", "read" and "admin" to keys with only that scope, of one organisation."""
    cases = corpus() if cases is None else cases
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=endpoint, timeout=timeout_s) as client:
        ctx = await _setup(client, keys, dsn)
        before = await _rows(dsn, ctx.get("org"))
        gate = asyncio.Semaphore(concurrency)
        outcomes = await asyncio.gather(*(_one(i, c, endpoint, keys, ctx, client, gate) for i, c in enumerate(cases)))
        ready = await _ready(client)
        after = await _rows(dsn, ctx.get("org"))
    return CorpusResult(outcomes=list(outcomes), rows_before=before, rows_after=after, ready_after=ready,
                        seconds=round(time.monotonic() - started, 2))


def run_corpus(endpoint: str, keys: dict[str, str], dsn: str | None = None, **kwargs: Any) -> CorpusResult:
    return asyncio.run(run_corpus_async(endpoint, keys, dsn, **kwargs))
