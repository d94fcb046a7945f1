"""Dataset builds on the real stack: ready sessions to train/validation JSONL, report and plot
in the object store, lineage in PostgreSQL; through the entrypoint and through `ray job submit`;
bad configs and rule-breaking datasets rejected."""

from __future__ import annotations

import io
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import ray
import yaml

from jobs import build_dataset
from actors.training.dataset.formats import example_key, validate_examples
from actors.training.dataset.parquet import read_parquet
from actors.training.dataset.ranking import RankingRow
from tests.support.client import Api
from tests.support.sessions import record_ready
from tests.support.stack import read_object, run_db

pytestmark = pytest.mark.integration
TASK = f"Buy a kettle {uuid.uuid4().hex[:8]}"  # unique, so selections see only this module's sessions


@pytest.fixture(scope="module")
def ready_sessions(api: Api) -> list[str]:
    return record_ready(api, 5, TASK)


def write_config(tmp_path: Path, **extra: Any) -> Path:
    body = {"name": "kettle", "selection": {"task_contains": TASK}, "sessions_per_task": 2,
            "split": {"validation_share": 0.4, "seed": 3}, **extra}
    path = tmp_path / "dataset.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


def dataset_count(stack: Any) -> int:
    return run_db(stack, "SELECT count(*) AS n FROM datasets")[0]["n"]


