"""`tracemill demo` on the real stack: the recording (the committed one the extension captured,
or one generated from the crafted shop session while that does not exist) replayed through the
public endpoint ends in a terminal state with every event stored once and the screenshots
stored; exported again, it replays again. A refused key, a corrupt recording and a missing
server each give one clear line and create nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from cluster.demo.replay import DemoError, DemoResult, export_recording, run_demo
from cluster.demo.recording import load_recording
from cluster.doubles.net import free_port
from tests.support.recordings import COMMITTED_RECORDING, write_generated_recording
from tests.support.stack import make_key, run_db


@pytest.fixture(scope="module")
def recording_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if COMMITTED_RECORDING.exists():
        return COMMITTED_RECORDING
    return write_generated_recording(tmp_path_factory.mktemp("demo") / "generated.json")


@pytest.fixture(scope="module")
def key(stack: Any) -> str:
    return make_key(stack, ["ingest", "read"])


def session_count(stack: Any) -> int:
    return int(run_db(stack, "SELECT count(*) AS n FROM sessions")[0]["n"])


def tracemill_demo(*args: str, key: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "TRACEMILL_API_KEY"}
    if key is not None:
        env["TRACEMILL_API_KEY"] = key
    return subprocess.run([sys.executable, "-m", "cluster.cli", "demo", *args],
                          capture_output=True, text=True, timeout=300, env=env)  # fmt: skip


def assert_stored_once(stack: Any, result: DemoResult, recording_path: Path) -> None:
    recording = load_recording(recording_path)
    assert result.status in ("ready", "rejected", "failed")
    assert result.event_count == result.events_sent == recording.event_count
    assert result.duplicate_count == 0
    rows = run_db(stack, "SELECT count(*) AS n, count(DISTINCT seq) AS d, min(seq) AS lo, max(seq) AS hi"
                         " FROM interactions WHERE session_id = $1", uuid.UUID(result.session_id))
    assert dict(rows[0]) == {"n": recording.event_count, "d": recording.event_count, "lo": 0,
                             "hi": recording.last_seq}  # fmt: skip
    shots = run_db(stack, "SELECT screenshot_id FROM screenshots WHERE session_id = $1",
                   uuid.UUID(result.session_id))
    assert sorted(r["screenshot_id"] for r in shots) == sorted(s.screenshot_id for s in recording.screenshots)
    assert result.screenshot_count == result.screenshots_sent == len(recording.screenshots)


@pytest.mark.timeout(600)
def test_replay_reaches_a_terminal_state_and_exports_again(stack: Any, key: str, recording_path: Path,
                                                           tmp_path: Path) -> None:  # fmt: skip
    lines: list[str] = []
    result = run_demo(stack.endpoint, key, recording_path, timeout_s=240, progress=lines.append)
    assert_stored_once(stack, result, recording_path)
    assert result.status == "ready", result
    assert result.quality is not None and 0.0 <= result.quality["overall"] <= 1.0
    assert result.archive is not None and result.archive["key"].endswith(f"{result.session_id}.zip")
    assert result.dashboard_url == f"{stack.endpoint}/dashboard"
    assert any(line.startswith("streaming") for line in lines) and lines[-1] == "finalising ready"
    # The times moved to now: the session started within the last few minutes.
    started = run_db(stack, "SELECT extract(epoch FROM now() - started_at) AS age FROM sessions"
                            " WHERE session_id = $1", uuid.UUID(result.session_id))
    assert 0 <= float(started[0]["age"]) < 600

    # What the extension engineer does after a browser run: export, then the file replays.
    exported = tmp_path / "exported.json"
    again = export_recording(stack.endpoint, key, result.session_id, exported, source="test export")
    assert again.event_count == result.event_count and len(again.screenshots) == result.screenshot_count
    assert again.session.viewport is not None and again.session.outcome == load_recording(recording_path).session.outcome
    # ... and `tracemill demo` (the CLI, through its entry point) replays the exported file.
    done = tracemill_demo("--endpoint", stack.endpoint, "--recording", str(exported), "--json", key=key)
    assert done.returncode == 0, done.stdout + done.stderr
    second = DemoResult.model_validate_json(done.stdout)
    assert_stored_once(stack, second, exported)
    assert second.session_id != result.session_id and second.status == "ready"
    assert "[demo] finalising ready" in done.stderr


def test_cli_refuses_a_bad_key_and_creates_nothing(stack: Any, recording_path: Path) -> None:
    before = session_count(stack)
    done = tracemill_demo("--endpoint", stack.endpoint, "--recording", str(recording_path), key="tm_not_a_key")
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("tracemill demo: the API key was refused")
    assert done.stdout == ""
    read_only = make_key(stack, ["read"])  # may read, may not ingest: refused at creation
    with pytest.raises(DemoError, match="the API key lacks a scope the demo needs, ingest and read"):
        run_demo(stack.endpoint, read_only, recording_path, timeout_s=30)
    assert session_count(stack) == before


@pytest.mark.parametrize("damage", ["truncated", "bad_event", "gap_in_seq", "bad_image"])
def test_a_corrupt_recording_is_refused_before_anything_is_sent(stack: Any, key: str, recording_path: Path,
                                                                tmp_path: Path, damage: str) -> None:  # fmt: skip
    text = recording_path.read_text()
    document = json.loads(text)
    if damage == "truncated":
        text = text[: len(text) // 2]
    else:
        if damage == "bad_event":
            document["frames"][1][0]["type"] = "teleport"
        elif damage == "gap_in_seq":
            document["frames"][-1].pop()
            document["frames"][0].pop(0)
        else:
            document["screenshots"][0]["data_base64"] = document["screenshots"][0]["data_base64"][:400]
        text = json.dumps(document)
    broken = tmp_path / "broken.json"
    broken.write_text(text)
    before = session_count(stack)
    done = tracemill_demo("--endpoint", stack.endpoint, "--recording", str(broken), key=key)
    assert done.returncode == 2, done.stdout + done.stderr
    message = done.stderr.strip().splitlines()[-1]
    assert message.startswith(f"tracemill demo: the recording {broken} is not valid: "), message
    assert session_count(stack) == before


def test_no_server_at_the_endpoint(recording_path: Path) -> None:
    with pytest.raises(DemoError, match="no answer from tracemill at http://127.0.0.1:"):
        run_demo(f"http://127.0.0.1:{free_port()}", "tm_any", recording_path, timeout_s=10)
