"""The shard's group commit and rebuild, driven in-process (no Ray) against the real database."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from actors.auth import DEFAULT_ORG_ID
from actors.errors import NotFound, Overloaded, SessionClosed
from actors.ingest.events import parse_events
from actors.ingest.rows import encode_events
from actors.ingest.shard import SessionShard
from configs.settings import TracemillSettings
from tests.support.stack import run_db
from tests.support.client import click_event


def shard_settings(stack: Any, **shards: Any) -> TracemillSettings:
    data = stack.settings.to_args()
    data["shards"].update(shards)
    return TracemillSettings.build(data)


def events(stack: Any, seqs: range | list[int]) -> list[Any]:
    return encode_events(parse_events([click_event(s) for s in seqs], stack.settings.ingest))


async def new_session(shard: SessionShard) -> uuid.UUID:
    sid = uuid.uuid4()
    await shard.create_session(DEFAULT_ORG_ID, sid, {"type": "automated"}, b"h" * 32)
    return sid


def test_concurrent_overlapping_batches_store_each_seq_once(stack: Any) -> None:
    async def go() -> tuple[uuid.UUID, list[dict[str, Any]]]:
        shard = SessionShard(0, shard_settings(stack, commit_window_ms=5))
        sid = await new_session(shard)
        batches = [events(stack, range(start, start + 30)) for start in range(0, 100, 10)]
        acks = await asyncio.gather(*(shard.ingest(DEFAULT_ORG_ID, sid, b) for b in batches))
        return sid, list(acks)

    sid, acks = asyncio.run(go())
    assert sum(a["accepted"] for a in acks) == 120  # seqs 0..119, each accepted exactly once
    assert sum(a["accepted"] + a["duplicates"] for a in acks) == 300
    assert max(a["acked_through"] for a in acks) == 119
    rows = run_db(stack, "SELECT count(*) AS n, max(seq) AS m FROM interactions WHERE session_id=$1", sid)
    assert (rows[0]["n"], rows[0]["m"]) == (120, 119)
    counts = run_db(stack, "SELECT event_count, duplicate_count, acked_through FROM sessions WHERE session_id=$1", sid)[0]
    assert (counts["event_count"], counts["duplicate_count"], counts["acked_through"]) == (120, 180, 119)


def test_a_full_shard_sheds_load_and_changes_nothing(stack: Any) -> None:
    async def go() -> tuple[uuid.UUID, list[Any]]:
        shard = SessionShard(0, shard_settings(stack, commit_window_ms=300, max_inflight_events=10))
        sid = await new_session(shard)
        results = await asyncio.gather(
            shard.ingest(DEFAULT_ORG_ID, sid, events(stack, range(0, 8))),
            shard.ingest(DEFAULT_ORG_ID, sid, events(stack, range(8, 16))),
            return_exceptions=True,
        )
        return sid, list(results)

    sid, results = asyncio.run(go())
    assert results[0]["acked_through"] == 7
    assert isinstance(results[1], Overloaded) and results[1].retry_after_s > 0
    seqs = [r["seq"] for r in run_db(stack, "SELECT seq FROM interactions WHERE session_id=$1 ORDER BY seq", sid)]
    assert seqs == list(range(8))


def test_a_restarted_shard_rebuilds_acks_and_gaps_from_the_database(stack: Any) -> None:
    async def go() -> tuple[dict[str, Any], dict[str, Any]]:
        settings = shard_settings(stack)
        first = SessionShard(0, settings)
        sid = await new_session(first)
        await first.ingest(DEFAULT_ORG_ID, sid, events(stack, [0, 1, 2, 6, 7]))
        again = SessionShard(0, settings)  # a restart: nothing in memory
        resent = await again.ingest(DEFAULT_ORG_ID, sid, events(stack, [1, 2, 3]))
        await again.finish(DEFAULT_ORG_ID, sid, {})
        third = SessionShard(0, settings)
        with pytest.raises(SessionClosed):
            await third.ingest(DEFAULT_ORG_ID, sid, events(stack, [4]))
        with pytest.raises(NotFound):
            await third.ingest(uuid.uuid4(), sid, events(stack, [4]))  # another organisation
        return resent, await third.ping()

    resent, ping = asyncio.run(go())
    assert resent == {"acked_through": 3, "accepted": 1, "duplicates": 2, "gaps": [(4, 5)]}
    assert ping["sessions_cached"] == 1
