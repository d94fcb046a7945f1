"""Cluster-wide metrics (actors.telemetry through ray.util.metrics) after a short load, read
where Prometheus would read them: the node's Ray metrics export port."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import ray

from tests.integration.test_processing import record, wait_terminal
from tests.support.client import Api, click_event, new_id
from tests.support.sessions import shop_session


def scrape() -> str:
    port = ray._private.worker._global_node.metrics_export_port
    return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text


def total(text: str, name: str, **labels: str) -> float:
    """Sum of a series over every process that reports it, for the given labels."""
    found = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            found += float(line.rsplit(" ", 1)[1])
    return found


def wait_for_metric(check: Any, timeout: float = 60) -> str:
    """Ray reports metrics every few seconds: poll, bounded."""
    deadline = time.monotonic() + timeout
    while True:
        text = scrape()
        if check(text) or time.monotonic() > deadline:
            return text
        time.sleep(1)


def test_ingest_and_processing_metrics_follow_the_load(api: Api, stack: Any) -> None:
    before = scrape()
    received0 = total(before, "ray_tracemill_events_received_total", transport="http")
    acked0 = total(before, "ray_tracemill_events_acked_total", transport="http")
    rejected0 = total(before, "ray_tracemill_events_rejected_total", reason="invalid_events")
    final0 = total(before, "ray_tracemill_finalizations_total", result="ready")

    sid = api.create_session(session_id=new_id())
    for start in range(0, 120, 40):
        assert api.post_events(sid, [click_event(s) for s in range(start, start + 40)]).status_code == 200
    bad = api.post_events(sid, [{"seq": "x", "type": "click"}])
    assert bad.status_code == 422
    events, shots = shop_session(60, 6)
    done = record(api, events, shots, type="human", task="buy a kettle")
    assert wait_terminal(api, done)["status"] == "ready"

    text = wait_for_metric(lambda t: total(t, "ray_tracemill_finalizations_total", result="ready") >= final0 + 1
                           and total(t, "ray_tracemill_events_received_total", transport="http") >= received0 + 120
                           # acks are counted by the shard actors, which report on their own clock
                           and total(t, "ray_tracemill_events_acked_total", transport="http") >= acked0 + 120
                           and all(total(t, "ray_tracemill_task_duration_seconds_count", kind=kind) >= 1
                                   for kind in ("compress", "score", "archive", "redact")))
    assert total(text, "ray_tracemill_events_received_total", transport="http") - received0 == 120
    assert total(text, "ray_tracemill_events_acked_total", transport="http") - acked0 == 120
    code = bad.json()["error"]["code"]
    assert total(text, "ray_tracemill_events_rejected_total", reason=code) - (rejected0 if code == "invalid_events" else 0) >= 1
    assert total(text, "ray_tracemill_finalizations_total", result="ready") - final0 >= 1
    for kind in ("compress", "score", "archive", "redact"):
        assert total(text, "ray_tracemill_task_duration_seconds_count", kind=kind) >= 1, kind
    assert re.search(r'ray_tracemill_ack_latency_seconds_bucket\{[^}]*transport="ws"', text)
