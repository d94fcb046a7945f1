"""The evaluation job against the shared stack: a dataset row and its validation.jsonl in the
object store, the real `openai` client against the local OpenAI-compatible server answering
as an oracle and as a weak model, the accuracies stored in PostgreSQL, retries, bounded
concurrency, refusals before any row is written, `tracemill eval compare`, and one run
through `ray job submit`."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray

from actors import auth
from actors.storage.objectstore import make_object_store
from actors.training.evaluation.compare import aggregate, compare_step
from actors.training.dataset.formats import DatasetFormatSettings, build_examples
from tests.support.agent_models import Oracle, user_text, weak, weak_action
from cluster.doubles.openai_server import OpenAITestServer
from tests.support.sessions import shop_session
from tests.support.stack import run_db

REPO = Path(__file__).resolve().parents[2]
RUN = uuid.uuid4().hex[:8]
ORACLE, WEAK = f"oracle-{RUN}", f"weak-{RUN}"
_SEARCH = {"tag": "input", "attributes": {"placeholder": "Search"},
           "selectors": [{"kind": "placeholder", "value": "Search", "unique": True}]}


def _examples() -> list[dict[str, Any]]:
    """The shop session's steps (click, input, submit) and a typed-URL session with a
    screenshot (navigate, keypress; user content as text + image parts); one per user text,
    so the oracle's lookup is unambiguous."""
    events, _ = shop_session(100, 0, email="[EMAIL]", card="[CARD]")  # as stored: redacted on write
    typed = [{"seq": 0, "ts": 1, "type": "navigation", "url": "https://shop.example/", "title": "Shop",
              "transition": "typed"},
             {"seq": 1, "ts": 2, "type": "input", "value": "kettle", "target": _SEARCH},
             {"seq": 2, "ts": 3, "type": "keypress", "key": "Enter", "target": _SEARCH},
             {"seq": 3, "ts": 4, "type": "navigation", "url": "https://shop.example/search?q=kettle",
              "title": "Results", "transition": "typed"}]
    examples = build_examples({"session_id": "s1", "task": "buy a kettle"}, events, None) + build_examples(
        {"session_id": "s2", "task": "find a kettle"}, typed, {0: "data:image/png;base64,iVBORw0KGgo="},
        DatasetFormatSettings(image_mode="data_url"))
    by_text = {user_text(ex["messages"][:-1]): ex for ex in examples}
    return list(by_text.values())


def _make_dataset(stack: Any, examples: list[dict[str, Any]] | None, status: str = "succeeded") -> str:
    dataset_id = uuid.uuid4()
    files: dict[str, Any] = {}
    if examples is not None:
        data = "".join(json.dumps(ex) + "\n" for ex in examples).encode()
        key = f"datasets/{dataset_id}/validation.jsonl"

        async def put() -> None:
            store = make_object_store(stack.settings.object_store)
            try:
                await store.put(key, data, "application/jsonl")
            finally:
                await store.close()

        asyncio.run(put())
        files = {"validation.jsonl": {"key": key, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}}
    run_db(stack, "INSERT INTO datasets (dataset_id, org_id, name, status, config, code_version, files)"
                  " VALUES ($1, $2, $3, $4, '{}'::jsonb, 'test', $5::jsonb)",
           dataset_id, auth.DEFAULT_ORG_ID, f"eval-test-{dataset_id.hex[:6]}", status, json.dumps(files))
    return str(dataset_id)


@pytest.fixture(scope="module")
def server() -> Iterator[OpenAITestServer]:
    with OpenAITestServer() as s:
        yield s


@pytest.fixture(scope="module")
def examples() -> list[dict[str, Any]]:
    return _examples()


@pytest.fixture(scope="module")
def dataset(stack: Any, examples: list[dict[str, Any]]) -> str:
    return _make_dataset(stack, examples)


@pytest.fixture()
def models(server: OpenAITestServer, examples: list[dict[str, Any]]) -> OpenAITestServer:
    server.reset()
    server.respond_as(ORACLE, Oracle(examples))
    server.respond_as(WEAK, weak)
    return server


def _config(tmp_path: Path, server: OpenAITestServer, **extra: Any) -> str:
    path = tmp_path / f"eval-{uuid.uuid4().hex[:6]}.yaml"
    body = {"base_url": server.base_url, "api_key": "sk-test-not-real", "timeout_s": 5, **extra}
    path.write_text(json.dumps({"evaluation": body}))  # JSON is YAML
    return str(path)


def _evaluate(*args: str) -> int:
    from jobs.evaluate import main

    return main(list(args))


def _rows(stack: Any, model: str) -> list[Any]:
    return run_db(stack, "SELECT * FROM evaluations WHERE model = $1 ORDER BY created_at", model)


