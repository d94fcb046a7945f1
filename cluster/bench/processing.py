"""`tracemill bench screenshots` and `tracemill bench finalize`: processing figures, each as a
ratio to a baseline measured in the same run.

screenshots  Two kinds of upload, each against a plain multiprocessing.Pool (one process per
             core) re-encoding the same frames (decode, WebP encode, pHash, local vision):
             PNG frames (automation harnesses: the full path) and WebP frames as the extension
             sends them (fields painted, X-Painted-Boxes: stored as uploaded). The whole path is
             PUT over HTTP (4 in flight), the object store, PostgreSQL and the compress tasks,
             until every frame is compressed; Ray tasks with num_cpus=1 on the PNG frames too.
             Rounds alternate so drift on a noisy machine hits all alike.
finalize     Sessions of 200 events and 40 screenshots recorded through the public endpoint;
             the time from /finish to `ready`, and the same session's compress work alone in
             the Pool, for scale.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import multiprocessing
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import ray
from PIL import Image, ImageDraw
from websockets.sync.client import connect

from actors.media.upload import header_value

from cluster.bench.frames import compress_and_measure, synthetic_page
from cluster.bench.stack import private_stack
from cluster.commands import Entry
from cluster.results import write_result

__all__ = ["FINALIZE", "SCREENSHOTS", "bench_finalize", "bench_screenshots", "record_session"]


# Uploads in flight at once in the whole-path rounds: several recorders, not one at a time.
_IN_FLIGHT = 4


def _timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- screenshots ------------------------------------------------------------------------------

# The sensitive inputs of the benchmark's page (CSS px = image px: viewport 1280x800, DPR 1).
_FIELDS = ({"x": 100, "y": 200, "width": 400, "height": 40}, {"x": 100, "y": 300, "width": 400, "height": 40})
_VIEWPORT = {"width": 1280, "height": 800}


def extension_webp(png: bytes) -> tuple[bytes, str]:
    """The page as the extension uploads it: the sensitive fields painted (2 px of margin), WebP
    q80, and the X-Painted-Boxes header listing them."""
    img = Image.open(io.BytesIO(png)).convert("RGB")
    painted = [[f["x"] - 2, f["y"] - 2, f["width"] + 4, f["height"] + 4] for f in _FIELDS]
    draw = ImageDraw.Draw(img)
    for x, y, w, h in painted:
        draw.rectangle([x, y, x + w - 1, y + h - 1], fill=(0, 0, 0))
    out = io.BytesIO()
    img.save(out, format="WEBP", quality=80)
    return out.getvalue(), header_value(painted)


def _pool_round(pool: Any, frames: list[bytes]) -> float:
    return _timed(lambda: pool.map(compress_and_measure, frames, chunksize=1))


def _ray_round(frames_refs: list[Any]) -> float:
    task = ray.remote(num_cpus=1)(compress_and_measure)
    return _timed(lambda: ray.get([task.remote(ref) for ref in frames_refs]))


async def _count_compressed(dsn: str, sid: str, want: int, deadline_s: float) -> dict[str, Any]:
    """Wait until `want` frames are compressed; then how many were stored as uploaded, and the
    median seconds from a frame's row to its compression (the task's queueing and work)."""
    conn = await asyncpg.connect(dsn)  # one connection for the whole wait: polling stays cheap
    try:
        deadline = time.monotonic() + deadline_s
        done = 0
        while done < want:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {done} of {want} screenshots compressed")
            await asyncio.sleep(0.05)
            done = await conn.fetchval("SELECT count(*) FROM screenshots WHERE session_id = $1"
                                       " AND status = 'compressed'", uuid.UUID(sid))
        rows = await conn.fetch("SELECT webp_sha256 = sha256 AS as_uploaded,"
                                " extract(epoch FROM compressed_at - created_at) AS wait_s"
                                " FROM screenshots WHERE session_id = $1", uuid.UUID(sid))
        return {"stored_as_uploaded": sum(bool(r["as_uploaded"]) for r in rows),
                "median_row_to_compressed_s": statistics.median(float(r["wait_s"]) for r in rows)}
    finally:
        await conn.close()


def _pipeline_round(endpoint: str, key: str, frames: list[bytes], dsn: str, painted: str | None) -> float:
    """Upload every frame to a fresh session (several uploads in flight, as from several
    recorders) and wait until all are compressed. `painted` is the X-Painted-Boxes header, sent
    with WebP frames as the extension does; the session's DOM snapshot tells the server of the
    same sensitive fields, so what it knows is covered by what the client painted."""
    http = httpx.Client(base_url=endpoint, timeout=60, headers={"Authorization": f"Bearer {key}"},
                        limits=httpx.Limits(max_connections=_IN_FLIGHT))
    sid = str(uuid.uuid4())
    http.post("/v1/sessions", json={"session_id": sid, "type": "automated", "viewport": _VIEWPORT}).raise_for_status()
    now = int(time.time() * 1000)
    fields = [{"tag": "input", "attributes": {"type": "email" if i == 0 else "password"}, "bbox": f}
              for i, f in enumerate(_FIELDS)]
    http.post(f"/v1/sessions/{sid}/events", json={"events": [
        {"seq": 0, "type": "navigation", "ts": now, "url": "https://shop.example/checkout"},
        {"seq": 1, "type": "dom_snapshot", "ts": now + 1, "url": "https://shop.example/checkout", "elements": fields},
    ]}).raise_for_status()
    media = "image/webp" if painted is not None else "image/png"
    headers = {"Content-Type": media, **({"X-Painted-Boxes": painted} if painted is not None else {})}

    def put(item: tuple[int, bytes]) -> None:
        i, data = item
        http.put(f"/v1/sessions/{sid}/screenshots/f{i}", params={"seq": 1}, content=data,
                 headers=headers).raise_for_status()

    started = time.perf_counter()
    with ThreadPoolExecutor(_IN_FLIGHT) as uploads:
        list(uploads.map(put, enumerate(frames)))
    uploaded = time.perf_counter() - started
    facts = asyncio.run(_count_compressed(dsn, sid, len(frames), 600))
    http.close()
    seconds = time.perf_counter() - started
    _progress(f"  uploads answered after {uploaded:.2f} s, all compressed after {seconds:.2f} s; {facts}")
    return seconds


def bench_screenshots(stack: Any, key: str, frames_count: int, rounds: int) -> dict[str, Any]:
    pngs = [synthetic_page(i) for i in range(frames_count)]
    webps = [extension_webp(png) for png in pngs]
    header = webps[0][1]
    webp_frames = [w for w, _ in webps]
    refs = [ray.put(f) for f in pngs]
    dsn = stack.settings.database.url.get_secret_value()
    runs: dict[str, Callable[[], float]] = {}
    cores = os.cpu_count() or 1
    with multiprocessing.get_context("spawn").Pool(cores) as pool:
        pool.map(compress_and_measure, pngs[:cores])  # warm the workers' imports
        _ray_round(refs[:cores])
        # The whole path gets the same: its compress tasks' workers start (and import) here.
        _pipeline_round(stack.endpoint, key, pngs[:2 * cores], dsn, None)
        _pipeline_round(stack.endpoint, key, webp_frames[:2 * cores], dsn, header)
        runs = {
            "pool_png": lambda: _pool_round(pool, pngs),
            "pool_webp": lambda: _pool_round(pool, webp_frames),
            "ray_tasks_png": lambda: _ray_round(refs),
            "pipeline_png": lambda: _pipeline_round(stack.endpoint, key, pngs, dsn, None),
            "pipeline_webp": lambda: _pipeline_round(stack.endpoint, key, webp_frames, dsn, header),
        }
        times: dict[str, list[float]] = {name: [] for name in runs}
        for r in range(1, rounds + 1):
            for name, run in runs.items():
                seconds = run()
                times[name].append(seconds)
                _progress(f"round {r}/{rounds} {name:13s} {frames_count / seconds:6.1f} frames/s")
    rate = {name: frames_count / statistics.median(ts) for name, ts in times.items()}
    return {"frames": frames_count, "cores": cores, "uploads_in_flight": _IN_FLIGHT,
            "png_bytes_mean": statistics.mean(map(len, pngs)), "webp_bytes_mean": statistics.mean(map(len, webp_frames)),
            "frames_per_s": rate,
            "ratio_ray_tasks_to_pool_png": rate["ray_tasks_png"] / rate["pool_png"],
            "ratio_pipeline_png_to_pool_png": rate["pipeline_png"] / rate["pool_png"],
            "ratio_pipeline_webp_to_pool_webp": rate["pipeline_webp"] / rate["pool_webp"],
            "seconds": times}


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
    print(f"PNG  frames/s  pool {rate['pool_png']:.1f}  ray tasks {rate['ray_tasks_png']:.1f}"
          f" (ratio {result['ratio_ray_tasks_to_pool_png']:.2f})  whole path {rate['pipeline_png']:.1f}"
          f" (ratio {result['ratio_pipeline_png_to_pool_png']:.2f})")
    print(f"WebP frames/s  pool {rate['pool_webp']:.1f}  whole path, stored as uploaded {rate['pipeline_webp']:.1f}"
          f" (ratio {result['ratio_pipeline_webp_to_pool_webp']:.2f})")
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
