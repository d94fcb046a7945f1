"""Predictions of registered local models over HTTP: `POST /v1/models/{model_id}/predict`.

The ingress checks the key (scope `read`), that the model is the caller's organisation's and a
local one, and the body's shape and sizes; the ModelServer deployment (serve_app/model_server.py)
loads the model once per replica and ranks. Nothing here imports torch: without the `train`
extra the answer is 503 naming it.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from actors.errors import Conflict, DependencyUnavailable, InvalidInput, NotFound, TracemillError, \
    details_from_validation_error
from actors.storage import finetune_repo
from actors.training.evaluation.local import LOCAL_PREFIX
from serve_app.error_responses import unwrap
from serve_app.http_io import read_json
from serve_app.model_server import train_extra_error
from serve_app.services import Services

__all__ = ["PredictRequest", "PredictResponse", "predict"]

MAX_CANDIDATES = 500  # a page's interactive elements; beyond it, narrow them down first


class PredictCandidate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(..., min_length=1, max_length=200, description="yours; echoed in the answer")
    text: str = Field(..., max_length=2000, description="what the element is: tag, text, attributes "
                      "(the ranking format's candidate description)")
    selector: str | None = Field(None, max_length=2000)


class PredictRequest(BaseModel):
    """One step of a web task: the page's candidate elements and the recent actions."""

    model_config = ConfigDict(extra="forbid")
    task: str = Field(..., max_length=4000)
    url: str = Field("", max_length=4000)
    title: str = Field("", max_length=1000)
    previous_actions: list[str] = Field(default_factory=list, max_length=50,
                                        description="the last actions, oldest first (compact JSON)")
    candidates: list[PredictCandidate] = Field(..., min_length=1, max_length=MAX_CANDIDATES)

    @model_validator(mode="after")
    def _unique_ids(self) -> PredictRequest:
        if len({c.id for c in self.candidates}) != len(self.candidates):
            raise ValueError("candidate ids must be unique")
        if any(len(a) > 2000 for a in self.previous_actions):
            raise ValueError("a previous action is over 2000 characters")
        return self


class RankedOut(BaseModel):
    id: str
    score: float
    text: str
    selector: str | None = None


class PredictResponse(BaseModel):
    model_id: str
    candidates: list[RankedOut] = Field(..., description="best first; softmax scores summing to 1")
    action_type: str = Field(..., description="click, type, select, submit, key or navigate")
    action_scores: dict[str, float]
    action: dict[str, Any] = Field(..., description="the prediction as an action of the dataset's chat "
                                   "format: type, the top candidate, a value by `value_rule`")
    value_rule: str = Field(..., description="task_span: a typed value is a quoted span of the task")


def _model_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw.removeprefix(LOCAL_PREFIX))
    except ValueError:
        raise NotFound(f"no model {raw[:64]!r}") from None


async def predict(services: Services, request: Request, raw_id: str, model_server: Any) -> dict[str, Any]:
    principal = await services.authorize(request)
    model_id = _model_id(raw_id)
    row = await finetune_repo.model_row(await services.db(), model_id)
    if not principal.in_workspace(row):
        raise NotFound(f"no model {model_id}")
    if row["provider"] != "local":
        raise Conflict(f"model {model_id} is a {row['provider']} model: its provider serves it, not tracemill",
                       code="not_a_local_model")
    raw = await read_json(request, services.settings.ingest.max_body_bytes)
    try:
        body = PredictRequest.model_validate(raw)
    except ValidationError as exc:
        raise InvalidInput("invalid prediction request", details_from_validation_error(exc, "body")) from None
    if (missing := train_extra_error()) is not None:
        raise missing
    if model_server is None:
        raise DependencyUnavailable("this deployment has no model server", retry_after_s=60.0)
    try:
        answer = await model_server.predict.remote(str(model_id), str(row["name"]), body.model_dump())
    except Exception as exc:  # the replica's error, wrapped by Ray: ours keep their status
        cause = unwrap(exc)
        if isinstance(cause, TracemillError):
            raise cause from None
        raise
    return {"model_id": str(model_id), **answer}
