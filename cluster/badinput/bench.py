"""`tracemill bench badinput`: the bad-input corpus and a schemathesis run against a private
local stack, the figure a table of the corpus by category and route (requests, 4xx, 5xx,
other) and a line for schemathesis (operations, cases, server errors).

Everything stays on 127.0.0.1 and is bounded: the corpus is a fixed list, schemathesis has an
example budget per operation and a wall-clock deadline, and the stack is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from pathlib import Path
from typing import Any

import asyncpg

from actors.auth import create_key, pepper_of
from cluster.badinput.fuzz import FuzzResult, run_schemathesis
from cluster.badinput.judge import CorpusResult, format_table, run_corpus
from cluster.bench.stack import private_stack
from cluster.results import write_result

__all__ = ["add_arguments", "corpus_keys", "fuzz_line", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__
    parser.add_argument("--max-examples", type=int, default=25, help="schemathesis examples per operation and mode")
    parser.add_argument("--fuzz-deadline", type=float, default=300.0, help="schemathesis wall-clock bound, seconds")
    parser.add_argument("--output", type=Path)


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
        "params": {"max_examples": args.max_examples, "fuzz_deadline_s": args.fuzz_deadline},
        "corpus": {"requests": len(corpus.outcomes), "seconds": corpus.seconds, "ready_after": corpus.ready_after,
                   "rows_before": corpus.rows_before, "rows_after": corpus.rows_after, "table": corpus.table(),
                   "failures": [o.model_dump() for o in corpus.failures]},
        "schemathesis": None if fuzz is None else fuzz.model_dump(),
    }


def run(args: argparse.Namespace) -> int:
    fuzz: FuzzResult | None = None
    with private_stack() as (stack, _):
        assert stack.settings is not None
        dsn = stack.settings.database.url.get_secret_value()
        keys, everything = asyncio.run(corpus_keys(dsn, pepper_of(stack.settings.auth)))
        print("running the bad-input corpus", file=sys.stderr, flush=True)
        corpus = run_corpus(stack.endpoint, keys, dsn)
        if args.max_examples > 0:
            print("running schemathesis", file=sys.stderr, flush=True)
            fuzz = run_schemathesis(stack.endpoint, everything, max_examples=args.max_examples,
                                    deadline_s=args.fuzz_deadline)
    print(format_table(corpus))
    print(f"\nrows before/after: {corpus.rows_before} / {corpus.rows_after}; ready afterwards: {corpus.ready_after};"
          f" {corpus.seconds:.1f} s")
    for failure in corpus.failures:
        print(f"FAILED {failure.label}: {failure.problem}")
    if fuzz is not None:
        print(fuzz_line(fuzz))
        for finding in fuzz.server_errors:
            print(f"SERVER ERROR {finding.operation} {finding.status}: {finding.curl}")
    write_result(args.output, _record(corpus, fuzz, args))
    return 0 if corpus.ok and (fuzz is None or not fuzz.server_errors) else 1
