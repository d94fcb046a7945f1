"""Autoscaling shown, not claimed: a burst of screenshot work on Ray's fake multi-node cluster.

    python -m cluster.autoscale [--output results/autoscale.json] [--frames 120]
                                     [--idle-timeout-s 30] [--skip-serve] [--max-seconds 360]

What it does, on this one machine, and undoes on the way out (also on failure and Ctrl-C):

1. Writes an autoscaling config for Ray's `fake_multinode` provider: a head with no CPUs (so
   work has to go to workers) and a worker type `cpu2` ({CPU: 2}, 0-3 of them), idle timeout
   `--idle-timeout-s` (fractional minutes are allowed: the schema says "number", the autoscaler
   computes `60 * idle_timeout_minutes`). Starts the head with
   `RAY_FAKE_CLUSTER=1 ray start --head --port=6379 --num-cpus=0 --autoscaling-config=… --block`
   in a temp dir of its own; the autoscaler (the head's monitor process) then starts and stops
   worker raylets on this machine as if they were machines.
2. Joins as a driver and submits `--frames` compress tasks (num_cpus=1: the WebP encode + local
   vision of `cluster.bench.frames.compress_and_measure` on `synthetic_page` PNGs that the
   driver made and put in the object store, as the ingress does with uploads). Every second it
   samples the alive nodes, the CPUs in use and the tasks outstanding; every task returns the
   node it ran on.
3. After the burst it waits for the idle workers to be removed.
4. Unless `--skip-serve`: starts an embedded PostgreSQL, deploys tracemill's Serve app onto the
   same cluster with `cluster.remote.deploy` (configs/serve.yaml, with the Ingress
   autoscaling target lowered for the demo: see `demo_serve_config`), drives WebSocket load with
   `cluster.bench.loadgen.run_load` and samples the Ingress replica count from `serve.status()`.
5. Prints the timeline and writes it as JSON.

The fake provider's workers join `<node ip>:6379` unless its config names the GCS
(`provider.gcs_address`); the demo uses 6379 by default, refuses to start when something
listens there, and with `--gcs-port 0` takes a free port and names it. It never runs
`ray stop` (that would end every Ray on the machine): it ends the head's process group and
then any process left that was started under its own temp dir.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import json
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from cluster.doubles.net import free_port

__all__ = [
    "GCS_PORT", "HEAD_NODE_TYPE", "WORKER_NODE_TYPE", "autoscaling_config", "demo_serve_config",
    "head_command", "head_env", "main", "write_autoscaling_config",
]  # fmt: skip

from cluster.autoscale.fake_cluster import (  # noqa: F401 - re-exported for the config test
    FAKE_HEAD_NODE_ID,
    GCS_PORT,
    HEAD_NODE_TYPE,
    HEAD_OBJECT_STORE_BYTES,
    REPO,
    WORKER_NODE_TYPE,
    WORKER_OBJECT_STORE_BYTES,
    FakeCluster,
    PortBusyError,
    autoscaling_config,
    head_command,
    head_env,
    port_in_use,
    write_autoscaling_config,
)

log = logging.getLogger("tracemill.autoscale_demo")



# -- configuration (pure: tests/integration/test_autoscale_config.py checks it) ----------------









def demo_serve_config(*, target_ongoing_requests: int = 50, upscale_delay_s: float = 5,
                      downscale_delay_s: float = 15) -> dict[str, Any]:
    """configs/serve.yaml with the Ingress's autoscaling target lowered (and shorter delays) so
    that 100 open WebSockets ask for a second replica; min/max replicas stay as configured."""
    from cluster.serve_deploy import APP_NAME, DEFAULT_SERVE_CONFIG
    from configs.settings import load_yaml

    config = copy.deepcopy(load_yaml(DEFAULT_SERVE_CONFIG))
    [app] = [a for a in config["applications"] if a["name"] == APP_NAME]
    [ingress] = [d for d in app["deployments"] if d["name"] == "Ingress"]
    ingress["autoscaling_config"].update({"target_ongoing_requests": target_ongoing_requests,
                                          "upscale_delay_s": upscale_delay_s,
                                          "downscale_delay_s": downscale_delay_s})
    return config


# -- the timeline ------------------------------------------------------------------------------

@dataclass
class Timeline:
    """Events and samples, with times in seconds from `zero` (the load start, once set)."""

    started: float = field(default_factory=time.time)
    zero: float | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def t(self, at: float | None = None) -> float:
        return round((at or time.time()) - (self.zero or self.started), 2)

    def event(self, kind: str, text: str, at: float | None = None, **data: Any) -> None:
        at = at or time.time()
        with self.lock:
            self.events.append({"wall": at, "kind": kind, "text": text, **data})
        print(f"  [{self.t(at):7.1f} s] {text}", flush=True)

    def rebase(self) -> None:
        """Times relative to the load start, for the record."""
        for item in self.events + self.samples:
            item["t"] = self.t(item["wall"])


def node_name(node_id: str) -> str:
    if node_id == FAKE_HEAD_NODE_ID:
        return "head"
    if node_id.startswith("f" * 51):
        return f"w{int(node_id[51:])}"
    return node_id[:8]


class Sampler(threading.Thread):
    """Once a second: alive nodes, CPUs in use, tasks outstanding, (in the Serve phase) replicas.
    Node joins and removals become events."""

    def __init__(self, timeline: Timeline, progress: dict[str, int]) -> None:
        super().__init__(name="autoscale-sampler", daemon=True)
        self.timeline, self.progress = timeline, progress
        self.stop_event = threading.Event()
        self.alive: dict[str, dict[str, Any]] = {}
        self.joined: dict[str, float] = {}
        self.removed: dict[str, float] = {}
        self.watch_serve = False
        self.errors = 0

    def run(self) -> None:
        while not self.stop_event.wait(1.0):
            try:
                self.sample()
            except Exception as exc:  # noqa: BLE001 - one bad sample is not the end of the demo
                self.errors += 1
                log.debug("sample failed: %s", exc)

    def sample(self) -> None:
        import ray

        now = time.time()
        nodes = {n["NodeID"]: n for n in ray.nodes()}
        alive = {nid: n for nid, n in nodes.items() if n.get("Alive")}
        for nid, n in alive.items():
            if nid not in self.alive and nid not in self.joined:
                self.joined[nid] = now
                cpus = n.get("Resources", {}).get("CPU", 0)
                kind = "head" if nid == FAKE_HEAD_NODE_ID else WORKER_NODE_TYPE
                self.timeline.event("node_joined", f"node {node_name(nid)} joined ({kind}, {cpus:g} CPU)",
                                    at=now, node=node_name(nid), node_id=nid, cpus=cpus)
        for nid in set(self.alive) - set(alive):
            self.removed[nid] = now
            self.timeline.event("node_removed", f"node {node_name(nid)} removed", at=now,
                                node=node_name(nid), node_id=nid)
        self.alive = alive
        total = ray.cluster_resources().get("CPU", 0.0)
        free = ray.available_resources().get("CPU", 0.0)
        sample: dict[str, Any] = {
            "wall": now, "nodes_alive": sorted(node_name(n) for n in alive),
            "workers_alive": sum(1 for n in alive if n != FAKE_HEAD_NODE_ID),
            "cpu_total": total, "cpu_in_use": round(total - free, 2), **self.progress,
        }
        outstanding = self.progress.get("submitted", 0) - self.progress.get("done", 0)
        running = min(outstanding, round(total - free))
        sample.update({"tasks_running": running, "tasks_pending": outstanding - running})
        if self.watch_serve:
            sample["ingress_replicas"] = ingress_replicas()
        with self.timeline.lock:
            self.timeline.samples.append(sample)


def ingress_replicas() -> dict[str, int] | None:
    from ray import serve

    from cluster.serve_deploy import APP_NAME

    app = serve.status().applications.get(APP_NAME)
    if app is None or "Ingress" not in app.deployments:
        return None
    return {str(getattr(k, "value", k)): int(v) for k, v in app.deployments["Ingress"].replica_states.items()}


# -- the fake cluster --------------------------------------------------------------------------











# -- the burst ---------------------------------------------------------------------------------

def _compress_frame(png: bytes) -> dict[str, Any]:
    """The compress task's CPU work on one frame; returns where and when it ran."""
    import ray

    from cluster.bench.frames import compress_and_measure

    started = time.time()
    webp_bytes = compress_and_measure(png)
    return {"node_id": ray.get_runtime_context().get_node_id(), "started": started, "ended": time.time(),
            "webp_bytes": webp_bytes, "pid": os.getpid()}


