"""Rate limits on the real stack: a second copy of the ingress with tight limits (and the same
shards) answers 429 with exact Retry-After / RateLimit-Policy / RateLimit headers over HTTP and
`slow_down` on a stream, and stores nothing of a refused request or frame. A flood of one bad
key costs one database lookup (the negative cache); distinct bad keys from one address are
answered 429 after a few failures, without lookups, while a key already verified still works.

Each test uses keys of its own: the per-key limits start fresh for it. The per-address limits
stay at their defaults (every test client comes through the same HAProxy address)."""

from __future__ import annotations

import io
import json
import random
import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from PIL import Image
from ray import serve

from actors.auth import generate_key
from actors.ingest.shard_pool import create_shards, retire_shards
from configs.settings import TracemillSettings
from serve_app.ingress import Ingress
from tests.support.client import Api, click_event
from tests.support.stack import make_key, run_db

pytestmark = pytest.mark.integration
PREFIX = "/limited"


def noisy_png(side: int = 24) -> bytes:
    rng = random.Random(7)
    image = Image.frombytes("RGB", (side, side), bytes(rng.randrange(256) for _ in range(side * side * 3)))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


IMAGE = noisy_png()
LIMITS = {
    "http_requests_per_key": {"amount": 8, "window_s": 60},
    "sessions_per_key": {"amount": 2, "window_s": 60},
    "ws_frames_per_key": {"amount": 3, "window_s": 60},
    "events_per_key": {"amount": 10, "window_s": 60},
    "screenshot_bytes_per_key": {"amount": len(IMAGE) * 3 // 2, "window_s": 60},
    "auth_backoff": {"free_failures": 3, "window_s": 60, "base_s": 20, "max_s": 40},
}


@pytest.fixture(scope="module")
def limited(stack: Any) -> Iterator[str]:
    settings = stack.settings.to_args()
    settings["limits"] = LIMITS
    settings["shards"]["count"] = 1
    shards = create_shards(TracemillSettings.build(settings), stack.secrets_file)  # as a deploy does
    serve.run(Ingress.options(autoscaling_config=None, num_replicas=1).bind(settings), name="limited",
              route_prefix=PREFIX)
    yield stack.endpoint + PREFIX
    serve.delete("limited", _blocking=False)
    retire_shards(shards)


def client(stack: Any, base: str) -> Api:
    return Api(base, make_key(stack, ["ingest", "read"]))


def stored_seqs(stack: Any, sid: str) -> list[int]:
    return [r["seq"] for r in run_db(stack, "SELECT seq FROM interactions WHERE session_id = $1 ORDER BY seq",
                                     uuid.UUID(sid))]


def assert_limited(response: httpx.Response, policy: str, quota: int, window_s: int, unit: str = "") -> None:
    assert response.status_code == 429, response.text
    assert response.json()["error"]["code"] == "rate_limited"
    assert response.json()["error"]["details"][0]["policy"] == policy
    retry = response.headers["Retry-After"]
    assert retry.isdigit() and 1 <= int(retry) <= window_s
    assert response.headers["RateLimit-Policy"] == f"{policy};q={quota};w={window_s}{unit}"
    assert re.fullmatch(rf"{policy};r=\d+;t={retry}", response.headers["RateLimit"])


def metric(base: str, name: str, label: str) -> float:
    text = httpx.get(base + "/metrics", timeout=30).text
    found = re.search(rf'^{name}_total\{{[a-z]+="{label}"\}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def test_requests_per_key_get_429_with_exact_headers_and_store_nothing(stack: Any, limited: str) -> None:
    api = client(stack, limited)
    sid = api.create_session()  # request 1 of 8
    for _ in range(7):
        assert api.http.get(f"/v1/sessions/{sid}").status_code == 200
    refused = api.post_events(sid, [click_event(0)])
    assert_limited(refused, "requests-per-key", 8, 60)
    assert refused.headers["RateLimit"] == f"requests-per-key;r=0;t={refused.headers['Retry-After']}"
    assert stored_seqs(stack, sid) == []
    other = client(stack, limited)  # another key of the same address is not limited
    assert other.http.get(f"/v1/sessions/{other.create_session()}").status_code == 200


def test_events_per_key_refuse_the_batch_whole(stack: Any, limited: str) -> None:
    api = client(stack, limited)
    sid = api.create_session()
    assert api.post_events(sid, [click_event(s) for s in range(8)]).status_code == 200
    refused = api.post_events(sid, [click_event(s) for s in range(8, 16)])
    assert_limited(refused, "events-per-key", 10, 60, ';qu="events"')
    assert refused.json()["error"]["details"][0]["remaining"] == 2
    assert stored_seqs(stack, sid) == list(range(8))  # nothing of the refused batch


def test_new_sessions_per_key(stack: Any, limited: str) -> None:
    api = client(stack, limited)
    api.create_session()
    api.create_session()
    extra = str(uuid.uuid4())
    refused = api.http.post("/v1/sessions", json={"session_id": extra, "type": "automated"})
    assert_limited(refused, "sessions-per-key", 2, 60)
    assert not run_db(stack, "SELECT 1 FROM sessions WHERE session_id = $1", uuid.UUID(extra))


def test_screenshot_bytes_per_key(stack: Any, limited: str) -> None:
    api = client(stack, limited)
    sid = api.create_session()
    put = lambda shot: api.http.put(f"/v1/sessions/{sid}/screenshots/{shot}", content=IMAGE,  # noqa: E731
                                    headers={"Content-Type": "image/png"})
    assert put("a").status_code == 201
    assert_limited(put("b"), "screenshot-bytes-per-key", len(IMAGE) * 3 // 2, 60, ';qu="content-bytes"')
    rows = run_db(stack, "SELECT screenshot_id FROM screenshots WHERE session_id = $1", uuid.UUID(sid))
    assert [r["screenshot_id"] for r in rows] == ["a"]


def test_stream_frames_over_the_limit_get_slow_down_and_store_nothing(stack: Any, limited: str) -> None:
    api = client(stack, limited)
    sid = api.create_session()
    with api.stream(sid) as ws:
        for seq in range(5):
            ws.send(json.dumps({"type": "events", "events": [click_event(seq)]}))
        answers = [json.loads(ws.recv(timeout=30)) for _ in range(5)]
        assert [a["type"] for a in answers] == ["ack", "ack", "ack", "slow_down", "slow_down"]
        assert all(1000 <= a["retry_after_ms"] <= 60_000 for a in answers[3:])
        assert set(answers[3]) == {"type", "retry_after_ms"}
        ws.send(json.dumps({"type": "events", "events": [click_event(3)]}))  # the stream stays open
        assert json.loads(ws.recv(timeout=30))["type"] == "slow_down"
    assert stored_seqs(stack, sid) == [0, 1, 2]


def test_a_flood_of_one_bad_key_costs_one_lookup(limited: str) -> None:
    bad = {"Authorization": f"Bearer {generate_key()}"}  # well-formed: it would cost a query
    before = metric(limited, "tracemill_key_lookups", "unknown")
    answers = [httpx.get(f"{limited}/v1/sessions/{uuid.uuid4()}", headers=bad, timeout=30) for _ in range(30)]
    assert {a.status_code for a in answers} == {401}
    assert {a.json()["error"]["code"] for a in answers} == {"unauthenticated"}
    assert metric(limited, "tracemill_key_lookups", "unknown") - before == 1


def test_distinct_bad_keys_back_off_the_address_but_not_a_verified_key(stack: Any, limited: str) -> None:
    good = client(stack, limited)
    sid = good.create_session()  # verified by this replica before the attack
    before = metric(limited, "tracemill_key_lookups", "unknown")
    codes = []
    for _ in range(20):
        answer = httpx.get(f"{limited}/v1/sessions/{sid}", timeout=30,
                           headers={"Authorization": f"Bearer {generate_key()}"})
        codes.append(answer.status_code)
        if answer.status_code == 429:
            last = answer
    first_429 = codes.index(429)
    assert first_429 <= 4 and set(codes[first_429:]) == {429}, codes  # the free failures and one more, then 429
    assert_limited(last, "auth-failures-per-address", 3, 60)
    assert int(last.headers["Retry-After"]) <= 40
    assert metric(limited, "tracemill_key_lookups", "unknown") - before == first_429  # none after the first 429
    assert good.http.get(f"/v1/sessions/{sid}").status_code == 200  # a verified key passes the backoff
    fresh = client(stack, limited)  # a key this replica never saw waits out the backoff like any other
    assert fresh.http.get(f"/v1/sessions/{sid}").status_code == 429
