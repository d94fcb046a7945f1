"""`tracemill bench screenshots` and `tracemill bench finalize`: processing figures, each as a
ratio to a baseline measured in the same run.

screenshots  The same Pillow work (decode, WebP encode, pHash, local vision) on the same frames:
             a plain multiprocessing.Pool with one process per core (the baseline), Ray tasks
             with num_cpus=1 on a private local stack, and the whole path (PUT over HTTP, the
             object store, PostgreSQL, the compress tasks) until every frame is compressed.
             Rounds alternate so drift on a noisy machine hits all alike.
finalize     Sessions of 200 events and 40 screenshots recorded through the public endpoint;
             the time from /finish to `ready`, and the same session's compress work alone in
             the Pool, for scale.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import ray
from websockets.sync.client import connect

from cluster.bench.frames import compress_and_measure, synthetic_page
from cluster.bench.stack import private_stack
from cluster.commands import Entry
from cluster.results import write_result

__all__ = ["FINALIZE", "SCREENSHOTS", "bench_finalize", "bench_screenshots", "record_session"]


def _timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- screenshots ------------------------------------------------------------------------------

def _pool_round(pool: Any, frames: list[bytes]) -> float:
    return _timed(lambda: pool.map(compress_and_measure, frames, chunksize=1))


def _ray_round(frames_refs: list[Any]) -> float:
    task = ray.remote(num_cpus=1)(compress_and_measure)
    return _timed(lambda: ray.get([task.remote(ref) for ref in frames_refs]))


def _pipeline_round(endpoint: str, key: str, frames: list[bytes], dsn: str) -> float:
    """Upload every frame to a fresh session and wait until all are compressed."""
    import asyncpg  # noqa: PLC0415 - only this round needs it
    import asyncio

    http = httpx.Client(base_url=endpoint, timeout=60, headers={"Authorization": f"Bearer {key}"})
    sid = str(uuid.uuid4())
    http.post("/v1/sessions", json={"session_id": sid, "type": "automated"}).raise_for_status()
    ack = http.post(f"/v1/sessions/{sid}/events", json={"events": [
        {"seq": 0, "type": "navigation", "ts": int(time.time() * 1000), "url": "https://shop.example/"}]})
    ack.raise_for_status()

    async def compressed() -> int:
        conn = await asyncpg.connect(dsn)
        try:
            return int(await conn.fetchval(
                "SELECT count(*) FROM screenshots WHERE session_id = $1 AND status = 'compressed'", uuid.UUID(sid)))
        finally:
            await conn.close()

    started = time.perf_counter()
    for i, png in enumerate(frames):
        http.put(f"/v1/sessions/{sid}/screenshots/f{i}", params={"seq": 0}, content=png,
                 headers={"Content-Type": "image/png"}).raise_for_status()
    deadline = time.monotonic() + 600
    while asyncio.run(compressed()) < len(frames) and time.monotonic() < deadline:
        time.sleep(0.05)
    return time.perf_counter() - started


def bench_screenshots(stack: Any, key: str, frames_count: int, rounds: int) -> dict[str, Any]:
    frames = [synthetic_page(i) for i in range(frames_count)]
    refs = [ray.put(f) for f in frames]
    dsn = stack.settings.database.url.get_secret_value()
    times: dict[str, list[float]] = {"pool": [], "ray_tasks": [], "pipeline": []}
    cores = os.cpu_count() or 1
    with multiprocessing.get_context("spawn").Pool(cores) as pool:
        pool.map(compress_and_measure, frames[:cores])  # warm the workers' imports
        _ray_round(refs[:cores])
        for r in range(1, rounds + 1):
            for name, run in (("pool", lambda: _pool_round(pool, frames)), ("ray_tasks", lambda: _ray_round(refs)),
                              ("pipeline", lambda: _pipeline_round(stack.endpoint, key, frames, dsn))):
                seconds = run()
                times[name].append(seconds)
                _progress(f"round {r}/{rounds} {name:9s} {frames_count / seconds:6.1f} frames/s")
    rate = {name: frames_count / statistics.median(ts) for name, ts in times.items()}
    return {"frames": frames_count, "cores": cores, "frames_per_s": rate,
            "ratio_ray_tasks_to_pool": rate["ray_tasks"] / rate["pool"],
            "ratio_pipeline_to_pool": rate["pipeline"] / rate["pool"], "seconds": times}


# -- finalisation ----------------------------------------------------------------------------

def _events(n: int) -> list[dict[str, Any]]:
    t0 = int(time.time() * 1000)
    out = []
    for seq in range(n):
        testid = f"item-{seq % 7}"
        element = {"tag": "button", "text": f"Item {seq % 7}", "attributes": {"data-testid": testid},
                   "selectors": [{"kind": "testid", "value": testid, "unique": True},
                                 {"kind": "css", "value": f"[data-testid={testid}]", "unique": True}],
                   "bbox": {"x": 600, "y": 300, "width": 120, "height": 32}}
        if seq % 10 == 0:
            event = {"type": "navigation", "url": f"https://shop.example/p/{seq}", "title": "Shop"}
        elif seq % 10 == 5:
            event = {"type": "input", "url": "https://shop.example/", "value": "kettle", "target": element}
        else:
            event = {"type": "click", "url": "https://shop.example/", "target": element, "x": 610, "y": 310}
        out.append({"seq": seq, "ts": t0 + seq * 500, **event})
    return out


def record_session(endpoint: str, key: str, events: list[dict[str, Any]], frames: list[bytes]) -> tuple[float, float]:
    """Stream the events, upload the frames, finish; returns seconds from /finish to a final
    status, and from the first screenshot upload to it."""
    http = httpx.Client(base_url=endpoint, timeout=60, headers={"Authorization": f"Bearer {key}"})
    sid = str(uuid.uuid4())
    http.post("/v1/sessions", json={"session_id": sid, "type": "human", "task": "buy a kettle",
                                    "viewport": {"width": 1280, "height": 800}}).raise_for_status()
    with connect(endpoint.replace("http://", "ws://") + f"/v1/sessions/{sid}/stream", max_size=2**24) as ws:
        ws.send(json.dumps({"type": "auth", "api_key": key}))
        for start in range(0, len(events), 50):
            ws.send(json.dumps({"type": "events", "events": events[start:start + 50]}))
            json.loads(ws.recv(timeout=60))
    step = max(1, len(events) // max(1, len(frames)))
    uploads_started = time.perf_counter()
    for i, png in enumerate(frames):
        http.put(f"/v1/sessions/{sid}/screenshots/s{i}", params={"seq": i * step}, content=png,
                 headers={"Content-Type": "image/png"}).raise_for_status()
    started = time.perf_counter()
    http.post(f"/v1/sessions/{sid}/finish", json={"outcome": "success"}).raise_for_status()
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        status = http.get(f"/v1/sessions/{sid}").json()["status"]
        if status in ("ready", "rejected", "failed"):
            break
        time.sleep(0.05)
    ended = time.perf_counter()
    return ended - started, ended - uploads_started


def bench_finalize(stack: Any, key: str, sessions: int) -> dict[str, Any]:
    frames = [synthetic_page(1000 + i) for i in range(40)]
    events = _events(200)
    cores = os.cpu_count() or 1
    with multiprocessing.get_context("spawn").Pool(cores) as pool:
        pool_s = _pool_round(pool, frames)
    after_finish, after_upload = [], []
    for i in range(sessions):
        finish_s, upload_s = record_session(stack.endpoint, key, events, frames)
        after_finish.append(finish_s)
        after_upload.append(upload_s)
        _progress(f"session {i + 1}/{sessions}: /finish → final status {finish_s:.2f} s,"
                  f" first upload → final status {upload_s:.2f} s")
    return {"events": 200, "screenshots": 40, "finish_to_final_s": after_finish,
            "first_upload_to_final_s": after_upload, "median_finish_to_final_s": statistics.median(after_finish),
            "median_first_upload_to_final_s": statistics.median(after_upload),
            "pool_compress_same_frames_s": pool_s}


# -- the commands ----------------------------------------------------------------------------

def _screenshots_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", type=Path)


def _finalize_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sessions", type=int, default=3)
    parser.add_argument("--output", type=Path)


def _run_screenshots(args: argparse.Namespace) -> int:
    with private_stack() as (stack, key):
        result = bench_screenshots(stack, key, args.frames, args.rounds)
    rate = result["frames_per_s"]
    print(f"frames/s  pool {rate['pool']:.1f}  ray tasks {rate['ray_tasks']:.1f}"
          f" (ratio {result['ratio_ray_tasks_to_pool']:.2f})  whole path {rate['pipeline']:.1f}"
          f" (ratio {result['ratio_pipeline_to_pool']:.2f})")
    write_result(args.output, {"benchmark": "screenshots", **result})
    return 0


def _run_finalize(args: argparse.Namespace) -> int:
    with private_stack() as (stack, key):
        result = bench_finalize(stack, key, args.sessions)
    print(f"200 events + 40 screenshots: /finish → final status {result['median_finish_to_final_s']:.2f} s"
          f" (median), first upload → final status {result['median_first_upload_to_final_s']:.2f} s;"
          f" the same 40 frames in the Pool alone: {result['pool_compress_same_frames_s']:.2f} s")
    write_result(args.output, {"benchmark": "finalize", **result})
    return 0


SCREENSHOTS = Entry(_screenshots_arguments, _run_screenshots)
FINALIZE = Entry(_finalize_arguments, _run_finalize)
