"""The bodies of the consent routes, validated at the boundary: a notice (what a workspace shows
before the first recording) and an answer to it."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, field_validator

__all__ = ["ConsentAnswer", "NoticeBody", "notice_view", "record_view"]

Item = Annotated[StrictStr, Field(min_length=1, max_length=200)]


def _no_nul(value: str) -> str:
    # PostgreSQL text holds no NUL: refused here, in the one error shape, before any statement.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


class NoticeBody(BaseModel):
    """A workspace's notice. A version names one content for good: recorders agree to a version,
    so changed content needs a new version (and everyone agrees again)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    version: StrictStr = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$",
                               description="names this content for good: letters, digits, '.', '_', ':', '-'")
    text: StrictStr = Field(min_length=1, max_length=20_000, description="what the person reads before recording")
    required: StrictBool = Field(description="true: recorder keys record nothing before their recorder agreed")
    recorded: list[Item] = Field(default_factory=list, max_length=50, description="what is recorded")
    masked: list[Item] = Field(default_factory=list, max_length=50, description="what is masked or left out")
    retention_days: StrictInt | None = Field(None, ge=1, le=36_500, description="how long it is kept; null: not stated")

    @field_validator("version", "text")
    @classmethod
    def _text(cls, value: str) -> str:
        return _no_nul(value)

    @field_validator("recorded", "masked")
    @classmethod
    def _items(cls, value: list[str]) -> list[str]:
        return [_no_nul(v) for v in value]


class ConsentAnswer(BaseModel):
    """A recorder's agreement to one version of its workspace's notice."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    version: StrictStr = Field(min_length=1, max_length=64, description="the version of the notice shown")


def notice_view(row: Any) -> dict[str, Any]:
    return {"workspace_id": str(row["workspace_id"]), "version": row["version"], "text": row["text"],
            "required": row["required"], "recorded": list(row["recorded"]), "masked": list(row["masked"]),
            "retention_days": row["retention_days"]}


def record_view(row: Any) -> dict[str, Any]:
    withdrawn = row["withdrawn_at"]
    return {"recorder_id": str(row["recorder_id"]), "version": row["notice_version"],
            "agreed_at": row["agreed_at"].isoformat(), "withdrawn_at": None if withdrawn is None else withdrawn.isoformat()}
