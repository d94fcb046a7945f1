"""`tracemill bench badinput`: the bad-input corpus and a schemathesis run against a private
local stack, the figure a table of the corpus by category and route (requests, 4xx, 5xx,
other) and a line for schemathesis (operations, cases, server errors).

Everything stays on 127.0.0.1 and is bounded: the corpus is a fixed list, schemathesis has an
example budget per operation and a wall-clock deadline, and the stack is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg

from actors.auth import create_key, pepper_of
from cluster.badinput.fuzz import FuzzResult, run_schemathesis
from cluster.badinput.run import CorpusResult, format_table, run_corpus
from cluster.local import LocalStack

__all__ = ["bench_bad_input", "corpus_keys", "fuzz_line"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def corpus_keys(dsn: str, pepper: bytes) -> tuple[dict[str, str], str]:
    """One key per scope in a fresh organisation (so the row counts see only the corpus), and
    one key with every scope for schemathesis."""
    org = uuid.uuid4()
    pool = await asyncpg.create_pool(dsn, min_size=0, max_size=1)
    try:
        await pool.execute("INSERT INTO organizations (org_id, name) VALUES ($1, $2)", org, f"bad-input-{org}")
        keys = {scope: (await create_key(pool, scopes=[scope], org_id=org, name="bad-input", pepper=pepper))[1]
                for scope in ("ingest", "read", "admin")}
        everything = (await create_key(pool, scopes=["ingest", "read", "admin"], org_id=org, name="fuzz",
                                       pepper=pepper))[1]
    finally:
        await pool.close()
    return keys, everything


def fuzz_line(fuzz: FuzzResult) -> str:
    return (f"schemathesis: {fuzz.operations} operations, {fuzz.cases} cases, "
            f"{len(fuzz.server_errors)} server errors, {len(fuzz.schema_mismatches)} response-schema mismatches"
            f" ({fuzz.seconds:.0f} s)")


def _record(corpus: CorpusResult, fuzz: FuzzResult | None, args: argparse.Namespace) -> dict[str, Any]:
    return {
        "benchmark": "badinput",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "params": {"max_examples": args.max_examples, "fuzz_deadline_s": args.fuzz_deadline},
        "corpus": {"requests": len(corpus.outcomes), "seconds": corpus.seconds, "ready_after": corpus.ready_after,
                   "rows_before": corpus.rows_before, "rows_after": corpus.rows_after, "table": corpus.table(),
                   "failures": [o.model_dump() for o in corpus.failures]},
        "schemathesis": None if fuzz is None else fuzz.model_dump(),
    }


def bench_bad_input(args: argparse.Namespace) -> int:
    fuzz: FuzzResult | None = None
    with tempfile.TemporaryDirectory(prefix="tracemill-bench-") as state:
        stack = LocalStack(Path(state), port=_free_port())
        try:
            stack.start()
            assert stack.settings is not None
            dsn = stack.settings.database.url.get_secret_value()
            keys, everything = asyncio.run(corpus_keys(dsn, pepper_of(stack.settings.auth)))
            print("running the bad-input corpus", file=sys.stderr, flush=True)
            corpus = run_corpus(stack.endpoint, keys, dsn)
            if args.max_examples > 0:
                print("running schemathesis", file=sys.stderr, flush=True)
                fuzz = run_schemathesis(stack.endpoint, everything, max_examples=args.max_examples,
                                        deadline_s=args.fuzz_deadline)
        finally:
            stack.stop()
    print(format_table(corpus))
    print(f"\nrows before/after: {corpus.rows_before} / {corpus.rows_after}; ready afterwards: {corpus.ready_after};"
          f" {corpus.seconds:.1f} s")
    for failure in corpus.failures:
        print(f"FAILED {failure.label}: {failure.problem}")
    if fuzz is not None:
        print(fuzz_line(fuzz))
        for finding in fuzz.server_errors:
            print(f"SERVER ERROR {finding.operation} {finding.status}: {finding.curl}")
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(_record(corpus, fuzz, args), indent=2) + "\n")
        print(f"wrote {args.output}", file=sys.stderr)
    return 0 if corpus.ok and (fuzz is None or not fuzz.server_errors) else 1
