"""One request id finds every log line of one request across processes: the ingress replica,
the session's shard and the processing tasks it fanned out, each a JSON object per line."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import ray

from tests.integration.test_processing import wait_terminal
from tests.support.client import Api, new_id, send_frame
from tests.support.sessions import VIEWPORT, page_png, shop_session


def lines_with(request_id: str) -> list[dict[str, Any]]:
    logs = Path(ray._private.worker._global_node.get_session_dir_path()) / "logs"
    found = []
    for path in logs.rglob("*"):
        if not path.is_file():
            continue
        for line in path.read_text("utf-8", "replace").splitlines():
            if request_id in line and line.startswith("{"):
                found.append(json.loads(line))
    return found


def test_a_request_id_is_followed_from_the_ingress_into_the_shard_and_the_tasks(api: Api) -> None:
    events, _ = shop_session(40, 0)
    sid = api.create_session(session_id=new_id(), viewport=VIEWPORT, task="buy a kettle")
    with api.stream(sid) as ws:
        assert send_frame(ws, events)["type"] == "ack"
    assert api.http.put(f"/v1/sessions/{sid}/screenshots/one", params={"seq": 39}, content=page_png(5),
                        headers={"Content-Type": "image/png"}).status_code == 201
    request_id = f"rid-{uuid.uuid4()}"
    finish = api.http.post(f"/v1/sessions/{sid}/finish", headers={"X-Request-ID": request_id})
    assert finish.status_code == 202 and finish.headers["x-request-id"] == request_id
    assert wait_terminal(api, sid)["status"] in ("ready", "rejected")

    deadline = time.monotonic() + 30  # workers flush stderr on their own schedule
    while True:
        found = lines_with(request_id)
        components = {entry["component"].split("-")[0] for entry in found}
        if {"ingress", "shard", "task"} <= components or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert {"ingress", "shard", "task"} <= components, found
    assert len({entry["pid"] for entry in found}) >= 3
    assert all(entry["request_id"] == request_id and entry["level"] and entry["message"] for entry in found)
    assert any("archive task done" in entry["message"] for entry in found)
