"""What we ask a vision model for, what it answers, and what that costs in tokens.

Provider-neutral: the answer's model and JSON schema, the prompt, and OpenAI's published
image-token rule (used to reserve tokens-per-minute before a call, not to bill).
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

__all__ = [
    "PAGE_ANALYSIS_SCHEMA",
    "PROMPT_TOKENS",
    "PROMPT_VERSION",
    "SYSTEM_PROMPT",
    "USER_PROMPT",
    "PageAnalysis",
    "VisionCall",
    "estimate_image_tokens",
    "image_token_rates",
]

# Bounds of one analysis: enough for labels, small enough to store per screenshot.
MAX_TEXT = 200
MAX_ITEMS = 12
MAX_ITEM_TEXT = 120


def _truncated(limit: int) -> BeforeValidator:
    # A verbose model is not a broken one: cut over-long text instead of rejecting it.
    return BeforeValidator(lambda v: v[:limit] if isinstance(v, str) else v)


def _first_items(v: Any) -> Any:
    if isinstance(v, list):
        return [s[:MAX_ITEM_TEXT] if isinstance(s, str) else s for s in v[:MAX_ITEMS]]
    return v


Text = Annotated[str, _truncated(MAX_TEXT), Field(min_length=1, max_length=MAX_TEXT)]
Items = Annotated[list[str], BeforeValidator(_first_items), Field(max_length=MAX_ITEMS)]
DecisionStage = Literal[
    "awareness", "consideration", "decision", "action", "post_action", "unknown"
]


class PageAnalysis(BaseModel):
    """What a vision model reads off one screenshot, as training-data labels."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    page_type: Text
    visible_state: Text
    intent_cues: Items
    decision_stage: DecisionStage
    notable_elements: Items
    confidence: float = Field(ge=0.0, le=1.0, allow_inf_nan=False)


class VisionCall(BaseModel):
    """One successful analysis and what it cost."""

    model_config = ConfigDict(frozen=True)

    analysis: PageAnalysis
    model: str
    tokens_in: int = Field(ge=0)
    tokens_out: int = Field(ge=0)
    cost_usd: float = Field(ge=0)
    attempts: int = Field(ge=1)
    latency_s: float = Field(ge=0)


_STRING_LIST = {"type": "array", "items": {"type": "string"}}
# Hand-written rather than PageAnalysis.model_json_schema(): strict structured outputs
# accept only a subset of JSON Schema (every property required, no extra properties).
PAGE_ANALYSIS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "page_type": {
            "type": "string",
            "description": "e.g. search_results, product, cart",
        },
        "visible_state": {
            "type": "string",
            "description": "what the page shows right now",
        },
        "intent_cues": {
            **_STRING_LIST,
            "description": "hints of what the user is trying to do",
        },
        "decision_stage": {"type": "string", "enum": list(DecisionStage.__args__)},
        "notable_elements": {
            **_STRING_LIST,
            "description": "controls an agent would act on",
        },
        "confidence": {"type": "number", "description": "0 to 1"},
    },
    "required": [
        "page_type",
        "visible_state",
        "intent_cues",
        "decision_stage",
        "notable_elements",
        "confidence",
    ],
    "additionalProperties": False,
}

SYSTEM_PROMPT = (
    "You label screenshots of web pages for a pipeline that trains web agents. "
    "Describe only what is visible. page_type: a short snake_case kind of page. "
    "visible_state: one sentence on the page's current state (open dialogs, errors, "
    "filled forms, loading). intent_cues: up to 12 short phrases hinting at the goal. "
    "decision_stage: where the user is in their task. notable_elements: up to 12 "
    "controls or content an agent would act on, named by their visible label. "
    "confidence: 0 to 1. "
    "Never transcribe personal data (names, emails, addresses, card or account "
    "numbers)."
)
USER_PROMPT = "Analyse this screenshot."
# Part of the analysis cache's key: derived from the prompts and the schema, so editing any
# of them invalidates cached analyses without anyone having to remember to bump a number.
PROMPT_VERSION = (
    "pa-"
    + hashlib.sha256(
        json.dumps(
            [SYSTEM_PROMPT, USER_PROMPT, PAGE_ANALYSIS_SCHEMA], sort_keys=True
        ).encode()
    ).hexdigest()[:12]
)

# Text tokens around the image (prompt, schema, chat framing), rounded up at ~4 chars a
# token: part of what one call reserves against tokens-per-minute.
PROMPT_TOKENS = (len(SYSTEM_PROMPT) + len(json.dumps(PAGE_ANALYSIS_SCHEMA))) // 4 + 64

# Image token rates (base, per 512px tile) where they differ from gpt-4o's 85 / 170:
# gpt-4o-mini counts ~33x the tokens per image, so an image costs what it does on gpt-4o.
_IMAGE_RATES: dict[str, tuple[int, int]] = {"gpt-4o-mini": (2833, 5667)}


def image_token_rates(model: str) -> tuple[int, int]:
    """(base tokens, tokens per tile) of `model`, by the longest matching name prefix."""
    matches = [name for name in _IMAGE_RATES if model.startswith(name)]
    return _IMAGE_RATES[max(matches, key=len)] if matches else (85, 170)


def estimate_image_tokens(
    width: int,
    height: int,
    detail: str = "high",
    *,
    base: int = 85,
    per_tile: int = 170,
) -> int:
    """Input tokens of one image by OpenAI's published rule for gpt-4o-class models.

    low: `base` whatever the size. high (and auto, which may pick high, so we reserve for
    it): scale to fit 2048x2048, then down so the shortest side is at most 768, then
    `base` + `per_tile` per 512px tile. Images are never scaled up.
    """
    if detail == "low":
        return base
    w, h = max(1, int(width)), max(1, int(height))
    scale = min(1.0, 2048 / max(w, h))
    w, h = w * scale, h * scale
    scale = min(1.0, 768 / min(w, h))
    w, h = w * scale, h * scale
    tiles = math.ceil(round(w, 6) / 512) * math.ceil(round(h, 6) / 512)
    return base + per_tile * tiles
