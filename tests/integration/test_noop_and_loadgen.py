"""The no-op Serve baseline and the load generator, against each other on a real Ray.

Ray is started here only when no one else (a shared session fixture) has started it, and is
then left alone. Serve HTTP is bound to 127.0.0.1 on a free port.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import httpx
import pytest
import ray
from ray import serve
from websockets.asyncio.client import connect

from cluster.bench.loadgen import EventFactory, LoadConfig, LoadResult, run_load
from cluster.doubles.net import free_port
from serve_app.noop import build_noop_app

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

PREFIX = "/noop"


def _serve_base_url() -> str:
    # serve.start() keeps an already-running Serve's http_options, so ask what is in force.
    from ray.serve.context import _get_global_client

    http = _get_global_client().http_config
    host = "127.0.0.1" if http.host in (None, "", "0.0.0.0", "::") else http.host
    return f"http://{host}:{http.port}"


def _wait_routable(base: str, timeout_s: float = 30.0) -> None:
    # serve.run returns when the replica is up; the proxy's route table may lag a moment.
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            resp = httpx.post(f"{base}{PREFIX}/v1/sessions", json={"type": "automated"}, timeout=5)
            if resp.status_code == 201:
                return
            last = f"HTTP {resp.status_code}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.2)
    raise AssertionError(f"{PREFIX} not routable within {timeout_s}s: {last}")


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    started_ray = not ray.is_initialized()
    if started_ray:
        ray.init(num_cpus=2, include_dashboard=False)
    serve.start(http_options={"host": "127.0.0.1", "port": free_port()})
    serve.run(build_noop_app(), name="noop", route_prefix=PREFIX)
    base = _serve_base_url()
    try:
        _wait_routable(base)
        yield base
    finally:
        # Not blocking: in HAProxy mode (the shared stack's default) a direct-ingress replica
        # drains for >= 30 s (RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S) before it goes.
        serve.delete("noop", _blocking=False)
        if started_ray:  # otherwise Ray and Serve belong to whoever started them
            # ray.shutdown() takes Serve with it; serve.shutdown() would first wait out the
            # proxies' 30 s drain in HAProxy mode.
            ray.shutdown()


def test_event_factory_frames_are_dense_click_events() -> None:
    frame = json.loads(EventFactory(3).frame(first_seq=20, count=10))
    assert frame["type"] == "events"
    events = frame["events"]
    assert [e["seq"] for e in events] == list(range(20, 30))
    assert all(isinstance(e["ts"], int) and e["ts"] > 1_700_000_000_000 for e in events)
    for event in events:
        assert event["type"] == "click" and event["url"].startswith("https://")
        target = event["target"]
        assert target["tag"] and isinstance(target["attributes"], dict)
        assert len(target["selectors"]) == 3
        assert set(target["bbox"]) == {"x", "y", "width", "height"}


def test_noop_session_create_echoes_or_makes_an_id(base_url: str) -> None:
    url = f"{base_url}{PREFIX}/v1/sessions"
    given = httpx.post(url, json={"session_id": "s-given", "type": "human"}, timeout=10)
    assert given.status_code == 201
    assert given.json() == {"session_id": "s-given", "status": "recording"}
    made = httpx.post(url, json={"type": "automated", "task": "t"}, timeout=10)
    assert made.status_code == 201 and len(made.json()["session_id"]) == 36


def test_noop_stream_acks_and_survives_a_bad_frame(base_url: str) -> None:
    async def exchange() -> list[dict[str, object]]:
        uri = base_url.replace("http", "ws", 1) + f"{PREFIX}/v1/sessions/s1/stream"
        async with connect(uri, open_timeout=10) as ws:
            await ws.send(json.dumps({"type": "auth", "api_key": "anything"}))
            await ws.send("{not json")
            await ws.send(EventFactory(0).frame(0, 4))
            await ws.send(EventFactory(0).frame(4, 3))
            return [json.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in range(3)]

    error, first, second = asyncio.run(exchange())
    assert error["type"] == "error" and error["error"]["code"] == "malformed_json"  # type: ignore[index]
    assert first == {"type": "ack", "acked_through": 3, "accepted": 4, "duplicates": 0, "gaps": []}
    assert second["acked_through"] == 6 and second["accepted"] == 3


def test_loadgen_against_noop(base_url: str) -> None:
    cfg = LoadConfig(
        url=base_url, prefix=PREFIX, api_key="test-key", sessions=5, batch=10,
        duration_s=2.0, warmup_s=0.5, progress_interval_s=1.0, hard_timeout_s=60.0,
    )  # fmt: skip
    result: LoadResult = asyncio.run(run_load(cfg))
    assert not result.timed_out, result
    assert result.sessions_connected == 5
    assert result.errors == 0, result.error_samples
    assert result.slow_downs == 0
    assert result.frames_acked > 0
    assert result.events_acked == result.frames_acked * 10
    # The no-op acks max(seq) seen; with dense seq that is the last seq of the frame sent.
    assert result.ack_mismatches == 0
    assert result.latency_p50_ms is not None
    assert result.latency_p95_ms is not None and result.latency_p99_ms is not None
    assert 0 < result.latency_p50_ms <= result.latency_p95_ms <= result.latency_p99_ms
    assert result.latency_p99_ms <= (result.latency_max_ms or 0)
    assert 1.5 <= result.duration_s <= 2.5
    assert result.frames_per_s == pytest.approx(result.frames_acked / result.duration_s, rel=0.01)
