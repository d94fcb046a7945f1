"""The review workflow on the stack: flag a session and a step, move flags pending → reviewed →
resolved (409 otherwise) with who and when, the session list's review_state, the review queue
with its reasons; another organisation's session is 404 and a key without the review scope 403;
a dataset built afterwards leaves the flagged session and step out and its report says so."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from jobs import build_dataset
from tests.support.client import Api, new_id
from tests.support.sessions import T0, record_ready, wait_terminal
from tests.support.stack import make_key, read_object, run_db

WORD = f"rv{uuid.uuid4().hex[:8]}"


def _record(api: Api, task: str, n: int = 10) -> str:
    sid = api.create_session(session_id=new_id(), task=task, type="human")
    events = [{"seq": 0, "type": "navigation", "ts": T0, "url": "https://review.example/", "title": "Review"}]
    events += [{"seq": s, "type": "click", "ts": T0 + s * 800, "url": "https://review.example/", "x": 10, "y": 10,
                "target": {"tag": "button", "text": f"Step {s}",
                           "selectors": [{"kind": "testid", "value": f"s{s}", "unique": True}]}}
               for s in range(1, n)]
    assert api.post_events(sid, events).status_code == 200
    assert api.http.post(f"/v1/sessions/{sid}/finish", json={}).status_code == 202
    wait_terminal(api, sid)
    return sid


@pytest.fixture(scope="module")
def reviewer(stack: Any) -> Api:
    return Api(stack.endpoint, make_key(stack, ["read", "review"]))


@pytest.fixture(scope="module")
def sid(api: Api) -> str:
    return _record(api, f"review me {WORD}")


def _key_id(stack: Any, api: Api) -> str:
    lookup = api.key.split("_")[1]
    return str(run_db(stack, "SELECT key_id FROM api_keys WHERE lookup_id = $1", lookup)[0]["key_id"])


def test_flag_a_step_and_walk_it_to_resolved(stack: Any, api: Api, reviewer: Api, sid: str) -> None:
    created = reviewer.http.post(f"/v1/sessions/{sid}/flags",
                                 json={"seq": 3, "reason": "wrong_action", "note": "clicked the wrong row"})
    assert created.status_code == 201, created.text
    flag = created.json()
    assert flag["state"] == "pending" and flag["seq"] == 3 and flag["session_id"] == sid
    assert flag["created_by"] == _key_id(stack, reviewer) and flag["created_at"]
    listed = reviewer.http.get("/v1/sessions", params={"q": WORD}).json()["items"]
    assert listed[0]["review_state"] == "pending"
    assert reviewer.http.get("/v1/sessions", params={"q": WORD, "review_state": "pending"}).json()["total"] == 1

    # resolved before reviewed is not a transition
    skip = reviewer.http.patch(f"/v1/flags/{flag['flag_id']}", json={"state": "resolved"})
    assert skip.status_code == 409 and skip.json()["error"]["code"] == "invalid_transition"
    reviewed = reviewer.http.patch(f"/v1/flags/{flag['flag_id']}", json={"state": "reviewed", "note": "confirmed"})
    assert reviewed.status_code == 200, reviewed.text
    assert reviewed.json()["reviewed_by"] == flag["created_by"] and reviewed.json()["note"] == "confirmed"
    assert reviewer.http.patch(f"/v1/flags/{flag['flag_id']}", json={"state": "reviewed"}).status_code == 409
    resolved = reviewer.http.patch(f"/v1/flags/{flag['flag_id']}", json={"state": "resolved"}).json()
    assert resolved["state"] == "resolved" and resolved["resolved_at"] >= resolved["reviewed_at"]
    assert reviewer.http.patch(f"/v1/flags/{flag['flag_id']}", json={"state": "reviewed"}).status_code == 409
    assert reviewer.http.get("/v1/sessions", params={"q": WORD}).json()["items"][0]["review_state"] == "resolved"
    analyst = Api(stack.endpoint, make_key(stack, ["read"]))  # reads flags, cannot flag
    flags = analyst.http.get(f"/v1/sessions/{sid}/flags").json()["items"]
    assert [f["state"] for f in flags] == ["resolved"]


def test_a_new_flag_leads_the_queue_with_why(reviewer: Api, api: Api) -> None:
    other = _record(api, f"queue me {WORD}")
    assert reviewer.http.post(f"/v1/sessions/{other}/flags",
                              json={"seq": None, "reason": "personal_data"}).status_code == 201
    queue = reviewer.http.get("/v1/review/queue", params={"limit": 5})
    assert queue.status_code == 200, queue.text
    first = queue.json()["items"][0]
    assert first["session_id"] == other and first["review_state"] == "pending"
    assert any("personal_data" in why for why in first["why"])
    low = reviewer.http.get("/v1/review/queue", params={"quality_below": "1", "limit": 100}).json()["items"]
    unflagged = [i for i in low if i["review_state"] == "none"]
    assert all(i["why"] for i in unflagged)
    assert [i["quality"] for i in unflagged if not i["frustration"]] == sorted(
        i["quality"] for i in unflagged if not i["frustration"])


@pytest.mark.parametrize(("body", "status"), [
    ({"reason": "boring"}, 422),
    ({"reason": "other", "seq": -1}, 422),
    ({"reason": "other", "seq": 999}, 422),  # the session stored no such step
    ({"reason": "other", "note": "x" * 2001}, 422),
    ({"reason": "other", "colour": "red"}, 422),
    (["other"], 422),
])
def test_bad_flags_are_refused_and_store_nothing(stack: Any, reviewer: Api, sid: str, body: Any, status: int) -> None:
    before = run_db(stack, "SELECT count(*) AS n FROM review_flags WHERE session_id = $1", uuid.UUID(sid))[0]["n"]
    response = reviewer.http.post(f"/v1/sessions/{sid}/flags", json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == "invalid_input"
    after = run_db(stack, "SELECT count(*) AS n FROM review_flags WHERE session_id = $1", uuid.UUID(sid))[0]["n"]
    assert after == before


def test_bad_transitions_bodies_and_unknown_flags(reviewer: Api, sid: str) -> None:
    flag = reviewer.http.post(f"/v1/sessions/{sid}/flags", json={"reason": "other"}).json()
    assert reviewer.http.patch(f"/v1/flags/{flag['flag_id']}", json={"state": "pending"}).status_code == 422
    assert reviewer.http.patch(f"/v1/flags/{flag['flag_id']}", content=b"{", headers={
        "Content-Type": "application/json"}).status_code == 400
    assert reviewer.http.patch(f"/v1/flags/{uuid.uuid4()}", json={"state": "reviewed"}).status_code == 404
    assert reviewer.http.patch("/v1/flags/not-a-uuid", json={"state": "reviewed"}).status_code == 404
    assert reviewer.http.get("/v1/review/queue", params={"limit": "1000"}).status_code == 422


def test_other_organisation_and_scopes(stack: Any, api: Api, other_org_api: Api, sid: str) -> None:
    other_reviewer_org = run_db(stack, "SELECT org_id FROM api_keys WHERE lookup_id = $1",
                                other_org_api.key.split("_")[1])[0]["org_id"]
    outsider = Api(stack.endpoint, make_key(stack, ["read", "review"], org_id=other_reviewer_org))
    assert outsider.http.post(f"/v1/sessions/{sid}/flags", json={"reason": "other"}).status_code == 404
    assert outsider.http.get(f"/v1/sessions/{sid}/flags").status_code == 404
    mine = Api(stack.endpoint, make_key(stack, ["read", "review"]))
    flag = mine.http.post(f"/v1/sessions/{sid}/flags", json={"reason": "off_task"}).json()
    assert outsider.http.patch(f"/v1/flags/{flag['flag_id']}", json={"state": "reviewed"}).status_code == 404
    assert sid not in {i["session_id"] for i in outsider.http.get("/v1/review/queue").json()["items"]}
    # the recording key (ingest + read: the recorder role) neither flags nor reviews
    denied = api.http.post(f"/v1/sessions/{sid}/flags", json={"reason": "other"})
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "forbidden"
    assert api.http.patch(f"/v1/flags/{flag['flag_id']}", json={"state": "reviewed"}).status_code == 403
    assert api.http.get("/v1/review/queue").status_code == 403
    analyst = Api(stack.endpoint, make_key(stack, ["read"]))
    assert analyst.http.post(f"/v1/sessions/{sid}/flags", json={"reason": "other"}).status_code == 403
    assert analyst.http.get(f"/v1/sessions/{sid}/flags").status_code == 200
    admin = Api(stack.endpoint, make_key(stack, ["admin"]))  # admin implies review
    assert admin.http.patch(f"/v1/flags/{flag['flag_id']}", json={"state": "reviewed"}).status_code == 200


def _build(stack: Any, tmp_path: Path, capsys: pytest.CaptureFixture, task: str, exclude: bool) -> dict[str, Any]:
    body = {"name": "reviewed", "selection": {"task_contains": task, "exclude_flagged": exclude},
            "split": {"validation_share": 0.34, "seed": 1}}
    path = tmp_path / f"dataset-{exclude}.yaml"
    path.write_text(yaml.safe_dump(body))
    assert build_dataset.main(["--config", str(path), "--one-process"]) == 0
    dataset_id = capsys.readouterr().out.split("dataset ")[-1].split()[0]
    row = run_db(stack, "SELECT * FROM datasets WHERE dataset_id = $1", uuid.UUID(dataset_id))[0]
    files = json.loads(row["files"])
    steps: dict[str, int] = {}
    for split in ("train", "validation"):
        for line in read_object(stack, files[f"{split}.ranking.jsonl"]["key"]).decode().splitlines():
            sid = json.loads(line)["session_id"]
            steps[sid] = steps.get(sid, 0) + 1
    return {"sessions": {str(s) for s in [*row["train_sessions"], *row["validation_sessions"]]},
            "report": json.loads(row["report"]), "steps": steps}


def test_datasets_leave_out_flagged_sessions_and_steps(stack: Any, api: Api, reviewer: Api, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    task = f"Buy a kettle {WORD}"
    # Numbered tasks: with shared examples, dropping `whole` would let copies of its examples
    # in the other two sessions through, and their counts would depend on the split's order.
    whole, stepped, clean = record_ready(api, 3, task, numbered=True)
    assert reviewer.http.post(f"/v1/sessions/{whole}/flags", json={"reason": "personal_data"}).status_code == 201
    # seq 5 of a shop session is a click on an "Add to cart" button: an action step
    step = reviewer.http.post(f"/v1/sessions/{stepped}/flags", json={"seq": 5, "reason": "wrong_action"}).json()
    reviewer.http.patch(f"/v1/flags/{step['flag_id']}", json={"state": "reviewed"})  # any state counts

    everything = _build(stack, tmp_path, capsys, task, exclude=False)
    assert everything["sessions"] == {whole, stepped, clean}
    assert everything["report"]["excluded_by_review"] == {"exclude_flagged": False}

    reviewed = _build(stack, tmp_path, capsys, task, exclude=True)
    assert reviewed["sessions"] == {stepped, clean}
    assert reviewed["report"]["excluded_by_review"] == {
        "sessions": 1, "sessions_by_reason": {"personal_data": 1}, "steps": 1, "steps_by_reason": {"wrong_action": 1}}
    assert reviewed["steps"][stepped] == everything["steps"][stepped] - 1
    assert reviewed["steps"][clean] == everything["steps"][clean]
