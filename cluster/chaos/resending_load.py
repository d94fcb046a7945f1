"""The streaming load the fault scenarios run under (cluster.chaos.scenarios): N sessions, each
streaming click events over its own WebSocket, uploading a screenshot every few frames and finishing.

It is a *resending* client, as PROTOCOL.md asks of every client: it keeps what is not acked,
and after any failure (dropped socket, refused upgrade, error frame, 5xx, timeout) it
reconnects and sends again from its last ack. It records exactly what the server promised:

- per session, the highest `acked_through` an ack carried (everything up to it must be stored),
- every screenshot answered 2xx (it must be durable),
- every session whose finish was answered 202 (it must reach a terminal state),
- the time of every ack and every 2xx screenshot, to measure how long a fault stalled the load.

Everything is bounded: each request by a timeout, the whole run by `deadline_s`.
"""

from __future__ import annotations

import asyncio
import io
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
from PIL import Image, ImageDraw
from websockets.exceptions import InvalidHandshake, WebSocketException

from cluster.bench.loadgen import EventFactory
from cluster.stream_client import exchange, open_stream

__all__ = ["ChaosLoadConfig", "LoadTrack", "SessionTrack", "run_chaos_load", "small_png"]

# Pause after a failure before trying again: short, so recovery time measures the server.
_BACKOFF_S = 0.2


@dataclass(frozen=True)
class ChaosLoadConfig:
    url: str
    api_key: str
    sessions: int = 8
    events: int = 400  # per session
    batch: int = 20  # events per frame
    shots: int = 3  # screenshots per session, spread over its events
    frame_pause_s: float = 0.05  # between frames: a recorder's pace, so a fault lands mid-stream
    request_timeout_s: float = 10.0
    deadline_s: float = 120.0
    finish: bool = True


@dataclass
class SessionTrack:
    sid: str
    total: int
    acked_through: int = -1
    shots_ok: dict[str, float] = field(default_factory=dict)  # screenshot_id -> time of its 2xx
    finish_accepted: bool = False
    reconnects: int = 0
    error_frames: int = 0
    failed_requests: int = 0
    done: bool = False


@dataclass
class LoadTrack:
    """What the server acknowledged, and when (time.monotonic())."""

    sessions: list[SessionTrack] = field(default_factory=list)
    acks: list[tuple[float, str]] = field(default_factory=list)  # (when, session id)
    started_at: float = 0.0
    ended_at: float = 0.0
    timed_out: bool = False

    def events_acked(self) -> int:
        return sum(s.acked_through + 1 for s in self.sessions)

    def progress(self) -> int:
        return self.events_acked()

    def first_ack_after(self, t: float) -> float | None:
        return next((when for when, _ in self.acks if when > t), None)

    def streaming(self) -> set[str]:
        """Sessions with events still to be acked: the ones a fault injected now can stall."""
        return {s.sid for s in self.sessions if s.acked_through < s.total - 1 and not s.done}

    def recovered_at(self, t: float, sids: set[str], window_s: float = 60.0, stall_s: float = 1.0) -> float | None:
        """When the sessions in `sids` (those streaming at `t`) were all flowing again after a
        fault at `t`: per session, the end of its longest gap between acks that ends after `t`
        (a gap under `stall_s` is normal pacing: then its first ack after `t`); the latest of
        those. An ack just after `t` can be for a frame committed before the fault, so the
        first ack alone would hide the stall that follows. None if a session never recovered."""
        latest = t
        for sid in sids:
            times = sorted(w for w, s in self.acks if s == sid)
            after = [w for w in times if w > t]
            session = self._session(sid)
            if not after:
                if session is not None and session.acked_through == session.total - 1:
                    continue  # all its events were acked before the fault
                return None
            gaps = [(b - a, b) for a, b in zip(times, times[1:]) if t < b <= t + window_s]
            longest = max(gaps, default=(0.0, after[0]))
            latest = max(latest, longest[1] if longest[0] >= stall_s else after[0])
        return latest

    def _session(self, sid: str) -> SessionTrack | None:
        return next((s for s in self.sessions if s.sid == sid), None)

    def first_shot_after(self, t: float) -> float | None:
        times = [w for s in self.sessions for w in s.shots_ok.values() if w > t]
        return min(times) if times else None


