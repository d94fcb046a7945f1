"""The training routes on the real stack: a dataset build and a fine-tune queued over HTTP run
as Ray Jobs; status, report and files read back; bad requests change nothing."""

from __future__ import annotations

import io
import json
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from pydantic import SecretStr

from actors.settings_registry import publish_settings
from configs.secrets import write_secrets_file
from tests.support.client import Api
from cluster.doubles.openai_server import OpenAITestServer
from tests.support.sessions import record_ready
from tests.support.stack import make_key, run_db

pytestmark = pytest.mark.integration
TASK = f"Order a lamp {uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def admin(stack: Any) -> httpx.Client:
    with httpx.Client(base_url=stack.endpoint, timeout=90,
                      headers={"Authorization": f"Bearer {make_key(stack, ['admin'])}"}) as client:
        yield client


@pytest.fixture(scope="module")
def built(api: Api, admin: httpx.Client) -> dict[str, Any]:
    record_ready(api, 3, TASK)
    answer = admin.post("/v1/datasets", json={"name": "lamp", "selection": {"task_contains": TASK},
                                              "split": {"validation_share": 0.34}})
    assert answer.status_code == 202, answer.text
    return wait_for(admin, f"/v1/datasets/{answer.json()['dataset_id']}", ("succeeded", "failed"))


def wait_for(client: httpx.Client, path: str, states: tuple[str, ...], timeout: float = 150) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (view := client.get(path).json())["status"] not in states:
        assert time.monotonic() < deadline, view
        time.sleep(0.5)
    return view


def count(stack: Any, table: str) -> int:
    return run_db(stack, f"SELECT count(*) AS n FROM {table}")[0]["n"]


def test_dataset_built_through_the_api(built: dict[str, Any], admin: httpx.Client, api: Api,
                                       other_org_api: Api) -> None:
    assert built["status"] == "succeeded", built["error"]
    assert built["report"]["examples"]["train"] == built["counts"]["train_examples"] >= 10
    assert built["ray_job_id"].startswith("tracemill-dataset-")
    train = api.http.get(built["files"]["train.jsonl"]["url"])
    assert train.status_code == 200 and train.headers["content-type"].startswith("application/jsonl")
    lines = train.text.splitlines()
    assert len(lines) == built["counts"]["train_examples"]
    assert json.loads(lines[0])["messages"][0]["role"] == "system"
    png = api.http.get(built["files"]["quality.png"]["url"])
    assert png.headers["content-type"] == "image/png" and png.content.startswith(b"\x89PNG")
    parquet = api.http.get(built["files"]["train.parquet"]["url"])
    assert parquet.status_code == 200 and parquet.headers["content-type"] == "application/vnd.apache.parquet"
    frame = pd.read_parquet(io.BytesIO(parquet.content))
    assert len(frame) == built["counts"]["ranking"]["train"]["rows"] == built["report"]["files"]["train.parquet"]["rows"]
    assert all(sum(c["positive"] for c in cands) <= 1 for cands in frame["candidates"])
    assert api.http.get(f"/v1/datasets/{built['dataset_id']}/files/secrets.txt").status_code == 404
    assert other_org_api.http.get(f"/v1/datasets/{built['dataset_id']}").status_code == 404
    listed = admin.get("/v1/datasets").json()["datasets"]
    assert built["dataset_id"] in [d["dataset_id"] for d in listed]


@pytest.mark.parametrize("body, field", [
    ({"name": "x", "selection": {"min_quality": 2}}, "body.selection.min_quality"),
    ({"name": "x", "extra": 1}, "body.extra"),
    ({}, "body.name"),
    ({"name": "x", "selection": {"org_id": str(uuid.uuid4())}}, "body.selection.org_id"),
])
def test_bad_dataset_requests_change_nothing(stack: Any, admin: httpx.Client, body: dict, field: str) -> None:
    before = count(stack, "datasets")
    answer = admin.post("/v1/datasets", json=body)
    assert answer.status_code == 422, answer.text
    assert field in [d["field"] for d in answer.json()["error"]["details"]]
    assert count(stack, "datasets") == before


def test_training_routes_need_their_scope(api: Api, stack: Any) -> None:
    before = count(stack, "datasets")
    assert api.http.post("/v1/datasets", json={"name": "x"}).status_code == 403  # ingest+read key
    assert api.http.post("/v1/finetunes", json={"dataset_id": str(uuid.uuid4())}).status_code == 403
    assert count(stack, "datasets") == before


@contextmanager
def deployment_provider(stack: Any, tmp_path: Path, base_url: str) -> Iterator[None]:
    """The deployment's fine-tune provider pointed at `base_url`, as an operator's
    OPENAI_BASE_URL would (job drivers read the published settings)."""
    settings = stack.settings.model_copy(update={"finetune": stack.settings.finetune.model_copy(
        update={"base_url": base_url, "api_key": SecretStr("sk-deployment")})})
    # The key is a secret: published as a 0600 file's name, as `tracemill deploy` does.
    publish_settings(settings, str(write_secrets_file(tmp_path / "secrets.json", settings.secret_values())))
    try:
        yield
    finally:
        publish_settings(stack.settings, str(stack.secrets_file))