def run_burst(timeline: Timeline, progress: dict[str, int], frames: list[bytes], deadline: float) -> dict[str, Any]:
    import ray

    task = ray.remote(num_cpus=1, max_retries=2)(_compress_frame)
    refs = [ray.put(png) for png in frames]
    timeline.zero = time.time()
    timeline.event("load_start", f"load start: {len(frames)} compress tasks submitted (num_cpus=1 each)")
    pending = [task.remote(ref) for ref in refs]
    progress["submitted"] = len(pending)
    results: list[dict[str, Any]] = []
    while pending and time.time() < deadline:
        ready, pending = ray.wait(pending, num_returns=len(pending), timeout=1.0)
        for ref in ready:
            results.append(ray.get(ref))
        progress["done"] = len(results)
    truncated = bool(pending)
    for ref in pending:
        with contextlib.suppress(Exception):
            ray.cancel(ref, force=True)
    per_node = Counter(node_name(r["node_id"]) for r in results)
    last_task_end = {node_name(nid): max(r["ended"] for r in results if r["node_id"] == nid)
                     for nid in {r["node_id"] for r in results}}
    seconds = time.time() - timeline.zero
    timeline.event("burst_end", f"burst end: {len(results)}/{len(frames)} frames done in {seconds:.1f} s"
                   + (" (deadline hit, rest cancelled)" if truncated else ""),
                   done=len(results), seconds=round(seconds, 2), truncated=truncated)
    return {"frames": len(frames), "done": len(results), "seconds": round(seconds, 2), "truncated": truncated,
            "frames_per_s": round(len(results) / seconds, 2) if seconds else None,
            "tasks_per_node": dict(sorted(per_node.items())), "last_task_end": last_task_end,
            "task_seconds_median": _median([r["ended"] - r["started"] for r in results])}


