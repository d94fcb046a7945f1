"""Quotas per organisation on the real stack: each refusal is `429 quota_exceeded` naming the
quota, and nothing is started or written — no session row, no screenshot row or object, no
dataset or fine-tune row, no Ray job. Two concurrent dataset requests against a limit of 1
do not both pass. Each test runs in an organisation of its own, its quota set by a row in
org_quotas (the per-organisation override)."""

from __future__ import annotations

import io
import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.support.stack import make_key, run_db

pytestmark = pytest.mark.integration


def org_client(stack: Any, scopes: list[str], **quotas: int) -> tuple[uuid.UUID, httpx.Client]:
    org = uuid.uuid4()
    run_db(stack, "INSERT INTO organizations (org_id, name) VALUES ($1, $2)", org, f"quota-{org}")
    for name, value in quotas.items():
        run_db(stack, "INSERT INTO org_quotas (org_id, quota, max_value) VALUES ($1, $2, $3)", org, name, value)
    key = make_key(stack, scopes, org_id=org)
    return org, httpx.Client(base_url=stack.endpoint, timeout=60, headers={"Authorization": f"Bearer {key}"})


def refused(response: httpx.Response, quota: str, limit: int) -> dict[str, Any]:
    assert response.status_code == 429, response.text
    error = response.json()["error"]
    assert error["code"] == "quota_exceeded"
    assert error["details"][0]["quota"] == quota and error["details"][0]["limit"] == limit
    assert int(response.headers["Retry-After"]) >= 1
    return dict(error)


def png(size: int = 64) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (size, size), (200, 40, 40)).save(out, "PNG")
    return out.getvalue()


def test_sessions_per_day_refuses_the_next_and_stores_nothing(stack: Any) -> None:
    org, client = org_client(stack, ["ingest", "read"], sessions_per_day=2)
    first = str(uuid.uuid4())
    body = {"session_id": first, "type": "automated", "task": "quota"}
    assert client.post("/v1/sessions", json=body).status_code == 201
    assert client.post("/v1/sessions", json=body).status_code == 200  # a repeat is no new session
    assert client.post("/v1/sessions", json={"type": "automated"}).status_code == 201
    extra = str(uuid.uuid4())
    refused(client.post("/v1/sessions", json={"session_id": extra, "type": "automated"}), "sessions_per_day", 2)
    assert run_db(stack, "SELECT count(*) AS n FROM sessions WHERE org_id = $1", org)[0]["n"] == 2
    assert not run_db(stack, "SELECT 1 FROM sessions WHERE session_id = $1", uuid.UUID(extra))
    assert client.post("/v1/sessions", json=body).status_code == 200  # what exists still answers


def test_stored_bytes_refuses_an_upload_and_writes_neither_row_nor_object(stack: Any) -> None:
    image = png()
    org, client = org_client(stack, ["ingest", "read"], stored_bytes=len(image) + 10)
    sid = client.post("/v1/sessions", json={"type": "automated"}).json()["session_id"]
    put = lambda shot: client.put(f"/v1/sessions/{sid}/screenshots/{shot}", content=image,  # noqa: E731
                                  headers={"Content-Type": "image/png"})
    assert put("s1").status_code == 201
    assert put("s1").status_code == 200  # the same upload again costs nothing more
    refused(put("s2"), "stored_bytes", len(image) + 10)
    rows = run_db(stack, "SELECT screenshot_id FROM screenshots WHERE session_id = $1", uuid.UUID(sid))
    assert [r["screenshot_id"] for r in rows] == ["s1"]
    local_dir = stack.settings.object_store.local_dir
    assert [p for p in local_dir.rglob("s2.*") if sid in str(p)] == []  # no object either
    used = run_db(stack, "SELECT used FROM quota_usage WHERE org_id = $1 AND quota = 'stored_bytes'", org)
    assert used[0]["used"] == len(image)


def test_two_concurrent_dataset_requests_do_not_both_pass_a_limit_of_one(stack: Any) -> None:
    org, client = org_client(stack, ["admin"], concurrent_datasets=1)
    jobs_before = {r["ray_job_id"] for r in run_db(stack, "SELECT ray_job_id FROM datasets")}
    body = {"name": "quota", "selection": {"task_contains": "nothing-matches-this"}}
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda _: client.post("/v1/datasets", json=body), range(2)))
    assert sorted(a.status_code for a in answers) == [202, 429], [a.text for a in answers]
    refused(next(a for a in answers if a.status_code == 429), "concurrent_datasets", 1)
    rows = run_db(stack, "SELECT dataset_id, ray_job_id FROM datasets WHERE org_id = $1", org)
    assert len(rows) == 1  # the refused request wrote no row, so it submitted no job
    new_jobs = {r["ray_job_id"] for r in run_db(stack, "SELECT ray_job_id FROM datasets")} - jobs_before
    assert len(new_jobs) == 1


def test_a_finetune_over_its_quota_starts_nothing(stack: Any) -> None:
    org, client = org_client(stack, ["admin"], finetunes_per_day=0)
    dataset = uuid.uuid4()  # a built dataset of this organisation, as the build job leaves it
    run_db(stack, "INSERT INTO datasets (dataset_id, org_id, name, config, code_version, status)"
                  " VALUES ($1, $2, 'built', $3::jsonb, 'test', 'succeeded')", dataset, org, json.dumps({}))
    refused(client.post("/v1/finetunes", json={"dataset_id": str(dataset)}), "finetunes_per_day", 0)
    assert not run_db(stack, "SELECT 1 FROM finetunes WHERE org_id = $1", org)
    run_db(stack, "UPDATE org_quotas SET max_value = 5 WHERE org_id = $1 AND quota = 'finetunes_per_day'", org)
    run_db(stack, "INSERT INTO org_quotas (org_id, quota, max_value) VALUES ($1, 'concurrent_finetunes', 0)", org)
    refused(client.post("/v1/finetunes", json={"dataset_id": str(dataset)}), "concurrent_finetunes", 0)
    assert not run_db(stack, "SELECT 1 FROM finetunes WHERE org_id = $1", org)


def test_org_quota_overrides_are_checked_by_the_database(stack: Any) -> None:
    org, _ = org_client(stack, ["read"])
    with pytest.raises(Exception, match="check"):
        run_db(stack, "INSERT INTO org_quotas (org_id, quota, max_value) VALUES ($1, 'no_such_quota', 1)", org)
    with pytest.raises(Exception, match="check"):
        run_db(stack, "INSERT INTO org_quotas (org_id, quota, max_value) VALUES ($1, 'stored_bytes', -1)", org)
