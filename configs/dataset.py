"""Typed config of a dataset build: which sessions, what each example holds, how it is split,
and what the report estimates. Loaded from YAML (`--config`), or from a `POST /v1/datasets`
body, and validated whole before any work starts.

```yaml
name: checkout-agent-v1
selection: {min_quality: 0.6, session_types: [human], since: 2026-11-01T00:00:00Z}
format: {max_images_per_example: 1, image_mode: data_url, last_k_actions: 5}
split: {validation_share: 0.2, seed: 7}
cost: {price_per_million_tokens: 3.0, n_epochs: 3}
```
"""

from __future__ import annotations

import uuid
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from configs.base import load_yaml, validated
from configs.pipeline import SelectorRanks

__all__ = [
    "DEFAULT_SYSTEM_PROMPT", "OPENAI_MAX_IMAGES", "CostSettings", "DatasetBuildConfig",
    "DatasetFormatSettings", "SessionSelection", "SplitSettings",
]

OPENAI_MAX_IMAGES = 10  # per example, OpenAI's fine-tuning limit
DEFAULT_SYSTEM_PROMPT = (
    "You are a web agent operating a browser to complete the user's task. Each turn you get the "
    "task, the current page (URL and title), candidate elements with their selectors, your "
    "recent actions and possibly a screenshot. Reply with exactly one next action as a compact "
    'JSON object and nothing else: {"action": "click|dblclick|input|select|submit|keypress|'
    'navigate", "selector": "...", "element_text": "...", "value": "...", "key": "...", '
    '"url": "..."}, including only the fields the action needs.')


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetFormatSettings(_Strict):
    """What one `openai-chat` example holds (see actors/training/dataset/formats.py)."""

    kind: Literal["openai-chat"] = "openai-chat"
    system_prompt: str = Field(DEFAULT_SYSTEM_PROMPT, min_length=1)
    last_k_actions: int = Field(5, ge=0)
    max_candidates: int = Field(15, ge=1)
    max_images_per_example: int = Field(1, ge=0, le=OPENAI_MAX_IMAGES)
    image_mode: Literal["none", "data_url", "object_url"] = "none"
    image_detail: Literal["auto", "low", "high"] = "auto"
    # 64k context of the fine-tunable GPT-4o family minus a margin for the estimate's error.
    max_example_tokens: Annotated[int, Field(ge=1)] = 65536 - 4096
    # How long an object-store (presigned S3) image URL stays valid: the provider fetches
    # images when the fine-tune starts, which may be days after the build.
    object_url_expiry_s: int = Field(7 * 24 * 3600, ge=60, le=7 * 24 * 3600)
    selector_ranks: SelectorRanks = SelectorRanks()
    # Beside the chat JSONL, `train.ranking.jsonl` / `validation.ranking.jsonl`: one row per
    # step with its candidate elements, the acted-on one marked positive (what the local
    # element ranker trains on; actors/training/dataset/ranking.py).
    ranking: bool = True


SessionType = Literal["human", "automated", "hybrid"]


class SessionSelection(_Strict):
    statuses: list[Literal["ready", "rejected"]] = Field(
        ["ready"], min_length=1, description="only finalised sessions have scores and redaction")
    min_quality: float | None = Field(None, ge=0, le=1, description="minimum overall quality")
    session_types: list[SessionType] | None = Field(None, min_length=1)
    since: datetime | None = Field(None, description="sessions started at or after (ISO 8601)")
    until: datetime | None = Field(None, description="sessions started before (ISO 8601)")
    task_contains: str | None = Field(None, min_length=1, max_length=200,
                                      description="case-insensitive substring of the task text")
    org_id: uuid.UUID | None = Field(None, description="None: the default organisation "
                                     "(the API always uses the caller's)")
    max_sessions: int | None = Field(None, ge=1, le=1_000_000)
    workspace_id: uuid.UUID | None = Field(None, description="None: every workspace of the organisation "
                                           "(the API always uses the caller's)")
    exclude_flagged: bool = Field(True, description="leave out sessions and steps a reviewer flagged "
                                  "(a flag in any state); the report counts them by reason")

    @model_validator(mode="after")
    def _window(self) -> SessionSelection:
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise ValueError(f"selection.{name} needs a timezone (e.g. 2026-11-01T00:00:00Z)")
        if self.since and self.until and self.since >= self.until:
            raise ValueError("selection.since must be before selection.until")
        return self


class SplitSettings(_Strict):
    validation_share: float = Field(0.2, gt=0, lt=1)
    seed: int = Field(0, ge=0)


class CostSettings(_Strict):
    # gpt-4o-mini's published training price per 1M tokens; gpt-4o's is 25.0.
    price_per_million_tokens: float = Field(3.0, ge=0)
    n_epochs: int = Field(3, ge=1, le=50, description="epochs assumed by the estimate")


class DatasetBuildConfig(_Strict):
    name: str = Field(..., min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][\w.-]*$")
    selection: SessionSelection = SessionSelection()
    format: DatasetFormatSettings = DatasetFormatSettings()
    split: SplitSettings = SplitSettings()
    cost: CostSettings = CostSettings()
    # Chunks are cut by measured cost (actors/training/dataset/planner.py): about
    # task_target_seconds of work and at most task_max_result_mb of encoded lines each.
    sessions_per_task: int = Field(1000, ge=1, le=10_000,
                                   description="at most this many sessions in one Ray task")
    task_target_seconds: float = Field(2.0, gt=0, le=600, description="work one Ray task aims at")
    task_max_result_mb: int = Field(64, ge=1, le=4096,
                                    description="encoded lines one task hands the driver, at most")
    task_num_cpus: float = Field(0.5, gt=0, le=16)

    @classmethod
    def build(cls, data: Any, source: str = "dataset config") -> DatasetBuildConfig:
        return validated(cls, data, f"invalid {source}")

    @classmethod
    def from_file(cls, path: Path) -> DatasetBuildConfig:
        return cls.build(load_yaml(path), str(path))
