"""Scores for texts: the OpenAI-compatible moderation endpoint through the one OpenAI layer, or
the local fallback when no provider is configured or its call fails (the batch then says which).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from actors import telemetry
from actors.batching.ratelimit import HeaderRateLimiter
from actors.errors import TracemillError
from actors.moderation.wordlist import CATEGORIES, LOCAL_MODEL, local_scores
from actors.openai_client import OpenAIApi
from configs.moderation import ModerationSettings

__all__ = ["Scored", "Scorer", "from_openai", "top"]

log = logging.getLogger(__name__)

# OpenAI's categories (omni-moderation) folded onto ours; the highest of each group counts.
_OPENAI_GROUPS: dict[str, tuple[str, ...]] = {
    "toxicity": ("hate", "hate/threatening", "illicit", "illicit/violent"),
    "harassment": ("harassment", "harassment/threatening"),
    "self_harm": ("self-harm", "self-harm/intent", "self-harm/instructions"),
    "sexual": ("sexual", "sexual/minors"),
    "violence": ("violence", "violence/graphic"),
}


@dataclass(frozen=True)
class Scored:
    scores: list[dict[str, float]]  # one per text, every category of CATEGORIES
    source: str  # "openai" | "local"
    model: str
    fallback_reason: str | None = None  # why local answered although openai was configured


def top(scores: Mapping[str, float]) -> tuple[str, float]:
    """The highest category and its score (ties: the first in CATEGORIES)."""
    cat = max(CATEGORIES, key=lambda c: scores.get(c, 0.0))
    return cat, float(scores.get(cat, 0.0))


def from_openai(category_scores: Mapping[str, Any]) -> dict[str, float]:
    out = {}
    for ours, theirs in _OPENAI_GROUPS.items():
        values = [float(category_scores.get(k) or 0.0) for k in theirs]
        out[ours] = round(min(1.0, max(0.0, *values)), 4)
    return out


class Scorer:
    """One per dataset build (or batch run): holds the OpenAI client when the provider is openai."""

    def __init__(self, settings: ModerationSettings, limiter: HeaderRateLimiter | None = None) -> None:
        self.settings = settings
        # Paced by the provider's x-ratelimit-* headers, read from every answer of this client.
        self.limiter = limiter or HeaderRateLimiter(max_wait_s=settings.backoff_max_s)
        self.api = (OpenAIApi(settings, self.limiter.client(settings.timeout_s), name="moderation provider",
                              gave_up_retry_after_s=60.0)
                    if settings.provider == "openai" else None)
        self.calls = 0

    async def aclose(self) -> None:
        if self.api is not None:
            await self.api.aclose()

    async def score(self, texts: Sequence[str]) -> Scored:
        texts = [t[: self.settings.max_chars] for t in texts]
        if self.api is None:
            return Scored(local_scores(texts), "local", LOCAL_MODEL)
        try:
            out: list[dict[str, float]] = []
            for i in range(0, len(texts), self.settings.inputs_per_call):
                out.extend(await self._openai(texts[i:i + self.settings.inputs_per_call]))
            return Scored(out, "openai", self.settings.model)
        except TracemillError as exc:
            # The build must not stop, nor let text through unscored: the local floor answers.
            reason = exc.details[0].get("reason", type(exc).__name__) if exc.details else type(exc).__name__
            log.warning("moderation provider failed (%s); scoring %d text(s) locally", reason, len(texts))
            return Scored(local_scores(texts), "local", LOCAL_MODEL, fallback_reason=str(reason))

    async def _openai(self, texts: list[str]) -> list[dict[str, float]]:
        assert self.api is not None
        client = self.api.client
        self.calls += 1
        await self.limiter.acquire()
        telemetry.record_model_calls("moderation", "sync")  # free on OpenAI: no cost
        telemetry.model_inflight("moderation", 1)
        try:
            reply = await self.api.call(
                "moderation", lambda: client.moderations.create(model=self.settings.model, input=texts))
        finally:
            self.limiter.settle()
            telemetry.model_inflight("moderation", -1)
        if len(reply.results) != len(texts):
            self.api.fail("moderation provider answered the wrong number of results", "bad_reply", retry=False)
        return [from_openai(r.category_scores.model_dump(by_alias=True)) for r in reply.results]
