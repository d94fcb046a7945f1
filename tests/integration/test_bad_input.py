"""Bad input gets a clear error in the one shape, and changes nothing."""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.support.stack import make_key, run_db
from tests.support.client import Api, click_event, new_id


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"code", "message", "details", "request_id"}
    assert error["message"] and error["request_id"] and isinstance(error["details"], list)
    if code is not None:
        assert error["code"] == code
    return dict(error)


def event_count(stack: Any, sid: str) -> int:
    return int(run_db(stack, "SELECT count(*) AS n FROM interactions WHERE session_id=$1", sid)[0]["n"])


@pytest.fixture()
def sid(api: Api) -> str:
    return api.create_session()


def test_malformed_json_is_400(api: Api, sid: str, stack: Any) -> None:
    for body in (b"{", b'{"events": [', b"\xff\xfe", b'{"events": [NaN]}', b""):
        r = api.http.post(f"/v1/sessions/{sid}/events", content=body, headers={"Content-Type": "application/json"})
        assert_error(r, 400, "malformed_json")
    assert event_count(stack, sid) == 0


@pytest.mark.parametrize(
    "bad, field",
    [
        ({"seq": -1, "type": "click", "ts": 1732262400000}, "seq"),
        ({"seq": 1.5, "type": "click", "ts": 1732262400000}, "seq"),
        ({"seq": "2", "type": "click", "ts": 1732262400000}, "seq"),
        ({"seq": True, "type": "click", "ts": 1732262400000}, "seq"),
        ({"seq": 1, "type": "teleport", "ts": 1732262400000}, None),
        ({"seq": 1, "type": "navigation", "ts": 1732262400000, "url": 42}, "url"),
        ({"seq": 1, "type": "click", "ts": "yesterday", "target": {"tag": "a"}}, "ts"),
        ({"seq": 1, "type": "click", "ts": 1732262400000, "target": {"tag": "a", "selectors": [{"kind": "magic", "value": "x"}]}}, "kind"),
        ({"seq": 1, "type": "click", "ts": 1732262400000, "target": {"tag": "a", "text": "x" * 100_000}}, "text"),
    ],
)
def test_invalid_events_are_422_and_the_batch_is_rejected_whole(
    api: Api, sid: str, stack: Any, bad: dict[str, Any], field: str | None
) -> None:
    r = api.post_events(sid, [click_event(0), bad])
    error = assert_error(r, 422)
    assert len(error["details"]) >= 1
    problem = error["details"][0]
    assert problem["index"] == 1
    if field is not None:
        assert field in (problem["field"] or "")
    assert event_count(stack, sid) == 0
    # The server keeps working for the same session afterwards.
    assert api.post_events(sid, [click_event(0)]).json()["accepted"] == 1


def test_wrong_shapes_are_422(api: Api, sid: str) -> None:
    for body in ({"events": "nope"}, {"event": []}, [1, 2], {"events": [1]}):
        assert_error(api.http.post(f"/v1/sessions/{sid}/events", json=body), 422)
    for body in ({"type": "robot"}, {"type": "human", "viewport": {"width": -1, "height": 2}}, {"type": "human", "surprise": 1}):
        assert_error(api.http.post("/v1/sessions", json=body), 422)


def test_too_large_is_413(api: Api, sid: str, stack: Any) -> None:
    limits = stack.settings.ingest
    huge = b'{"events": [' + b" " * (limits.max_body_bytes + 10) + b"]}"
    r = api.http.post(f"/v1/sessions/{sid}/events", content=huge, headers={"Content-Type": "application/json"})
    assert_error(r, 413, "payload_too_large")
    many = [click_event(i) for i in range(limits.max_events_per_batch + 1)]
    assert_error(api.post_events(sid, many), 413)
    assert event_count(stack, sid) == 0


