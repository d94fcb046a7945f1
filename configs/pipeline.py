"""Typed thresholds of the processing pipeline (configs/pipeline.yaml).

The model defaults and the YAML file hold the same numbers: the YAML is where an operator reads
why each number is what it is and changes it; the defaults keep `PipelineSettings()` usable in
tests and in code that never reads a file. A unit test keeps the two in step.
"""

from __future__ import annotations

import math
from itertools import pairwise
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from configs.base import CONFIG_DIR, load_yaml, validated

__all__ = [
    "DEFAULT_PIPELINE_FILE",
    "CompletenessParts",
    "PipelineSettings",
    "QualitySettings",
    "QualityWeights",
    "SelectorRanks",
    "TrainingParts",
]

DEFAULT_PIPELINE_FILE = CONFIG_DIR / "pipeline.yaml"

# A share, weight or score: finite and in [0, 1].
Unit = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]


class _Strict(BaseModel):
    # strict: a quoted "0.3" in YAML is a mistake worth reporting, not a number to coerce.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class _Mix(_Strict):
    """Non-negative weights of a weighted mean; they must sum to 1 so the mean stays in [0, 1]."""

    @model_validator(mode="after")
    def _sums_to_one(self) -> _Mix:
        values = [float(v) for v in self.model_dump().values()]
        total = math.fsum(values)
        # A tolerance, because YAML decimals such as 0.1 are not exact binary fractions.
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            names = ", ".join(self.model_dump())
            raise ValueError(f"weights ({names}) must sum to 1, got {total:.6g}")
        return self


class QualityWeights(_Mix):
    completeness: Unit = 0.30
    selector_reliability: Unit = 0.30
    screenshot_quality: Unit = 0.15
    training_value: Unit = 0.25


class CompletenessParts(_Mix):
    sequence: Unit = 0.35
    targets: Unit = 0.25
    screenshots: Unit = 0.20
    finished: Unit = 0.20


class TrainingParts(_Mix):
    diversity: Unit = 0.30
    task: Unit = 0.25
    length: Unit = 0.20
    noise: Unit = 0.25


class SelectorRanks(_Strict):
    """Credit in [0, 1] for the kind of an element's best selector, after Playwright's ranking."""

    testid: Unit = 1.00
    role: Unit = 0.90
    label: Unit = 0.80
    placeholder: Unit = 0.75
    text: Unit = 0.60
    css_id: Unit = 0.50
    css_path: Unit = 0.25
    xpath: Unit = 0.10

    @model_validator(mode="after")
    def _keeps_the_ranking(self) -> SelectorRanks:
        # Tuning the numbers is fine; inverting the order is almost surely a typo.
        chain = [("testid", self.testid), ("role", self.role),
                 ("label/placeholder", max(self.label, self.placeholder)),
                 ("text", self.text), ("css_id", self.css_id), ("css_path", self.css_path),
                 ("xpath", self.xpath)]
        if min(self.label, self.placeholder) < self.text:
            raise ValueError("label and placeholder must rank at least as high as text")
        for (hi_name, hi), (lo_name, lo) in pairwise(chain):
            if hi < lo:
                raise ValueError(f"{hi_name} must rank at least as high as {lo_name}")
        return self

    def for_kind(self, kind: str) -> float:
        return float(getattr(self, kind, 0.0)) if kind in _RANKED_KINDS else 0.0


_RANKED_KINDS = frozenset(SelectorRanks.model_fields)


class QualitySettings(_Strict):
    weights: QualityWeights = QualityWeights()
    reject_below: Unit = 0.45
    reject_without_steps: bool = True
    explain_below: Unit = 0.70
    neutral: Unit = 0.50
    completeness_parts: CompletenessParts = CompletenessParts()
    screenshots_per_step: float = Field(0.8, gt=0.0, le=10.0, allow_inf_nan=False)
    selector_ranks: SelectorRanks = SelectorRanks()
    not_unique_factor: Unit = 0.40
    unknown_unique_factor: Unit = 0.80
    generated_value_factor: Unit = 0.70
    alternatives_for_full_credit: int = Field(2, ge=1, le=32)
    alternatives_weight: Unit = 0.15
    training_parts: TrainingParts = TrainingParts()
    min_actions: int = Field(5, ge=1)
    max_actions: int = Field(400, ge=1)
    diversity_types: int = Field(4, ge=2, le=16)
    scroll_run: int = Field(3, ge=2)
    noise_tolerance: float = Field(0.5, gt=0.0, le=1.0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _bounds_in_order(self) -> QualitySettings:
        if self.min_actions > self.max_actions:
            raise ValueError(
                f"min_actions ({self.min_actions}) must not exceed max_actions ({self.max_actions})"
            )
        return self


class PipelineSettings(_Strict):
    quality: QualitySettings = QualitySettings()

    @classmethod
    def build(cls, data: Any, source: str = "pipeline settings") -> PipelineSettings:
        return validated(cls, data, f"{source}: invalid pipeline settings")

    @classmethod
    def from_file(cls, path: Path | str = DEFAULT_PIPELINE_FILE) -> PipelineSettings:
        """Load and validate a pipeline YAML; every problem is named with its file and field."""
        return cls.build(load_yaml(Path(path)), source=str(path))
