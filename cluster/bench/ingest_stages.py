"""`tracemill bench ingest --stages`: µs per event of each stage of ingest, before and after
issue 15 item 1 (one parse per event, redaction in the ingress replicas), in one run.

The CPU stages run in this process on the load generator's frames (50 clicks, the strings of a
few pages repeating, as in `bench load`) and on frames whose text differs in every event (the
redactor's memo then misses). Each stage is timed alone over the same frames, best of
`repeats` runs, so that other work on a shared machine inflates it as little as possible:

before  ingress: decode JSON (json.loads), validate (pydantic on the decoded objects), encode
        target and payload (to_json); actor call: pickle + unpickle the rows; shard: decode,
        redact, encode again (on the shard's single loop; the pre-filter is off here, as it
        did not exist).
after   ingress: parse + validate from the bytes (one pydantic-core pass), redact (with the
        pre-filter) + encode; actor call: pickle + unpickle the rows and redaction counts.

The shard's remaining work, order, de-duplicate, group commit and ack, is the same before and
after; with a database (`--stages` inside `bench ingest`) it is measured on a SessionShard
driven in-process against the stack's PostgreSQL: CPU of this process per event, and the
commits' wall time per event.
"""

from __future__ import annotations

import asyncio
import pickle
import random
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from actors.ingest.events import parse_events
from actors.ingest.rows import encode_events
from actors.privacy.redact import Redactor
from actors.privacy.write_path import redact_batch
from cluster.bench.loadgen import EventFactory
from configs.settings import IngestLimits, TracemillSettings
from serve_app.http_io import decode_json

__all__ = ["after_stages", "before_stages", "cpu_stages", "format_stages", "load_frames", "shard_stages", "varied_frames"]

_WORDS = ("kettle", "blue", "order", "shipping", "Jane", "street", "review", "size", "colour", "gift",
          "delivery", "total", "account", "search", "results", "page", "filter", "price", "help")


def load_frames(count: int, batch: int = 50) -> list[str]:
    """The load benchmark's frames: 8 sessions' click streams."""
    factories = [EventFactory(i) for i in range(8)]
    return [factories[i % 8].frame(i * batch, batch) for i in range(count)]


def varied_frames(count: int, batch: int = 50, seed: int = 1) -> list[str]:
    """The same clicks with a title, a text and a query different in every event (some with
    digits, as prices, order numbers and dates are): every string is new to the memo."""
    rnd = random.Random(seed)
    out = []
    for frame in load_frames(count, batch):
        head, tail = frame.split('"events":[', 1)
        events = decode_json("[" + tail[:-1])
        for ev in events:
            words = " ".join(rnd.choice(_WORDS) for _ in range(rnd.randint(2, 6)))
            ev["title"] = f"{words} {rnd.randint(1, 999)}" if rnd.random() < 0.3 else words.title()
            ev["target"]["text"] = " ".join(rnd.choice(_WORDS) for _ in range(rnd.randint(1, 4)))
            ev["url"] += f"?q={rnd.choice(_WORDS)}+{rnd.choice(_WORDS)}&page={rnd.randint(1, 9)}"
        out.append(head + '"events":' + _dumps(events) + "}")
    return out


def _dumps(value: Any) -> str:
    import json

    return json.dumps(value, separators=(",", ":"))


def _best_us_per_event(fn: Callable[[Any], Any], inputs: Sequence[Any], events: int, repeats: int) -> tuple[float, list[Any]]:
    best, out = float("inf"), []
    for _ in range(repeats):
        started = time.perf_counter()
        out = [fn(x) for x in inputs]
        best = min(best, time.perf_counter() - started)
    return best / events * 1e6, out


def _fresh_redactor(prefilter: bool) -> Redactor:
    redactor = Redactor()
    redactor._scanner._prefilter = prefilter  # the "before" rows: no pre-filter existed
    return redactor


def cpu_stages(frames: list[str], limits: IngestLimits, repeats: int = 5) -> dict[str, dict[str, float]]:
    """{"before": {stage: µs/event}, "after": {...}} for these frames."""
    return {"before": before_stages(frames, limits, repeats), "after": after_stages(frames, limits, repeats)}


def before_stages(frames: list[str], limits: IngestLimits, repeats: int = 5) -> dict[str, float]:
    """The stages as they were; only functions the code before the change also has, so that
    `python -m cluster.bench.ingest_stages` can run this on a checkout of that commit."""
    events = sum(len(decode_json(f)["events"]) for f in frames)
    t = _best_us_per_event
    before: dict[str, float] = {}
    before["ingress: decode JSON"], decoded = t(decode_json, frames, events, repeats)
    before["ingress: validate"], stored = t(lambda d: parse_events(d["events"], limits), decoded, events, repeats)
    before["ingress: encode"], encoded = t(encode_events, stored, events, repeats)
    before["actor call: pickle + unpickle"], _ = t(lambda r: pickle.loads(pickle.dumps(r, 5)), encoded, events, repeats)
    # A new redactor per repeat: the memo must not carry answers from one repeat to the next.
    before["shard: decode, redact, encode"] = min(
        t(lambda r, red=_fresh_redactor(False): redact_batch(red, r), encoded, events, 1)[0] for _ in range(repeats))
    return before


