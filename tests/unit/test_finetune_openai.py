"""The openai fine-tune provider against a real OpenAI-compatible HTTP server.

The real `openai` client talks to cluster/doubles/openai_server.py over 127.0.0.1: files,
uploads in parts, fine-tuning jobs with events, checkpoints and cancel, and scripted 429s,
500s and 401s. No Ray, no database; waits are tiny so the whole file runs in seconds.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from actors.errors import ConfigError, DependencyUnavailable, InvalidInput, NotFound
from actors.training.finetune import (
    FineTuneProvider,
    JobEvent,
    JobStatus,
    OpenAIFineTuneProvider,
    wait_for_job,
)
from configs.finetune import FineTuneSettings
from cluster.doubles.openai_server import OpenAITestServer

pytestmark = pytest.mark.anyio

SECRET_KEY = "sk-tracemill-finetune-DO-NOT-LEAK-8c2f1a"


def settings_for(server: OpenAITestServer, **overrides: Any) -> FineTuneSettings:
    values: dict[str, Any] = {
        "base_url": server.base_url,
        "api_key": SECRET_KEY,
        "timeout_s": 2.0,
        "max_attempts": 3,
        "backoff_base_s": 0.01,
        "backoff_max_s": 3.0,
        "poll_interval_s": 0.01,
        "poll_max_s": 0.05,
        "suffix": "web-agent",
        "seed": 7,
        "n_epochs": 3,
        "batch_size": "auto",
        "learning_rate_multiplier": 1.8,
    }
    return FineTuneSettings(**(values | overrides))


@pytest.fixture
async def provider(server: OpenAITestServer) -> Any:
    p = OpenAIFineTuneProvider(settings_for(server))
    yield p
    await p.aclose()


def jsonl(path: Path, n: int) -> Path:
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"task {i}"},
                {
                    "role": "assistant",
                    "content": json.dumps({"action": "click", "i": i}),
                },
            ]
        }
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


async def started_job(
    provider: OpenAIFineTuneProvider, server: OpenAITestServer, tmp_path: Path
) -> JobStatus:
    train = await provider.upload(jsonl(tmp_path / "train.jsonl", 12))
    return await provider.create_job(train, None, settings_for(server))


# -- files ----------------------------------------------------------------------------------


async def test_small_file_goes_through_files_create(
    provider: OpenAIFineTuneProvider, server: OpenAITestServer, tmp_path: Path
) -> None:
    path = jsonl(tmp_path / "train.jsonl", 12)
    file_id = await provider.upload(path)
    assert server.finetune.file_data[file_id] == path.read_bytes()
    assert server.finetune.files[file_id]["purpose"] == "fine-tune"
    assert server.finetune.files[file_id]["filename"] == "train.jsonl"
    assert [r.path for r in server.finetune_requests] == ["/v1/files"]
    assert server.finetune_requests[0].authorization == f"Bearer {SECRET_KEY}"
    assert not server.finetune.uploads


async def test_large_file_goes_through_uploads_in_parts(
    server: OpenAITestServer, tmp_path: Path
) -> None:
    path = jsonl(tmp_path / "big.jsonl", 40)
    data = path.read_bytes()
    part = len(data) // 3 + 1  # three parts, the last one shorter
    provider = OpenAIFineTuneProvider(settings_for(server, upload_part_bytes=part))
    try:
        file_id = await provider.upload(path)
    finally:
        await provider.aclose()
    ((upload_id, upload),) = server.finetune.uploads.items()
    assert upload["status"] == "completed" and upload["bytes"] == len(data)
    parts = server.finetune.upload_parts[upload_id]
    assert len(parts) == 3
    assert [len(server.finetune.parts[p]) for p in parts] == [
        part,
        part,
        len(data) - 2 * part,
    ]
    assert b"".join(server.finetune.parts[p] for p in parts) == data
    assert server.finetune.file_data[file_id] == data
    complete = [r for r in server.finetune_requests if r.path.endswith("/complete")]
    assert complete[0].body == {"part_ids": parts, "md5": hashlib.md5(data).hexdigest()}
    assert "/v1/files" not in [r.path for r in server.finetune_requests]


async def test_a_missing_file_is_invalid_input(
    provider: OpenAIFineTuneProvider, tmp_path: Path
) -> None:
    with pytest.raises(InvalidInput):
        await provider.upload(tmp_path / "nope.jsonl")


# -- jobs -----------------------------------------------------------------------------------


async def test_create_job_sends_method_supervised_with_hyperparameters(
    provider: OpenAIFineTuneProvider, server: OpenAITestServer, tmp_path: Path
) -> None:
    train = await provider.upload(jsonl(tmp_path / "train.jsonl", 12))
    valid = await provider.upload(jsonl(tmp_path / "validation.jsonl", 3))
    job = await provider.create_job(train, valid, settings_for(server))
    assert isinstance(job, JobStatus) and job.status == "queued" and not job.terminal
    assert job.model == "gpt-4o-mini-2024-07-18" and job.created_at is not None
    body = server.finetune_requests[-1].body
    assert body is not None
    assert body["method"] == {
        "type": "supervised",
        "supervised": {
            "hyperparameters": {
                "n_epochs": 3,
                "batch_size": "auto",
                "learning_rate_multiplier": 1.8,
            }
        },
    }
    assert "hyperparameters" not in body  # the deprecated top-level field is not used
    assert body["training_file"] == train and body["validation_file"] == valid
    assert body["suffix"] == "web-agent" and body["seed"] == 7


async def test_unset_hyperparameters_are_not_sent(
    server: OpenAITestServer, tmp_path: Path
) -> None:
    settings = settings_for(
        server,
        n_epochs=None,
        batch_size=None,
        learning_rate_multiplier=None,
        suffix=None,
        seed=None,
    )
    provider = OpenAIFineTuneProvider(settings)
    try:
        train = await provider.upload(jsonl(tmp_path / "train.jsonl", 12))
        await provider.create_job(train, None, settings)
    finally:
        await provider.aclose()
    body = server.finetune_requests[-1].body or {}
    assert body["method"]["supervised"]["hyperparameters"] == {}
    assert not {"suffix", "seed", "validation_file"} & body.keys()


async def test_wait_for_job_reaches_succeeded_and_reports_updates(
    provider: OpenAIFineTuneProvider, server: OpenAITestServer, tmp_path: Path
) -> None:
    job = await started_job(provider, server, tmp_path)
    updates: list[tuple[str, list[JobEvent]]] = []

    async def on_update(status: JobStatus, events: list[JobEvent]) -> None:
        updates.append((status.status, events))

    final = await wait_for_job(provider, job.id, settings_for(server), on_update)
    assert final.status == "succeeded" and final.terminal
    assert final.fine_tuned_model == f"ft:gpt-4o-mini-2024-07-18:web-agent:{job.id.split('-')[-1]}"
    assert final.trained_tokens == 1234 and final.finished_at is not None
    assert [s for s, _ in updates] == ["running", "succeeded"]
    messages = [e.message for _, events in updates for e in events]
    assert messages[0] == f"Created fine-tuning job: {job.id}"  # oldest first
    assert messages[-1] == "The job has successfully completed"
    assert len(messages) == len(set(messages))  # each event reported once

    events = await provider.list_events(job.id)
    assert [e.message for e in events] == messages
    checkpoints = await provider.list_checkpoints(job.id)
    assert [c.step for c in checkpoints] == [1, 2]
    assert checkpoints[-1].metrics["train_loss"] == pytest.approx(0.6)
    assert checkpoints[-1].fine_tuned_model_checkpoint == (
        f"{final.fine_tuned_model}:ckpt-step-2"
    )


async def test_a_failed_job_ends_the_wait_with_its_error(
    provider: OpenAIFineTuneProvider, server: OpenAITestServer, tmp_path: Path
) -> None:
    server.finetune.outcome = "failed"
    job = await started_job(provider, server, tmp_path)
    final = await wait_for_job(provider, job.id, settings_for(server))
    assert final.status == "failed" and final.fine_tuned_model is None
    assert final.error == "The job failed due to an invalid training file."


async def test_sync_on_update_and_deadline(
    provider: OpenAIFineTuneProvider, server: OpenAITestServer, tmp_path: Path
) -> None:
    job = await started_job(provider, server, tmp_path)
    seen: list[str] = []
    settings = settings_for(server, poll_interval_s=0.2, poll_max_s=0.2)
    with pytest.raises(DependencyUnavailable, match="still running"):
        await wait_for_job(
            provider,
            job.id,
            settings,
            lambda s, _e: seen.append(s.status),
            deadline_s=0.1,
        )
    assert seen == ["running"]


async def test_cancel(
    provider: OpenAIFineTuneProvider, server: OpenAITestServer, tmp_path: Path
) -> None:
    job = await started_job(provider, server, tmp_path)
    cancelled = await provider.cancel(job.id)
    assert cancelled.status == "cancelled" and cancelled.terminal
    assert (await provider.get_job(job.id)).status == "cancelled"
    assert server.finetune_requests[-2].path == f"/v1/fine_tuning/jobs/{job.id}/cancel"


async def test_an_unknown_job_is_not_found(provider: OpenAIFineTuneProvider) -> None:
    with pytest.raises(NotFound):
        await provider.get_job("ftjob-missing")


# -- retries and errors ---------------------------------------------------------------------


async def test_429_with_retry_after_is_retried(
    provider: OpenAIFineTuneProvider, server: OpenAITestServer, tmp_path: Path
) -> None:
    job = await started_job(provider, server, tmp_path)
    server.script(["429:0.2", "ok"])
    status = await provider.get_job(job.id)
    assert status.status == "running"
    assert [r.behaviour for r in server.finetune_requests[-2:]] == ["429:0.2", "ok"]


async def test_retry_after_is_honoured(
    server: OpenAITestServer, tmp_path: Path
) -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    provider = OpenAIFineTuneProvider(settings_for(server), sleep=sleep)
    try:
        server.script(["429:2", "500", "ok"])
        await provider.upload(jsonl(tmp_path / "train.jsonl", 12))
    finally:
        await provider.aclose()
    assert waits[0] == 2.0 and 0 <= waits[1] <= 0.02  # then jittered backoff


async def test_a_timeout_then_ok_is_retried(
    server: OpenAITestServer, tmp_path: Path
) -> None:
    provider = OpenAIFineTuneProvider(settings_for(server, timeout_s=0.3))
    try:
        server.script(["timeout:2", "ok"])
        assert await provider.upload(jsonl(tmp_path / "train.jsonl", 12))
    finally:
        await provider.aclose()


async def test_persistent_500s_end_in_dependency_unavailable(
    provider: OpenAIFineTuneProvider, server: OpenAITestServer, tmp_path: Path
) -> None:
    server.default = "500"
    with pytest.raises(DependencyUnavailable) as caught:
        await provider.upload(jsonl(tmp_path / "train.jsonl", 12))
    assert len(server.finetune_requests) == 3  # max_attempts
    assert caught.value.details[0]["reason"] == "http_500"
    assert SECRET_KEY not in str(caught.value) and SECRET_KEY not in repr(
        caught.value.args
    )


async def test_a_retry_after_beyond_the_cap_gives_up_at_once(
    provider: OpenAIFineTuneProvider, server: OpenAITestServer, tmp_path: Path
) -> None:
    server.script(["429:60"])
    with pytest.raises(DependencyUnavailable) as caught:
        await provider.upload(jsonl(tmp_path / "train.jsonl", 12))
    assert caught.value.retry_after_s == 60 and len(server.finetune_requests) == 1


async def test_a_lost_create_reply_does_not_start_a_second_job(
    provider: OpenAIFineTuneProvider, server: OpenAITestServer, tmp_path: Path
) -> None:
    train = await provider.upload(jsonl(tmp_path / "train.jsonl", 12))
    server.script(["lost:502"])  # the job starts, the client sees a 502
    job = await provider.create_job(train, None, settings_for(server))
    assert list(server.finetune.jobs) == [job.id]
    paths = [(r.method, r.path) for r in server.finetune_requests]
    assert paths.count(("POST", "/v1/fine_tuning/jobs")) == 1
    assert paths[-1] == ("GET", "/v1/fine_tuning/jobs")  # found by key, not re-created
    key = (server.finetune_requests[1].body or {})["metadata"]["tracemill_request"]
    assert server.finetune.jobs[job.id]["metadata"] == {"tracemill_request": key}


async def test_without_idempotent_create_a_lost_reply_starts_two_jobs(
    server: OpenAITestServer, tmp_path: Path
) -> None:
    settings = settings_for(server, idempotent_create=False)
    provider = OpenAIFineTuneProvider(settings)
    try:
        train = await provider.upload(jsonl(tmp_path / "train.jsonl", 12))
        server.script(["lost:502"])
        await provider.create_job(train, None, settings)
    finally:
        await provider.aclose()
    assert len(server.finetune.jobs) == 2  # why the default is on


async def test_401_is_a_config_error_without_the_key(
    provider: OpenAIFineTuneProvider, server: OpenAITestServer, tmp_path: Path
) -> None:
    server.script(["401"])
    with pytest.raises(ConfigError) as caught:
        await provider.upload(jsonl(tmp_path / "train.jsonl", 12))
    assert len(server.finetune_requests) == 1  # not retried
    text = f"{caught.value} {caught.value!r} {caught.value.details}"
    assert SECRET_KEY not in text and "401" in text


async def test_404_on_create_is_a_config_error(
    provider: OpenAIFineTuneProvider, server: OpenAITestServer
) -> None:
    with pytest.raises(ConfigError):
        await provider.create_job("file-missing", None, settings_for(server))


# -- settings and interface -----------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        {"suffix": "Has Upper"},
        {"suffix": "x" * 65},
        {"poll_interval_s": 0},
        {"n_epochs": 0},
        {"learning_rate_multiplier": "fast"},
        {"provider": "azure"},
        {"unknown": 1},
        {"upload_part_bytes": 65 * 1024 * 1024},
        {"poll_interval_s": 10, "poll_max_s": 5},
    ],
)
def test_bad_settings_are_rejected(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        FineTuneSettings(**bad)


def test_settings_defaults_and_secret() -> None:
    s = FineTuneSettings(api_key=SECRET_KEY)
    assert s.model == "gpt-4o-mini-2024-07-18" and s.poll_interval_s == 30
    assert s.upload_part_bytes == 64 * 1024 * 1024 and s.hyperparameters() == {}
    assert SECRET_KEY not in repr(s)
    with pytest.raises(ValidationError):
        s.model = "x"  # type: ignore[misc]  # frozen


def test_the_provider_is_an_abc() -> None:
    with pytest.raises(TypeError):
        FineTuneProvider()  # type: ignore[abstract]
    assert issubclass(OpenAIFineTuneProvider, FineTuneProvider)
