"""One hostile batch must not hold a shard: while a shard redacts DOM snapshots built from the
worst strings of `tracemill bench redaction`, another session on the same shard keeps getting
its acks, and what is stored of the hostile batch is redacted (issue 13, item 1). Since issue
15 item 1 the ingress replica redacts (the shard only when handed rows not yet redacted): the
last test holds the replica's loop to the same rule.

The shard is driven in-process against the real database, as in test_shard_logic: its event
loop is the test's, so a redaction run on the loop would hold every ack below until it ended.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from actors.auth import DEFAULT_ORG_ID
from actors.errors import Overloaded, SessionClosed
from actors.ingest.events import parse_events
from actors.ingest.rows import encode_events
from actors.ingest.shard import SessionShard
from actors.ingest.shard_pool import ShardRouter
from cluster.bench.redaction import KNOWN_WORST, hostile_one
from serve_app.shard_client import ShardClient
from tests.integration.test_shard_logic import events, new_session, shard_settings
from tests.support.stack import run_db

_EMAIL = "jane.roe@example.com"
# The audit's worst inputs and a few more of the benchmark's, each a full-size DOM snapshot.
_LABELS = sorted(set(KNOWN_WORST.values())) + ["'::\\t\\t\\t' * n", "'+1:::' * n", "'%:::' * n",
                                                "'<input a' + '1 ' * n", "'[value=' * n"]


def _html(label: str, limits: Any) -> str:
    """The largest snapshot of `label` the limits take (tabs and newlines count twice in JSON)."""
    tail = f" mail {_EMAIL}"  # at the very end: stored redacted only if the whole string was read
    chars = limits.max_html_chars
    while len(json.dumps(html := hostile_one(label, chars - len(tail)) + tail)) > limits.max_event_bytes - 1024:
        chars -= chars // 8
    return html


def _hostile_events(stack: Any) -> list[Any]:
    limits = stack.settings.ingest
    snapshots = [{"seq": seq, "type": "dom_snapshot", "ts": 1732262400000 + seq, "elements": [],
                  "html": _html(label, limits)} for seq, label in enumerate(_LABELS * 2)]
    return parse_events(snapshots, limits)


def _hostile_batch(stack: Any) -> list[Any]:
    return encode_events(_hostile_events(stack))


def test_a_hostile_dom_snapshot_does_not_hold_other_sessions_acks(stack: Any) -> None:
    hostile = _hostile_batch(stack)

    async def go() -> tuple[float, list[float], dict[str, Any], Any]:
        # Admission off: the question is whether redaction holds the loop, and with the hostile
        # batch in flight admission may rightly tell the calm session to slow down.
        settings = shard_settings(stack, commit_window_ms=5)
        limits = settings.limits.model_copy(update={"admission": settings.limits.admission.model_copy(
            update={"enabled": False})})
        shard = SessionShard(0, settings.model_copy(update={"limits": limits}))
        hostile_sid, calm_sid = await new_session(shard), await new_session(shard)
        await shard.ingest(DEFAULT_ORG_ID, calm_sid, events(stack, [0]))  # pool and committer up
        started = time.perf_counter()
        task = asyncio.create_task(shard.ingest(DEFAULT_ORG_ID, hostile_sid, hostile))
        latencies: list[float] = []
        seq = 1
        while not task.done():
            sent = time.perf_counter()
            ack = await shard.ingest(DEFAULT_ORG_ID, calm_sid, events(stack, [seq]))
            assert ack["acked_through"] == seq, ack
            latencies.append(time.perf_counter() - sent)
            seq += 1
        hostile_ack = await task
        return time.perf_counter() - started, latencies, hostile_ack, hostile_sid

    hostile_s, latencies, hostile_ack, hostile_sid = asyncio.run(go())
    assert hostile_ack["acked_through"] == len(hostile) - 1, hostile_ack
    # Redacting the batch took long enough that a stall would show: on the loop, the calm
    # session's first batch would wait for all of it and the loop above would end after it.
    assert hostile_s > 0.5, f"the hostile batch took only {hostile_s:.2f} s; make it larger"
    assert len(latencies) >= 5, (hostile_s, latencies)
    assert max(latencies) < max(0.5, hostile_s / 3), (hostile_s, max(latencies))

    stored = run_db(stack, "SELECT payload::text AS p FROM interactions WHERE session_id = $1", hostile_sid)
    assert len(stored) == len(hostile)
    assert all(_EMAIL not in row["p"] and "[EMAIL]" in row["p"] for row in stored)


def test_a_finish_during_redaction_refuses_the_batch_being_redacted(stack: Any) -> None:
    hostile = _hostile_batch(stack)

    async def go() -> tuple[BaseException | dict[str, Any], str, Any]:
        shard = SessionShard(0, shard_settings(stack, commit_window_ms=5))
        sid = await new_session(shard)
        await shard.ingest(DEFAULT_ORG_ID, sid, events(stack, [0]))  # pool and committer up
        task = asyncio.create_task(shard.ingest(DEFAULT_ORG_ID, sid, [e._replace(seq=e.seq + 1) for e in hostile]))
        await asyncio.sleep(0.2)  # the batch is being redacted (it takes over a second)
        status = await shard.finish(DEFAULT_ORG_ID, sid, {})
        try:
            result: BaseException | dict[str, Any] = await task
        except SessionClosed as exc:
            result = exc
        return result, status, sid

    result, status, sid = asyncio.run(go())
    assert status == "finalizing"
    # The finish waited for what was queued; a batch still being redacted then is refused,
    # not stored behind the finalisation's back.
    assert isinstance(result, SessionClosed), result
    rows = run_db(stack, "SELECT count(*) AS n FROM interactions WHERE session_id = $1", sid)
    assert rows[0]["n"] == 1


async def _until_taken(ingest: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    """The ack, resending the batch (redacted again) after a slow_down, as a client would."""
    while True:
        try:
            return await ingest()
        except Overloaded as exc:
            await asyncio.sleep(exc.retry_after_s)


def test_an_ingress_redacts_a_hostile_batch_off_its_event_loop(stack: Any) -> None:
    # Where batches are redacted now: the replica's ShardClient, in a worker thread. Its loop
    # serves every other connection of the replica, so it must keep turning meanwhile; a
    # redaction on the loop would hold the first of these 10 ms sleeps for all of it.
    hostile = _hostile_events(stack)
    privacy = stack.settings.processing.privacy

    async def go() -> tuple[float, list[float], dict[str, Any], uuid.UUID]:
        sid = uuid.uuid4()
        client = ShardClient(ShardRouter(stack.settings).for_session(sid))
        await client.create_session(DEFAULT_ORG_ID, sid, {"type": "automated"}, b"h" * 32)
        started = time.perf_counter()
        task = asyncio.create_task(_until_taken(lambda: client.ingest(DEFAULT_ORG_ID, sid, hostile, privacy)))
        lags: list[float] = []
        while not task.done():
            slept = time.perf_counter()
            await asyncio.sleep(0.01)
            lags.append(time.perf_counter() - slept - 0.01)
        ack = await task
        return time.perf_counter() - started, lags, ack, sid

    hostile_s, lags, ack, sid = asyncio.run(go())
    assert ack["acked_through"] == len(hostile) - 1, ack
    assert hostile_s > 0.5, f"the hostile batch took only {hostile_s:.2f} s; make it larger"
    assert len(lags) >= 5 and max(lags) < max(0.25, hostile_s / 3), (hostile_s, max(lags))
    stored = run_db(stack, "SELECT payload::text AS p FROM interactions WHERE session_id = $1", sid)
    assert len(stored) == len(hostile)
    assert all(_EMAIL not in row["p"] and "[EMAIL]" in row["p"] for row in stored)
