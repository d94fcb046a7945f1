"""Request and response bodies of the ingest API (PROTOCOL.md, v1), events aside.

Session and finish bodies are strict and forbid unknown fields, unlike events: they are
low-rate control messages where a misspelt ``outcome`` silently dropped would lose data,
whereas events ignore unknown fields so that clients can roll out new ones first.
Timestamps follow the one rule of `actors.ingest.events.parse_timestamp`.

A finish request without a body is the same as ``{}``: every field of it is optional.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic import StringConstraints, ValidationError
from pydantic_core import PydanticCustomError, PydanticSerializationError, to_json

from actors.errors import InvalidInput, details_from_validation_error
from actors.ingest.events import MAX_SEQ, Event, JsonValue, Text, Timestamp
from configs.settings import IngestLimits

__all__ = [
    "SessionType", "SessionStatus", "Outcome", "ClientInfo", "Viewport", "SessionCreate",
    "FinishRequest", "EventsBatch", "AckResult", "SessionView", "SessionCreated",
    "FinishAccepted", "ScreenshotStored", "ErrorBody", "ErrorResponse",
    "parse_session_create", "parse_finish",
]

SessionType = Literal["human", "automated", "hybrid"]
SessionStatus = Literal["recording", "finalizing", "ready", "rejected", "failed"]
Outcome = Literal["success", "abandoned", "failure"]


def _no_nul(value: str) -> str:
    if "\x00" in value:  # PostgreSQL text cannot hold NUL
        raise PydanticCustomError("no_nul", "must not contain NUL characters")
    return value


def _uuid(value: object) -> object:
    """Any UUID string form; pydantic's own message would quote the offending character."""
    if isinstance(value, str):
        try:
            return UUID(value)
        except ValueError:
            raise PydanticCustomError("uuid", "must be a UUID") from None
    return value


SessionId = Annotated[UUID, BeforeValidator(_uuid, json_schema_input_type=UUID)]
_Storable = AfterValidator(_no_nul)
ClientName = Annotated[str, StringConstraints(max_length=128), _Storable]
ClientVersion = Annotated[str, StringConstraints(max_length=64), _Storable]
TaskText = Annotated[str, StringConstraints(max_length=4000), _Storable]
UserAgent = Annotated[str, StringConstraints(max_length=1024), _Storable]


# --------------------------------------------------------------------------- requests


class _Request(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False, frozen=True)


class ClientInfo(_Request):
    """The recording client, so that data can be traced back to a client release."""

    name: ClientName
    version: ClientVersion


class Viewport(_Request):
    width: Annotated[int, Field(ge=1, le=100_000)]
    height: Annotated[int, Field(ge=1, le=100_000)]


class SessionCreate(_Request):
    """`POST /v1/sessions`. The same body again with the same session_id is idempotent."""

    session_id: SessionId | None = Field(None, description="made by the server when absent")
    type: SessionType
    task: TaskText | None = Field(None, description="natural-language goal of the session")
    client: ClientInfo | None = None
    user_agent: UserAgent | None = None
    viewport: Viewport | None = None
    started_at: Timestamp | None = Field(None, description="epoch milliseconds or RFC 3339")
    metadata: dict[Text, JsonValue] | None = Field(
        None, description="free-form; its JSON is at most IngestLimits.max_metadata_bytes"
    )


class FinishRequest(_Request):
    """`POST /v1/sessions/{id}/finish`; finishing twice is harmless."""

    ended_at: Timestamp | None = Field(None, description="epoch milliseconds or RFC 3339")
    last_seq: Annotated[int, Field(ge=-1, le=MAX_SEQ)] | None = Field(
        None, description="the last seq the client recorded; -1 when it recorded none"
    )
    outcome: Outcome | None = None


class EventsBatch(BaseModel):
    """`POST /v1/sessions/{id}/events`; declared for the OpenAPI page, parsed by parse_events."""

    events: list[Event]