@pytest.fixture
def provider(stack: Any, tmp_path: Path) -> Iterator[OpenAITestServer]:
    with OpenAITestServer() as server, deployment_provider(stack, tmp_path, server.base_url):
        yield server


def test_finetune_through_the_api(built: dict[str, Any], admin: httpx.Client, stack: Any,
                                  provider: OpenAITestServer) -> None:
    answer = admin.post("/v1/finetunes", json={"dataset_id": built["dataset_id"], "suffix": "lamp",
                                               "n_epochs": 1, "poll_interval_s": 1, "poll_max_s": 1})
    assert answer.status_code == 202, answer.text
    view = wait_for(admin, f"/v1/finetunes/{answer.json()['finetune_id']}", ("succeeded", "failed", "cancelled"))
    assert view["status"] == "succeeded", view
    assert view["fine_tuned_model"].startswith("ft:") and view["model"]["version"] == 1
    assert view["model"]["name"] == view["fine_tuned_model"] and view["events"]
    assert all(r.authorization == "Bearer sk-deployment" for r in provider.finetune_requests)
    assert "sk-deployment" not in json.dumps(view)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again on leaving: connections are refused


def test_a_finetune_whose_job_failed_ends_failed_with_the_reason(
        built: dict[str, Any], admin: httpx.Client, stack: Any, tmp_path: Path) -> None:
    """The provider host unreachable: the driver's upload gives up and its Ray job fails; the
    row, left `uploading` by the driver, must still end `failed` for a polling client."""
    with deployment_provider(stack, tmp_path, f"http://127.0.0.1:{closed_port()}/v1"):
        answer = admin.post("/v1/finetunes", json={"dataset_id": built["dataset_id"], "suffix": "down"})
        assert answer.status_code == 202, answer.text
        path = f"/v1/finetunes/{answer.json()['finetune_id']}"
        view = wait_for(admin, path, ("succeeded", "failed", "cancelled"))
    assert view["status"] == "failed", view
    assert f"the Ray job {view['ray_job_id']} ended FAILED" in view["error"]
    assert "recorded no outcome" in view["error"] and view["finished_at"]
    assert "upload file failed after" in view["error"] and "connection_error" in view["error"]  # the driver's line
    row = run_db(stack, "SELECT status, error FROM finetunes WHERE finetune_id = $1",
                 uuid.UUID(view["finetune_id"]))[0]
    assert row["status"] == "failed" and row["error"] == view["error"]  # stored, not only shown
    assert "sk-deployment" not in json.dumps(view)


def test_a_dataset_whose_driver_was_stopped_is_listed_failed(admin: httpx.Client, stack: Any) -> None:
    """A driver killed before it could record anything (its Ray job stopped): the list, not
    only the dataset's own page, shows it failed with Ray's reason."""
    from ray.job_submission import JobSubmissionClient

    from actors.settings_registry import dashboard_url

    answer = admin.post("/v1/datasets", json={"name": "stopped", "selection": {"task_contains": TASK}})
    assert answer.status_code == 202, answer.text
    dataset_id, job = answer.json()["dataset_id"], answer.json()["ray_job_id"]
    JobSubmissionClient(dashboard_url()).stop_job(job)
    deadline = time.monotonic() + 60
    while (listed := {d["dataset_id"]: d for d in admin.get("/v1/datasets").json()["datasets"]}
           )[dataset_id]["status"] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline, listed[dataset_id]
        time.sleep(0.5)
    assert listed[dataset_id]["status"] == "failed", listed[dataset_id]
    assert f"the Ray job {job} ended STOPPED" in listed[dataset_id]["error"]
    assert admin.get(f"/v1/datasets/{dataset_id}").json()["status"] == "failed"


@pytest.mark.parametrize("body, status", [
    ({"dataset_id": "not-a-uuid"}, 422),
    ({"dataset_id": str(uuid.uuid4())}, 404),
    ({"dataset_id": "{dataset}", "n_epochs": -2}, 422),
    ({"dataset_id": "{dataset}", "base_url": "http://evil.example"}, 422),
    ({"dataset_id": "{dataset}", "poll_interval_s": 0.01}, 422),
])
def test_bad_finetune_requests_change_nothing(stack: Any, admin: httpx.Client, built: dict[str, Any],
                                              body: dict, status: int) -> None:
    body = {k: v.replace("{dataset}", built["dataset_id"]) if isinstance(v, str) else v for k, v in body.items()}
    before = count(stack, "finetunes")
    answer = admin.post("/v1/finetunes", json=body)
    assert answer.status_code == status, answer.text
    assert set(answer.json()["error"]) >= {"code", "message", "details", "request_id"}
    assert count(stack, "finetunes") == before
