"""Only painted screenshots leave the server: before painting a GET is `409
screenshot_not_ready` with Retry-After, and an upload that cannot be processed is deleted and
answered `404 screenshot_failed`, never served (PROTOCOL.md, Screenshots)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from actors.errors import NotFound
from tests.support.client import Api, click_event, new_id
from tests.support.sessions import VIEWPORT, page_png
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