def _median(values: list[float]) -> float | None:
    if not values:
        return None
    values = sorted(values)
    mid = len(values) // 2
    return round(values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2, 3)


def wait_for_scale_down(sampler: Sampler, deadline: float) -> bool:
    while time.time() < deadline:
        if sampler.alive and all(nid == FAKE_HEAD_NODE_ID for nid in sampler.alive):
            return True
        time.sleep(0.5)
    return False


# -- the Serve phase ---------------------------------------------------------------------------

def run_serve_phase(timeline: Timeline, sampler: Sampler, cluster: FakeCluster, deadline: float,
                    *, sessions: int, load_s: float, target: int) -> dict[str, Any]:
    from ray import serve

    from actors.auth import create_key, pepper_of
    from actors.storage.postgres import connect_pool
    from cluster import remote
    from cluster.embedded_postgres import EmbeddedPostgres
    from cluster.bench.loadgen import LoadConfig, run_load
    from cluster.keys_cli import with_local_pepper

    postgres = EmbeddedPostgres(cluster.work_dir / "pgdata")
    try:
        env = {k: v for k, v in os.environ.items() if k not in ("TRACEMILL_S3_BUCKET", "DATABASE_URL")}
        env["DATABASE_URL"] = postgres.start()
        settings = with_local_pepper(remote.settings_for_cluster(env, cluster.work_dir / "objects"),
                                     cluster.work_dir)
        serve_yaml = cluster.work_dir / "serve-demo.yaml"
        serve_yaml.write_text(yaml.safe_dump(demo_serve_config(target_ongoing_requests=target)))
        port = free_port()
        timeline.event("serve_deploy", f"deploying tracemill's Serve app (Ingress min 1, max 2, "
                       f"target_ongoing_requests {target}) on 127.0.0.1:{port}")
        remote.deploy(settings, address=cluster.address, host="127.0.0.1", port=port, serve_config=serve_yaml)
        sampler.watch_serve = True
        timeline.event("serve_running", f"Serve app RUNNING, replicas {ingress_replicas()}")

        async def make_key() -> str:
            pool = await connect_pool(settings.database)
            try:
                return (await create_key(pool, scopes=["ingest", "read"], name="autoscale-demo",
                                         pepper=pepper_of(settings.auth)))[1]
            finally:
                await pool.close()

        key = asyncio.run(make_key())
        load_s = max(10.0, min(load_s, deadline - time.time() - 60))
        timeline.event("ws_load_start", f"WebSocket load: {sessions} sessions, one frame in flight each, {load_s:.0f} s")
        result = asyncio.run(run_load(LoadConfig(url=f"http://127.0.0.1:{port}", api_key=key, sessions=sessions,
                                                 duration_s=load_s, warmup_s=2, progress_interval_s=None)))
        timeline.event("ws_load_end", f"WebSocket load end: {result.sessions_connected}/{sessions} sessions, "
                       f"{result.frames_per_s:.0f} frames/s, {result.errors} errors",
                       load=result.model_dump())
        # Serve scales down after downscale_delay_s without load.
        while time.time() < deadline:
            replicas = ingress_replicas() or {}
            if replicas.get("RUNNING", 0) <= 1 and sum(replicas.values()) <= 1:
                break
            time.sleep(1.0)
        timeline.event("serve_idle", f"after the load: replicas {ingress_replicas()}")
        return {"port": port, "target_ongoing_requests": target, "load": result.model_dump()}
    finally:
        sampler.watch_serve = False
        with contextlib.suppress(Exception):
            serve.shutdown()
        with contextlib.suppress(Exception):
            remote.remove_tracemill_actors()
        postgres.stop()
        timeline.event("serve_removed", "Serve app and tracemill's actors removed (their worker is idle from now)")


