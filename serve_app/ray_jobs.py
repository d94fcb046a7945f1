"""Submitting tracemill's job entrypoints as Ray Jobs from the API, and reading their state.

The Jobs API lives on the cluster's dashboard; its client is blocking HTTP, so every call runs
in a thread. The submission id is derived from the row's id: submitting twice is harmless."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import ray

from actors.errors import DependencyUnavailable
from actors.settings_registry import dashboard_url
from configs.settings import CLUSTER_ADDRESS_ENV

__all__ = ["job_ended", "submit"]

_ENDED = ("FAILED", "STOPPED", "SUCCEEDED")
_AGENT_WAIT_S = 60.0


def _client() -> Any:
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(dashboard_url())


def _submit(submission_id: str, module: str, args: list[str]) -> str:
    # The driver runs with this replica's interpreter: the cluster's image has tracemill installed.
    entrypoint = " ".join([sys.executable, "-m", module, *args])
    client = _client()
    deadline = time.monotonic() + _AGENT_WAIT_S
    env = {CLUSTER_ADDRESS_ENV: ray.get_runtime_context().gcs_address}  # see CLUSTER_ADDRESS_ENV
    while True:
        try:
            return str(client.submit_job(entrypoint=entrypoint, submission_id=submission_id,
                                         runtime_env={"env_vars": env}))
        except RuntimeError as exc:
            if "already exists" in str(exc):
                return submission_id
            # A node's job agent registers some seconds after the node starts.
            if "No available agent" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(1.0)


async def submit(submission_id: str, module: str, args: list[str]) -> str:
    """Start `python -m module args…` as a Ray Job; returns its submission id."""
    try:
        return await asyncio.to_thread(_submit, submission_id, module, args)
    except Exception as exc:  # noqa: BLE001 - any failure of the Jobs API is the same to a caller
        raise DependencyUnavailable(f"could not submit the Ray job: {type(exc).__name__}: {exc}",
                                    retry_after_s=5.0) from None


def _reason(message: str | None) -> str:
    """Ray's message, short: for a failed entrypoint it is "Job entrypoint command failed with
    exit code N, last available logs (...):" and the log tail, whose last line is our drivers'
    one-line error (jobs.entrypoint prints it last)."""
    lines = [line.strip() for line in (message or "").splitlines() if line.strip()]
    if not lines:
        return "no message"
    head = lines[0].split(", last available logs")[0].rstrip(":")
    return head if len(lines) == 1 else f"{head}; last log line: {lines[-1][:500]}"


def _ended(submission_id: str) -> str | None:
    info = _client().get_job_info(submission_id)
    status = str(getattr(info.status, "value", info.status))
    if status not in _ENDED:
        return None
    return f"the Ray job {submission_id} ended {status}: {_reason(info.message)}"


async def job_ended(submission_id: str) -> str | None:
    """How the Ray job ended (FAILED, STOPPED, or SUCCEEDED, with Ray's reason), or None while
    it is pending or running, or when the Jobs API cannot say (the row, not Ray, is the record,
    so an unreachable Jobs API is not an error here). A caller whose row is not terminal when
    its job has ended knows the driver is gone without recording an outcome."""
    try:
        return await asyncio.to_thread(_ended, submission_id)
    except Exception:  # noqa: BLE001
        return None
