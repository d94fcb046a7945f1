"""Only painted screenshots leave the server: before painting a GET is `409
screenshot_not_ready` with Retry-After, and an upload that cannot be processed is deleted and
answered `404 screenshot_failed`, never served (PROTOCOL.md, Screenshots)."""

from __future__ import annotations

import io
import json
import time
from typing import Any

import httpx
import pytest
from PIL import Image, ImageDraw

from actors.errors import NotFound
from tests.support.client import Api, click_event, new_id
from tests.support.sessions import CHECKOUT_FIELDS, T0, VIEWPORT, page_png
from tests.support.stack import read_object, run_db, write_object


def _put(api: Api, sid: str, shot: str, seq: int) -> None:
    answer = api.http.put(f"/v1/sessions/{sid}/screenshots/{shot}", params={"seq": seq},
                          content=page_png(seq), headers={"Content-Type": "image/png"})
    assert answer.status_code == 201, answer.text


def _poll(api: Api, path: str, status: int, timeout: float = 60) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        answer = api.http.get(path)
        if answer.status_code == status or time.monotonic() > deadline:
            return answer
        time.sleep(0.2)


def test_only_the_painted_webp_is_served(api: Api, stack: Any) -> None:
    sid = api.create_session(session_id=new_id(), viewport=VIEWPORT)
    # Screenshots of seq 5 wait for events 0..5 before they are painted: none are sent yet.
    _put(api, sid, "good", 5)
    _put(api, sid, "broken", 5)
    early = api.http.get(f"/v1/sessions/{sid}/screenshots/good")
    assert early.status_code == 409, (early.status_code, early.headers.get("content-type"))
    assert early.json()["error"]["code"] == "screenshot_not_ready"
    assert int(early.headers["retry-after"]) >= 1
    assert not early.headers["content-type"].startswith("image/")

    # A raw upload the encoder cannot read (a decoder disagreement with the upload check).
    raw_key = run_db(stack, "SELECT raw_key FROM screenshots WHERE session_id = $1 AND screenshot_id = 'broken'",
                     sid)[0]["raw_key"]
    write_object(stack, raw_key, b"\x89PNG\r\n\x1a\n not an image after all")
    assert api.post_events(sid, [click_event(seq) for seq in range(10)]).status_code == 200

    good = _poll(api, f"/v1/sessions/{sid}/screenshots/good", 200)
    assert good.status_code == 200 and good.headers["content-type"] == "image/webp", good.status_code
    assert good.headers["cache-control"] == "no-store"
    failed = _poll(api, f"/v1/sessions/{sid}/screenshots/broken", 404)
    assert failed.status_code == 404, (failed.status_code, failed.headers.get("content-type"))
    assert failed.json()["error"]["code"] == "screenshot_failed"
    row = run_db(stack, "SELECT status, raw_key FROM screenshots WHERE session_id = $1 AND screenshot_id = 'broken'",
                 sid)[0]
    assert row["status"] == "failed" and row["raw_key"] is None
    with pytest.raises(NotFound):  # an unprocessable raw upload is not kept
        read_object(stack, raw_key)


# -- WebP uploads the client painted (issue 15.2): stored as is only when really covered ---------

def _checkout_events() -> list[dict[str, Any]]:
    """A checkout page whose email and card inputs the server knows to be sensitive."""
    return [{"seq": 0, "type": "navigation", "ts": T0, "url": "https://shop.example/checkout"},
            {"seq": 1, "type": "dom_snapshot", "ts": T0 + 10, "url": "https://shop.example/checkout", "elements": [
                {"tag": "input", "attributes": {"type": "email", "name": "email"}, "bbox": CHECKOUT_FIELDS["email"]},
                {"tag": "input", "attributes": {"autocomplete": "cc-number"}, "bbox": CHECKOUT_FIELDS["card"]}]}]


def _margin(box: dict[str, int]) -> list[int]:
    """A box as the extension lists it: two pixels of margin on every side."""
    return [box["x"] - 2, box["y"] - 2, box["width"] + 4, box["height"] + 4]


def _webp(index: int, paint: list[list[int]]) -> bytes:
    img = Image.open(io.BytesIO(page_png(index))).convert("RGB")
    draw = ImageDraw.Draw(img)
    for x, y, w, h in paint:
        draw.rectangle([x, y, x + w - 1, y + h - 1], fill=(0, 0, 0))
    out = io.BytesIO()
    img.save(out, format="WEBP", quality=80)
    return out.getvalue()


def _fields_hidden(data: bytes) -> None:
    img = Image.open(io.BytesIO(data)).convert("RGB")
    for name, box in CHECKOUT_FIELDS.items():
        for dx, dy in ((4, 4), (box["width"] // 2, box["height"] // 2), (box["width"] - 5, box["height"] - 5)):
            pixel = img.getpixel((box["x"] + dx, box["y"] + dy))
            assert max(pixel) < 48, f"the {name} field shows at +{dx},+{dy}: {pixel}"


def test_a_painted_webp_is_stored_as_is_only_when_every_server_box_is_painted(api: Api, stack: Any) -> None:
    sid = api.create_session(session_id=new_id(), viewport=VIEWPORT)
    both = [_margin(CHECKOUT_FIELDS["email"]), _margin(CHECKOUT_FIELDS["card"])]
    uploads = {
        "honest": (_webp(1, both), both),  # painted and listed both fields
        "claims": (_webp(2, []), both),  # lists both fields, painted neither
        "partial": (_webp(3, both[:1]), both[:1]),  # the card field is known to the server only
    }
    for shot, (data, listed) in uploads.items():
        answer = api.http.put(f"/v1/sessions/{sid}/screenshots/{shot}", params={"seq": 1}, content=data,
                              headers={"Content-Type": "image/webp", "X-Painted-Boxes": json.dumps(listed)})
        assert answer.status_code == 201, answer.text
    assert api.post_events(sid, _checkout_events()).status_code == 200
    for shot, (data, _) in uploads.items():
        got = _poll(api, f"/v1/sessions/{sid}/screenshots/{shot}", 200)
        assert got.status_code == 200 and got.headers["content-type"] == "image/webp", (shot, got.status_code)
        _fields_hidden(got.content)
        assert (got.content == data) == (shot == "honest"), f"{shot}: stored as uploaded is wrong"
    rows = {r["screenshot_id"]: r for r in run_db(
        stack, "SELECT screenshot_id, boxes_painted, raw_key FROM screenshots WHERE session_id = $1", sid)}
    assert all(r["boxes_painted"] == 2 and r["raw_key"] is None for r in rows.values()), rows


def test_a_malformed_painted_boxes_header_is_refused_and_nothing_stored(api: Api, stack: Any) -> None:
    sid = api.create_session(session_id=new_id(), viewport=VIEWPORT)
    for bad in ("[[1, 2, 3]]", "nope", "[[1, 2, -3, 4]]"):
        answer = api.http.put(f"/v1/sessions/{sid}/screenshots/bad", params={"seq": 0}, content=_webp(4, []),
                              headers={"Content-Type": "image/webp", "X-Painted-Boxes": bad})
        assert answer.status_code == 422, (bad, answer.status_code)
        assert answer.json()["error"]["details"][0]["field"].startswith("X-Painted-Boxes")
    assert run_db(stack, "SELECT count(*) AS n FROM screenshots WHERE session_id = $1", sid)[0]["n"] == 0
    put = api.http.get("/openapi.json").json()["paths"]["/v1/sessions/{session_id}/screenshots/{screenshot_id}"]["put"]
    assert "X-Painted-Boxes" in {p["name"] for p in put["parameters"]}, "the header is documented in /docs"
