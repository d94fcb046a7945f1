"""Recording files: a browser session as the extension sent it, replayable by `tracemill demo`.

A recording is one JSON document (format `tracemill-recording/1`):

    {"format": "tracemill-recording/1",
     "source": "how and where it was recorded",
     "session": {"type": "human", "task": ..., "client": {...}, "user_agent": ..., "viewport": {...},
                 "started_at": MS, "ended_at": MS, "outcome": "success", "metadata": {...}},
     "frames": [[event, ...], ...],        # the WebSocket events frames, in the order sent
     "screenshots": [{"screenshot_id": ..., "seq": N, "captured_at": MS, "trigger": "click",
                      "content_type": "image/webp", "data_base64": "..."}]}

Events follow PROTOCOL.md and are checked with the server's own validator (actors.ingest.events), the
session with the server's create-body model, and every screenshot is decoded: a recording that
loads is one the endpoint accepts, so a replay never stops half-way on bad data.

`export_recording` writes such a file from a stored session through the public API.
"""

from __future__ import annotations

import base64
import binascii
import functools
import io
from pathlib import Path
from typing import Any, Literal

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from actors.errors import TracemillError
from actors.ingest.events import parse_events
from serve_app.bodies import parse_session_create
from configs.settings import IngestLimits

__all__ = ["RECORDING_FORMAT", "RecordedScreenshot", "RecordedSession", "Recording", "RecordingError",
           "load_recording"]  # fmt: skip

RECORDING_FORMAT = "tracemill-recording/1"
MediaType = Literal["image/png", "image/jpeg", "image/webp"]
_PILLOW_FORMAT = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP"}
# The endpoint's defaults: a recording within them is accepted by a default deployment.
_LIMITS = IngestLimits()


class RecordingError(Exception):
    """A recording that cannot be read, or one the endpoint would refuse; the message is one line."""


class RecordedScreenshot(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    screenshot_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
    seq: int | None = Field(None, ge=0, description="the seq of the event it belongs to")
    captured_at: int | None = Field(None, description="epoch milliseconds")
    trigger: Literal["navigation", "click", "input", "modal", "interval", "other"] | None = None
    content_type: MediaType
    data_base64: str = Field(repr=False)

    @property
    def data(self) -> bytes:
        return base64.b64decode(self.data_base64)

    @model_validator(mode="after")
    def _decodable(self) -> RecordedScreenshot:
        try:
            data = base64.b64decode(self.data_base64, validate=True)
        except binascii.Error:
            raise ValueError("data_base64 is not base64") from None
        if len(data) > _LIMITS.max_screenshot_bytes:
            raise ValueError(f"the image is over {_LIMITS.max_screenshot_bytes} bytes")
        try:  # the endpoint decodes every image fully; so does the recording check
            with Image.open(io.BytesIO(data), formats=[_PILLOW_FORMAT[self.content_type]]) as img:
                img.load()
        except Exception:  # noqa: BLE001 - Pillow raises many types for bad data; all mean the same
            raise ValueError(f"data_base64 is not a decodable {self.content_type} image") from None
        return self


class RecordedSession(BaseModel):
    """The create body (without session_id, which every replay makes fresh) and the finish."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["human", "automated", "hybrid"]
    task: str | None = None
    client: dict[str, Any] | None = None
    user_agent: str | None = None
    viewport: dict[str, int] | None = None
    started_at: int = Field(description="epoch milliseconds")
    ended_at: int | None = Field(None, description="epoch milliseconds")
    outcome: Literal["success", "abandoned", "failure"] | None = None
    metadata: dict[str, Any] | None = None

    def create_body(self, shift_ms: int = 0) -> dict[str, Any]:
        body = self.model_dump(exclude={"ended_at", "outcome"}, exclude_none=True)
        body["started_at"] = self.started_at + shift_ms
        return body

    @model_validator(mode="after")
    def _accepted_by_the_endpoint(self) -> RecordedSession:
        try:
            parse_session_create(self.create_body(), _LIMITS)
        except TracemillError as exc:
            raise ValueError(_first_problem(exc)) from None
        return self


class Recording(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: Literal["tracemill-recording/1"]
    source: str = Field("", description="how and where it was recorded, for people")
    session: RecordedSession
    frames: list[list[dict[str, Any]]] = Field(min_length=1)
    screenshots: list[RecordedScreenshot] = Field(default_factory=list)

    @field_validator("frames")
    @classmethod
    def _events_valid(cls, frames: list[list[dict[str, Any]]]) -> list[list[dict[str, Any]]]:
        for number, frame in enumerate(frames):
            if not frame:
                raise ValueError(f"frame {number} is empty")
            try:
                parse_events(frame, _LIMITS)
            except TracemillError as exc:
                raise ValueError(f"frame {number}: {_first_problem(exc)}") from None
        seqs = [event["seq"] for frame in frames for event in frame]
        # Dense and unique: replayed into a fresh session, the acks must reach the last seq.
        if sorted(seqs) != list(range(len(seqs))):
            raise ValueError("event seqs must be unique and dense from 0")
        return frames

    @model_validator(mode="after")
    def _screenshots_match(self) -> Recording:
        ids = [s.screenshot_id for s in self.screenshots]
        if len(set(ids)) != len(ids):
            raise ValueError("screenshot ids must be unique")
        last = self.last_seq
        if any(s.seq is not None and s.seq > last for s in self.screenshots):
            raise ValueError(f"a screenshot's seq is beyond the last event (seq {last})")
        return self

    @functools.cached_property
    def event_count(self) -> int:
        return sum(len(frame) for frame in self.frames)

    @property
    def last_seq(self) -> int:
        return self.event_count - 1


def _first_problem(exc: TracemillError) -> str:
    """The validator's message and its first detail, in one line."""
    details = getattr(exc, "details", None) or []
    message = str(exc).replace("; the batch was not stored", "")  # server wording; nothing is sent here
    if details:
        first = details[0]
        where = ", ".join(f"{k} {first[k]}" for k in ("index", "seq", "field") if first.get(k) is not None)
        return f"{message} ({where}: {first.get('error')})"
    return message


def describe_validation_error(exc: ValidationError) -> str:
    first = exc.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or "document"
    more = f" (and {exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
    return f"{where}: {first['msg'].removeprefix('Value error, ')}{more}"


def load_recording(path: str | Path) -> Recording:
    """Read and check a recording file; RecordingError (one line) when it is unusable."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecordingError(f"no recording at {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RecordingError(f"cannot read the recording {path}: {exc}") from None
    try:
        return Recording.model_validate_json(text)
    except ValidationError as exc:
        raise RecordingError(f"the recording {path} is not valid: {describe_validation_error(exc)}") from None
