"""`tracemill bench model-calls`: HTTP calls and cost of the model work of N finalised sessions
(screenshot vision, the card, step moderation) one call at a time vs through the Batch API,
against the OpenAI-compatible test server in this process. Token counts come from the server's
usage fields; prices are the typed settings' (configs/vision.py, configs/cards.py); a batch line
costs `batching.discount` of the same call (OpenAI: 50 %). Moderation is free on OpenAI, so it
counts calls only. Two batch figures: the batcher (actors/batching/collector.py) gathering every
session's lines into one job per kind, and the worst case of one job per session and kind
(sessions finishing further apart than `batching.collect_s`), measured on `--per-session-sample`
sessions and scaled. Writes results/model_calls.json."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import time
from pathlib import Path
from typing import Any

import httpx

from actors.batching.batch import BatchOutcome, run_batch
from actors.cards.step import SYSTEM_PROMPT as CARD_PROMPT
from actors.openai_client import OpenAIApi
from actors.vision.openai_vision import OpenAIVision
from cluster.doubles.openai_server import OpenAITestServer
from configs.batching import BatchSettings
from configs.cards import CardSettings
from configs.moderation import ModerationSettings
from configs.vision import VisionSettings

__all__ = ["add_arguments", "run"]

_CHAT = "/v1/chat/completions"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--screenshots", type=int, default=5, help="vision calls per session")
    parser.add_argument("--steps", type=int, default=20, help="moderated steps per session")
    parser.add_argument("--per-session-sample", type=int, default=5,
                        help="sessions measured with a job of their own (the rest scaled from them)")
    parser.add_argument("--output", type=Path, default=Path("results/model_calls.json"))


class _Count:
    def __init__(self) -> None:
        self.calls = 0

    async def hook(self, request: httpx.Request) -> None:
        self.calls += 1


def _frame(i: int) -> bytes:
    return b"RIFF" + i.to_bytes(4, "little") + b"WEBPVP8 " + bytes(64)  # distinct bytes: the server hashes them


def _card_body(cards: CardSettings, s: int) -> dict[str, Any]:
    # The size of a real card prompt: the system prompt and ~12 key moments of facts.
    facts = {"task": f"buy a kettle {s}", "site": "shop.example", "key_moments": [
        {"seq": k * 5, "type": "click", "intent": "add_to_cart", "target": "Add to cart", "page": "shop.example/p"}
        for k in range(12)], "outcome": "kept for training with quality 0.82"}
    return {"model": cards.model, "temperature": 0, "max_tokens": cards.max_output_tokens,
            "response_format": {"type": "json_object"},
            "messages": [{"role": "system", "content": CARD_PROMPT},
                         {"role": "user", "content": json.dumps(facts, sort_keys=True)}]}


def _work(args: argparse.Namespace, url: str) -> dict[str, dict[str, dict[str, Any]]]:
    """Per session: kind -> (custom_id -> body)."""
    vision, cards, moderation = _settings(url)
    maker = OpenAIVision(vision)
    work: dict[str, dict[str, dict[str, Any]]] = {}
    for s in range(args.sessions):
        steps = [f"step {k} of session {s}: Add to cart" for k in range(args.steps)]
        chunks = [steps[j:j + moderation.inputs_per_call] for j in range(0, len(steps), moderation.inputs_per_call)]
        work[f"s{s}"] = {
            "vision": {f"s{s}:v{k}": maker.request(_frame(s * 1000 + k), "image/webp") for k in range(args.screenshots)},
            "card": {f"s{s}:card": _card_body(cards, s)},
            "moderation": {f"s{s}:m{i}": {"model": moderation.model, "input": c} for i, c in enumerate(chunks)},
        }
    return work


def _settings(url: str) -> tuple[VisionSettings, CardSettings, ModerationSettings]:
    return (VisionSettings(provider="openai", base_url=url), CardSettings(provider="openai", base_url=url),
            ModerationSettings(provider="openai", base_url=url))


def _endpoint(kind: str) -> str:
    return "/v1/moderations" if kind == "moderation" else _CHAT


async def _sync(api: OpenAIApi, count: _Count, work: dict[str, Any]) -> dict[str, Any]:
    tally = _tally()
    started = time.monotonic()
    for per_kind in work.values():
        for kind, lines in per_kind.items():
            for body in lines.values():
                before = count.calls
                if kind == "moderation":
                    await api.call(kind, lambda b=body: api.client.moderations.create(**b))
                else:
                    reply = await api.call(kind, lambda b=body: api.client.chat.completions.create(**b))
                    tally[kind]["tokens_in"] += reply.usage.prompt_tokens
                    tally[kind]["tokens_out"] += reply.usage.completion_tokens
                tally[kind]["http_calls"] += count.calls - before
    return {"kinds": tally, "seconds": round(time.monotonic() - started, 3)}


async def _batches(api: OpenAIApi, count: _Count, groups: list[dict[str, Any]], settings: BatchSettings,
                   kinds: tuple[str, ...] = ("vision", "card", "moderation")) -> dict[str, Any]:
    """One run_batch per (group, kind): a group is every session (the batcher) or one."""
    async def no_wait(_s: float) -> None:
        return None

    tally = _tally()
    started = time.monotonic()
    failed = 0
    for group in groups:
        for kind in kinds:
            lines = {cid: body for per_kind in group.values() for cid, body in per_kind[kind].items()}
            before = count.calls
            out: BatchOutcome = await run_batch(api, kind, _endpoint(kind), lines, settings, sleep=no_wait)
            tally[kind]["http_calls"] += count.calls - before
            tally[kind]["tokens_in"] += out.tokens_in
            tally[kind]["tokens_out"] += out.tokens_out
            failed += len(out.failed)
    return {"kinds": tally, "failed_lines": failed, "seconds": round(time.monotonic() - started, 3)}


def _tally() -> dict[str, dict[str, int]]:
    return {k: {"http_calls": 0, "tokens_in": 0, "tokens_out": 0} for k in ("vision", "card", "moderation")}


async def _measure(url: str, args: argparse.Namespace) -> dict[str, Any]:
    count = _Count()
    _, _, moderation = _settings(url)
    api = OpenAIApi(moderation, httpx.AsyncClient(event_hooks={"request": [count.hook]}), name="bench",
                    gave_up_retry_after_s=1.0)
    work = _work(args, url)
    quick = BatchSettings(enabled=True, kinds=("vision", "card", "moderation"), poll_initial_s=0.001,
                          poll_max_s=0.001)
    try:
        sync = await _sync(api, count, work)
        collected = await _batches(api, count, [work], quick)
        sample = list(work)[: args.per_session_sample]
        # Moderation runs per dataset build (every session's steps in one job) whatever happens to
        # finalisation: only vision and card lines can end up in a job of their own.
        alone = await _batches(api, count, [{sid: work[sid]} for sid in sample], quick, ("vision", "card"))
    finally:
        await api.aclose()
    scale = args.sessions / len(sample)
    for kind in ("vision", "card"):
        for key in alone["kinds"][kind]:
            alone["kinds"][kind][key] = round(alone["kinds"][kind][key] * scale)
    alone["kinds"]["moderation"] = dict(collected["kinds"]["moderation"])
    return {"sync": sync, "batch_collected": collected, "batch_per_session": alone}


def _priced(figures: dict[str, Any], factor: float, url: str) -> dict[str, Any]:
    vision, cards, _ = _settings(url)
    prices = {"vision": (vision.price_input_per_1m, vision.price_output_per_1m),
              "card": (cards.price_input_per_1m, cards.price_output_per_1m), "moderation": (0.0, 0.0)}
    cost = {k: round((v["tokens_in"] * prices[k][0] + v["tokens_out"] * prices[k][1]) / 1e6 * factor, 6)
            for k, v in figures["kinds"].items()}
    kinds = figures["kinds"]
    return {"http_calls": sum(v["http_calls"] for v in kinds.values()),
            "tokens": sum(v["tokens_in"] + v["tokens_out"] for v in kinds.values()),
            "cost_usd": round(sum(cost.values()), 6), "cost_by_kind": cost,
            "calls_by_kind": {k: v["http_calls"] for k, v in kinds.items()}}


def run(args: argparse.Namespace) -> int:
    discount = BatchSettings().discount
    with OpenAITestServer() as server:
        figures = asyncio.run(_measure(server.base_url, args))
        per100 = 100 / args.sessions
        priced = {mode: _priced(f, 1.0 if mode == "sync" else discount, server.base_url)
                  for mode, f in figures.items()}
    result: dict[str, Any] = {"sessions": args.sessions, "screenshots_per_session": args.screenshots,
                              "steps_per_session": args.steps, "batch_discount": discount, **figures}
    result["per_100_sessions"] = {mode: {"http_calls": math.ceil(p["http_calls"] * per100),
                                         "tokens": round(p["tokens"] * per100),
                                         "cost_usd": round(p["cost_usd"] * per100, 4),
                                         "cost_by_kind": {k: round(v * per100, 4) for k, v in p["cost_by_kind"].items()},
                                         "calls_by_kind": {k: math.ceil(v * per100) for k, v in p["calls_by_kind"].items()}}
                                  for mode, p in priced.items()}
    s = result["per_100_sessions"]["sync"]
    result["ratios"] = {f"{mode}_over_sync": {"calls": round(p["http_calls"] / s["http_calls"], 4),
                                              "cost": round(p["cost_usd"] / s["cost_usd"], 4) if s["cost_usd"] else None}
                        for mode, p in result["per_100_sessions"].items() if mode != "sync"}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"per_100_sessions": result["per_100_sessions"], "ratios": result["ratios"]}, indent=2))
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    add_arguments(parser)
    raise SystemExit(run(parser.parse_args()))
