"""`tracemill bench model-calls`: HTTP calls and cost of the model work of N finalised sessions
(screenshot vision and step moderation) one call at a time vs through the Batch API, against
the OpenAI-compatible test server in this process. Token counts come from the server's usage
fields; prices are configs/vision.py's; a batch costs `batch_discount` of the same tokens
(OpenAI: 50 %). Moderation is free on OpenAI, so it counts calls only. Writes
results/model_calls.json."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import math
import time
from pathlib import Path
from typing import Any

import httpx

from actors.batching.batch import run_batch
from actors.openai_client import OpenAIApi
from actors.vision.openai_vision import OpenAIVision
from cluster.doubles.openai_server import OpenAITestServer
from configs.batching import BatchSettings
from configs.moderation import ModerationSettings
from configs.vision import VisionSettings

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--screenshots", type=int, default=5, help="vision calls per session")
    parser.add_argument("--steps", type=int, default=20, help="moderated steps per session")
    parser.add_argument("--batch-discount", type=float, default=0.5)
    parser.add_argument("--output", type=Path, default=Path("results/model_calls.json"))


class _Count:
    def __init__(self) -> None:
        self.calls = 0

    async def hook(self, request: httpx.Request) -> None:
        self.calls += 1


def _frame(i: int) -> bytes:
    return b"RIFF" + i.to_bytes(4, "little") + b"WEBPVP8 " + bytes(64)  # distinct bytes: the server hashes them


async def _measure(url: str, args: argparse.Namespace) -> dict[str, Any]:
    vision = VisionSettings(provider="openai", base_url=url)
    moderation = ModerationSettings(provider="openai", base_url=url)
    count = _Count()
    api = OpenAIApi(moderation, httpx.AsyncClient(event_hooks={"request": [count.hook]}), name="bench",
                    gave_up_retry_after_s=1.0)
    maker = OpenAIVision(vision)
    bodies = {f"v{s}:{k}": maker._request(_frame(s * 1000 + k), "image/webp")
              for s in range(args.sessions) for k in range(args.screenshots)}
    texts = {f"m{s}": [f"step {k} of session {s}: Add to cart" for k in range(args.steps)]
             for s in range(args.sessions)}
    out: dict[str, Any] = {}
    try:
        # One call at a time (the synchronous service): a chat call per frame, a moderation call per
        # session (its steps as one input array, up to inputs_per_call).
        started, tokens_in, tokens_out = time.monotonic(), 0, 0
        for body in bodies.values():
            reply = await api.call("vision", lambda b=body: api.client.chat.completions.create(**b))
            tokens_in += reply.usage.prompt_tokens
            tokens_out += reply.usage.completion_tokens
        vision_calls = count.calls
        for words in texts.values():
            for i in range(0, len(words), moderation.inputs_per_call):
                chunk = words[i:i + moderation.inputs_per_call]
                await api.call("moderation", lambda c=chunk: api.client.moderations.create(model=moderation.model,
                                                                                             input=c))
        out["sync"] = {"vision_calls": vision_calls, "moderation_calls": count.calls - vision_calls,
                       "tokens_in": tokens_in, "tokens_out": tokens_out,
                       "cost_usd": _cost(vision, tokens_in, tokens_out, 1.0), "seconds": time.monotonic() - started}
        # Batches: one job per kind (a line per call), polled with no wait (the server needs none).
        count.calls = 0
        started = time.monotonic()
        quick = BatchSettings(enabled=True, poll_initial_s=0.001, poll_max_s=0.001)

        async def no_wait(_s: float) -> None:
            return None

        v = await run_batch(api, "vision", "/v1/chat/completions", bodies, quick, sleep=no_wait)
        vision_calls = count.calls
        lines = {f"{sid}:{i}": {"model": moderation.model, "input": chunk}
                 for sid, words in texts.items()
                 for i, chunk in enumerate([words[j:j + moderation.inputs_per_call]
                                            for j in range(0, len(words), moderation.inputs_per_call)])}
        m = await run_batch(api, "moderation", "/v1/moderations", lines, quick, sleep=no_wait)
        out["batch"] = {"vision_calls": vision_calls, "moderation_calls": count.calls - vision_calls,
                        "tokens_in": v.tokens_in, "tokens_out": v.tokens_out,
                        "cost_usd": _cost(vision, v.tokens_in, v.tokens_out, args.batch_discount),
                        "lines": len(bodies) + len(lines), "failed_lines": len(v.failed) + len(m.failed),
                        "seconds": time.monotonic() - started}
    finally:
        await api.aclose()
    return out


def _cost(v: VisionSettings, tokens_in: int, tokens_out: int, factor: float) -> float:
    return round((tokens_in * v.price_input_per_1m + tokens_out * v.price_output_per_1m) / 1e6 * factor, 6)


def run(args: argparse.Namespace) -> int:
    with OpenAITestServer() as server:
        figures = asyncio.run(_measure(server.base_url, args))
    per100 = 100 / args.sessions
    result = {"sessions": args.sessions, "screenshots_per_session": args.screenshots,
              "steps_per_session": args.steps, "batch_discount": args.batch_discount,
              **figures, "per_100_sessions": {
                  mode: {"http_calls": math.ceil((f["vision_calls"] + f["moderation_calls"]) * per100),
                         "tokens": round((f["tokens_in"] + f["tokens_out"]) * per100),
                         "cost_usd": round(f["cost_usd"] * per100, 4)}
                  for mode, f in figures.items()}}
    s, b = result["per_100_sessions"]["sync"], result["per_100_sessions"]["batch"]
    result["ratios"] = {"calls_batch_over_sync": round(b["http_calls"] / s["http_calls"], 4),
                        "cost_batch_over_sync": round(b["cost_usd"] / s["cost_usd"], 4) if s["cost_usd"] else None}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    add_arguments(parser)
    raise SystemExit(run(parser.parse_args()))
