"""Ray Job: evaluate a model on a dataset's validation split and store the accuracies.

    ray job submit --working-dir . -- python -m jobs.evaluate \\
        --dataset <dataset id> --model <model id> [--provider openai] [--config eval.yaml] \\
        [--limit N] [--concurrency N]
    … --model local:<model id>    a local ranker of the registry (local:base: the untrained
                                  base encoder), scored on validation.ranking.jsonl

The settings (file, then flags) are validated before anything else: a bad value is one line
on stderr and exit code 2, with no cluster joined and no row written. The model's host comes
from the config's base_url/api_key or OPENAI_BASE_URL/OPENAI_API_KEY (pass them to a Ray job
with `--runtime-env-json '{"env_vars": {...}}'`). Progress goes to the job's log; at the end
the metrics and the evaluation id are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from actors.training.evaluation.evaluator import EvalReport, evaluate_dataset
from configs.evaluation import EvaluationSettings, load_evaluation_settings
from configs.settings import TracemillSettings
from jobs.entrypoint import job_main, whole_number

__all__ = ["add_arguments", "format_report", "main", "run", "settings_from_args"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options shared by this job and `tracemill eval run`."""
    parser.add_argument("--dataset", required=True, help="the dataset id (a succeeded build)")
    parser.add_argument("--model", required=True, help="the model id its provider serves, or "
                        "local:<model id> / local:base for a ranker of this cluster")
    parser.add_argument("--provider", default=None, help="'openai' (any compatible host) or 'local' "
                        "(default: local for a local: model)")
    parser.add_argument("--config", type=Path, help="YAML with an `evaluation:` mapping")
    parser.add_argument("--limit", type=whole_number(1), help="evaluate the first N examples only")
    parser.add_argument("--concurrency", type=whole_number(1), help="requests in flight at once")


def settings_from_args(args: argparse.Namespace) -> EvaluationSettings:
    """Config file first, flags over it; SettingsError (one line) when invalid."""
    return load_evaluation_settings(args.config, {
        "model": args.model, "provider": args.provider, "max_examples": args.limit,
        "concurrency": args.concurrency})


def _pct(value: Any) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def format_report(report: EvalReport) -> str:
    m = report.metrics
    lines = [
        f"evaluation {report.eval_id}",
        f"  model                 {report.model}",
        f"  dataset               {report.dataset_id}",
        f"  examples              {m['examples']} ({m['answered']} answered, "
        f"{sum(report.details.get('errors', {}).values())} without reply)",
        f"  step accuracy         {_pct(m['step_accuracy'])}",
        f"  element accuracy      {_pct(m['element_accuracy'])}",
        f"  action-type accuracy  {_pct(m['action_type_accuracy'])}",
        f"  value accuracy        {_pct(m['value_accuracy'])}",
    ]
    if ranking := m.get("ranking"):
        lines.append("  ranker recall@1/5/10  " + " / ".join(
            _pct(ranking.get(f"recall_at_{k}")) for k in (1, 5, 10)) + f" of {ranking['ranked_steps']} steps")
    for kind, sub in m["per_action"].items():
        lines.append(f"    {kind:10} {sub['examples']:6} examples  step {_pct(sub['step_accuracy'])}")
    lines.append(f"  throughput            {report.details.get('examples_per_s', 0):.2f} examples/s")
    return "\n".join(lines)


def run(settings: TracemillSettings, ev: EvaluationSettings, dataset_id: str) -> int:
    report = asyncio.run(evaluate_dataset(settings, ev, dataset_id))
    print(format_report(report), flush=True)
    print(f"eval_id={report.eval_id}", flush=True)
    return 0


def _prepare(args: argparse.Namespace) -> Callable[[TracemillSettings], int]:
    ev = settings_from_args(args)
    return lambda settings: run(settings, ev, args.dataset)


def main(argv: Sequence[str] | None = None) -> int:
    return job_main("evaluate", __doc__, argv, add_arguments=add_arguments, prepare=_prepare)


if __name__ == "__main__":
    sys.exit(main())