def test_auth_errors(api: Api, sid: str, stack: Any) -> None:
    url = f"{api.base_url}/v1/sessions/{sid}/events"
    assert_error(httpx.post(url, json={"events": [click_event(0)]}), 401, "unauthenticated")
    bad = {"Authorization": "Bearer tm_not_a_real_key_at_all"}
    assert_error(httpx.post(url, json={"events": [click_event(0)]}, headers=bad), 401)
    read_only = {"Authorization": f"Bearer {make_key(stack, ['read'])}"}
    assert_error(httpx.post(url, json={"events": [click_event(0)]}, headers=read_only), 403, "forbidden")
    assert httpx.get(f"{api.base_url}/v1/sessions/{sid}", headers=read_only).status_code == 200
    ingest_only = {"Authorization": f"Bearer {make_key(stack, ['ingest'])}"}
    assert_error(httpx.get(f"{api.base_url}/v1/sessions/{sid}", headers=ingest_only), 403)
    assert event_count(stack, sid) == 0


def test_unknown_and_closed_sessions(api: Api, sid: str, other_org_api: Api) -> None:
    assert_error(api.post_events(new_id(), [click_event(0)]), 404, "not_found")
    assert_error(api.post_events("not-a-uuid", [click_event(0)]), 404)
    assert_error(other_org_api.post_events(sid, [click_event(0)]), 404)
    api.http.post(f"/v1/sessions/{sid}/finish")
    assert_error(api.post_events(sid, [click_event(0)]), 409, "session_closed")


def png_bytes(width: int = 64, height: int = 48) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buf, "PNG")
    return buf.getvalue()


def png_bomb(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 1024)) + chunk(b"IEND", b"")


def test_screenshots_round_trip_and_bad_images(api: Api, sid: str, stack: Any) -> None:
    url = f"/v1/sessions/{sid}/screenshots/shot-1?seq=3&captured_at=1732262400000&trigger=click"
    image = png_bytes()
    first = api.http.put(url, content=image, headers={"Content-Type": "image/png"})
    assert first.status_code == 201 and first.json() == {"screenshot_id": "shot-1", "bytes": len(image)}
    assert api.http.put(url, content=image, headers={"Content-Type": "image/png"}).status_code == 200
    got = api.http.get(f"/v1/sessions/{sid}/screenshots/shot-1")
    # Never the raw upload: not painted yet (409), or already the painted WebP.
    assert got.content != image
    assert (got.status_code == 409 and got.json()["error"]["code"] == "screenshot_not_ready") or (
        got.status_code == 200 and got.headers["content-type"] == "image/webp"), got.status_code
    assert api.session(sid)["screenshot_count"] == 1

    other = png_bytes(65, 48)
    assert_error(api.http.put(url, content=other, headers={"Content-Type": "image/png"}), 409, "screenshot_conflict")
    shot2 = f"/v1/sessions/{sid}/screenshots/shot-2"
    assert_error(api.http.put(shot2, content=b"not an image", headers={"Content-Type": "image/png"}), 415)
    assert_error(api.http.put(shot2, content=image[: len(image) // 2], headers={"Content-Type": "image/png"}), 415)
    assert_error(api.http.put(shot2, content=image, headers={"Content-Type": "image/jpeg"}), 415)
    assert_error(api.http.put(shot2, content=image, headers={"Content-Type": "text/plain"}), 415)
    assert_error(api.http.put(shot2, content=png_bomb(100_000, 100_000), headers={"Content-Type": "image/png"}), 413)
    too_big = b"\x00" * (stack.settings.ingest.max_screenshot_bytes + 1)
    assert_error(api.http.put(shot2, content=too_big, headers={"Content-Type": "image/png"}), 413)
    assert_error(api.http.put(shot2 + "?seq=-4", content=image, headers={"Content-Type": "image/png"}), 422)
    assert_error(api.http.put(f"/v1/sessions/{sid}/screenshots/bad!id", content=image,
                              headers={"Content-Type": "image/png"}), 422)
    assert_error(api.http.put(f"/v1/sessions/{sid}/screenshots/..%2Fescape", content=image,
                              headers={"Content-Type": "image/png"}), 404)
    assert_error(api.http.get(f"/v1/sessions/{sid}/screenshots/shot-2"), 404)
    rows = run_db(stack, "SELECT screenshot_id FROM screenshots WHERE session_id=$1", sid)
    assert [r["screenshot_id"] for r in rows] == ["shot-1"]
    objects = sorted(p.name for p in (stack.state_dir / "objects").rglob("*") if p.is_file() and sid in str(p))
    assert objects == ["shot-1.png"]
