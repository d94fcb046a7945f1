"""`tracemill bench idle`: what an open, idle WebSocket session costs the server in memory.

On a private stack (with the no-op Serve app beside it as the baseline), N sessions are created over HTTP, then each opens its stream and
authenticates with the first frame and sends nothing more. The resident memory (RSS) of the
server's long-lived processes is read three times: before, after the N creates, and after the
N streams are open and have settled. The figure is the difference per session, for every
process role (Serve's proxy and HAProxy, the ingress replicas, the shards, PostgreSQL), and
the total over the processes that hold sessions: proxy, HAProxy, replicas and shards.

A replica Serve starts during the run (the autoscaler adds one as streams open) counts with
its RSS less that of the replica already running before: its own start-up is not session
memory, the streams it took on are. A warm-up of 200 sessions, opened and closed, comes
first on each app. The baseline opens as many idle streams on the no-op app
(`serve_app.noop`: no key, no state) and counts Serve's proxy, HAProxy and the no-op replica:
what Serve and uvicorn themselves cost a connection. `--deflate` negotiates permessage-deflate
as a browser does (its compression state costs the server memory of its own).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

__all__ = ["add_arguments", "idle_session_bytes", "measure_idle", "run"]

# The processes an open session lives in; PostgreSQL is reported apart (a stored session row
# is not memory of an open one, and its page cache moves on its own).
_SESSION_ROLES = ("serve proxy", "haproxy", "ingress replica", "shard actor")
_ROLES = (*_SESSION_ROLES, "postgres", "noop replica")
# The baseline: the same idle streams on the no-op Serve app (serve_app.noop), Serve's own cost.
_NOOP_ROLES = ("serve proxy", "haproxy", "noop replica")
_SETTLE_S = 3.0
# Sessions opened and closed before measuring: what the first use of a path costs once (thread
# pools, caches, lazily imported modules, a heap's first growth) is not memory of a session.
_WARM_UP = 200


def _progress(text: str) -> None:
    print(f"[bench idle] {text}", file=sys.stderr, flush=True)


def _rss_by_pid(sampler: Any) -> dict[int, tuple[str, int]]:
    return {pid: (role, rss) for pid, (role, _, rss) in sampler._snapshot().items() if role in _ROLES}


def _delta_by_role(before: dict[int, tuple[str, int]], after: dict[int, tuple[str, int]]) -> dict[str, float]:
    """Bytes each role grew by; a process new since `before` counts less its role's mean RSS then."""
    base: dict[str, list[int]] = defaultdict(list)
    for role, rss in before.values():
        base[role].append(rss)
    delta: dict[str, float] = defaultdict(float)
    for pid, (role, rss) in after.items():
        if pid in before:
            delta[role] += rss - before[pid][1]
        elif base[role]:
            delta[role] += rss - sum(base[role]) / len(base[role])
    return dict(delta)


async def _open_idle(endpoint: str, key: str, n: int, sampler: Any, *, prefix: str = "",
                     deflate: bool = False) -> dict[str, Any]:
    import httpx

    from cluster.stream_client import open_stream

    gate = asyncio.Semaphore(50)
    sessions: list[str] = []
    sockets: list[Any] = []
    before = _rss_by_pid(sampler)
    async with httpx.AsyncClient(base_url=endpoint + prefix, timeout=60,
                                 headers={"Authorization": f"Bearer {key}"},
                                 limits=httpx.Limits(max_connections=50)) as http:
        async def create() -> None:
            async with gate:
                answer = await http.post("/v1/sessions", json={"type": "automated", "task": "idle"})
                answer.raise_for_status()
                sessions.append(answer.json()["session_id"])

        await asyncio.gather(*(create() for _ in range(n)))
    await asyncio.sleep(_SETTLE_S)
    created = _rss_by_pid(sampler)
    _progress(f"{n} sessions created{' on ' + prefix if prefix else ''}; opening their streams")

    async def connect(session_id: str) -> None:
        async with gate:
            sockets.append(await open_stream(endpoint, session_id, key, prefix=prefix, open_timeout=60,
                                             compression=deflate))

    try:
        await asyncio.gather(*(connect(s) for s in sessions))
        await asyncio.sleep(_SETTLE_S)  # every auth frame handled, allocations settled
        opened = _rss_by_pid(sampler)
        alive = sum(1 for ws in sockets if ws.close_code is None)
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    await asyncio.sleep(_SETTLE_S)
    return {"before": before, "created": created, "opened": opened, "alive": alive}


