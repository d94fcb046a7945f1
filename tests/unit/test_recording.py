"""Recording files: a good one loads; every kind of damage is one line naming the problem;
frames are rebuilt with the extension's flush rule; the demo's summary reads well."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any, Callable

import pytest

from cluster.demo.replay import DemoResult, format_summary
from cluster.demo.recording import RecordingError, load_recording
from cluster.demo.export import flush_frames
from tests.support.recordings import generated_recording


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return generated_recording(n_events=60, n_screens=4)


def write(tmp_path: Path, document: dict[str, Any]) -> Path:
    path = tmp_path / "recording.json"
    path.write_text(json.dumps(document))
    return path


def test_a_good_recording_loads(tmp_path: Path, document: dict[str, Any]) -> None:
    recording = load_recording(write(tmp_path, document))
    assert recording.event_count == 60 and recording.last_seq == 59
    assert [len(f) for f in recording.frames] == [len(f) for f in document["frames"]]
    assert recording.screenshots[0].data[:8] == b"\x89PNG\r\n\x1a\n"
    body = recording.session.create_body(shift_ms=1000)
    assert body["started_at"] == document["session"]["started_at"] + 1000
    assert "ended_at" not in body and "outcome" not in body and "session_id" not in body


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def apply(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = doc
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[int(last) if last.isdigit() else last] = value
    return apply


def _drop_event(doc: dict[str, Any]) -> None:
    doc["frames"][2].pop(0)


DAMAGE: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "format": (_set("format", "other/1"), "format"),
    "event type": (_set("frames.1.0.type", "teleport"), "frames: Value error, frame 1: 1 of"),
    "event ts": (_set("frames.0.0.ts", "yesterday"), "frame 0"),
    "gap": (_drop_event, "event seqs must be unique and dense from 0"),
    "empty frame": (_set("frames.3", []), "frame 3 is empty"),
    "session type": (_set("session.type", "robot"), "session.type"),
    "base64": (_set("screenshots.0.data_base64", "***"), "data_base64 is not base64"),
    "image": (_set("screenshots.0.data_base64", base64.b64encode(b"not a png").decode()),
              "not a decodable image/png image"),
    "shot seq": (_set("screenshots.1.seq", 10_000), "beyond the last event"),
    "unknown field": (_set("extra", 1), "extra"),
}


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_damage_is_one_line_naming_the_problem(tmp_path: Path, document: dict[str, Any], kind: str) -> None:
    damage, expected = DAMAGE[kind]
    broken = copy.deepcopy(document)
    damage(broken)
    path = write(tmp_path, broken)
    with pytest.raises(RecordingError) as caught:
        load_recording(path)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"the recording {path} is not valid: "), message
    assert expected.removeprefix("frames: Value error, ") in message, message


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match="^no recording at "):
        load_recording(tmp_path / "missing.json")
    (tmp_path / "half.json").write_text('{"format": "tracemill-recording/1", "fra')
    with pytest.raises(RecordingError, match="is not valid: document: Invalid JSON"):
        load_recording(tmp_path / "half.json")


def test_frames_close_at_fifty_events_or_a_quarter_second() -> None:
    events = [{"seq": i, "ts": 1000 + i} for i in range(120)]  # 1 ms apart: size closes frames
    assert [len(f) for f in flush_frames(events)] == [50, 50, 20]
    events = [{"seq": i, "ts": 1000 + i * 100} for i in range(7)]  # 100 ms apart: time closes them
    assert [[e["seq"] for e in f] for f in flush_frames(events)] == [[0, 1, 2], [3, 4, 5], [6]]


def test_summary() -> None:
    result = DemoResult(
        session_id="s-1", status="ready", events_sent=10, frames_sent=3, event_count=10, duplicate_count=0,
        screenshots_sent=2, screenshot_count=2, dashboard_url="http://127.0.0.1:8000/dashboard", seconds=4.2,
        quality={"overall": 0.8, "completeness": 0.9, "selector_reliability": 0.7, "screenshot_quality": 0.6,
                 "training_value": 0.5, "reasons": []},
        archive={"key": "archives/o/s-1.zip", "bytes": 1234, "sha256": "x"},
    )  # fmt: skip
    text = format_summary(result)
    assert "session      s-1  ready" in text
    assert "events       10 stored of 10 sent in 3 frames (0 duplicates)" in text
    assert "overall 0.80  completeness 0.90  selectors 0.70  screenshots 0.60  training value 0.50" in text
    assert "archive      archives/o/s-1.zip (1234 bytes)" in text
    assert text.endswith("dashboard    http://127.0.0.1:8000/dashboard")
