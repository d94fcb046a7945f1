"""Moderation scoring without a database: OpenAI's categories folded onto ours, decisions at the
thresholds, the local fallback's categories, and the scorer against the OpenAI-compatible test
server (answers, and the local floor when it errors)."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError

from actors.moderation.gate import decide
from actors.moderation.wordlist import CATEGORIES, local_scores
from actors.moderation.moderator import Scorer, from_openai, top
from cluster.doubles.openai_server import OpenAITestServer
from configs.moderation import ModerationSettings


def test_openai_categories_fold_onto_ours_by_their_highest() -> None:
    got = from_openai({"harassment": 0.2, "harassment/threatening": 0.7, "self-harm/intent": 0.4,
                       "sexual/minors": None, "violence": 0.1, "hate": 0.05})
    assert got == {"toxicity": 0.05, "harassment": 0.7, "self_harm": 0.4, "sexual": 0.0, "violence": 0.1}
    assert top(got) == ("harassment", 0.7)


@pytest.mark.parametrize(("score", "decision"), [(0.0, "ok"), (0.59, "ok"), (0.6, "warn"), (0.79, "warn"),
                                                 (0.8, "block"), (1.0, "block")])
def test_decisions_at_the_default_thresholds(score: float, decision: str) -> None:
    assert decide(score, 0.6, 0.8) == decision


def test_thresholds_must_be_ordered() -> None:
    with pytest.raises(ValidationError):
        ModerationSettings(default_warn=0.9, default_block=0.5)


def test_the_local_fallback_sees_insults_and_phrases_and_passes_plain_pages() -> None:
    insult, selfharm, threat, porn, plain, kill = local_scores([
        "you are a stupid fucking idiot", "i want to kill myself", "I'm going to shoot you",
        "free porn videos", "Add to cart - Kettle 1.7 l, brushed steel", "kill the process"])
    assert set(plain) == set(CATEGORIES) and max(plain.values()) < 0.6
    assert top(insult)[1] >= 0.8 and insult["harassment"] >= 0.8
    assert selfharm["self_harm"] >= 0.8 and threat["violence"] >= 0.8 and porn["sexual"] >= 0.8
    assert max(kill.values()) < 0.6  # a phrase list, not single words


def test_the_scorer_uses_the_server_then_falls_back(server: OpenAITestServer) -> None:
    settings = ModerationSettings(provider="openai", base_url=server.base_url, backoff_base_s=0.01,
                                  inputs_per_call=2)

    async def score(texts: list[str]) -> object:
        scorer = Scorer(settings)
        try:
            return await scorer.score(texts)
        finally:
            await scorer.aclose()

    texts = ["hello", "you zzharass", "zzviolent", "fine"]
    answered = asyncio.run(score(texts))
    assert answered.source == "openai" and server.request_count == 2  # two per request
    assert [top(s)[0] for s in answered.scores][1:3] == ["harassment", "violence"]
    assert answered.scores[1]["harassment"] == 0.93
    server.reset()
    server.default = "503"
    fallen = asyncio.run(score(texts))
    assert (fallen.source, fallen.fallback_reason) == ("local", "http_503") and len(fallen.scores) == 4
    assert server.request_count == settings.max_attempts


def test_the_environment_chooses_the_provider_and_only_then_the_openai_server() -> None:
    from configs.settings import TracemillSettings

    store = {"object_store": {"kind": "local", "local_dir": "/tmp/tm-unused"}}
    env = {"DATABASE_URL": "postgresql://a@b/c", "OPENAI_BASE_URL": "http://models.example/v1"}
    assert TracemillSettings.from_env(env, overrides=store).moderation.provider == "local"
    chosen = TracemillSettings.from_env(env | {"TRACEMILL_MODERATION_PROVIDER": "openai"}, overrides=store).moderation
    assert (chosen.provider, chosen.base_url, chosen.model) == ("openai", "http://models.example/v1",
                                                                "omni-moderation-latest")
