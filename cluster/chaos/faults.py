"""Fault injectors for cluster.chaos.scenarios, each one scripted and repeatable.

- `S3FaultProxy`: an HTTP proxy on 127.0.0.1 in front of an S3 endpoint (moto's server).
  While a fault window is open it answers S3 requests with 500 InternalError, 503 SlowDown, or
  holds them for a while before passing them on, in a fixed rotation; outside the window it
  passes every request through. moto can fail requests itself only per-action and
  in-process, so the proxy is what makes the failures travel through botocore's HTTP stack.
- `kill_shard`, `kill_ingress_replica`: `ray.kill` on the named actors; Ray (shards,
  max_restarts=-1) or the Serve controller (replicas) brings them back.
- `wait_ready`: poll /readyz until 200, bounded.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter

import aiohttp
import httpx
import ray
from aiohttp import web

from configs.settings import TracemillSettings

__all__ = ["S3FaultProxy", "ingress_replicas", "kill_ingress_replica", "kill_shard", "wait_ready"]

# Hop-by-hop and framing headers: the proxy's own client and server set these.
_SKIP_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "keep-alive"}
_S3_ERROR = ('<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{message}</Message>'
             '<RequestId>chaos</RequestId></Error>')


class S3FaultProxy:
    """`with S3FaultProxy(target) as proxy: ... proxy.open_window(["500", "slowdown", "delay:2"], 5)`"""

    def __init__(self, target: str) -> None:
        self.target = target.rstrip("/")
        self.port = 0
        self.counts: Counter[str] = Counter()
        self._plan: list[str] = []
        self._until = 0.0
        self._turn = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="s3-fault-proxy", daemon=True)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def open_window(self, plan: list[str], seconds: float) -> None:
        """From now for `seconds`, answer requests by `plan` in turn: "500", "slowdown", "delay:S"."""
        self._plan, self._turn = list(plan), 0
        self._until = time.monotonic() + seconds

    def close_window(self) -> None:
        self._until = 0.0

    def window_open(self) -> bool:
        return time.monotonic() < self._until

    def __enter__(self) -> S3FaultProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the S3 fault proxy did not start")
        return self

    def __exit__(self, *_: object) -> None:
        async def stop() -> None:
            if self._runner is not None:
                await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._ready.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60), auto_decompress=False)
        app.on_cleanup.append(lambda _app: self._session.close())
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def _next_fault(self) -> str | None:
        if not self.window_open() or not self._plan:
            return None
        fault = self._plan[self._turn % len(self._plan)]
        self._turn += 1
        return fault

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        fault = self._next_fault()
        body = await request.read()
        if fault == "500":
            self.counts["500"] += 1
            return web.Response(status=500, content_type="application/xml",
                                text=_S3_ERROR.format(code="InternalError", message="chaos: injected 500"))
        if fault == "slowdown":
            self.counts["slowdown"] += 1
            return web.Response(status=503, content_type="application/xml",
                                text=_S3_ERROR.format(code="SlowDown", message="chaos: please reduce your request rate"))
        if fault and fault.startswith("delay:"):
            self.counts["delay"] += 1
            await asyncio.sleep(float(fault.split(":", 1)[1]))
        else:
            self.counts["passed"] += 1
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _SKIP_HEADERS}
        async with self._session.request(request.method, self.target + request.path_qs, data=body,
                                         headers=headers, allow_redirects=False) as upstream:
            data = await upstream.read()
            out = {k: v for k, v in upstream.headers.items() if k.lower() not in _SKIP_HEADERS}
            if request.method == "HEAD" and "Content-Length" in upstream.headers:
                # A HEAD answer has no body; its Content-Length is the object's size (boto3 reads it).
                stream = web.StreamResponse(status=upstream.status, headers=out)
                stream.content_length = int(upstream.headers["Content-Length"])
                await stream.prepare(request)
                await stream.write_eof()
                return stream
            return web.Response(status=upstream.status, body=data, headers=out)


def kill_shard(settings: TracemillSettings, index: int) -> int:
    """Kill one shard actor (Ray restarts it: max_restarts=-1); returns its pid before."""
    from actors.ingest.shard_pool import ShardRouter

    shard = ShardRouter(settings).handles[index]
    pid = int(ray.get(shard.ping.remote(), timeout=30)["pid"])
    ray.kill(shard, no_restart=False)
    return pid


def ingress_replicas(app: str = "tracemill", deployment: str = "Ingress") -> list[str]:
    """Names of the Serve replica actors of the ingress deployment."""
    prefix = f"SERVE_REPLICA::{app}#{deployment}#"
    return sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                  if str(a.get("name", "")).startswith(prefix))


def kill_ingress_replica(app: str = "tracemill") -> str:
    """Kill one ingress replica outright (as a crash would); Serve's controller replaces it."""
    names = ingress_replicas(app)
    if not names:
        raise RuntimeError("no ingress replica found to kill")
    ray.kill(ray.get_actor(names[0], namespace="serve"), no_restart=True)
    return names[0]


def wait_ready(endpoint: str, timeout_s: float) -> float | None:
    """Poll /readyz until it answers 200; the time it did (time.monotonic()), or None."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{endpoint}/readyz", timeout=5).status_code == 200:
                return time.monotonic()
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return None


def describe_actor_nodes(names: list[str], namespace: str) -> dict[str, str]:
    """{actor name: node id} of the live named actors among `names` (Ray's state API)."""
    from ray.util.state import list_actors

    alive = list_actors(filters=[("state", "=", "ALIVE")], limit=10_000, timeout=30, raise_on_missing_output=False)
    wanted = set(names)
    return {a.name: a.node_id for a in alive if a.name in wanted and a.ray_namespace == namespace}