def after_stages(frames: list[str], limits: IngestLimits, repeats: int = 5) -> dict[str, float]:
    from actors.ingest.frames import validate_frame

    events = sum(len(decode_json(f)["events"]) for f in frames)
    t = _best_us_per_event
    after: dict[str, float] = {}
    after["ingress: parse + validate (one pass)"], rows = t(lambda f: validate_frame(f, limits), frames, events, repeats)
    after["ingress: redact + encode"] = min(
        t(lambda r, red=_fresh_redactor(True): redact_batch(red, r), rows, events, 1)[0] for _ in range(repeats))
    batches = [redact_batch(Redactor(), r) for r in rows]
    after["actor call: pickle + unpickle"], _ = t(lambda b: pickle.loads(pickle.dumps(b, 5)), batches, events, repeats)
    return after


async def _drive_shard(settings: TracemillSettings, frames: list[str], sessions: int) -> dict[str, float]:
    from actors.auth import DEFAULT_ORG_ID
    from actors.ingest.frames import validate_frame
    from actors.ingest.shard import SessionShard

    shard = SessionShard(0, settings)
    sids = [uuid.uuid4() for _ in range(sessions)]
    for sid in sids:
        await shard.create_session(DEFAULT_ORG_ID, sid, {"type": "automated"}, b"h" * 32)
    redactor = Redactor(settings.processing.privacy)
    batches = []
    for i, frame in enumerate(frames):  # dense seqs per session, as clients send them
        rows = validate_frame(frame, settings.ingest)
        assert rows is not None
        first = (i // sessions) * len(rows)
        rows = [r._replace(seq=first + k) for k, r in enumerate(rows)]
        batches.append((sids[i % sessions], redact_batch(redactor, rows)))
    await shard.ingest(DEFAULT_ORG_ID, *batches[0])  # pool, staging table and committer up
    events = sum(len(b.events) for _, b in batches[1:])
    commit_s0 = shard._commit_seconds
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for start in range(1, len(batches), sessions):  # one frame in flight per session
        await asyncio.gather(*(_until_taken(shard, sid, b) for sid, b in batches[start:start + sessions]))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return {"shard: order, de-duplicate, commit, ack (CPU)": cpu / events * 1e6,
            "commit: PostgreSQL transactions (wall)": (shard._commit_seconds - commit_s0) / events * 1e6,
            "shard: whole (wall)": wall / events * 1e6}


async def _until_taken(shard: Any, sid: uuid.UUID, batch: Any, org_id: uuid.UUID | None = None) -> None:
    """Ingest, resending after a slow_down as a client would (admission control may shed)."""
    from actors.auth import DEFAULT_ORG_ID
    from actors.errors import Overloaded

    while True:
        try:
            await shard.ingest(org_id or DEFAULT_ORG_ID, sid, batch)
            return
        except Overloaded as exc:
            await asyncio.sleep(exc.retry_after_s)


def shard_stages(settings: TracemillSettings, frames: list[str], sessions: int = 20) -> dict[str, float]:
    return asyncio.run(_drive_shard(settings, frames, sessions))


def format_stages(table: dict[str, dict[str, dict[str, float]]]) -> str:
    """One table per workload: stage, µs/event before, after."""
    lines = []
    for workload, result in table.items():
        lines += [f"\n{workload}: µs per event", f"{'stage':<48} {'before':>8} {'after':>8}"]
        for side in ("before", "after"):
            for stage, us in result[side].items():
                cells = (f"{us:8.1f}", "") if side == "before" else ("", f"{us:8.1f}")
                lines.append(f"{stage:<48} {cells[0]:>8} {cells[1]:>8}")
        total_b = sum(result["before"].values())
        total_a = sum(result["after"].values())
        lines.append(f"{'  total of the rows above':<48} {total_b:8.1f} {total_a:8.1f}")
        for stage, us in result.get("shard", {}).items():  # the same work before and after
            lines.append(f"{stage:<48} {us:8.1f} {us:8.1f}")
    return "\n".join(lines)


def main() -> None:
    """The "before" stages of both workloads as JSON on stdout (run on the older checkout)."""
    import json

    limits = IngestLimits()
    print(json.dumps({"load generator clicks": before_stages(load_frames(200), limits),
                      "clicks with varied text": before_stages(varied_frames(200), limits)}))


if __name__ == "__main__":
    main()
