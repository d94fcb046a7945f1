"""Fast versions of the fault benchmarks (`tracemill bench faults`, `tracemill bench spread`), so
CI proves they still work and that no fault loses an acked event.

- An ingress replica killed mid-stream, on the shared stack, under the resending load.
- S3 500 / 503 SlowDown / stalls on the screenshot path, and OpenAI 429 / 500 / timeouts
  during finalisation: they need a stack whose object store is S3 behind the fault proxy and
  whose vision provider is `openai`, so `python -m cluster.chaos run --smoke` runs them on a
  private stack in a subprocess, and the test asserts on its JSON.
- A worker node removed from a `ray.cluster_utils.Cluster` (head + 2 workers), and tasks on
  every node: one process joins one Ray cluster, and this one is on the shared stack's, so
  `python -m cluster.chaos.spread --smoke` runs in a subprocess too. (Run beside the other
  tests it only slows both down: two cores.)

(A killed shard and a PostgreSQL restart are tests/integration/test_faults.py's.)
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from cluster.chaos.faults import ingress_replicas, kill_ingress_replica, wait_ready
from cluster.chaos.resending_load import ChaosLoadConfig, LoadTrack, run_chaos_load
from cluster.chaos.verify import verify
from tests.support.client import Api

REPO = Path(__file__).resolve().parents[2]
# Variables of the shared stack's own Ray and Serve that a child building its own must not see.
_PARENT_ONLY = ("RAY_ADDRESS", "DATABASE_URL", "TRACEMILL_S3_BUCKET")


class ModuleRun:
    """`python -m <args> --output FILE` in a process group of its own; the group is ended at
    the bound, or by `stop()` whatever happened."""

    def __init__(self, args: list[str], out: Path) -> None:
        env = {k: v for k, v in os.environ.items() if k not in _PARENT_ONLY and not k.startswith("RAY_SERVE_")}
        self.args, self.out, self.started = args, out, time.monotonic()
        self.proc = subprocess.Popen([sys.executable, "-m", *args, "--output", str(out)], cwd=REPO, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True)

    def result(self, timeout_s: float) -> dict[str, Any]:
        """Wait until `timeout_s` after the start; the JSON it wrote, with its exit and output."""
        try:
            output, _ = self.proc.communicate(timeout=max(1.0, self.started + timeout_s - time.monotonic()))
        except subprocess.TimeoutExpired:
            output = self.stop()
            pytest.fail(f"{' '.join(self.args)} did not finish within {timeout_s:.0f} s:\n{output[-4000:]}")
        assert self.out.exists(), f"{' '.join(self.args)} exited {self.proc.returncode} without a result:\n{output[-4000:]}"
        result = dict(json.loads(self.out.read_text()))
        result["_exit"], result["_output"] = self.proc.returncode, output[-4000:]
        return result

    def stop(self) -> str:
        if self.proc.poll() is not None:
            return ""
        os.killpg(self.proc.pid, signal.SIGTERM)  # the group we created: its Ray, PostgreSQL, servers
        try:
            return self.proc.communicate(timeout=30)[0]
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.communicate()[0]


def assert_clean(row: dict[str, Any]) -> None:
    """What every fault must leave: nothing acked lost or doubled, every 2xx screenshot there,
    every finished session terminal."""
    context = json.dumps({k: v for k, v in row.items() if k != "_output"}, default=str)[:2000]
    assert row["events_acked"] > 0, context
    assert row["lost"] == 0 and row["duplicated"] == 0, context
    assert row["events_stored"] == row["events_acked"], context  # the load finished every session
    assert row["screenshots_acked"] > 0 and row["screenshots_missing"] == 0, context
    assert row["finished"] == row["sessions"] and row["stuck"] == 0, context


def test_ingress_replica_killed_mid_stream_loses_nothing(api: Api, stack: Any) -> None:
    cfg = ChaosLoadConfig(url=stack.endpoint, api_key=api.key, sessions=3, events=200, shots=2, deadline_s=90)
    before = ingress_replicas()
    assert before, "no ingress replica to kill"

    async def scenario() -> tuple[LoadTrack, float, str]:
        track = LoadTrack()
        running = asyncio.create_task(run_chaos_load(cfg, track))
        deadline = time.monotonic() + 45
        while track.progress() < 0.3 * cfg.sessions * cfg.events:
            assert time.monotonic() < deadline and not running.done(), f"load stalled at {track.progress()}"
            await asyncio.sleep(0.05)
        t0 = time.monotonic()
        killed = await asyncio.to_thread(kill_ingress_replica)
        await running
        return track, t0, killed

    track, t0, killed = asyncio.run(scenario())
    try:
        assert killed in before and killed not in ingress_replicas()  # Serve replaced it
        assert not track.timed_out
        assert track.first_ack_after(t0) is not None
        row = asyncio.run(verify(track, stack.settings, terminal_timeout_s=60))
        assert_clean(row)
        assert row["events_acked"] == cfg.sessions * cfg.events
        assert set(row["final_status"]) <= {"ready", "rejected"}, row
    finally:  # later tests share this stack: leave it serving
        assert wait_ready(stack.endpoint, 60) is not None


def test_objectstore_and_openai_faults_on_a_private_stack(tmp_path: Path) -> None:
    run = ModuleRun(["cluster.chaos", "run", "--smoke", "--only", "objectstore-errors,openai-errors"],
                    tmp_path / "faults.json")
    try:
        result = run.result(timeout_s=240)
    finally:
        run.stop()
    rows = {r["fault"]: r for r in result["rows"]}
    assert set(rows) == {"objectstore-errors", "openai-errors"}, result["_output"]
    for row in rows.values():
        assert_clean(row)
        assert row["final_status"] == {"ready": row["sessions"]}, row
    s3 = rows["objectstore-errors"]
    # The window really failed requests, and the screenshots still came through.
    assert s3["s3_faults"].get("500", 0) > 0 and s3["s3_faults"].get("slowdown", 0) > 0, s3
    assert s3["recover_s"] is not None
    vision = rows["openai-errors"]["vision_calls"]
    assert vision.get("fallback", 0) > 0, vision  # the failures were recorded as fallbacks
    assert result["_exit"] == 0, result["_output"]


def test_node_loss_and_spread_on_a_three_node_cluster(tmp_path: Path) -> None:
    run = ModuleRun(["cluster.chaos.spread", "--smoke"], tmp_path / "spread.json")
    try:
        result = run.result(timeout_s=300)
    finally:
        run.stop()
    nodes = [result["nodes"]["head"], *result["nodes"]["workers"]]
    assert len(set(nodes)) == 3
    per_node = result["spread"]["tasks_per_node"]
    assert set(per_node) == {"compress", "vision", "scoring"}
    assert all(per_node[kind][n] > 0 for kind in per_node for n in nodes), per_node
    loss = result["node_loss"]
    assert_clean(loss)
    assert loss["removed_node"] in result["nodes"]["workers"]
    assert loss["shards_on_removed_node"] > 0, loss["shard_nodes_before"]  # the removal hit shards
    after = loss["shard_nodes_after"]
    assert len(after) == len(loss["shard_nodes_before"]) and loss["removed_node"] not in after.values(), after
    assert loss["recover_s"] is not None
    assert result["_exit"] == 0, result["_output"]


def test_the_check_sees_a_lost_event_a_double_count_and_a_missing_object(api: Api, stack: Any) -> None:
    """The verifier must be able to fail: take an acked row, count one event twice, and delete
    a 2xx screenshot's object behind the service's back; each shows up."""
    from actors.storage.objectstore import make_object_store
    from cluster.doubles.net import wait_for
    from tests.support.stack import run_db

    cfg = ChaosLoadConfig(url=stack.endpoint, api_key=api.key, sessions=1, events=40, shots=1, deadline_s=60,
                          finish=False)
    track = asyncio.run(run_chaos_load(cfg))
    sid = track.sessions[0].sid
    assert track.sessions[0].acked_through == 39 and len(track.sessions[0].shots_ok) == 1
    clean = asyncio.run(verify(track, stack.settings, terminal_timeout_s=1))
    assert (clean["lost"], clean["duplicated"], clean["screenshots_missing"]) == (0, 0, 0), clean

    run_db(stack, "DELETE FROM interactions WHERE session_id = $1 AND seq = 7", uuid.UUID(sid))
    run_db(stack, "UPDATE sessions SET event_count = event_count + 1 WHERE session_id = $1", uuid.UUID(sid))
    # The compress task swaps the raw upload for the WebP: wait for it, then take the object.
    shot = wait_for(lambda: next(iter(run_db(stack, "SELECT raw_key, webp_key, status FROM screenshots WHERE"
                                                    " session_id = $1 AND status = 'compressed'", uuid.UUID(sid))), None),
                    timeout_s=60, what="the screenshot to be compressed")

    async def drop(keys: list[str]) -> None:
        store = make_object_store(stack.settings.object_store)
        try:
            for key in keys:
                await store.delete(key)
        finally:
            await store.close()

    asyncio.run(drop([k for k in (shot["raw_key"], shot["webp_key"]) if k]))
    broken = asyncio.run(verify(track, stack.settings, terminal_timeout_s=1))
    assert (broken["lost"], broken["duplicated"], broken["screenshots_missing"]) == (1, 1, 1), broken


def test_a_restarted_shard_resumes_finalisation_without_being_called(api: Api, stack: Any) -> None:
    """Reproducer of what the node-loss run found: a session left `finalizing` by a shard that
    died stayed so until some request reached the restarted shard. Here the session is put in
    `finalizing` behind the shard's back, the shard is killed, and nothing calls it again."""
    import ray

    from actors.ingest.shard_pool import ShardRouter
    from cluster.doubles.net import wait_for
    from tests.support.stack import run_db

    cfg = ChaosLoadConfig(url=stack.endpoint, api_key=api.key, sessions=1, events=40, shots=1, deadline_s=60,
                          finish=False)
    sid = uuid.UUID(asyncio.run(run_chaos_load(cfg)).sessions[0].sid)
    run_db(stack, "UPDATE sessions SET status = 'finalizing' WHERE session_id = $1", sid)
    shard = ShardRouter(stack.settings).for_session(sid)
    ray.kill(shard, no_restart=False)
    status = wait_for(lambda: (run_db(stack, "SELECT status FROM sessions WHERE session_id = $1", sid)[0]["status"]
                               in ("ready", "rejected", "failed")), timeout_s=90, interval_s=0.5,
                      what="the restarted shard to finalise the session on its own")
    assert status
