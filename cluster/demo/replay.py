"""`tracemill demo`: replay a recorded browser session through a running tracemill's public
endpoint and show what became of it.

    tracemill demo [--endpoint http://127.0.0.1:8000] [--api-key KEY] [--recording FILE]

The recording (cluster/demo/recording.py; by default the shop checkout the extension captured in a
real browser, cluster/demo/data/shop_checkout.json) is checked whole before anything is sent.
The replay makes a fresh session id and moves every time to now, then does what the extension
does: create the session, stream the frames over the WebSocket with first-frame auth (one
frame in flight, each acked after commit), upload each screenshot once its event is acked,
finish, and poll the session until it is ready, rejected or failed.

Errors (no server, a refused key, a bad recording) are one line on stderr and exit 2; they are
all found before the session is created, so they leave nothing behind.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from cluster.demo.recording import Recording, RecordingError, load_recording
from cluster.demo.export import api_error, export_recording
from cluster.stream_client import exchange, open_stream

__all__ = ["DEFAULT_RECORDING", "DemoError", "DemoResult", "add_arguments", "export_recording", "main", "replay",
           "run", "run_demo"]

DEFAULT_RECORDING = Path(__file__).with_name("data") / "shop_checkout.json"
TERMINAL = ("ready", "rejected", "failed")
_POLL_S = 0.5
Progress = Callable[[str], None]


class DemoError(Exception):
    """Why the demo could not run, in one line for a person."""


class DemoResult(BaseModel):
    session_id: str
    status: str
    finalize_stage: str | None = None
    failure: str | None = None
    events_sent: int
    frames_sent: int
    event_count: int
    duplicate_count: int
    screenshots_sent: int
    screenshot_count: int
    quality: dict[str, Any] | None = None
    archive: dict[str, Any] | None = None
    dashboard_url: str
    seconds: float


def _shift(ts: Any, shift_ms: int) -> int:
    """A recorded time moved to now. Recordings written by export hold epoch ms; RFC 3339 (also
    valid in events) is converted."""
    if isinstance(ts, int):
        return ts + shift_ms
    from actors.ingest.events import parse_timestamp

    return int(parse_timestamp(ts).timestamp() * 1000) + shift_ms


class _Client:
    """The HTTP half of the replay, every failure turned into a DemoError."""

    def __init__(self, http: httpx.AsyncClient, endpoint: str):
        self.http, self.endpoint = http, endpoint

    async def call(self, method: str, path: str, expect: tuple[int, ...], **kwargs: Any) -> httpx.Response:
        try:
            response = await self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise DemoError(f"no answer from tracemill at {self.endpoint} ({type(exc).__name__}: {exc})") from None
        if response.status_code == 401:
            raise DemoError(f"the API key was refused ({api_error(response)})")
        if response.status_code == 403:
            raise DemoError(f"the API key lacks a scope the demo needs, ingest and read ({api_error(response)})")
        if response.status_code not in expect:
            raise DemoError(f"{method} {path} failed: {api_error(response)}")
        return response

    async def preflight(self) -> None:
        """A live server and a key that may read, checked before anything is created."""
        health = await self.call("GET", "/healthz", (200,))
        if "application/json" not in health.headers.get("content-type", ""):
            raise DemoError(f"{self.endpoint} answers, but it is not a tracemill endpoint")
        # An unknown session: 404 with a good key, 401/403 with a bad one; it creates nothing.
        await self.call("GET", f"/v1/sessions/{uuid.uuid4()}", (404,))


async def _stream(client: _Client, recording: Recording, session_id: str, api_key: str,
                  shift_ms: int, progress: Progress) -> int:  # fmt: skip
    """Send every frame, one in flight; upload each screenshot once its event is acked
    (as the extension does: a screenshot belongs to a stored event). Returns screenshots sent."""
    pending = sorted(recording.screenshots, key=lambda s: -1 if s.seq is None else s.seq)
    sent, acked = 0, -1
    try:
        ws = await open_stream(client.endpoint, session_id, api_key)
    except (OSError, InvalidHandshake, TimeoutError) as exc:
        raise DemoError(f"cannot open the stream: {type(exc).__name__}: {exc}") from None
    try:
        for number, frame in enumerate(recording.frames, 1):
            events = [{**event, "ts": _shift(event["ts"], shift_ms)} for event in frame]
            reply = await exchange(ws, json.dumps({"type": "events", "events": events}))
            if reply.error is not None:
                raise DemoError(f"frame {number} was refused: {reply.error.get('code')}: {reply.error.get('message')}")
            acked = int(reply.ack["acked_through"]) if reply.ack else -1
            while pending and (pending[0].seq is None or pending[0].seq <= acked):
                await _put_screenshot(client, session_id, pending.pop(0), shift_ms)
                sent += 1
            if number % max(1, len(recording.frames) // 10) == 0 or number == len(recording.frames):
                # About ten lines per replay, however many frames it has.
                progress(f"streaming  frame {number}/{len(recording.frames)}  acked through seq {acked}"
                         f"  screenshots {sent}/{len(recording.screenshots)}")  # fmt: skip
    except ConnectionClosed as exc:
        code = exc.rcvd.code if exc.rcvd else None
        if code == 4401:
            raise DemoError("the API key was refused on the stream (close code 4401)") from None
        raise DemoError(f"the stream closed (code {code}); session {session_id} was left unfinished") from None
    finally:
        await ws.close()
    if acked != recording.last_seq:
        raise DemoError(f"the server acked through seq {acked}, not {recording.last_seq}")
    return sent


async def _put_screenshot(client: _Client, session_id: str, shot: Any, shift_ms: int) -> None:
    params: dict[str, Any] = {}
    if shot.seq is not None:
        params["seq"] = shot.seq
    if shot.captured_at is not None:
        params["captured_at"] = shot.captured_at + shift_ms
    if shot.trigger is not None:
        params["trigger"] = shot.trigger
    await client.call("PUT", f"/v1/sessions/{session_id}/screenshots/{shot.screenshot_id}", (200, 201),
                      params=params, content=shot.data, headers={"Content-Type": shot.content_type})  # fmt: skip


async def replay(recording: Recording, endpoint: str, api_key: str, *,
                 timeout_s: float = 300.0, progress: Progress | None = None) -> DemoResult:  # fmt: skip
    """Replay `recording` as a fresh session and wait for its finalisation (see the module doc)."""
    say = progress or (lambda _line: None)
    started = time.monotonic()
    endpoint = endpoint.rstrip("/")
    session_id = str(uuid.uuid4())
    shift_ms = int(time.time() * 1000) - recording.session.started_at
    headers = {"Authorization": f"Bearer {api_key}"}
    async with httpx.AsyncClient(base_url=endpoint, headers=headers, timeout=30) as http:
        client = _Client(http, endpoint)
        await client.preflight()
        body = {"session_id": session_id, **recording.session.create_body(shift_ms)}
        await client.call("POST", "/v1/sessions", (201,), json=body)
        say(f"session    {session_id} created")
        shots = await _stream(client, recording, session_id, api_key, shift_ms, say)
        ended = recording.session.ended_at
        finish = {"last_seq": recording.last_seq, "outcome": recording.session.outcome,
                  "ended_at": None if ended is None else ended + shift_ms}  # fmt: skip
        await client.call("POST", f"/v1/sessions/{session_id}/finish", (202,),
                          json={k: v for k, v in finish.items() if v is not None})  # fmt: skip
        view = await _wait_terminal(client, session_id, started + timeout_s, say)
    return DemoResult(
        session_id=session_id, status=view["status"], finalize_stage=view.get("finalize_stage"),
        failure=view.get("failure"), events_sent=recording.event_count, frames_sent=len(recording.frames),
        event_count=view["event_count"], duplicate_count=view.get("duplicate_count", 0),
        screenshots_sent=shots, screenshot_count=view["screenshot_count"], quality=view.get("quality"),
        archive=view.get("archive"), dashboard_url=f"{endpoint}/dashboard",
        seconds=round(time.monotonic() - started, 1),
    )  # fmt: skip


async def _wait_terminal(client: _Client, session_id: str, deadline: float, say: Progress) -> dict[str, Any]:
    last = ""
    while True:
        view = dict((await client.call("GET", f"/v1/sessions/{session_id}", (200,))).json())
        stage = view.get("finalize_stage") if view["status"] not in TERMINAL else None
        line = f"finalising {view['status']}" + (f" (stage {stage})" if stage else "")
        if line != last:
            say(line)
            last = line
        if view["status"] in TERMINAL:
            return view
        if time.monotonic() > deadline:
            raise DemoError(f"session {session_id} is still {view['status']} at the timeout"
                            f" (stage {view.get('finalize_stage')}); see `tracemill status`")  # fmt: skip
        await asyncio.sleep(_POLL_S)


def run_demo(endpoint: str, api_key: str, recording_path: str | Path = DEFAULT_RECORDING, *,
             timeout_s: float = 300.0, progress: Progress | None = None) -> DemoResult:  # fmt: skip
    """Load and check the recording, then replay it; what `tracemill demo` runs.
    Raises DemoError (a bad recording included) with a one-line message."""
    try:
        recording = load_recording(recording_path)
    except RecordingError as exc:
        raise DemoError(str(exc)) from None
    return asyncio.run(replay(recording, endpoint, api_key, timeout_s=timeout_s, progress=progress))


def format_summary(result: DemoResult) -> str:
    q = result.quality
    quality = "not scored" if q is None else (
        f"overall {q['overall']:.2f}  completeness {q['completeness']:.2f}  selectors {q['selector_reliability']:.2f}"
        f"  screenshots {q['screenshot_quality']:.2f}  training value {q['training_value']:.2f}")
    archive = "none" if not result.archive else f"{result.archive['key']} ({result.archive['bytes']} bytes)"
    lines = [
        f"session      {result.session_id}  {result.status}  ({result.seconds:.1f} s)",
        f"events       {result.event_count} stored of {result.events_sent} sent in {result.frames_sent} frames"
        f" ({result.duplicate_count} duplicates)",
        f"screenshots  {result.screenshot_count} stored of {result.screenshots_sent} sent",
        f"quality      {quality}",
        f"archive      {archive}",
        f"dashboard    {result.dashboard_url}",
    ]  # fmt: skip
    if result.failure:
        lines.insert(1, f"failure      {result.failure}")
    if q and result.status == "rejected":
        lines.insert(1, f"reasons      {'; '.join(map(str, q.get('reasons') or []))}")
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = __doc__
    p.add_argument("--endpoint", default="http://127.0.0.1:8000", help="a running `tracemill up`")
    env_key = os.environ.get("TRACEMILL_API_KEY")
    p.add_argument("--api-key", default=env_key, required=not env_key,
                   help="or env TRACEMILL_API_KEY; `tracemill up` prints one")
    p.add_argument("--recording", type=Path, default=DEFAULT_RECORDING)
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for finalisation")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args: argparse.Namespace) -> int:
    try:
        result = run_demo(args.endpoint, args.api_key, args.recording, timeout_s=args.timeout,
                          progress=lambda line: print(f"[demo] {line}", file=sys.stderr, flush=True))  # fmt: skip
    except DemoError as exc:
        print(f"tracemill demo: {exc}", file=sys.stderr)
        return 2
    print(result.model_dump_json(indent=2) if args.json else format_summary(result))
    return 0 if result.status == "ready" else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tracemill demo", formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
