"""Typed settings of the evaluation job: which model answers, and how hard to lean on its host.

Only "openai" exists: it speaks the chat-completions API through `base_url`, so OpenAI, Azure
OpenAI and self-hosted compatible servers (vLLM, Ollama, LiteLLM) all work. With `base_url` and
`api_key` left None the openai client reads OPENAI_BASE_URL and OPENAI_API_KEY itself; this
module reads no environment. The connection and retry fields are those of every OpenAI caller
(configs.openai).

Settings are validated before any work starts (no database row, no request): a bad value is
reported as one line naming every field at fault (`load_evaluation_settings`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from configs.base import SettingsError, load_yaml, validated
from configs.openai import OpenAISettings

__all__ = ["EvaluationSettings", "load_evaluation_settings"]


class EvaluationSettings(OpenAISettings):
    """base_url, api_key, timeout_s (60), max_attempts (4) and the backoff bounds come from
    OpenAISettings: an evaluation only needs each example answered eventually."""

    section: ClassVar[str] = "evaluation"

    provider: Literal["openai", "local"] = Field(
        "openai", description="'local': a ranker of this cluster, model local:<model id> or local:base")
    model: str = Field(min_length=1, description="the model id the host serves, e.g. ft:gpt-4o-mini:…")
    concurrency: int = Field(4, ge=1, le=256, description="requests in flight at once")
    requests_per_minute: int = Field(
        500, ge=1, description="stay under the account's RPM so we pace instead of collecting 429s")
    tokens_per_minute: int = Field(
        2_000_000, ge=1, description="stay under the account's TPM (prompt + output budget)")
    max_examples: int | None = Field(
        None, ge=1, description="evaluate only the first N validation examples (None: all)")
    temperature: float = Field(
        0.0, ge=0, le=2, description="0: the most likely action, so two runs compare")
    max_output_tokens: int = Field(
        300, ge=16, le=16_384, description="one JSON action needs well under 100 tokens")
    max_error_share: float = Field(
        0.1, ge=0, le=1, description="fail the evaluation when more than this share of examples "
        "got no reply after all attempts: its accuracy would measure the outage, not the model")
    progress_every: int = Field(20, ge=1, description="log progress every N examples")

    @model_validator(mode="before")
    @classmethod
    def _local_models(cls, data: Any) -> Any:
        """A `local:` model is the local provider's; any other model is not."""
        if isinstance(data, dict) and isinstance(data.get("model"), str):
            local = data["model"].startswith("local:")
            if data.get("provider") is None:
                data = {**data, "provider": "local" if local else "openai"}
            elif (data["provider"] == "local") != local:
                raise ValueError("provider 'local' goes with a model local:<model id> (or local:base), "
                                 "and only with one")
        return data


def load_evaluation_settings(path: Path | None = None,
                             overrides: Mapping[str, Any] | None = None) -> EvaluationSettings:
    """Settings from an optional YAML file (its `evaluation:` section, or the whole mapping),
    then command-line overrides that are not None; SettingsError with one line if invalid."""
    data: dict[str, Any] = {}
    if path is not None:
        loaded = load_yaml(path)
        section = loaded.get("evaluation", loaded)
        if not isinstance(section, dict):
            raise SettingsError(f"{path}: `evaluation` must be a mapping")
        data.update(section)
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return validated(EvaluationSettings, data, "invalid evaluation settings", one_line=True)
