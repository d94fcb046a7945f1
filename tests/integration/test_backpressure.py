"""A saturated shard sheds load: `slow_down` frames on the stream, 429 with Retry-After over
HTTP; nothing of a shed batch is stored, and a resend later is accepted. A second copy of the
app with a tiny in-flight bound (and its own shards) makes saturation easy to reach; a third,
with a slow commit and a short ack target, makes admission control shed (actors/ingest/admission.py)."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator

import pytest
import ray
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
        # One frame fits the bound of 5; which one reaches the shard first is not fixed (the
        # ingress redacts each in a worker thread), and the others are shed.
        assert sorted(a["type"] for a in answers) == ["ack", "slow_down", "slow_down"]
        assert all(a["retry_after_ms"] == 50 for a in answers if a["type"] == "slow_down")
        kept = next(f for f, a in zip(frames, answers) if a["type"] == "ack")
        assert stored(stack, sid) == [e["seq"] for e in kept]  # shed frames stored nothing
        for events, answer in zip(frames, answers):  # the client resends what was shed, one at a time
            if answer["type"] == "slow_down":
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


# -- admission control: shed what would be acked past the target, lose nothing acked ----------

ADMISSION_NAMESPACE = "tracemill-admission-test"


@pytest.fixture(scope="module")
def slow(stack: Any, api: Api) -> Iterator[tuple[Api, Any]]:
    """An app whose one shard commits every 300 ms, with a 100 ms ack target: a few frames at
    once already queue past it. The in-flight bound is far away, so only admission sheds."""
    settings = stack.settings.to_args()
    settings["shards"].update({"count": 1, "namespace": ADMISSION_NAMESPACE, "commit_window_ms": 300,
                               "max_inflight_events": 1_000_000, "num_cpus": 0.01})
    settings["limits"]["admission"] = {"ack_target_ms": 100, "retry_after_min_ms": 50, "retry_after_max_ms": 200}
    shards = create_shards(TracemillSettings.build(settings), stack.secrets_file)
    # No CPU reserved: the test stack's few are held by the main app, the tiny app and their shards.
    serve.run(Ingress.options(autoscaling_config=None, num_replicas=1, ray_actor_options={"num_cpus": 0})
              .bind(settings), name="slow", route_prefix="/slow")
    yield Api(stack.endpoint + "/slow", api.key), shards[0]
    serve.delete("slow", _blocking=False)
    retire_shards(shards)


def test_overloaded_shard_answers_429_at_once_and_stores_nothing_refused(slow: tuple[Api, Any], api: Api,
                                                                        stack: Any) -> None:
    client, shard = slow
    sids = [api.create_session() for _ in range(12)]
    batch = [click_event(s) for s in range(100)]
    with ThreadPoolExecutor(len(sids)) as pool:
        first = list(pool.map(lambda sid: client.post_events(sid, batch), sids))
    refused = [sid for sid, r in zip(sids, first) if r.status_code == 429]
    assert refused and len(refused) < len(sids), [r.status_code for r in first]
    for sid, r in zip(sids, first):
        if r.status_code == 429:
            assert r.json()["error"]["code"] == "overloaded" and int(r.headers["Retry-After"]) >= 1
            assert "target" in r.json()["error"]["message"]
            assert stored(stack, sid) == []  # refused before anything of it was queued
        else:
            assert r.status_code == 200 and stored(stack, sid) == list(range(100))
    assert ray.get(shard.ping.remote(), timeout=30)["refused_batches"] >= len(refused)  # the shard shed them
    for sid in refused:  # each resend, one at a time, finds the queue short again
        assert client.post_events(sid, batch).status_code == 200
        assert stored(stack, sid) == list(range(100))


def _resending_stream(client: Api, sid: str, frames: int, size: int) -> tuple[int, list[int]]:
    """Stream `frames` frames with one in flight, resending each shed one after the pause asked
    for; returns the slow_downs met and every acked_through seen."""
    slow_downs, acked = 0, []
    # The handshakes of all streams at once queue at the one replica (no CPU reserved for it) on
    # a loaded machine; shedding is what this test is about, so they get time to open.
    with client.stream(sid, open_timeout=30) as ws:
        for f in range(frames):
            events = [click_event(s) for s in range(f * size, (f + 1) * size)]
            while True:
                ws.send(json.dumps({"type": "events", "events": events}))
                answer = json.loads(ws.recv(timeout=30))
                if answer["type"] == "ack":
                    acked.append(answer["acked_through"])
                    break
                assert answer["type"] == "slow_down", answer
                assert 50 <= answer["retry_after_ms"] <= 300
                slow_downs += 1
                time.sleep(answer["retry_after_ms"] / 1000)
    return slow_downs, acked


def test_overloaded_stream_sheds_with_slow_down_and_loses_nothing_acked(slow: tuple[Api, Any], api: Api,
                                                                        stack: Any) -> None:
    client, _ = slow
    sids = [api.create_session() for _ in range(10)]
    with ThreadPoolExecutor(len(sids)) as pool:
        results = list(pool.map(lambda sid: _resending_stream(client, sid, 6, 50), sids))
    assert sum(s for s, _ in results) > 0  # the queue went past the target: frames were shed
    for sid, (_, acked) in zip(sids, results):
        assert acked == [49, 99, 149, 199, 249, 299]  # every frame acked in order, after resends
        assert stored(stack, sid) == list(range(300))  # each event once, none lost
        counts = run_db(stack, "SELECT event_count FROM sessions WHERE session_id=$1", sid)
        assert counts[0]["event_count"] == 300