def _figures(snaps: dict[str, Any], n: int, counted: tuple[str, ...]) -> dict[str, Any]:
    creating = _delta_by_role(snaps["before"], snaps["created"])
    opening = _delta_by_role(snaps["created"], snaps["opened"])
    per_role = {role: {"create_bytes_per_session": round(creating.get(role, 0.0) / n),
                       "open_bytes_per_session": round(opening.get(role, 0.0) / n),
                       "processes": sum(1 for r, _ in snaps["opened"].values() if r == role)}
                for role in _ROLES if any(r == role for r, _ in snaps["opened"].values())}
    total = sum(creating.get(r, 0.0) + opening.get(r, 0.0) for r in counted)
    return {"sessions": n, "streams_open_at_measurement": snaps["alive"],
            "bytes_per_idle_session": round(total / n), "kib_per_idle_session": round(total / n / 1024, 1),
            "server_rss_delta_mib": round(total / 2**20, 1), "per_role": per_role, "roles_counted": list(counted)}


def measure_idle(endpoint: str, key: str, n: int, pg_data_dir: Any = None, *, deflate: bool = False,
                 baseline: bool = False) -> dict[str, Any]:
    """The figures of `bench idle` against a started stack (with `baseline`, one that serves
    the no-op app under /noop, measured the same way after tracemill)."""
    from cluster.bench.load import ProcessSampler

    sampler = ProcessSampler(pg_data_dir=pg_data_dir)
    warm = min(_WARM_UP, n)
    _progress(f"warm-up: {warm} sessions opened and closed")
    asyncio.run(_open_idle(endpoint, key, warm, sampler, deflate=deflate))
    result = _figures(asyncio.run(_open_idle(endpoint, key, n, sampler, deflate=deflate)), n, _SESSION_ROLES)
    result["permessage_deflate"] = deflate
    if baseline:
        _progress(f"baseline: {n} idle streams on the no-op Serve app")
        asyncio.run(_open_idle(endpoint, key, warm, sampler, prefix="/noop", deflate=deflate))
        noop = _figures(asyncio.run(_open_idle(endpoint, key, n, sampler, prefix="/noop", deflate=deflate)), n,
                        _NOOP_ROLES)
        result["noop_baseline"] = noop
        if noop["bytes_per_idle_session"] > 0:
            result["ratio_to_noop"] = round(result["bytes_per_idle_session"] / noop["bytes_per_idle_session"], 2)
    return result


def idle_session_bytes(endpoint: str, key: str, n: int, pg_data_dir: Any = None) -> dict[str, Any]:
    """The short form `bench load` records beside its runs."""
    full = measure_idle(endpoint, key, n, pg_data_dir)
    return {k: full[k] for k in ("sessions", "server_rss_delta_mib", "bytes_per_idle_session", "per_role")}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sessions", type=int, default=2000, help="idle sessions to open")
    parser.add_argument("--deflate", action="store_true",
                        help="negotiate permessage-deflate, as browsers (and so the extension) do")
    parser.add_argument("--output", type=Path, help="JSON result")


def run(args: argparse.Namespace) -> int:
    """`tracemill bench idle`: a private stack, N idle streams, KB a session."""
    from cluster.bench.stack import private_stack  # Ray once the command runs
    from cluster.results import write_result

    with private_stack(noop=True) as (stack, key):
        pg_dir = stack.postgres.data_dir if stack.postgres is not None else None
        result = measure_idle(stack.endpoint, key, args.sessions, pg_dir, deflate=args.deflate, baseline=True)
    for name, one in (("tracemill", result), ("no-op Serve", result.get("noop_baseline"))):
        if one is None:
            continue
        print(f"{name}: {one['sessions']} idle sessions ({one['streams_open_at_measurement']} open when measured),"
              f" {one['kib_per_idle_session']} KiB a session over {', '.join(one['roles_counted'])}")
        print(f"  {'role':<16} {'processes':>9} {'create B/session':>17} {'open B/session':>15}")
        for role, row in one["per_role"].items():
            print(f"  {role:<16} {row['processes']:>9} {row['create_bytes_per_session']:>17} "
                  f"{row['open_bytes_per_session']:>15}")
    if "ratio_to_noop" in result:
        print(f"tracemill / no-op: {result['ratio_to_noop']}x")
    write_result(args.output, {"benchmark": "idle", **result})
    return 0