def replica_changes(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    last = None
    for s in samples:
        if "ingress_replicas" not in s or s["ingress_replicas"] is None:
            continue
        running = s["ingress_replicas"].get("RUNNING", 0)
        if running != last:
            out.append({"t": s["t"], "running": running, "states": s["ingress_replicas"]})
            last = running
    return out


# -- report ------------------------------------------------------------------------------------

def node_lifetimes(sampler: Sampler, timeline: Timeline, burst: dict[str, Any] | None,
                   autoscaler_log: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # The fake provider starts one node per launcher call ("Got N nodes to launch" starts one
    # raylet, whatever N), in node-id order: the k-th such line is worker wk's launch.
    requested = [line["wall"] for line in autoscaler_log if re.search(r"Got \d+ nodes to launch", line["line"])]
    rows = []
    for nid, joined in sorted(sampler.joined.items(), key=lambda kv: kv[1]):
        name = node_name(nid)
        removed = sampler.removed.get(nid)
        last = (burst or {}).get("last_task_end", {}).get(name)
        index = int(name[1:]) - 1 if re.fullmatch(r"w\d+", name) else None
        asked = requested[index] if index is not None and index < len(requested) else None
        rows.append({"node": name, "node_id": nid, "joined_t": timeline.t(joined),
                     "launch_requested_t": timeline.t(asked) if asked else None,
                     "launch_to_join_s": round(joined - asked, 1) if asked else None,
                     "removed_t": timeline.t(removed) if removed else None,
                     "tasks": (burst or {}).get("tasks_per_node", {}).get(name, 0),
                     "last_task_end_t": timeline.t(last) if last else None,
                     "removed_after_last_task_s": round(removed - last, 1) if removed and last else None})
    return rows


def summarize(record: dict[str, Any]) -> dict[str, Any]:
    workers = [n for n in record["nodes"] if n["node"] != "head"]
    alive = [s.get("workers_alive", 0) for s in record["samples"]]
    changes = (record.get("serve") or {}).get("replica_changes") or []
    return {
        "idle_timeout_s": round(record["config"]["idle_timeout_minutes"] * 60, 1),
        "max_workers_alive": max(alive, default=0),
        "workers_joined_t": [n["joined_t"] for n in workers],
        "launch_to_join_s": [n["launch_to_join_s"] for n in workers],
        "tasks_per_node": (record.get("burst") or {}).get("tasks_per_node"),
        "burst_seconds": (record.get("burst") or {}).get("seconds"),
        "workers_removed_t": [n["removed_t"] for n in workers],
        "removed_after_last_task_s": [n["removed_after_last_task_s"] for n in workers
                                      if n["removed_after_last_task_s"] is not None],
        "ingress_replicas_seen": sorted({c["running"] for c in changes}) or None,
    }


def print_report(record: dict[str, Any]) -> None:
    print("\nTimeline (t = seconds from the load start)")
    print(f"{'t (s)':>8}  event")
    for e in record["events"]:
        print(f"{e['t']:8.1f}  {e['text']}")
    print("\nNodes")
    print(f"{'node':>6} {'launch asked':>12} {'joined':>8} {'tasks':>6} {'last task':>10} {'removed':>8} "
          f"{'last task→removed':>18}")

    def fmt(v: Any) -> str:
        return "-" if v is None else f"{v:.1f}"

    for n in record["nodes"]:
        print(f"{n['node']:>6} {fmt(n.get('launch_requested_t')):>12} {fmt(n['joined_t']):>8} {n['tasks']:>6} "
              f"{fmt(n['last_task_end_t']):>10} {fmt(n['removed_t']):>8} {fmt(n['removed_after_last_task_s']):>18}")
    if record.get("autoscaler_log"):
        print("\nAutoscaler log (monitor.log)")
        for line in record["autoscaler_log"]:
            print(f"{line['t']:8.1f}  {line['line'][:140]}")
    if (record.get("serve") or {}).get("replica_changes"):
        print("\nIngress replicas (serve.status)")
        for c in record["serve"]["replica_changes"]:
            print(f"{c['t']:8.1f}  RUNNING={c['running']}  {c['states']}")
    print("\nSummary")
    for key, value in record["summary"].items():
        print(f"  {key}: {value}")


# -- main --------------------------------------------------------------------------------------

def _raise_interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cluster.autoscale", description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=Path("results/autoscale.json"))
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--idle-timeout-s", type=float, default=30.0)
    parser.add_argument("--max-workers", type=int, default=3)
    parser.add_argument("--gcs-port", type=int, default=GCS_PORT,
                        help="the head's GCS port (default 6379, Ray's; 0: a free one, named to the provider)")
    parser.add_argument("--max-seconds", type=float, default=360.0, help="the whole run, clean-up included")
    parser.add_argument("--skip-serve", action="store_true", help="only the task burst")
    parser.add_argument("--sessions", type=int, default=100, help="WebSocket sessions in the Serve phase")
    parser.add_argument("--load-s", type=float, default=30.0, help="WebSocket load duration")
    parser.add_argument("--serve-target", type=int, default=50,
                        help="Ingress target_ongoing_requests for the demo (configs/serve.yaml has 500)")
    parser.add_argument("--keep-dir", action="store_true", help="keep the temp dir (Ray logs) afterwards")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")  # platformdirs, via pgserver; as in pytest
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_interrupt)

    began = time.time()
    hard_deadline = began + args.max_seconds - 25  # leave time to clean up
    # A watchdog for anything that would block past the bound (an interrupt reaches the
    # main thread as KeyboardInterrupt, and the clean-up below runs).
    watchdog = threading.Timer(args.max_seconds - 15, lambda: os.kill(os.getpid(), signal.SIGINT))
    watchdog.daemon = True
    watchdog.start()

    from cluster.bench.frames import synthetic_page

    work_dir = Path(tempfile.mkdtemp(prefix="tm-autoscale-"))
    port = args.gcs_port or free_port()
    gcs_address = None
    if port != GCS_PORT:
        # The IP the provider would put in front of :6379.
        from ray.util import get_node_ip_address

        gcs_address = f"{get_node_ip_address()}:{port}"
    config = autoscaling_config(idle_timeout_s=args.idle_timeout_s, max_workers=args.max_workers,
                                gcs_address=gcs_address)
    cluster = FakeCluster(work_dir, config, port)
    timeline = Timeline()
    progress: dict[str, int] = {"submitted": 0, "done": 0}
    sampler = Sampler(timeline, progress)
    record: dict[str, Any] = {"config": config, "started": datetime.now().isoformat(timespec="seconds")}
    burst: dict[str, Any] | None = None
    status = 1
    try:
        print(f"making {args.frames} screenshot frames (synthetic_page, 1280x800 PNG)…", flush=True)
        frames = [synthetic_page(i) for i in range(args.frames)]
        print(f"starting the fake cluster in {work_dir} (idle_timeout_minutes="
              f"{config['idle_timeout_minutes']}, {WORKER_NODE_TYPE} x0-{args.max_workers})…", flush=True)
        t = time.time()
        cluster.start()
        timeline.event("head_started", f"head started in {time.time() - t:.1f} s (0 CPUs, GCS :{port})")

        from cluster.remote import connect

        connect(cluster.address)
        import ray

        record["ray_version"] = ray.__version__
        sampler.sample()
        sampler.start()
        burst = run_burst(timeline, progress, frames, deadline=min(hard_deadline - 60, time.time() + 180))
        idle_deadline = min(hard_deadline, time.time() + args.idle_timeout_s + 60)
        scaled_down = wait_for_scale_down(sampler, idle_deadline)
        timeline.event("scaled_down" if scaled_down else "scale_down_timeout",
                       "all workers removed" if scaled_down else "workers still alive at the deadline")
        if args.skip_serve:
            record["serve"] = {"skipped": "--skip-serve"}
        elif hard_deadline - time.time() < 120:
            record["serve"] = {"skipped": f"only {hard_deadline - time.time():.0f} s left of --max-seconds"}
            timeline.event("serve_skipped", record["serve"]["skipped"])
        else:
            record["serve"] = run_serve_phase(timeline, sampler, cluster, hard_deadline, sessions=args.sessions,
                                              load_s=args.load_s, target=args.serve_target)
            # The Serve app's actors are gone: its worker goes idle and is removed too.
            wait_for_scale_down(sampler, min(hard_deadline, time.time() + args.idle_timeout_s + 45))
        status = 0
    except KeyboardInterrupt as exc:
        timeline.event("interrupted", f"interrupted ({exc or 'Ctrl-C'}): cleaning up")
        status = 130
    except Exception as exc:
        if not isinstance(exc, PortBusyError):
            log.exception("demo failed")
        timeline.event("failed", f"failed: {type(exc).__name__}: {exc}")
        record["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        watchdog.cancel()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # the clean-up is bounded: let it finish
            signal.signal(sig, signal.SIG_IGN)
        sampler.stop_event.set()
        with contextlib.suppress(RuntimeError):
            sampler.join(timeout=5)
        timeline.event("end", "end: stopping the fake cluster")
        try:
            import ray

            if ray.is_initialized():
                ray.shutdown()
        except Exception:
            log.exception("ray.shutdown failed")
        autoscaler_log = []
        with contextlib.suppress(Exception):
            autoscaler_log = cluster.monitor_events(timeline.zero or timeline.started)
        reaped = cluster.stop()
        timeline.rebase()
        record.update({
            "events": timeline.events, "burst": burst,
            "nodes": node_lifetimes(sampler, timeline, burst, autoscaler_log),
            "samples": timeline.samples, "autoscaler_log": autoscaler_log,
            "cleanup": {"processes_reaped_after_head_stop": reaped, "work_dir_kept": args.keep_dir},
            "total_seconds": round(time.time() - began, 1),
        })
        if isinstance(record.get("serve"), dict) and "load" in record["serve"]:
            record["serve"]["replica_changes"] = replica_changes(timeline.samples)
        record["summary"] = summarize(record)
        if not args.keep_dir:
            shutil.rmtree(work_dir, ignore_errors=True)
        print_report(record)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(record, indent=2, default=str) + "\n")
        print(f"\nwrote {args.output} ({record['total_seconds']} s in all)", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
