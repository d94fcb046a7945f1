"""`tracemill bench …`: benchmarks that print figures, each a ratio to a baseline measured in
the same run. One table; each benchmark's arguments and run live in its own module."""

from __future__ import annotations

import argparse

from cluster.commands import Command, add_commands

__all__ = ["BENCH", "add_arguments"]

BENCH: dict[str, Command] = {
    "ingest": Command("WebSocket ingest vs a no-op Serve endpoint", "cluster.bench.ingest"),
    "screenshots": Command("screenshot processing vs a multiprocessing.Pool", "cluster.bench.processing:SCREENSHOTS"),
    "finalize": Command("finalisation time of a 200-event, 40-screenshot session", "cluster.bench.processing:FINALIZE"),
    "load": Command("mixed load at N open sessions vs no-op Serve, raw upserts, Pool", "cluster.bench.load"),
    "idle": Command("server memory of an open idle WebSocket session (2,000 opened), per process role",
                    "cluster.bench.idle"),
    "faults": Command("scripted faults under a streaming load: acked, lost, duplicated, recovery",
                      "cluster.chaos.scenarios:FAULTS"),
    "spread": Command("tasks on every node of a 3-node cluster; shards after a node is removed",
                      "cluster.chaos.spread"),
    "dataset": Command("dataset build examples/s: 1 and 2 CPUs, ray job submit", "cluster.bench.dataset"),
    "capacity": Command("the capacity plan (cores, replicas, PostgreSQL volume at 1k/10k/50k recorders) "
                        "computed from results/*.json", "cluster.bench.capacity"),
    "dataset-value": Command("the local ranker trained on all vs quality-filtered sessions, and TorchTrainer "
                             "examples/s vs one process", "cluster.bench.dataset_value"),
    "badinput": Command("the bad-input corpus and schemathesis: every answer 4xx, none 5xx", "cluster.badinput.bench"),
    "bruteforce": Command("thousands of bad keys from one address: first 429, key lookups, a client's p99",
                          "cluster.bench.bruteforce"),
    "redaction": Command("worst time of every redaction regex on 256 KiB hostile strings vs the pre-fix patterns",
                         "cluster.bench.redaction"),
    "signin": Command("sign-in latency p50/p95 over HTTP vs one argon2id hash; wrong password vs unknown email; "
                      "guesses until a brute-forcer is locked out", "cluster.bench.signin"),
    "search": Command("session list and full-text search p50/p95 over 10k sessions and 1M events vs an "
                      "events-level index", "cluster.bench.search"),
    "encryption": Command("shard ingest events/s with encryption at rest on vs off, same run (goal ≥ 0.9×)",
                          "cluster.bench.encryption"),
    "model-calls": Command("HTTP calls and cost of vision, cards and moderation for N sessions, one call each vs the "
                           "Batch API, against the OpenAI-compatible test server", "cluster.bench.model_calls"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """A group: the benchmark chosen from BENCH is the command that runs."""
    add_commands(parser, BENCH, dest="which")
