"""Write a recording file (cluster.demo.recording) from a session stored by a tracemill endpoint,
through the public API only: the session, its stored events paged by seq, the archive's
manifest for the client details, and every screenshot a `screenshot` event names.

The stored events are the redacted ones, which is what a committed recording should hold.
The API does not keep frame boundaries, so frames are rebuilt with the extension's flush rule
(a frame closes at 50 events or 250 ms after its first event) unless the caller knows them.
"""

from __future__ import annotations

import base64
import io
import json
import os
import tempfile
import zipfile
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from pydantic import ValidationError

from cluster.demo.recording import RECORDING_FORMAT, Recording, RecordingError, describe_validation_error

__all__ = ["api_error", "export_recording", "flush_frames"]

FRAME_MAX_EVENTS = 50
FRAME_MAX_SPAN_MS = 250


def api_error(response: httpx.Response) -> str:
    """`code: message` from the API's one error shape, or the status line if it is not one."""
    try:
        error = response.json()["error"]
        return f"{error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}: {response.text[:200]}"


def flush_frames(events: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    frames: list[list[dict[str, Any]]] = []
    for event in events:
        if frames and len(frames[-1]) < FRAME_MAX_EVENTS and event["ts"] - frames[-1][0]["ts"] <= FRAME_MAX_SPAN_MS:
            frames[-1].append(event)
        else:
            frames.append([event])
    return frames


def _frames_by_seq(events: list[dict[str, Any]], frame_seqs: Sequence[Sequence[int]]) -> list[list[dict[str, Any]]]:
    by_seq = {e["seq"]: e for e in events}
    wanted = [seq for frame in frame_seqs for seq in frame]
    if sorted(wanted) != sorted(by_seq):
        raise RecordingError("frame_seqs must name every stored event exactly once")
    return [[by_seq[seq] for seq in frame] for frame in frame_seqs if frame]


def _ms(iso: str | None) -> int | None:
    return None if iso is None else int(datetime.fromisoformat(iso).timestamp() * 1000)


def _get(http: httpx.Client, path: str, **params: Any) -> httpx.Response:
    try:
        response = http.get(path, params=params or None)
    except httpx.HTTPError as exc:
        raise RecordingError(f"no answer from {http.base_url}: {exc}") from None
    if response.status_code != 200:
        raise RecordingError(f"GET {path} failed: {api_error(response)}")
    return response


def _events(http: httpx.Client, session_id: str, page_size: int) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    after = -1
    while True:
        page = _get(http, f"/v1/sessions/{session_id}/events", after_seq=after, limit=page_size).json()
        events.extend(page["events"])
        if page["next_after_seq"] is None:
            return events
        after = page["next_after_seq"]


def _archive_manifest(http: httpx.Client, session_id: str, view: dict[str, Any]) -> dict[str, Any]:
    """The archive's manifest: only it has the client, user agent and viewport (the session
    read does not) and the list of screenshots; a session without an archive yields {}."""
    if view.get("archive") is None:
        return {}
    data = _get(http, f"/v1/sessions/{session_id}/archive").content
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return dict(json.loads(zf.read("manifest.json")))


def _screenshot(http: httpx.Client, session_id: str, screenshot_id: str, **fields: Any) -> dict[str, Any]:
    response = _get(http, f"/v1/sessions/{session_id}/screenshots/{screenshot_id}")
    return {"screenshot_id": screenshot_id, **fields,
            "content_type": response.headers["content-type"].split(";")[0].strip(),
            "data_base64": base64.b64encode(response.content).decode()}  # fmt: skip


def _screenshots(http: httpx.Client, session_id: str, events: list[dict[str, Any]],
                 manifest: dict[str, Any]) -> list[dict[str, Any]]:  # fmt: skip
    """Those a `screenshot` event names (with its seq, time and trigger), then those only the
    archive lists (uploaded without an event: their seq is unknown)."""
    shots = [_screenshot(http, session_id, e["screenshot_id"], seq=e["seq"], captured_at=e["ts"],
                         trigger=e.get("trigger"))
             for e in events if e["type"] == "screenshot"]  # fmt: skip
    named = {s["screenshot_id"] for s in shots}
    for entry in manifest.get("files", []):
        name = str(entry["path"])
        if name.startswith("screenshots/") and name.endswith(".webp"):
            screenshot_id = name.removeprefix("screenshots/").removesuffix(".webp")
            if screenshot_id not in named:
                shots.append(_screenshot(http, session_id, screenshot_id))
    return shots


def export_recording(
    endpoint: str,
    api_key: str,
    session_id: str,
    path: str | Path,
    *,
    source: str = "",
    frame_seqs: Sequence[Sequence[int]] | None = None,
    page_size: int = 500,
    timeout_s: float = 60.0,
) -> Recording:
    """Write the stored session `session_id` as a recording file at `path` (atomically: a
    failed export leaves no file). The key needs the `read` scope. Export a session once it
    is `ready`: its archive then gives the client details and its screenshots are final.
    `frame_seqs` gives the real frame boundaries (lists of seq) when the caller knows them."""
    headers = {"Authorization": f"Bearer {api_key}"}
    with httpx.Client(base_url=endpoint.rstrip("/"), headers=headers, timeout=timeout_s) as http:
        view = _get(http, f"/v1/sessions/{session_id}").json()
        events = _events(http, session_id, page_size)
        if not events:
            raise RecordingError(f"session {session_id} has no stored events")
        started = _ms(view.get("started_at")) or events[0]["ts"]
        manifest = _archive_manifest(http, session_id, view)
        client = {k: v for k, v in manifest.get("session", {}).items()
                  if k in ("client", "user_agent", "viewport") and v is not None}
        session = {"type": view["type"], "task": view.get("task"), "started_at": started,
                   "ended_at": _ms(view.get("ended_at")) or events[-1]["ts"], "outcome": view.get("outcome"),
                   **client}  # fmt: skip
        document = {
            "format": RECORDING_FORMAT, "source": source, "session": session,
            "frames": _frames_by_seq(events, frame_seqs) if frame_seqs else flush_frames(events),
            "screenshots": _screenshots(http, session_id, events, manifest),
        }  # fmt: skip
    try:
        recording = Recording.model_validate(document)
    except ValidationError as exc:
        raise RecordingError(f"session {session_id} does not make a valid recording: "
                             f"{describe_validation_error(exc)}") from None  # fmt: skip
    _write_atomically(Path(path), recording.model_dump_json(indent=1))
    return recording


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
