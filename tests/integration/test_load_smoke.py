"""A short run of the load generator against the real ingest: the benchmark's path works.

The figures come from `tracemill bench ingest`; this only proves the path end to end."""

from __future__ import annotations

import asyncio
from typing import Any

from cluster.bench.loadgen import LoadConfig, run_load
from tests.support.client import Api


def test_loadgen_against_the_real_endpoint(api: Api, stack: Any) -> None:
    cfg = LoadConfig(url=api.base_url, api_key=api.key, sessions=5, batch=20, duration_s=2, warmup_s=0.5,
                     progress_interval_s=None)
    result = asyncio.run(run_load(cfg))
    assert result.errors == 0 and result.ack_mismatches == 0 and not result.timed_out, result.error_samples
    assert result.sessions_connected == 5 and result.events_acked > 0
    assert result.latency_p50_ms is not None and result.latency_p50_ms <= (result.latency_p99_ms or 0)


def test_mixed_load_screenshots_reads_and_finishes_are_stored(api: Api, stack: Any) -> None:
    """The benchmark's mixed workload: every screenshot answered 2xx is in the database, every
    session it finished left recording, and the stream's acks still match."""
    from tests.support.stack import run_db

    before = run_db(stack, "SELECT count(*) AS n FROM screenshots")[0]["n"]
    cfg = LoadConfig(url=api.base_url, api_key=api.key, sessions=4, batch=20, duration_s=2, warmup_s=0.5,
                     progress_interval_s=None, screenshot_every=3, read_every=2, finish=True)
    result = asyncio.run(run_load(cfg))
    assert result.errors == 0 and result.ack_mismatches == 0 and not result.timed_out, result.error_samples
    side = result.side
    assert side is not None and side["screenshots"]["ok"] > 0 and side["reads"]["ok"] > 0
    assert side["screenshots"]["failed"] == side["reads"]["failed"] == side["finishes"]["failed"] == 0
    assert side["finishes"]["ok"] == 4
    stored = run_db(stack, "SELECT count(*) AS n FROM screenshots")[0]["n"] - before
    assert stored == side["screenshots"]["ok"]
