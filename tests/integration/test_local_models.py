"""Local models on the real stack after training: ready sessions -> a ranking dataset -> a tiny
local fine-tune (jobs.finetune, Ray Train) registered in `models` -> `POST /v1/models/{id}/predict`
answered by the ModelServer deployment -> `tracemill eval run --model local:<id>` and the job's
`--model local:base` storing the evaluator's measures and recall@k -> `tracemill eval compare`
of the local model against an OpenAI-compatible one (the local test server) on the same
dataset."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

pytest.importorskip("torch")

from actors.auth import DEFAULT_ORG_ID  # noqa: E402
from actors.training.dataset.build import run_build  # noqa: E402
from actors.training.dataset.ranking import RankingRow  # noqa: E402
from cluster.doubles.openai_server import OpenAITestServer  # noqa: E402
from configs.dataset import DatasetBuildConfig  # noqa: E402
from tests.support.agent_models import Oracle  # noqa: E402
from tests.support.client import Api  # noqa: E402
from tests.support.sessions import record_ready  # noqa: E402
from tests.support.stack import make_key, read_object, run_db  # noqa: E402

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
TASK = f"Find a kettle {uuid.uuid4().hex[:8]}"
ORACLE = f"oracle-local-{uuid.uuid4().hex[:6]}"
# Tiny on purpose: one worker, short sequences; what is tested is the path, not the accuracy.
LOCAL = {"epochs": 2, "batch_size": 4, "learning_rate": 2e-4, "max_length": 40, "num_workers": 1,
         "cpus_per_worker": 0.5, "log_every_steps": 5, "max_failures": 0}


def _files(stack: Any, dataset_id: uuid.UUID) -> dict[str, Any]:
    return json.loads(run_db(stack, "SELECT files FROM datasets WHERE dataset_id = $1", dataset_id)[0]["files"])


@pytest.fixture(scope="module")
def dataset_id(stack: Any, api: Api) -> uuid.UUID:
    record_ready(api, 3, TASK)
    config = DatasetBuildConfig.build({"name": "local-models", "selection": {"task_contains": TASK},
                                       "format": {"max_candidates": 6}, "split": {"validation_share": 0.34}})
    return asyncio.run(run_build(stack.settings, config, uuid.uuid4(), DEFAULT_ORG_ID, "test")).dataset_id


@pytest.fixture(scope="module")
def model_id(stack: Any, dataset_id: uuid.UUID, tmp_path_factory: pytest.TempPathFactory) -> uuid.UUID:
    from jobs import finetune

    config = tmp_path_factory.mktemp("ft") / "local.yaml"
    config.write_text(yaml.safe_dump({"finetune": {"provider": "local", "poll_interval_s": 0.5, "poll_max_s": 1.0,
                                                   "suffix": "serve", "local": LOCAL}}))
    ft_id = uuid.uuid4()
    assert finetune.main(["--dataset", str(dataset_id), "--finetune-id", str(ft_id), "--config", str(config)]) == 0
    return run_db(stack, "SELECT model_id FROM models WHERE finetune_id = $1", ft_id)[0]["model_id"]


@pytest.fixture(scope="module")
def http(stack: Any) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.endpoint, timeout=120,
                      headers={"Authorization": f"Bearer {make_key(stack, ['read'])}"}) as client:
        yield client


def _rows(stack: Any, dataset_id: uuid.UUID, name: str) -> list[RankingRow]:
    data = read_object(stack, _files(stack, dataset_id)[name]["key"]).decode()
    return [RankingRow.model_validate_json(line) for line in data.splitlines()]


def _body(row: RankingRow) -> dict[str, Any]:
    return {"task": row.task, "url": row.url, "title": row.title, "previous_actions": row.previous_actions,
            "candidates": [{"id": c.id, "text": c.text, "selector": c.selector} for c in row.candidates]}


@pytest.mark.timeout(900)
def test_the_model_server_ranks_with_a_trained_local_model(stack: Any, dataset_id: uuid.UUID, model_id: uuid.UUID,
                                                           http: httpx.Client, other_org_api: Api) -> None:
    ft_id = run_db(stack, "SELECT finetune_id FROM models WHERE model_id = $1", model_id)[0]["finetune_id"]
    assert http.get(f"/v1/finetunes/{ft_id}").json()["model"]["model_id"] == str(model_id)  # how a client learns it
    rows = [r for r in _rows(stack, dataset_id, "train.ranking.jsonl") if r.positive_index is not None][:8]
    hits = 0
    for row in rows:
        answer = http.post(f"/v1/models/{model_id}/predict", json=_body(row))
        assert answer.status_code == 200, answer.text
        got = answer.json()
        ids = [c["id"] for c in got["candidates"]]
        assert sorted(ids) == sorted(c.id for c in row.candidates) and got["model_id"] == str(model_id)
        scores = [c["score"] for c in got["candidates"]]
        assert scores == sorted(scores, reverse=True) and sum(scores) == pytest.approx(1.0, abs=1e-4)
        assert got["action_type"] in got["action_scores"] and got["value_rule"] == "task_span"
        assert got["action"]["action"] in ("click", "input", "select", "submit", "keypress", "navigate")
        hits += ids[0] == row.candidates[row.positive_index].id
    assert hits >= len(rows) // 2, hits  # trained on these steps: most positives come first
    # local:<id> names the same model; unknown ids and another organisation's view are 404.
    assert http.post(f"/v1/models/local:{model_id}/predict", json=_body(rows[0])).status_code == 200
    for unknown in (uuid.uuid4(), "not-a-model"):
        missing = http.post(f"/v1/models/{unknown}/predict", json=_body(rows[0]))
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    other = other_org_api.http.post(f"/v1/models/{model_id}/predict", json=_body(rows[0]))
    assert other.status_code == 404, other.text
    # Bodies without candidates, or over the bounds: 422 in the one error shape.
    for body in ({**_body(rows[0]), "candidates": []}, {"task": "x"},
                 {**_body(rows[0]), "candidates": [{"id": str(i), "text": "x"} for i in range(501)]}):
        refused = http.post(f"/v1/models/{model_id}/predict", json=body)
        assert refused.status_code == 422 and refused.json()["error"]["code"] == "invalid_input", refused.text
        assert refused.json()["error"]["details"]
    assert httpx.post(f"{stack.endpoint}/v1/models/{model_id}/predict", json=_body(rows[0])).status_code == 401


def _evaluations(stack: Any, model: str) -> list[Any]:
    return run_db(stack, "SELECT * FROM evaluations WHERE model = $1 ORDER BY created_at", model)


@pytest.mark.timeout(900)
def test_eval_runs_of_local_models_store_the_measures_and_recall(stack: Any, dataset_id: uuid.UUID,
                                                                 model_id: uuid.UUID,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from cluster import cli
    from jobs.evaluate import main as evaluate_job

    validation = _rows(stack, dataset_id, "validation.ranking.jsonl")
    model = f"local:{model_id}"
    assert cli.main(["eval", "run", "--dataset", str(dataset_id), "--model", model]) == 0
    assert "ranker recall@1/5/10" in capsys.readouterr().out
    assert evaluate_job(["--dataset", str(dataset_id), "--model", "local:base"]) == 0
    for name in (model, "local:base"):
        (row,) = _evaluations(stack, name)
        assert (row["status"], row["provider"], row["examples"]) == ("succeeded", "local", len(validation))
        assert row["answered"] == len(validation)
        for measure in ("step_accuracy", "element_accuracy", "action_type_accuracy"):
            assert 0.0 <= row[measure] <= 1.0
        details = json.loads(row["details"])
        ranking = details["ranking"]
        assert ranking["ranked_steps"] == sum(r.positive_index is not None for r in validation)
        assert 0 <= ranking["recall_at_1"] <= ranking["recall_at_5"] <= ranking["recall_at_10"] <= 1
        assert details["value_rule"] == "task_span"
    # Refused before any row: an unknown local model, an organisation's model it cannot see.
    before = len(run_db(stack, "SELECT eval_id FROM evaluations"))
    assert evaluate_job(["--dataset", str(dataset_id), "--model", f"local:{uuid.uuid4()}"]) == 2
    assert "no local model" in capsys.readouterr().err
    assert len(run_db(stack, "SELECT eval_id FROM evaluations")) == before


@pytest.mark.timeout(600)
def test_compare_a_local_model_with_an_openai_compatible_one(stack: Any, dataset_id: uuid.UUID,
                                                             model_id: uuid.UUID, tmp_path: Path) -> None:
    from jobs.evaluate import main as evaluate_job

    if not _evaluations(stack, f"local:{model_id}"):
        pytest.skip("needs the local evaluation of the test above")
    examples = [json.loads(line) for line in
                read_object(stack, _files(stack, dataset_id)["validation.jsonl"]["key"]).decode().splitlines()]
    with OpenAITestServer() as server:
        server.respond_as(ORACLE, Oracle(examples))
        config = tmp_path / "eval.yaml"
        config.write_text(json.dumps({"evaluation": {"base_url": server.base_url, "api_key": "sk-test-not-real"}}))
        assert evaluate_job(["--dataset", str(dataset_id), "--model", ORACLE, "--config", str(config)]) == 0
    env = {**os.environ, "DATABASE_URL": stack.settings.database.url.get_secret_value()}
    done = subprocess.run([sys.executable, "-m", "cluster.cli", "eval", "compare", f"local:{model_id}", ORACLE,
                           "--dataset", str(dataset_id)],
                          capture_output=True, text=True, timeout=120, env=env, cwd=REPO)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert f"local:{model_id}" in lines[1] and ORACLE in lines[1]
    assert "100.0%" in next(line for line in lines if line.startswith("step accuracy "))  # the oracle
    recall = next(line for line in lines if line.startswith("ranker recall@5"))
    assert "%" in recall.split()[2] and recall.split()[3] == "-"  # a chat model ranks nothing
    assert "different datasets" not in done.stdout