def small_png(index: int, salt: str = "") -> bytes:
    """A small picture that differs per index and salt: no upload repeats an earlier run's
    image, so none is answered from the vision cache by image hash."""
    img = Image.new("RGB", (320, 200), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    draw.rectangle([0, 0, 320, 24], fill=((index * 37) % 256, (index * 91) % 256, 120))
    draw.text((10, 60), f"frame {index} {salt}", fill=(0, 0, 0))
    draw.rectangle([20 + index % 200, 100, 80 + index % 200, 140], fill=(index % 256, 40, 200))
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


class _Session:
    def __init__(self, cfg: ChaosLoadConfig, index: int, track: LoadTrack, http: httpx.AsyncClient,
                 deadline: float) -> None:
        self.cfg, self.index, self.load, self.http, self.deadline = cfg, index, track, http, deadline
        self.track = SessionTrack(sid=str(uuid.uuid4()), total=cfg.events)
        self.factory = EventFactory(index)
        every = max(1, cfg.events // max(1, cfg.shots))
        # (seq the screenshot belongs to, id); uploaded once the event is acked, as the extension does.
        self.shots = [(s, f"shot-{s:05d}") for s in range(0, cfg.events, every)][: cfg.shots]

    def left(self) -> float:
        return self.deadline - time.monotonic()

    async def run(self) -> None:
        await self._until_2xx("POST", "/v1/sessions", json={"session_id": self.track.sid, "type": "automated",
                                                            "task": "chaos"})
        while self.track.acked_through < self.track.total - 1 and self.left() > 0:
            try:
                await self._stream()
            except (WebSocketException, InvalidHandshake, OSError, TimeoutError):
                self.track.reconnects += 1
                await asyncio.sleep(_BACKOFF_S)
        await self._upload_due()
        if self.cfg.finish and self.track.acked_through == self.track.total - 1 and self.left() > 0:
            answer = await self._until_2xx("POST", f"/v1/sessions/{self.track.sid}/finish", json={"outcome": "success"})
            self.track.finish_accepted = answer is not None
        self.track.done = True

    async def _stream(self) -> None:
        ws = await open_stream(self.cfg.url, self.track.sid, self.cfg.api_key,
                               open_timeout=min(self.cfg.request_timeout_s, max(self.left(), 0.1)))
        try:
            while self.track.acked_through < self.track.total - 1 and self.left() > 0:
                start = self.track.acked_through + 1
                count = min(self.cfg.batch, self.track.total - start)
                reply = await asyncio.wait_for(exchange(ws, self.factory.frame(start, count)),
                                               min(self.cfg.request_timeout_s, max(self.left(), 0.1)))
                if reply.ack is not None:
                    self._acked(int(reply.ack["acked_through"]))
                    await self._upload_due()
                    await asyncio.sleep(self.cfg.frame_pause_s)
                else:  # nothing of the frame was stored: resend it after a pause
                    self.track.error_frames += 1
                    await asyncio.sleep(_BACKOFF_S)
        finally:
            await ws.close()

    def _acked(self, through: int) -> None:
        if through > self.track.acked_through:
            self.track.acked_through = through
        self.load.acks.append((time.monotonic(), self.track.sid))

    async def _upload_due(self) -> None:
        while self.shots and self.shots[0][0] <= self.track.acked_through and self.left() > 0:
            seq, shot_id = self.shots[0]
            answer = await self._until_2xx(
                "PUT", f"/v1/sessions/{self.track.sid}/screenshots/{shot_id}", params={"seq": seq, "trigger": "click"},
                content=small_png(self.index * 1000 + seq, self.track.sid), headers={"Content-Type": "image/png"})
            if answer is None:
                return  # out of time: this screenshot was never promised, so nothing is owed
            self.track.shots_ok[shot_id] = time.monotonic()
            self.shots.pop(0)

    async def _until_2xx(self, method: str, path: str, **kwargs: Any) -> httpx.Response | None:
        """Send until a 2xx (every route used here is idempotent), or None at the deadline."""
        while self.left() > 0:
            try:
                r = await self.http.request(method, path, timeout=min(self.cfg.request_timeout_s, self.left()), **kwargs)
                if r.is_success:
                    return r
                if r.status_code in (400, 401, 403, 404, 413, 415, 422):  # our bug, not a fault
                    raise RuntimeError(f"{method} {path} -> {r.status_code}: {r.text[:200]}")
            except httpx.HTTPError:
                pass
            self.track.failed_requests += 1
            await asyncio.sleep(_BACKOFF_S)
        return None


async def run_chaos_load(cfg: ChaosLoadConfig, track: LoadTrack | None = None) -> LoadTrack:
    """Run the load to completion or to the deadline; `track` can be watched while it runs."""
    track = track or LoadTrack()
    track.started_at = time.monotonic()
    deadline = track.started_at + cfg.deadline_s
    headers = {"Authorization": f"Bearer {cfg.api_key}"}
    async with httpx.AsyncClient(base_url=cfg.url, headers=headers, limits=httpx.Limits(max_connections=64)) as http:
        sessions = [_Session(cfg, i, track, http, deadline) for i in range(cfg.sessions)]
        track.sessions = [s.track for s in sessions]
        results = await asyncio.gather(*(s.run() for s in sessions), return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        raise errors[0]
    track.ended_at = time.monotonic()
    track.timed_out = track.ended_at >= deadline
    return track
