"""Schemathesis against the published OpenAPI schema: generated requests, positive and negative,
for every operation; no answer may be a server error.

It runs operation by operation under Hypothesis with a fixed example budget and a wall-clock
deadline, without shrinking (a server error is recorded with its curl command and the run goes
on), so a run is bounded in requests and time. The WebSocket stream is not in the schema.

One guard: a schema-valid `POST /v1/datasets` body would queue a real build (a Ray Job) per
example, so such bodies are not sent; every invalid one is.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, ValidationError

from cluster.extras import require
from configs.dataset import DatasetBuildConfig

__all__ = ["FuzzResult", "run_schemathesis"]


class FuzzFinding(BaseModel):
    operation: str
    status: int
    check: str
    detail: str
    curl: str


class FuzzResult(BaseModel):
    operations: int
    cases: int
    skipped: int  # valid dataset builds not sent, and examples past the deadline
    server_errors: list[FuzzFinding]
    schema_mismatches: list[FuzzFinding]  # responses that do not match their documented schema
    seconds: float


def _queues_a_build(case: Any) -> bool:
    if case.method.upper() != "POST" or case.path != "/v1/datasets":
        return False
    try:
        DatasetBuildConfig.model_validate(case.body)
    except (ValidationError, TypeError, ValueError):
        return False
    return True


def run_schemathesis(endpoint: str, key: str, *, max_examples: int = 5, deadline_s: float = 60.0,
                     request_timeout_s: float = 10.0, check_schema: bool = True) -> FuzzResult:
    """`key` should have every scope, so that generated requests get past authentication."""
    require("schemathesis", extra="bench", needed_by="the schemathesis run")
    import schemathesis  # the `bench` extra; hypothesis comes with it
    from hypothesis import HealthCheck, Phase, given, settings
    from schemathesis.checks import not_a_server_error, response_schema_conformance
    from schemathesis.generation import GenerationMode

    started = time.monotonic()
    stop_at = started + deadline_s
    schema = schemathesis.openapi.from_url(f"{endpoint}/openapi.json", wait_for_schema=10.0)
    headers = {"Authorization": f"Bearer {key}"}
    counts = {"operations": 0, "cases": 0, "skipped": 0}
    server_errors: list[FuzzFinding] = []
    mismatches: list[FuzzFinding] = []

    def call(case: Any) -> None:
        # GET /v1/live answers with a stream that lasts until its client leaves (minutes): the
        # corpus sends it its bad input; a fuzzed valid request would only wait for the timeout.
        if time.monotonic() > stop_at or _queues_a_build(case) or case.path == "/v1/live":
            counts["skipped"] += 1
            return
        counts["cases"] += 1
        response = case.call(base_url=endpoint, headers=headers, timeout=request_timeout_s)
        label = f"{case.method.upper()} {case.path}"
        for check, sink in ((not_a_server_error, server_errors), (response_schema_conformance, mismatches)):
            if check is response_schema_conformance and (not check_schema or response.status_code >= 500):
                continue
            try:
                case.validate_response(response, checks=[check])
            # A check's failure is a Failure (an AssertionError) or a FailureGroup, which is a
            # BaseExceptionGroup and so escapes `except Exception`.
            except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001
                sink.append(FuzzFinding(operation=label, status=response.status_code, check=check.__name__,
                                        detail=str(exc)[:500], curl=case.as_curl_command(headers=headers,
                                                                                        base_url=endpoint)))

    for result in schema.get_all_operations():
        operation = result.ok()
        counts["operations"] += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            if time.monotonic() > stop_at:
                break
            strategy = operation.as_strategy(generation_mode=mode)
            # No shrinking and no example database: a bounded, repeatable run that never
            # replays a stored failure from another run.
            run = settings(max_examples=max_examples, deadline=None, database=None, derandomize=True,
                           phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck),
                           print_blob=False)(given(case=strategy)(call))
            try:
                run()
            except Exception as exc:  # noqa: BLE001 - e.g. a negative mode that cannot generate
                if "Unsatisfiable" not in type(exc).__name__ and "Unsatisfiable" not in str(exc):
                    raise
    return FuzzResult(operations=counts["operations"], cases=counts["cases"], skipped=counts["skipped"],
                      server_errors=server_errors, schema_mismatches=mismatches,
                      seconds=round(time.monotonic() - started, 2))
