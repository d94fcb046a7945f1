"""The whole bad-input corpus (cluster.badinput.corpus) and a small schemathesis run, on the shared
stack: every answer a 4xx in the one error shape, no 5xx, nothing stored, ready afterwards.
`tracemill bench badinput` runs the same with a larger schemathesis budget and prints the table.
The hand-written cases of test_bad_input.py stay there; these are generated."""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from cluster.badinput.corpus import BadCase, corpus
from cluster.badinput.fuzz import run_schemathesis
from cluster.badinput.judge import format_table, run_corpus
from cluster.doubles.net import free_port
from tests.support.stack import make_key, run_db

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def org(stack: Any) -> uuid.UUID:
    """A fresh organisation, so the row counts see only what the corpus could have written."""
    org_id = uuid.uuid4()
    run_db(stack, "INSERT INTO organizations (org_id, name) VALUES ($1, $2)", org_id, f"bad-input-{org_id}")
    return org_id


@pytest.fixture(scope="module")
def keys(stack: Any, org: uuid.UUID) -> dict[str, str]:
    return {scope: make_key(stack, [scope], org_id=org) for scope in ("ingest", "read", "admin")}


def _template(path: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", path)


def test_every_case_is_a_4xx_in_the_error_shape_and_nothing_is_stored(
    stack: Any, keys: dict[str, str], org: uuid.UUID
) -> None:
    dsn = stack.settings.database.url.get_secret_value()
    result = run_corpus(stack.endpoint, keys, dsn)
    print(format_table(result))
    assert len(result.outcomes) >= 200
    assert [f"{o.label}: {o.status} {o.problem}" for o in result.failures] == []
    assert result.rows_before is not None and result.rows_before == result.rows_after
    assert result.ready_after
    # Screenshots go to the object store before their row: none of the hostile ones may.
    # (The setup's finished session has its archive; that is the setup's, not the corpus's.)
    stored = [p for p in (stack.state_dir / "objects" / "raw").rglob("*") if p.is_file() and str(org) in str(p)]
    assert stored == []
    # Bounded: the slow uploads and the auth deadline run beside the rest.
    assert result.seconds < 60, result.seconds


def test_the_corpus_covers_every_route_of_the_schema_and_the_stream(stack: Any) -> None:
    schema = httpx.get(f"{stack.endpoint}/openapi.json", timeout=10).json()
    documented = {_template(p) for p in schema["paths"]} | {"/v1/sessions/{}/stream"}
    covered = {_template(case.route) for case in corpus()}
    assert documented - covered == set()


def test_the_judge_fails_what_it_should(stack: Any, keys: dict[str, str]) -> None:
    """A 2xx, a status outside the allowed set and a missing details field are all failures."""
    cases = [
        BadCase("probe", "/healthz", "GET", "/healthz", "answered_200", frozenset({404}), None),
        BadCase("probe", "/v1/sessions", "POST", "/v1/sessions", "wrong_status", frozenset({400}), "ingest",
                (("Content-Type", "application/json"),), b'{"type": "robot"}'),
        BadCase("probe", "/v1/sessions", "POST", "/v1/sessions", "field_not_named", frozenset({422}), "ingest",
                (("Content-Type", "application/json"),), b'{"type": "robot"}', field="viewport"),
        BadCase("probe", "/v1/sessions/{id}/stream", "WS", "/v1/sessions/@session@/stream", "accepted_frame",
                frozenset({1000}), "ingest", ws_frames=("@auth@", '{"type": "events", "events": []}'),
                ws_errors=frozenset({"invalid_input"})),
    ]
    result = run_corpus(stack.endpoint, keys, None, cases=cases)
    assert [o.verdict for o in result.outcomes] == ["other"] * 4, [o.problem for o in result.outcomes]
    assert result.ready_after and not result.ok


def test_schemathesis_finds_no_server_error(stack: Any, org: uuid.UUID) -> None:
    everything = make_key(stack, ["ingest", "read", "admin"], org_id=org)
    result = run_schemathesis(stack.endpoint, everything, max_examples=3, deadline_s=60)
    print(result.model_dump_json(indent=1)[:2000])
    assert result.operations >= 20 and result.cases >= result.operations
    assert [f"{f.operation} {f.status}: {f.curl}" for f in result.server_errors] == []
    assert [f"{f.operation} {f.status}: {f.detail}" for f in result.schema_mismatches] == []


@pytest.fixture()
def buggy_endpoint() -> Iterator[str]:
    """A tiny API on 127.0.0.1 with a planted server error, to show the fuzz run can fail."""
    app = FastAPI()

    @app.get("/items/{n}")
    def item(n: int) -> dict[str, int]:
        return {"half": 100 // (n % 7)}  # ZeroDivisionError, a 500, for every multiple of 7

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive()
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_schemathesis_run_reports_a_planted_server_error(buggy_endpoint: str) -> None:
    result = run_schemathesis(buggy_endpoint, "no-key-needed", max_examples=30, deadline_s=30, check_schema=False)
    assert result.operations == 1 and result.server_errors, result
    assert result.server_errors[0].status == 500 and "/items/" in result.server_errors[0].curl
