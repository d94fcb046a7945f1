"""Typed settings of model calls in batches (issue 19.4): when the deployment sends the calls
that are not urgent through the provider's Batch API (a JSONL of requests, uploaded, run within
the completion window at about half the price on OpenAI), and how it waits for them."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["BatchSettings"]

BatchKind = Literal["moderation", "vision", "card"]


class BatchSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(False, description="send the kinds below through the Batch API; off: one call each, "
                                             "paced by the provider's rate-limit headers")
    kinds: tuple[BatchKind, ...] = Field(("moderation",), description="which calls may wait for a batch: "
                                         "moderation (a dataset build's steps), vision (finalisation's frames), "
                                         "card (finalisation's card); a finalisation waits for its batch")
    collect_s: float = Field(5.0, ge=0, le=3600, description="the batcher gathers the vision and card lines "
                             "of every finalisation that asks within this long into one batch job")
    discount: float = Field(0.5, ge=0, le=1, description="a batch line's price over the same call made "
                            "alone (OpenAI: 50 %), for the cost estimates")
    completion_window: Literal["24h"] = Field("24h", description="the only window OpenAI offers")
    poll_initial_s: float = Field(1.0, gt=0, le=600, description="first wait before asking for the batch's state")
    poll_max_s: float = Field(60.0, gt=0, le=3600, description="the wait between polls doubles up to this")
    max_wait_s: float = Field(86_400.0, gt=0, le=172_800, description="give up on a batch (lines then go "
                                                                      "the synchronous way) after this")
    max_rounds: int = Field(3, ge=1, le=10, description="batches per job: the first, then retries of failed lines")
    max_lines: int = Field(50_000, ge=1, le=50_000, description="OpenAI takes at most 50,000 lines a batch")

    def wants(self, kind: BatchKind) -> bool:
        return self.enabled and kind in self.kinds

    @model_validator(mode="after")
    def _check_polls(self) -> Self:
        if self.poll_initial_s > self.poll_max_s:
            raise ValueError("batching.poll_initial_s must not exceed batching.poll_max_s")
        return self
