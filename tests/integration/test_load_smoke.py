"""A short run of the load generator against the real ingest: the benchmark's path works.

The figures come from `tracemill bench ingest`; this only proves the path end to end."""

from __future__ import annotations

import asyncio
from typing import Any

from cluster.loadgen import LoadConfig, run_load
from tests.support.client import Api


def test_loadgen_against_the_real_endpoint(api: Api, stack: Any) -> None:
    cfg = LoadConfig(url=api.base_url, api_key=api.key, sessions=5, batch=20, duration_s=2, warmup_s=0.5,
                     progress_interval_s=None)
    result = asyncio.run(run_load(cfg))
    assert result.errors == 0 and result.ack_mismatches == 0 and not result.timed_out, result.error_samples
    assert result.sessions_connected == 5 and result.events_acked > 0
    assert result.latency_p50_ms is not None and result.latency_p50_ms <= (result.latency_p99_ms or 0)
