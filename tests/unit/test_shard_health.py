"""A shard's health check: busy is healthy, queued events with no commit for 30 s are not."""

from __future__ import annotations

import asyncio
import time

import pytest

import actors.ingest.shard as shard_module
from actors.errors import DependencyUnavailable
from configs.settings import TracemillSettings


def make_shard(monkeypatch: pytest.MonkeyPatch) -> shard_module.SessionShard:
    # Logging setup is per process and would reroute the test run's own loggers.
    monkeypatch.setattr(shard_module, "setup_logging", lambda _component: None)
    settings = TracemillSettings.build({
        # Nothing listens here; the pool connects lazily and the check never needs a connection.
        "database": {"url": "postgresql://nobody@127.0.0.1:9/none"},
        "object_store": {"kind": "local", "local_dir": "/tmp/unused"},
    })
    return shard_module.SessionShard(0, settings)


def test_idle_and_busy_shards_are_healthy_stalled_ones_are_not(monkeypatch: pytest.MonkeyPatch) -> None:
    shard = make_shard(monkeypatch)

    async def scenario() -> None:
        monkeypatch.setattr(shard._finalizer, "ensure_sweeping", lambda: None)
        await shard.check_health()  # nothing queued
        committer = await shard._commit_queue()
        committer._queued_events = 50
        await shard.check_health()  # queued, but a commit finished just now
        shard._last_commit_at = time.monotonic() - shard_module._STALLED_S - 1
        with pytest.raises(DependencyUnavailable, match="no commit for"):
            await shard.check_health()
        committer._queued_events = 0
        await shard.check_health()  # nothing waiting: an old last commit is just quiet
        await (await shard._db()).close()

    asyncio.run(scenario())