def test_build_writes_split_files_report_and_lineage(stack: Any, ready_sessions: list[str],
                                                     tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = write_config(tmp_path, format={"image_mode": "data_url", "max_images_per_example": 2})
    assert build_dataset.main(["--config", str(config)]) == 0
    dataset_id = capsys.readouterr().out.split("dataset ")[-1].split()[0]
    row = run_db(stack, "SELECT * FROM datasets WHERE dataset_id = $1", uuid.UUID(dataset_id))[0]
    assert row["status"] == "succeeded" and "tracemill" in row["code_version"]
    train_ids, val_ids = {str(s) for s in row["train_sessions"]}, {str(s) for s in row["validation_sessions"]}
    assert train_ids | val_ids == set(ready_sessions) and not train_ids & val_ids and val_ids
    files = json.loads(row["files"])
    assert set(files) == {"train.jsonl", "validation.jsonl", "report.json", "quality.png",
                          "train.ranking.jsonl", "validation.ranking.jsonl", "train.parquet",
                          "validation.parquet"}
    blobs = {name: read_object(stack, f["key"]) for name, f in files.items()}
    assert blobs["quality.png"].startswith(b"\x89PNG")
    train = [json.loads(line) for line in blobs["train.jsonl"].decode().splitlines()]
    val = [json.loads(line) for line in blobs["validation.jsonl"].decode().splitlines()]
    keys = [example_key(ex) for ex in train + val]
    assert len(keys) == len(set(keys)), "duplicates left in the files"
    assert validate_examples(train) == [] and len(train) >= 10
    report = json.loads(blobs["report.json"])
    assert report["examples"]["train"] == len(train) and report["examples"]["validation"] == len(val)
    assert sum(report["train"]["action_types"].values()) == len(train)
    assert report["sessions"]["selected"] == len(ready_sessions)
    assert report["cost"]["estimated_usd"] == pytest.approx(
        report["train"]["tokens"]["total"] * 3 * 3.0 / 1e6, abs=1e-4)
    images = [p["image_url"]["url"] for ex in train for p in ex["messages"][1]["content"]
              if isinstance(ex["messages"][1]["content"], list) and p["type"] == "image_url"]
    assert images and all(u.startswith("data:image/webp;base64,") for u in images)
    assert all(len(ex["messages"][1]["content"]) <= 3 for ex in train if isinstance(ex["messages"][1]["content"], list))
    assert json.loads(row["counts"])["train_examples"] == len(train)
    # The report lists every other file; the Parquet export holds the ranking rows, one per step.
    assert set(report["files"]) == set(files) - {"report.json"}
    assert report["files"]["train.parquet"]["bytes"] == files["train.parquet"]["bytes"]
    for split in ("train", "validation"):
        table = pq.read_table(io.BytesIO(blobs[f"{split}.parquet"]))
        ranking = blobs[f"{split}.ranking.jsonl"].decode().splitlines()
        assert table.num_rows == len(ranking) == report["files"][f"{split}.parquet"]["rows"] > 0
        assert read_parquet(blobs[f"{split}.parquet"]) == [RankingRow.model_validate_json(line) for line in ranking]
        assert set(table.column("session_id").to_pylist()) <= (train_ids if split == "train" else val_ids)


@pytest.mark.parametrize("body, message", [
    ({"name": "x", "selection": {"min_quality": 1.5}}, "selection.min_quality"),
    ({"name": "x", "selectoin": {}}, "selectoin"),
    ({"name": "x", "selection": {"since": "2026-11-02T00:00:00Z", "until": "2026-11-01T00:00:00Z"}}, "since"),
    ({"name": "x", "format": {"max_images_per_example": 11}}, "max_images_per_example"),
    ({"name": "bad name!"}, "name"),
])
def test_bad_configs_are_rejected_before_any_work(stack: Any, tmp_path: Path, capsys: pytest.CaptureFixture,
                                                  body: dict, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(body))
    before = dataset_count(stack)
    assert build_dataset.main(["--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert dataset_count(stack) == before


def test_empty_selection_and_rule_breaking_examples_fail_with_the_reason(
        stack: Any, ready_sessions: list[str], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert build_dataset.main(["--config", str(write_config(tmp_path, selection={"task_contains": "no such task"}))]) == 2
    assert "no session matches" in capsys.readouterr().err
    # Every example over a tiny token budget: OpenAI would refuse the file, so nothing is written.
    assert build_dataset.main(["--config", str(write_config(tmp_path, format={"max_example_tokens": 50}))]) == 2
    assert "tokens >" in capsys.readouterr().err
    row = run_db(stack, "SELECT status, error, report, files FROM datasets ORDER BY created_at DESC LIMIT 1")[0]
    assert row["status"] == "failed" and "fine-tuning rules" in row["error"] and row["files"] is None
    assert json.loads(row["report"])["problems"][0]["code"] == "too_many_tokens"


def test_build_through_ray_job_submit(stack: Any, ready_sessions: list[str], tmp_path: Path) -> None:
    from ray.job_submission import JobStatus, JobSubmissionClient

    from actors.settings_registry import CLUSTER_ADDRESS_ENV, dashboard_url

    client = JobSubmissionClient(dashboard_url())
    # sys.executable: the tests may run from a virtualenv that is not on the job's PATH.
    # TRACEMILL_RAY_ADDRESS: other clusters this suite starts may be "the latest" on the machine.
    job = client.submit_job(entrypoint=f"{sys.executable} -m jobs.build_dataset --config {write_config(tmp_path)}",
                            runtime_env={"env_vars": {CLUSTER_ADDRESS_ENV: ray.get_runtime_context().gcs_address}})
    deadline = time.monotonic() + 120
    while (status := client.get_job_status(job)) not in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
        assert time.monotonic() < deadline, client.get_job_logs(job)
        time.sleep(0.5)
    logs = client.get_job_logs(job)
    assert status == JobStatus.SUCCEEDED, logs
    assert "progress: 5/5 sessions" in logs and "succeeded" in logs


def test_one_process_build_writes_the_same_bytes(stack: Any, ready_sessions: list[str], tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    """The build on Ray (chunks cut by measured cost, results streamed to files) and in one
    process without Ray write the same files; only the report's timings may differ."""
    config = write_config(tmp_path, format={"image_mode": "data_url", "max_images_per_example": 2},
                          sessions_per_task=3, task_target_seconds=0.01)
    rows = []
    for extra in ([], ["--one-process"]):
        assert build_dataset.main(["--config", str(config), *extra]) == 0
        dataset_id = capsys.readouterr().out.split("dataset ")[-1].split()[0]
        rows.append(run_db(stack, "SELECT files, report FROM datasets WHERE dataset_id = $1", uuid.UUID(dataset_id))[0])
    on_ray, one = ({name: f["sha256"] for name, f in json.loads(r["files"]).items() if name != "report.json"}
                   for r in rows)
    assert on_ray == one and "train.parquet" in one
    reports = [json.loads(r["report"]) for r in rows]
    assert [r["build"]["executor"] for r in reports] == ["ray", "one_process"]
    assert [{k: v for k, v in r.items() if k != "build"} for r in reports][0] == \
        [{k: v for k, v in r.items() if k != "build"} for r in reports][1]


def test_cli_builds_and_shows_a_dataset(stack: Any, ready_sessions: list[str], tmp_path: Path,
                                        capsys: pytest.CaptureFixture) -> None:
    from cluster import cli

    assert cli.main(["dataset", "build", "--config", str(write_config(tmp_path))]) == 0
    built = json.loads(capsys.readouterr().out)
    assert built["status"] == "succeeded" and set(built["files"]) >= {"train.jsonl", "report.json"}
    assert cli.main(["dataset", "show", built["dataset_id"]]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["status"] == "succeeded" and shown["counts"]["train_examples"] == built["examples"]["train"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nsplit: {validation_share: 1.5}\n")
    before = dataset_count(stack)
    assert cli.main(["dataset", "build", "--config", str(bad)]) == 2
    assert "split.validation_share" in capsys.readouterr().err and dataset_count(stack) == before
    assert cli.main(["dataset", "show", str(uuid.uuid4())]) == 2
