"""The non-stream part of a mixed load: screenshot PUTs, session reads and finishes, issued by
each streaming session after its acks (as the extension uploads a capture once the events
around it are acked), beside the stream rather than in its loop. Counted apart from the
stream so each gets its own rate and latency."""

from __future__ import annotations

import asyncio
import time
import zlib
from dataclasses import dataclass, field

import httpx
import numpy as np

__all__ = ["SideCounts", "SideTraffic"]


@dataclass
class SideCounts:
    ok: int = 0
    failed: int = 0
    in_window: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    samples: list[str] = field(default_factory=list)

    def p99_ms(self) -> float | None:
        return float(np.percentile(self.latencies_ms, 99)) if self.latencies_ms else None


class SideTraffic:
    """Screenshots every `screenshot_every` acked frames, a read every `read_every`, a finish
    per session at the end; `frames` are PNG bytes, used in turn."""

    def __init__(self, base_url: str, api_key: str, *, screenshot_every: int, read_every: int,
                 frames: list[bytes], timeout_s: float = 30.0, connections: int = 100) -> None:
        self.screenshot_every, self.read_every, self.frames = screenshot_every, read_every, frames
        self.http = httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=timeout_s,
                                      headers={"Authorization": f"Bearer {api_key}"},
                                      limits=httpx.Limits(max_connections=connections))
        self.screenshots, self.reads, self.finishes = SideCounts(), SideCounts(), SideCounts()
        self.window = (float("inf"), float("inf"))
        self._busy: dict[str, asyncio.Task[None]] = {}
        # At most `connections` requests enter the client at once: httpcore's pool scans every
        # waiting request on each change, so a thousand queued finishes made the generator's own
        # loop the bottleneck (py-spy: two thirds of its samples in the pool's bookkeeping).
        self._gate = asyncio.Semaphore(connections)
        self.skipped = 0

    async def aclose(self) -> None:
        await self.http.aclose()

    def after_ack(self, session_id: str, frame_no: int, last_seq: int) -> None:
        """Start this turn's side requests beside the stream, as the extension uploads captures
        while it keeps streaming; a session whose last ones are still running skips a turn."""
        busy = self._busy.get(session_id)
        if busy is not None and not busy.done():
            self.skipped += 1
            return
        self._busy[session_id] = asyncio.create_task(self._turn(session_id, frame_no, last_seq))

    async def drain(self) -> None:
        await asyncio.gather(*self._busy.values(), return_exceptions=True)

    async def _turn(self, session_id: str, frame_no: int, last_seq: int) -> None:
        # Each session's own phase: the screenshot share of all frames stays 1/N whatever the
        # number of sessions, even when each session sends only a few frames in the window.
        phase = zlib.crc32(session_id.encode())
        if self.screenshot_every and (frame_no + phase) % self.screenshot_every == 0 and self.frames:
            png = self.frames[frame_no // self.screenshot_every % len(self.frames)]
            await self._call(self.screenshots, "PUT",
                             f"/v1/sessions/{session_id}/screenshots/f{frame_no:06d}",
                             params={"seq": last_seq, "trigger": "click"}, content=png,
                             headers={"Content-Type": "image/png"})
        if self.read_every and (frame_no + phase) % self.read_every == 0:
            await self._call(self.reads, "GET", f"/v1/sessions/{session_id}")

    async def settle(self, session_id: str) -> None:
        """Wait for the session's side requests still running: its screenshots before its finish."""
        busy = self._busy.pop(session_id, None)
        if busy is not None:
            await asyncio.gather(busy, return_exceptions=True)

    async def finish(self, session_id: str) -> None:
        await self.settle(session_id)
        # Finishes come after the window: their latency counts whenever they are answered.
        await self._call(self.finishes, "POST", f"/v1/sessions/{session_id}/finish",
                         json={"outcome": "success"}, any_time=True)

    async def _call(self, counts: SideCounts, method: str, path: str, *, any_time: bool = False,
                    **kwargs: object) -> None:
        started = time.perf_counter()
        try:
            async with self._gate:
                answer = await self.http.request(method, path, **kwargs)  # type: ignore[arg-type]
        except httpx.HTTPError as exc:
            counts.failed += 1
            if len(counts.samples) < 3:
                counts.samples.append(f"{method} {path}: {type(exc).__name__}")
            return
        now = time.perf_counter()
        if answer.is_success:
            counts.ok += 1
            in_window = self.window[0] <= now < self.window[1]
            counts.in_window += in_window
            if in_window or any_time:
                counts.latencies_ms.append((now - started) * 1000)
        else:
            counts.failed += 1
            if len(counts.samples) < 3:
                counts.samples.append(f"{method} {path}: {answer.status_code} {answer.text[:120]}")
