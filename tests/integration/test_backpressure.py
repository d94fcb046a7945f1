"""A saturated shard sheds load: `slow_down` frames on the stream, 429 with Retry-After over
HTTP; nothing of a shed batch is stored, and a resend later is accepted. A second copy of the
app with a tiny in-flight bound (and its own shards) makes saturation easy to reach."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator

import pytest
from ray import serve

from actors.ingest.shard_pool import create_shards, retire_shards
from configs.settings import TracemillSettings
from serve_app.ingress import Ingress
from tests.support.stack import run_db
from tests.support.client import Api, click_event

TINY_NAMESPACE = "tracemill-backpressure-test"


@pytest.fixture(scope="module")
def tiny(stack: Any, api: Api) -> Iterator[Api]:
    settings = stack.settings.to_args()
    settings["shards"].update(
        {"count": 1, "namespace": TINY_NAMESPACE, "max_inflight_events": 5, "commit_window_ms": 400, "slow_down_ms": 50}
    )
    shards = create_shards(TracemillSettings.build(settings), stack.secrets_file)  # as a deploy does
    serve.run(Ingress.options(autoscaling_config=None, num_replicas=1).bind(settings), name="tiny", route_prefix="/tiny")
    yield Api(stack.endpoint + "/tiny", api.key)
    serve.delete("tiny", _blocking=False)
    retire_shards(shards)


def stored(stack: Any, sid: str) -> list[int]:
    return [r["seq"] for r in run_db(stack, "SELECT seq FROM interactions WHERE session_id=$1 ORDER BY seq", sid)]


def test_stream_gets_slow_down_and_resends_succeed(tiny: Api, api: Api, stack: Any) -> None:
    sid = api.create_session()
    frames = [[click_event(s) for s in range(start, start + 4)] for start in (0, 4, 8)]
    with tiny.stream(sid) as ws:
        for events in frames:
            ws.send(json.dumps({"type": "events", "events": events}))
        answers = [json.loads(ws.recv(timeout=30)) for _ in frames]
        assert [a["type"] for a in answers] == ["ack", "slow_down", "slow_down"]
        assert answers[1]["retry_after_ms"] == 50
        assert stored(stack, sid) == [0, 1, 2, 3]  # shed frames stored nothing
        for events in frames[1:]:  # the client resends what was not acked, one at a time
            ws.send(json.dumps({"type": "events", "events": events}))
            assert json.loads(ws.recv(timeout=30))["type"] == "ack"
    assert stored(stack, sid) == list(range(12))


def test_http_gets_429_with_retry_after(tiny: Api, api: Api, stack: Any) -> None:
    sid = api.create_session()
    batches = [[click_event(s) for s in range(start, start + 4)] for start in (0, 4, 8)]
    with ThreadPoolExecutor(3) as pool:
        responses = list(pool.map(lambda b: tiny.post_events(sid, b), batches))
    statuses = sorted(r.status_code for r in responses)
    assert statuses[0] == 200 and 429 in statuses
    shed = [r for r in responses if r.status_code == 429]
    assert all(r.headers["Retry-After"] == "1" and r.json()["error"]["code"] == "overloaded" for r in shed)
    accepted = sum(r.json()["accepted"] for r in responses if r.status_code == 200)
    assert len(stored(stack, sid)) == accepted
