"""Fine-tunes on the real stack against the OpenAI-compatible test server (real HTTP through the
real `openai` client): dataset to registered model, a failed provider job retried by policy,
a killed driver resumed without a second job, cancel, and bad input refused before any work."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray
import yaml

from actors.auth import DEFAULT_ORG_ID
from jobs import finetune
from actors.training.dataset.build import run_build
from configs.dataset import DatasetBuildConfig
from tests.support.client import Api
from cluster.doubles.openai_server import OpenAITestServer
from tests.support.sessions import record_ready
from tests.support.stack import read_object, run_db

pytestmark = pytest.mark.integration
TASK = f"Find a teapot {uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def server() -> Iterator[OpenAITestServer]:
    with OpenAITestServer() as s:
        yield s


@pytest.fixture(scope="module")
def dataset_id(api: Api, stack: Any) -> uuid.UUID:
    record_ready(api, 3, TASK)
    config = DatasetBuildConfig.build({"name": "teapot", "selection": {"task_contains": TASK},
                                       "split": {"validation_share": 0.34}})
    result = asyncio.run(run_build(stack.settings, config, uuid.uuid4(), DEFAULT_ORG_ID, "test"))
    return result.dataset_id


@pytest.fixture(autouse=True)
def fresh_server(server: OpenAITestServer) -> None:
    server.reset()
    server.finetune.outcome, server.finetune.outcomes, server.finetune.running_polls = "succeeded", [], 1


def config(tmp_path: Path, server: OpenAITestServer, **extra: Any) -> Path:
    body = {"base_url": server.base_url, "api_key": "sk-test-secret", "poll_interval_s": 0.05,
            "poll_max_s": 0.2, "backoff_base_s": 0.01, "n_epochs": 2, "suffix": "teapot", **extra}
    path = tmp_path / f"ft-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump({"finetune": body}))
    return path


def row(stack: Any, finetune_id: str) -> Any:
    return run_db(stack, "SELECT * FROM finetunes WHERE finetune_id = $1", uuid.UUID(finetune_id))[0]


def job_creates(server: OpenAITestServer) -> list[Any]:
    return [r for r in server.finetune_requests if r.method == "POST" and r.path.endswith("/fine_tuning/jobs")]


def started_id(out: str) -> str:
    return out.split("fine-tune ")[1].split(":")[0]


def test_dataset_to_registered_model(stack: Any, dataset_id: uuid.UUID, server: OpenAITestServer,
                                     tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert finetune.main(["--dataset", str(dataset_id), "--config", str(config(tmp_path, server))]) == 0
    ft_id = started_id(capsys.readouterr().out)
    ft = row(stack, ft_id)
    assert (ft["status"], ft["attempt"]) == ("succeeded", 1) and ft["fine_tuned_model"].startswith("ft:")
    assert "sk-test-secret" not in ft["settings"]
    files = json.loads(run_db(stack, "SELECT files FROM datasets WHERE dataset_id = $1", dataset_id)[0]["files"])
    uploaded = sorted(server.finetune.file_data.values(), key=len)
    assert len(uploaded) == 2 and uploaded[-1] == read_object(stack, files["train.jsonl"]["key"])
    body = job_creates(server)[0].body
    assert body["method"]["supervised"]["hyperparameters"] == {"n_epochs": 2} and body["suffix"] == "teapot"
    model = run_db(stack, "SELECT * FROM models WHERE finetune_id = $1", uuid.UUID(ft_id))[0]
    assert (model["name"], model["dataset_id"]) == (ft["fine_tuned_model"], dataset_id)
    assert json.loads(model["metrics"])["train_loss"] == 0.6
    events = run_db(stack, "SELECT message FROM finetune_events WHERE finetune_id = $1", uuid.UUID(ft_id))
    assert any("successfully completed" in e["message"] for e in events)
    steps = run_db(stack, "SELECT step FROM finetune_checkpoints WHERE finetune_id = $1 ORDER BY step", uuid.UUID(ft_id))
    assert [s["step"] for s in steps] == [1, 2]
    # A second model of the same lineage is the next version.
    assert finetune.main(["--dataset", str(dataset_id), "--config", str(config(tmp_path, server, suffix="teapot2"))]) == 0
    assert finetune.main(["--dataset", str(dataset_id), "--config", str(config(tmp_path, server, suffix="teapot2"))]) == 0
    versions = run_db(stack, "SELECT version FROM models WHERE suffix = 'teapot2' ORDER BY version")
    assert [v["version"] for v in versions] == [1, 2]


def test_failed_provider_job_is_retried_only_when_retryable(stack: Any, dataset_id: uuid.UUID,
                                                            server: OpenAITestServer, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    server.finetune.outcomes = ["server_error"]
    assert finetune.main(["--dataset", str(dataset_id), "--config", str(config(tmp_path, server, suffix="retry"))]) == 0
    ft = row(stack, started_id(capsys.readouterr().out))
    assert (ft["status"], ft["attempt"], len(job_creates(server))) == ("succeeded", 2, 2)
    server.reset()
    server.finetune.outcomes = ["failed"]  # invalid_training_file: a rerun would fail the same way
    assert finetune.main(["--dataset", str(dataset_id), "--config", str(config(tmp_path, server, suffix="bad"))]) == 1
    ft = row(stack, started_id(capsys.readouterr().out))
    assert (ft["status"], ft["attempt"], len(job_creates(server))) == ("failed", 1, 1)
    assert "invalid_training_file" in ft["error"]


def _driver(dataset_id: uuid.UUID, cfg: Path, finetune_id: str) -> subprocess.Popen:
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    return subprocess.Popen([sys.executable, "-m", "jobs.finetune", "--dataset", str(dataset_id), "--config",
                             str(cfg), "--finetune-id", finetune_id], env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _wait_running(stack: Any, finetune_id: str, proc: subprocess.Popen, timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        rows = run_db(stack, "SELECT * FROM finetunes WHERE finetune_id = $1", uuid.UUID(finetune_id))
        if rows and rows[0]["status"] == "running":
            return rows[0]
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"driver never got to running: {proc.communicate(timeout=5)[0].decode()[-3000:]}")
        time.sleep(0.2)


def test_killed_driver_is_resumed_without_a_second_job(stack: Any, dataset_id: uuid.UUID, server: OpenAITestServer,
                                                      tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server.finetune.running_polls = 10**9  # the provider job runs until the test lets it finish
    ft_id = str(uuid.uuid4())
    proc = _driver(dataset_id, config(tmp_path, server, suffix="resume"), ft_id)
    try:
        before = _wait_running(stack, ft_id, proc)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    server.finetune.running_polls = 1
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret")  # the stored settings never hold the key
    assert finetune.main(["--resume", ft_id]) == 0
    after = row(stack, ft_id)
    assert after["status"] == "succeeded" and after["provider_job_id"] == before["provider_job_id"]
    assert len(job_creates(server)) == 1 and after["attempt"] == 1


def test_cancel_request_cancels_the_provider_job(stack: Any, dataset_id: uuid.UUID, server: OpenAITestServer,
                                                tmp_path: Path) -> None:
    server.finetune.running_polls = 10**9
    ft_id = str(uuid.uuid4())
    proc = _driver(dataset_id, config(tmp_path, server, suffix="cancel"), ft_id)
    try:
        running = _wait_running(stack, ft_id, proc)
        run_db(stack, "UPDATE finetunes SET cancel_requested = true WHERE finetune_id = $1", uuid.UUID(ft_id))
        assert proc.wait(timeout=60) == 1
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert row(stack, ft_id)["status"] == "cancelled"
    assert server.finetune.jobs[running["provider_job_id"]]["status"] == "cancelled"


@pytest.mark.parametrize("body, message", [
    ({"finetune": {"n_epochs": -1}}, "n_epochs"),
    ({"finetune": {"modle": "x"}}, "modle"),
    ({"finetune": {"provider": "acme"}}, "provider"),
])
def test_bad_configs_start_nothing(stack: Any, dataset_id: uuid.UUID, server: OpenAITestServer, tmp_path: Path,
                                   capsys: pytest.CaptureFixture, body: dict, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(body))
    before = run_db(stack, "SELECT count(*) AS n FROM finetunes")[0]["n"]
    assert finetune.main(["--dataset", str(dataset_id), "--config", str(path)]) == 2
    assert message in capsys.readouterr().err
    assert run_db(stack, "SELECT count(*) AS n FROM finetunes")[0]["n"] == before and not server.finetune_requests


def test_unknown_or_unbuilt_dataset_starts_nothing(stack: Any, server: OpenAITestServer, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    before = run_db(stack, "SELECT count(*) AS n FROM finetunes")[0]["n"]
    assert finetune.main(["--dataset", str(uuid.uuid4()), "--config", str(config(tmp_path, server))]) == 2
    assert "no dataset" in capsys.readouterr().err
    assert finetune.main(["--resume", str(uuid.uuid4())]) == 2
    assert run_db(stack, "SELECT count(*) AS n FROM finetunes")[0]["n"] == before and not server.finetune_requests


def test_cli_starts_reads_and_cancels(stack: Any, dataset_id: uuid.UUID, server: OpenAITestServer, tmp_path: Path,
                                      capsys: pytest.CaptureFixture) -> None:
    from cluster import cli

    assert cli.main(["finetune", "start", "--dataset", str(dataset_id), "--config",
                     str(config(tmp_path, server, suffix="cli"))]) == 0
    ft_id = started_id(capsys.readouterr().out)
    assert cli.main(["finetune", "status", ft_id]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["status"] == "succeeded" and status["model_version"] == 1
    assert cli.main(["finetune", "cancel", str(uuid.uuid4())]) == 2
    assert "no fine-tune" in capsys.readouterr().err


def test_ready_sessions_to_registered_model_to_evaluation(stack: Any, dataset_id: uuid.UUID,
                                                          server: OpenAITestServer, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The design card's last mile: the fine-tune's registered model evaluated on the dataset's
    validation split, its metrics in PostgreSQL next to the base model's."""
    from jobs import evaluate
    from tests.support.agent_models import Oracle, weak

    assert finetune.main(["--dataset", str(dataset_id), "--config", str(config(tmp_path, server, suffix="e2e"))]) == 0
    model = run_db(stack, "SELECT name FROM models WHERE suffix = 'e2e'")[0]["name"]
    files = json.loads(run_db(stack, "SELECT files FROM datasets WHERE dataset_id = $1", dataset_id)[0]["files"])
    validation = [json.loads(line) for line in read_object(stack, files["validation.jsonl"]["key"]).decode().splitlines()]
    server.respond_as(model, Oracle(validation))  # the fine-tune learned the task
    server.respond_as("gpt-4o-mini-2024-07-18", weak)
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret")
    for name in (model, "gpt-4o-mini-2024-07-18"):
        assert evaluate.main(["--dataset", str(dataset_id), "--model", name]) == 0
    rows = {r["model"]: r for r in run_db(
        stack, "SELECT model, step_accuracy, examples FROM evaluations WHERE dataset_id = $1", dataset_id)}
    assert rows[model]["step_accuracy"] == 1.0 and rows[model]["examples"] == len(validation)
    assert rows["gpt-4o-mini-2024-07-18"]["step_accuracy"] < 1.0
