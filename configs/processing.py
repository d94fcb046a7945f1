"""Typed settings of the processing pipeline: redaction, screenshot compression, finalisation.

The models live here, not beside the code that uses them, so that `TracemillSettings` can carry
them into every actor and task (configs imports nothing of ours; DESIGN.md, layout).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from configs.vision import VisionSettings

__all__ = [
    "WEBP_MAX_SIDE",
    "CompressSettings",
    "ExtraPattern",
    "ProcessingSettings",
    "RedactionSettings",
]

# libwebp cannot store a side longer than this; full-page captures can be taller.
WEBP_MAX_SIDE = 16383


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ExtraPattern(_Strict):
    name: str = Field(description="UPPER_SNAKE_CASE type name, used in report counts")
    pattern: str = Field(min_length=1, max_length=4096, description="a Python regex")
    placeholder: str = Field(min_length=1, max_length=64)


class RedactionSettings(_Strict):
    """Only additions are configurable: no setting turns a built-in detector off."""

    extra_patterns: list[ExtraPattern] = Field(default_factory=list)
    # False runs the text detectors over URL strings as they are (no decoding, no names).
    redact_urls: bool = True


class CompressSettings(_Strict):
    max_width: int = Field(1280, ge=64, le=WEBP_MAX_SIDE)
    webp_quality: int = Field(80, ge=1, le=100)
    webp_method: int = Field(4, ge=0, le=6)
    # Same default as IngestLimits.max_screenshot_pixels: checked before any pixel is decoded.
    max_pixels: int = Field(40_000_000, ge=64 * 64)


class ProcessingSettings(_Strict):
    privacy: RedactionSettings = RedactionSettings()
    compress: CompressSettings = CompressSettings()
    vision: VisionSettings = VisionSettings()
    # The raw upload is only staging: once its redacted WebP is durable it goes, unless kept
    # for debugging a compression problem (it is unredacted, so keep it off in production).
    keep_raw: bool = False
    # pHash Hamming distance at or under which two frames of a session count as one picture.
    near_duplicate_bits: int = Field(6, ge=0, le=32)
    # WebP encoding is CPU-bound: one core per task (DESIGN.md decision 5).
    compress_num_cpus: float = Field(1.0, gt=0, le=16)
    # Scoring, context and archiving are light; they must not wait behind a burst of encodes.
    analysis_num_cpus: float = Field(0.25, gt=0, le=16)
    # Finalisations run concurrently per shard; each fans out its own tasks.
    max_concurrent_finalizations: int = Field(8, ge=1, le=1000)
    # A stage failing this many times in a row ends the session `failed` with the reason.
    finalize_attempts: int = Field(4, ge=1, le=50)
    finalize_backoff_s: float = Field(1.0, gt=0, le=600)
    # How often a shard looks for finalisations and screenshots left behind by a restart.
    sweep_interval_s: float = Field(30.0, gt=0, le=3600)
    # Page of GET /v1/sessions/{id}/events.
    events_page_max: int = Field(1000, ge=1, le=10_000)
