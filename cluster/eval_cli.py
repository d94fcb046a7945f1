"""`tracemill eval`: run an evaluation from the shell, and compare two models' latest results.

    tracemill eval run --dataset ID --model MODEL [--config eval.yaml] [--limit N] [--concurrency N]
    tracemill eval compare MODEL_A MODEL_B [--dataset ID]

A model is what its provider serves (`ft:gpt-4o-mini:…`) or a ranker of this cluster:
`local:<model id>` from the registry, `local:base` for the untrained base encoder; the two kinds
compare on the measures they share, and rankers also on recall@k.

`run` is the evaluation job's code (jobs/evaluate.py) in this process. Both find the
deployment's settings as a job driver does: DATABASE_URL when set, else the settings the
running cluster published (cluster.remote.cluster_settings), the cluster being RAY_ADDRESS,
the `ray_address` in the state dir's cluster.json (a `tracemill up`), or "auto".
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from actors.errors import NotFound
from actors.storage.postgres import connect_pool
from actors.storage.evaluation_repo import latest_evaluation

__all__ = ["add_arguments", "format_comparison", "run"]

_ROWS = (("step accuracy", "step_accuracy"), ("element accuracy", "element_accuracy"),
         ("action-type accuracy", "action_type_accuracy"))


def add_arguments(ev: argparse.ArgumentParser) -> None:
    from jobs.evaluate import add_arguments as add_job_arguments

    ev_sub = ev.add_subparsers(dest="eval_command", required=True)
    run_one = ev_sub.add_parser("run", help="evaluate a model now (the evaluation job, in-process)")
    add_job_arguments(run_one)
    compare = ev_sub.add_parser("compare", help="two models' latest evaluations side by side")
    compare.add_argument("model_a")
    compare.add_argument("model_b")
    compare.add_argument("--dataset", help="compare their evaluations on this dataset")
    for sub in (run_one, compare):
        sub.add_argument("--state-dir", help="a `tracemill up` state dir whose cluster.json "
                                             "names the cluster (default ./.tracemill)")


def run(args: argparse.Namespace) -> int:
    """Run `tracemill eval …`; errors of ours propagate for the CLI to print (exit 2)."""
    if args.eval_command == "run":
        from cluster.remote import cluster_settings
        from jobs.evaluate import run as run_job, settings_from_args

        ev = settings_from_args(args)  # validated before the cluster is joined
        return run_job(cluster_settings(args.state_dir), ev, args.dataset)
    return asyncio.run(_compare(args))


async def _compare(args: argparse.Namespace) -> int:
    from cluster.remote import database_settings  # Ray only when DATABASE_URL is unset

    pool = await connect_pool(database_settings(args.state_dir))
    try:
        a = await latest_evaluation(pool, args.model_a, args.dataset)
        if a is None:
            raise NotFound(_missing(args.model_a, args.dataset))
        # Like with like: B on A's dataset unless that does not exist.
        b = await latest_evaluation(pool, args.model_b, args.dataset or a["dataset_id"])
        if b is None and args.dataset is None:
            b = await latest_evaluation(pool, args.model_b)
        if b is None:
            raise NotFound(_missing(args.model_b, args.dataset))
    finally:
        await pool.close()
    print(format_comparison(a, b))
    return 0


def _missing(model: str, dataset: str | None) -> str:
    where = f" on dataset {dataset}" if dataset else ""
    return f"no succeeded evaluation of model {model!r}{where}"


def _pct(value: Any) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _diff(a: Any, b: Any) -> str:
    return "" if a is None or b is None else f"{(b - a) * 100:+.1f} pp"


def format_comparison(a: dict[str, Any], b: dict[str, Any]) -> str:
    """Two evaluation rows side by side, with B minus A in percentage points."""
    width = max(24, len(a["model"]) + 2, len(b["model"]) + 2)

    def row(label: str, left: Any, right: Any, diff: str = "") -> str:
        return f"{label:22} {str(left):{width}} {str(right):{width}} {diff}".rstrip()

    lines = [row("", "A", "B", "B - A"), row("model", a["model"], b["model"]),
             row("eval id", str(a["eval_id"])[:8], str(b["eval_id"])[:8]),
             row("dataset", a["dataset_name"], b["dataset_name"]),
             row("dataset id", str(a["dataset_id"])[:8], str(b["dataset_id"])[:8]),
             row("examples", a["examples"], b["examples"], f"{b['examples'] - a['examples']:+d}"),
             row("answered", a["answered"], b["answered"], f"{b['answered'] - a['answered']:+d}")]
    lines += [row(label, _pct(a[key]), _pct(b[key]), _diff(a[key], b[key])) for label, key in _ROWS]
    rank_a, rank_b = a["details"].get("ranking") or {}, b["details"].get("ranking") or {}
    if rank_a or rank_b:  # a chat model ranks nothing: its column stays "-"
        for k in (1, 5, 10):
            ra, rb = rank_a.get(f"recall_at_{k}"), rank_b.get(f"recall_at_{k}")
            lines.append(row(f"ranker recall@{k}", _pct(ra), _pct(rb), _diff(ra, rb)))
    per_a, per_b = a["details"].get("per_action", {}), b["details"].get("per_action", {})
    lines.append("step accuracy by action type")
    for kind in sorted(set(per_a) | set(per_b)):
        sa, sb = (per_a.get(kind) or {}).get("step_accuracy"), (per_b.get(kind) or {}).get("step_accuracy")
        n = (per_a.get(kind) or per_b.get(kind) or {}).get("examples", 0)
        lines.append(row(f"  {kind} ({n})", _pct(sa), _pct(sb), _diff(sa, sb)))
    if a["dataset_id"] != b["dataset_id"]:
        lines.append("note: different datasets; pass --dataset to compare like with like")
    return "\n".join(lines)
