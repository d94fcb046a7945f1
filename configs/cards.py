"""Typed settings of session cards (title, caption, contact sheet) and of sentiment.

Both may call an OpenAI-compatible chat model through the one OpenAI layer
(actors.openai_client), so they derive from `OpenAISettings`; both work without one ("local",
the default): cards from the context analysis, sentiment from the VADER lexicon. The settings
owner maps TRACEMILL_CARDS_PROVIDER / _MODEL and TRACEMILL_SENTIMENT_PROVIDER / _MODEL plus the
standard OPENAI_* variables onto these fields; this module reads no environment itself.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from configs.openai import OpenAISettings

__all__ = ["CardSettings", "SentimentSettings"]


class _ShortCalls(OpenAISettings):
    """A card or a reading is not worth holding finalisation up for: a short deadline and two
    attempts, then the local answer."""

    timeout_s: float = Field(20.0, gt=0, le=600, description="deadline of one attempt")
    max_attempts: int = Field(2, ge=1, le=10, description="attempts before the local answer")
    backoff_max_s: float = Field(5.0, gt=0, le=600, description="cap on a wait between "
                                 "attempts; a longer Retry-After gives up at once")
    price_input_per_1m: float = Field(0.15, ge=0, description="USD per million input tokens "
                                      "(gpt-4o-mini), for the cost estimates on /metrics")
    price_output_per_1m: float = Field(0.60, ge=0, description="USD per million output tokens")


class CardSettings(_ShortCalls):
    section: ClassVar[str] = "cards"

    provider: Literal["local", "openai"] = Field(
        "local", description="local writes the card from the analysis, with no network; "
        "openai asks a chat model and falls back to local when the call fails")
    model: str = Field("gpt-4o-mini", min_length=1, description="a cheap chat model is enough "
                       "for two sentences")
    max_output_tokens: int = Field(200, ge=32, le=4096, description="a title and two "
                                   "sentences need about 80")
    max_moments: int = Field(12, ge=1, le=50, description="key steps sent to the model "
                             "(bounds the prompt)")
    sheet_frames: int = Field(6, ge=0, le=16, description="key frames on the contact sheet; "
                              "0 makes none")
    sheet_columns: int = Field(3, ge=1, le=8)
    sheet_tile_width: int = Field(400, ge=64, le=1280, description="pixels per frame on the sheet")
    sheet_quality: int = Field(70, ge=1, le=100, description="WebP quality of the sheet")


class SentimentSettings(_ShortCalls):
    section: ClassVar[str] = "sentiment"

    provider: Literal["local", "openai"] = Field(
        "local", description="local is the VADER lexicon (offline, no downloads); openai asks "
        "a chat model and uses the lexicon when that call fails")
    model: str = Field("gpt-4o-mini", min_length=1)
    min_chars: int = Field(4, ge=1, le=1000, description="shorter typed values are codes, "
                           "quantities or initials, not opinions")
    min_words: int = Field(2, ge=1, le=100, description="a plain text field needs this many "
                           "words to count (search boxes and text areas need one)")
    max_chars: int = Field(2000, ge=16, le=100_000, description="longer text is cut before "
                           "scoring (bounds the cost)")
    max_texts: int = Field(50, ge=1, le=10_000, description="texts scored per session")