# --------------------------------------------------------------------------- responses


class AckResult(BaseModel):
    """Sent only once the events are durably committed."""

    acked_through: int = Field(description="highest seq with every seq 0..it stored; -1 if none")
    accepted: int
    duplicates: int
    gaps: list[tuple[int, int]] = Field(description="missing [first, last] ranges, inclusive")


class SessionView(BaseModel):
    session_id: UUID
    type: SessionType
    status: SessionStatus
    task: str | None = None
    event_count: int
    screenshot_count: int
    duplicate_count: int = Field(0, description="events received again and dropped as duplicates")
    acked_through: int
    max_seq: int = Field(-1, description="highest stored seq; above acked_through means gaps")
    quality: dict[str, Any] | None = Field(
        None, description="null until scored: completeness, selector_reliability, screenshot_quality,"
        " training_value, overall (each in [0, 1]), reasons, suggestions",
    )
    archive: dict[str, Any] | None = Field(None, description="null until archived")
    created_at: datetime
    updated_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    outcome: Outcome | None = None
    finalize_stage: str | None = Field(None, description="next finalisation stage while finalizing")
    failure: str | None = Field(None, description="why finalisation failed, when status is failed")


class SessionCreated(BaseModel):
    session_id: UUID
    status: SessionStatus


class FinishAccepted(BaseModel):
    status: SessionStatus = Field(description="'finalizing', or the later status on a repeat")


class ScreenshotStored(BaseModel):
    screenshot_id: str
    bytes: int


class ErrorBody(BaseModel):
    code: str = Field(description="stable snake_case code")
    message: str = Field(description="text for a person")
    details: list[dict[str, Any]] = Field(default_factory=list, description="one per problem")
    request_id: str | None = None


class ErrorResponse(BaseModel):
    """Every error of every route, HTTP or WebSocket."""

    error: ErrorBody


# --------------------------------------------------------------------------- parsers


def parse_session_create(raw: object, limits: IngestLimits) -> SessionCreate:
    """The decoded body of `POST /v1/sessions`, or InvalidInput naming every problem."""
    if not isinstance(raw, dict):
        raise _invalid("session", [{"field": None, "error": "must be a JSON object"}])
    details = _metadata_problems(raw.get("metadata"), limits.max_metadata_bytes)
    try:
        body = SessionCreate.model_validate(raw)
    except ValidationError as exc:
        raise _invalid("session", _session_details(exc) + details) from None
    if details:
        raise _invalid("session", details)
    return body


def parse_finish(raw: object) -> FinishRequest:
    """The decoded body of a finish request (None when there was none), or InvalidInput."""
    if raw is None:
        return FinishRequest()
    if not isinstance(raw, dict):
        raise _invalid("finish", [{"field": None, "error": "must be a JSON object"}])
    try:
        return FinishRequest.model_validate(raw)
    except ValidationError as exc:
        raise _invalid("finish", details_from_validation_error(exc)) from None


def _session_details(exc: ValidationError) -> list[dict[str, Any]]:
    """The shared details, except that a bad metadata key is named by its dict, not by itself."""
    details = details_from_validation_error(exc)
    for detail in details:
        if (detail["field"] or "").endswith(".[key]"):  # loc: metadata.<the key>.[key]
            detail["field"] = "metadata"
            detail["error"] = "has a key that is too long, contains NUL or is not valid Unicode"
    return details


def _metadata_problems(metadata: object, max_bytes: int) -> list[dict[str, Any]]:
    if metadata is None:
        return []
    try:
        size = len(to_json(metadata))
    except PydanticSerializationError:  # a lone surrogate, which validation names precisely
        return []
    if size <= max_bytes:
        return []
    return [{"field": "metadata", "error": f"is {size} bytes of JSON; the limit is {max_bytes}"}]


def _invalid(what: str, details: list[dict[str, Any]]) -> InvalidInput:
    return InvalidInput(f"the {what} body is invalid", details=details)