def _eval_count(stack: Any) -> int:
    return run_db(stack, "SELECT count(*) AS n FROM evaluations")[0]["n"]


def test_oracle_and_weak_model_accuracies_are_stored(stack: Any, models: OpenAITestServer, dataset: str,
                                                     examples: list[dict[str, Any]], tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    models.delay_s = 0.05  # requests overlap, so the concurrency bound is observable
    config = _config(tmp_path, models)
    assert _evaluate("--dataset", dataset, "--model", ORACLE, "--config", config, "--concurrency", "3") == 0
    assert models.max_in_flight == 3  # never more than asked, and really concurrent
    out = capsys.readouterr().out
    (oracle,) = _rows(stack, ORACLE)
    assert f"eval_id={oracle['eval_id']}" in out and "step accuracy         100.0%" in out
    assert oracle["status"] == "succeeded" and oracle["examples"] == oracle["answered"] == len(examples)
    assert (oracle["step_accuracy"], oracle["element_accuracy"], oracle["action_type_accuracy"]) == (1.0, 1.0, 1.0)
    details = json.loads(oracle["details"])
    assert set(details["per_action"]) == {"click", "input", "submit", "navigate", "keypress"}
    assert "sk-test" not in oracle["details"]

    models.reset()
    models.respond_as(WEAK, weak)
    assert _evaluate("--dataset", dataset, "--model", WEAK, "--config", config, "--concurrency", "2") == 0
    assert models.max_in_flight <= 2 and models.request_count == len(examples)
    (row,) = _rows(stack, WEAK)
    expected = aggregate(compare_step(json.loads(ex["messages"][-1]["content"]), weak_action(ex["messages"][:-1]))
                         for ex in examples)
    assert 0 < expected["step_accuracy"] < 1
    assert row["answered"] == len(examples)  # fenced JSON in prose still parses
    assert (row["step_accuracy"], row["element_accuracy"], row["action_type_accuracy"]) == (
        expected["step_accuracy"], expected["element_accuracy"], expected["action_type_accuracy"])
    assert json.loads(row["details"])["per_action"] == expected["per_action"]


def test_compare_prints_both_models(stack: Any, dataset: str) -> None:
    if not (_rows(stack, ORACLE) and _rows(stack, WEAK)):
        pytest.skip("needs the evaluations of the test above")
    env = {**os.environ, "DATABASE_URL": stack.settings.database.url.get_secret_value()}
    done = subprocess.run([sys.executable, "-m", "cluster.cli", "eval", "compare", ORACLE, WEAK, "--dataset", dataset],
                          capture_output=True, text=True, timeout=120, env=env, cwd=REPO)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert ORACLE in lines[1] and WEAK in lines[1]
    step = next(line for line in lines if line.startswith("step accuracy "))
    weak_step = _rows(stack, WEAK)[0]["step_accuracy"]
    assert "100.0%" in step and f"{weak_step * 100:.1f}%" in step and f"{(weak_step - 1) * 100:+.1f} pp" in step
    assert any(line.startswith("  click (") for line in lines)
    missing = subprocess.run([sys.executable, "-m", "cluster.cli", "eval", "compare", ORACLE, "never-evaluated"],
                             capture_output=True, text=True, timeout=120, env=env, cwd=REPO)
    assert missing.returncode == 2 and "never-evaluated" in missing.stderr


def test_429_500_and_timeouts_are_retried_and_the_run_completes(stack: Any, models: OpenAITestServer,
                                                                dataset: str, tmp_path: Path) -> None:
    model = f"{ORACLE}-retry"
    models.respond_as(model, models.responders[ORACLE])
    models.script(["429:0", "500", "timeout:3", "503"])
    config = _config(tmp_path, models, timeout_s=1, max_attempts=5, max_examples=6)
    assert _evaluate("--dataset", dataset, "--model", model, "--config", config, "--concurrency", "1") == 0
    assert [r.behaviour for r in models.requests[:5]] == ["429:0", "500", "timeout:3", "503", "ok"]
    assert models.request_count == 6 + 4
    (row,) = _rows(stack, model)
    assert row["status"] == "succeeded" and row["step_accuracy"] == 1.0 and row["examples"] == 6


def test_a_provider_that_keeps_failing_fails_the_evaluation(stack: Any, models: OpenAITestServer, dataset: str,
                                                            tmp_path: Path) -> None:
    model = f"{WEAK}-down"
    models.default = "500"
    config = _config(tmp_path, models, max_attempts=1, max_examples=4)
    assert _evaluate("--dataset", dataset, "--model", model, "--config", config) == 1
    (row,) = _rows(stack, model)
    assert row["status"] == "failed" and "4 of 4 examples got no reply" in row["error"]
    assert row["finished_at"] is not None


def test_bad_settings_and_unusable_datasets_exit_2_and_write_nothing(stack: Any, models: OpenAITestServer,
                                                                    dataset: str, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(tmp_path, models)
    before = _eval_count(stack)
    cases = [
        (["--dataset", dataset, "--model", ORACLE, "--config", _config(tmp_path, models, concurrency=0)],
         "invalid evaluation settings: concurrency"),
        (["--dataset", dataset, "--model", ORACLE, "--config", str(tmp_path / "absent.yaml")], "not found"),
        (["--dataset", str(uuid.uuid4()), "--model", ORACLE, "--config", config], "not found"),
        (["--dataset", "not-a-uuid", "--model", ORACLE, "--config", config], "must be a UUID"),
        (["--dataset", _make_dataset(stack, [], status="running"), "--model", ORACLE, "--config", config],
         "is running, not succeeded"),
        (["--dataset", _make_dataset(stack, None), "--model", ORACLE, "--config", config], "no validation split"),
    ]
    for argv, message in cases:
        assert _evaluate(*argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("evaluate: ") and message in err and "\n" not in err, err
    assert _eval_count(stack) == before
    assert models.request_count == 0


def test_eval_run_from_the_cli_honours_openai_env(stack: Any, models: OpenAITestServer, dataset: str,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from cluster.cli import main

    model = f"{WEAK}-cli"
    models.respond_as(model, weak)
    monkeypatch.setenv("OPENAI_BASE_URL", models.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    assert main(["eval", "run", "--dataset", dataset, "--model", model, "--limit", "5"]) == 0
    assert "eval_id=" in capsys.readouterr().out
    assert {r.authorization for r in models.requests} == {"Bearer sk-from-env"}
    assert _rows(stack, model)[0]["examples"] == 5


def test_eval_run_as_a_command_finds_the_cluster_by_its_state_dir(stack: Any, models: OpenAITestServer,
                                                                  dataset: str) -> None:
    model = f"{ORACLE}-state-dir"
    models.respond_as(model, models.responders[ORACLE])
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "DATABASE_URL", "TRACEMILL_STATE_DIR")}
    env.update(OPENAI_BASE_URL=models.base_url, OPENAI_API_KEY="sk-sub")
    done = subprocess.run([sys.executable, "-m", "cluster.cli", "eval", "run", "--dataset", dataset, "--model", model,
                           "--limit", "4", "--state-dir", str(stack.state_dir)],
                          capture_output=True, text=True, timeout=180, env=env, cwd=REPO)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (row,) = _rows(stack, model)
    assert f"eval_id={row['eval_id']}" in done.stdout and row["step_accuracy"] == 1.0


def _submit(client: Any, **job: Any) -> str:
    """Submit, waiting (bounded) for the head's job agent: Ray starts it after the dashboard
    and answers "No available agent" until then (each local stack's agent has a port of its
    own: cluster.local.use_free_agent_port)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return client.submit_job(**job)
        except RuntimeError as exc:
            if "No available agent" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(2)


@pytest.mark.timeout(300)
def test_the_job_runs_under_ray_job_submit(stack: Any, models: OpenAITestServer, dataset: str) -> None:
    from ray.job_submission import JobStatus, JobSubmissionClient

    from actors.settings_registry import CLUSTER_ADDRESS_ENV, dashboard_url

    model = f"{ORACLE}-rayjob"
    models.respond_as(model, models.responders[ORACLE])
    client = JobSubmissionClient(dashboard_url())
    job = _submit(client, entrypoint=f"{sys.executable} -m jobs.evaluate --dataset {dataset} --model {model}"
                                     " --limit 8 --concurrency 2",
                  runtime_env={"working_dir": str(REPO), "excludes": [".venv", "extension"],
                               "env_vars": {"OPENAI_BASE_URL": models.base_url, "OPENAI_API_KEY": "sk-job",
                                            # this cluster, not the machine's latest (settings_registry)
                                            CLUSTER_ADDRESS_ENV: ray.get_runtime_context().gcs_address}})
    deadline = time.monotonic() + 180
    while (status := client.get_job_status(job)) not in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
        assert time.monotonic() < deadline, f"job {job} still {status}"
        time.sleep(1)
    logs = client.get_job_logs(job)
    assert status == JobStatus.SUCCEEDED, logs[-3000:]
    (row,) = _rows(stack, model)
    assert f"eval_id={row['eval_id']}" in logs and "evaluated 8/8" in logs
    assert row["status"] == "succeeded" and row["step_accuracy"] == 1.0
