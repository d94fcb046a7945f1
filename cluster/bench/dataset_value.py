"""`tracemill bench dataset-value`: does tracemill's quality filter make the data better?

A synthetic corpus (cluster.bench.web_corpus: shop sessions like the test shop's, clean and
degraded) is split by session: a held-out set of clean sessions, the rest for training. The
element ranker (actors.training.ranker) is trained with Ray Train (TorchTrainer, 2 workers)
on (a) every training session and (b) only those the quality filter keeps (not rejected, and
overall quality >= --min-quality, as a dataset build's `selection.min_quality` selects); both
and the untrained base encoder are scored on the held-out steps with the evaluation job's own
scoring (actors.training.evaluation.ranker_scoring): element, action-type, step accuracy and
recall@k.

The build's functions run in this process on the generated events (score_session, ranking_rows,
dedupe_rows: what a dataset build calls per session), without the ingest path; training is the
provider's `fit` on a private local Ray instance. In the same run a plain single-process PyTorch
loop over the same rows (same featurizer, model, loss, optimizer, batch) is the baseline of the
trainer's examples/s per core.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from cluster.bench.web_corpus import DEGRADATIONS, RecordedSession, corpus

__all__ = ["add_arguments", "bench_dataset_value", "run"]

_MODELS = ("base", "all", "filtered")
_LABELS = {"base": "untrained base encoder", "all": "trained on everything",
           "filtered": "trained on what the filter keeps"}
_PLOTTED = (("element_accuracy", "element"), ("recall_at_5", "recall@5"), ("recall_at_10", "recall@10"),
            ("action_type_accuracy", "action type"), ("step_accuracy", "step"))


def _progress(text: str) -> None:
    print(f"[bench dataset-value] {text}", file=sys.stderr, flush=True)


def _rows(sessions: list[RecordedSession], max_candidates: int, seen: set[str]) -> list[Any]:
    from actors.training.dataset.ranking import dedupe_rows, ranking_rows
    from configs.dataset import DatasetFormatSettings

    fmt = DatasetFormatSettings(max_candidates=max_candidates)
    rows, _ = dedupe_rows((r for s in sessions for r in ranking_rows(s.session, s.events, None, fmt)), seen)
    return rows


def _filter(sessions: list[RecordedSession], min_quality: float) -> tuple[list[RecordedSession], dict[str, Any]]:
    """The sessions a build would select: finalised `ready` (not rejected) with overall quality
    at least `min_quality`; and what the filter did to each kind of fault."""
    from actors.context.scoring import score_session

    kept, seen, dropped = [], Counter(), Counter()
    qualities: dict[str, list[float]] = {}
    for s in sessions:
        q = score_session(s.events, s.facts)
        for kind in s.degradations or ("clean",):
            seen[kind] += 1
            qualities.setdefault(kind, []).append(q.overall)
        if not q.rejected and q.overall >= min_quality:
            kept.append(s)
        else:
            for kind in s.degradations or ("clean",):
                dropped[kind] += 1
    report = {kind: {"sessions": seen[kind], "dropped": dropped[kind],
                     "mean_quality": round(sum(qualities[kind]) / len(qualities[kind]), 3)}
              for kind in ("clean", *DEGRADATIONS) if seen[kind]}
    return kept, report


def _local_settings(args: argparse.Namespace) -> Any:
    from configs.finetune import LocalTrainSettings

    return LocalTrainSettings(epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
                              max_length=args.max_length, max_candidates=args.max_candidates, num_workers=2,
                              cpus_per_worker=1, seed=args.seed, max_failures=0, checkpoints_to_keep=args.epochs,
                              log_every_steps=20)


def _train(rows: list[Any], local: Any, folder: Path, name: str) -> dict[str, Any]:
    from actors.training.ranker.train import fit
    from configs.settings import ObjectStoreSettings

    store = ObjectStoreSettings(kind="local", local_dir=str(folder / "objects"))
    started = time.monotonic()
    outcome = fit([r.model_dump(mode="json") for r in rows], [], local, store, f"bench-{name}")
    seconds = time.monotonic() - started
    if not outcome.checkpoints:
        raise RuntimeError(f"training {name} ended without a checkpoint")
    epochs = [m for _, m in outcome.checkpoints]
    return {"checkpoint": outcome.checkpoints[-1][0], "rows": len(rows), "wall_seconds": round(seconds, 1),
            "epochs": [{k: round(float(m[k]), 4) for k in ("epoch", "train_loss", "examples_per_s", "epoch_seconds")
                        if k in m} for m in epochs]}


def _evaluate(uri: str, rows: list[Any]) -> dict[str, Any]:
    from actors.training.evaluation.local import rank_rows
    from actors.training.evaluation.ranker_scoring import ranker_metrics

    started = time.monotonic()
    metrics = ranker_metrics(rows, rank_rows(uri, rows, None))
    metrics["seconds"] = round(time.monotonic() - started, 1)
    return metrics


def _single_process(rows: list[Any], local: Any, steps: int) -> dict[str, Any]:
    """The baseline: the same featurizer, model, loss and optimizer in a plain loop, one thread."""
    import torch
    from transformers import AutoTokenizer

    from actors.training.ranker.model import Featurizer, RankerModel, ranking_loss
    from actors.training.ranker.storage import resolve_base_model

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(local.seed)
        base = resolve_base_model(local)
        model = RankerModel(base)
        featurizer = Featurizer(AutoTokenizer.from_pretrained(str(base), local_files_only=True),
                                local.max_length, local.max_candidates)
        optimizer = torch.optim.AdamW(model.parameters(), lr=local.learning_rate)
        model.train()
        started = time.monotonic()
        for step in range(steps):
            start = (step * local.batch_size) % max(len(rows) - local.batch_size, 1)
            batch = featurizer.batch(rows[start:start + local.batch_size])
            loss, _ = ranking_loss(*model(batch), batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        seconds = time.monotonic() - started
    finally:
        torch.set_num_threads(threads)
    return {"steps": steps, "examples": steps * local.batch_size, "seconds": round(seconds, 1),
            "examples_per_s": round(steps * local.batch_size / seconds, 3)}


def _throughput(trained: dict[str, Any], baselines: list[dict[str, Any]]) -> dict[str, Any]:
    """The trainer's steady examples/s (epochs after the first, else the first) per core against
    the baseline's, measured right before and right after the trainer (the machine is shared:
    the mean of the two brackets the trainer's conditions)."""
    epochs = trained["epochs"][1:] or trained["epochs"]
    rate = sum(e["examples_per_s"] for e in epochs) / len(epochs)
    base = sum(b["examples_per_s"] for b in baselines) / len(baselines)
    return {"torchtrainer_2_workers_examples_per_s": round(rate, 3),
            "torchtrainer_per_core_examples_per_s": round(rate / 2, 3),
            "single_process_1_core_examples_per_s": round(base, 3),
            "ratio_per_core": round(rate / 2 / base, 3), "goal_ratio_per_core": 0.9,
            "single_process_before_and_after": baselines,
            "note": "both on CPU with one torch thread per core (TorchTrainer: 2 workers x 1 CPU, DDP over "
                    "gloo); the trainer's rate is its per-epoch examples/s after the first epoch, without "
                    "the start of the workers and the checkpoint writes; the baseline is a plain loop over "
                    "the same rows with the same batch per step"}


def _start_ray() -> None:
    """A Ray instance of this run's own that its processes know by address. Ray Train's
    placement-group cleaner asks the State API whether the run's controller lives at
    RAY_ADDRESS, or else at the cluster started last on this machine: with another Ray cluster
    started meanwhile (a test stack) it found no controller there and removed the run's workers."""
    import ray
    from ray._private.services import get_node_ip_address

    from cluster.doubles.net import free_port

    port = free_port()
    os.environ["RAY_GCS_SERVER_PORT"] = str(port)  # read when the GCS starts
    os.environ["RAY_ADDRESS"] = f"{get_node_ip_address()}:{port}"  # inherited by the raylet and workers
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)


def bench_dataset_value(args: argparse.Namespace) -> dict[str, Any]:
    import ray

    from actors.training.dataset.formats import split_by_session
    from actors.training.evaluation.local import require_train_extra

    require_train_extra("tracemill bench dataset-value")
    started = time.monotonic()
    sessions = corpus(args.clean, args.degraded, args.seed)
    clean = [s.session_id for s in sessions if not s.degradations]
    _, held_ids = split_by_session(clean, args.held_out_share, args.seed)
    held = set(held_ids)
    train_sessions = [s for s in sessions if s.session_id not in held]
    kept, filter_report = _filter(train_sessions, args.min_quality)
    seen: set[str] = set()
    held_rows = _rows([s for s in sessions if s.session_id in held], args.max_candidates, seen)
    # Held-out steps first into `seen`: a training copy of a held-out step is dropped, not leaked.
    train_all = _rows(train_sessions, args.max_candidates, set(seen))
    train_kept = _rows(kept, args.max_candidates, set(seen))
    _progress(f"corpus: {len(sessions)} sessions ({args.degraded} degraded), held out {len(held)} clean "
              f"sessions ({len(held_rows)} steps); train on {len(train_sessions)} sessions ({len(train_all)} "
              f"steps), of which the filter keeps {len(kept)} ({len(train_kept)} steps)")
    local = _local_settings(args)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="tracemill-bench-value-") as tmp:
        _progress(f"baseline: a plain PyTorch loop, one process, one thread, {args.baseline_steps} steps")
        baseline = _single_process(train_all, local, args.baseline_steps)
        _progress(f"  {baseline['examples_per_s']:.2f} examples/s")
        _start_ray()
        try:
            trained = {}
            for name, rows in (("all", train_all), ("filtered", train_kept)):
                _progress(f"training on {_LABELS[name].removeprefix('trained on ')}: {len(rows)} steps, "
                          f"{args.epochs} epoch(s), TorchTrainer with 2 workers")
                trained[name] = _train(rows, local, Path(tmp), name)
                _progress(f"  done in {trained[name]['wall_seconds']:.0f} s")
                if name == "all":
                    baselines = [baseline, _single_process(train_all, local, args.baseline_steps)]
                    _progress(f"baseline again: {baselines[-1]['examples_per_s']:.2f} examples/s")
        finally:
            ray.shutdown()
            for name in ("RAY_ADDRESS", "RAY_GCS_SERVER_PORT"):
                os.environ.pop(name, None)
        from actors.training.ranker.storage import resolve_base_model

        uris = {"base": str(resolve_base_model(local)), **{n: t["checkpoint"] for n, t in trained.items()}}
        for name in _MODELS:
            _progress(f"evaluating the {_LABELS[name]} on {len(held_rows)} held-out steps")
            results[name] = _evaluate(uris[name], held_rows)
            _progress("  " + ", ".join(f"{label} {_measure(results[name], key):.3f}" for key, label in _PLOTTED))
    for name, t in trained.items():
        results[name]["training"] = {k: v for k, v in t.items() if k != "checkpoint"}
    return {
        "corpus": {"synthetic": True, "generator": "cluster/bench/web_corpus.py", "sessions": len(sessions),
                   "clean": args.clean, "degraded": args.degraded, "seed": args.seed,
                   "held_out_clean_sessions": len(held), "held_out_steps": len(held_rows),
                   "train_sessions": len(train_sessions), "train_steps_all": len(train_all),
                   "train_sessions_kept": len(kept), "train_steps_kept": len(train_kept)},
        "quality_filter": {"min_quality": args.min_quality, "rule": "not rejected and overall >= min_quality",
                           "by_fault": filter_report},
        "settings": local.model_dump(mode="json"),
        "models": results,
        "training_throughput": _throughput(trained["all"], baselines),
        "minutes_total": round((time.monotonic() - started) / 60, 1),
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
    }


def _measure(metrics: dict[str, Any], key: str) -> float:
    value = metrics[key] if key in metrics else metrics["ranking"][key]
    return float(value or 0.0)


def plot_png(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.4), dpi=100)
    try:
        width = 0.8 / len(_MODELS)
        for i, name in enumerate(_MODELS):
            values = [_measure(result["models"][name], key) for key, _ in _PLOTTED]
            bars = ax.bar([j + i * width for j in range(len(_PLOTTED))], values, width, label=_LABELS[name])
            ax.bar_label(bars, fmt="%.2f", fontsize=7)
        c = result["corpus"]
        ax.set_xticks([j + width for j in range(len(_PLOTTED))], [label for _, label in _PLOTTED])
        ax.set(ylim=(0, 1.08), ylabel="share of held-out steps",
               title=f"Element ranker on {c['held_out_steps']} held-out steps of clean sessions "
                     f"(synthetic corpus, {c['degraded']} of {c['sessions']} sessions degraded)")
        ax.title.set_fontsize(9)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=3, fontsize=8, frameon=False)
        fig.tight_layout()
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clean", type=int, default=64, help="clean sessions in the corpus")
    parser.add_argument("--degraded", type=int, default=40, help="degraded sessions in the corpus")
    parser.add_argument("--held-out-share", type=float, default=0.3, help="share of the clean sessions held out")
    parser.add_argument("--min-quality", type=float, default=0.8, help="the filter's selection.min_quality")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=8, help="steps per worker batch")
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--max-length", type=int, default=48, help="tokens of query + candidate")
    parser.add_argument("--max-candidates", type=int, default=20, help="candidates per step, in the build "
                        "and in training (a page here has 12 to 27 elements)")
    parser.add_argument("--baseline-steps", type=int, default=12, help="steps of the single-process loop")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path)


def run(args: argparse.Namespace) -> int:
    """`tracemill bench dataset-value`: one line per model, the throughput ratio, the JSON and PNG."""
    from cluster.results import write_result

    result = bench_dataset_value(args)
    for name in _MODELS:
        m = result["models"][name]
        print(f"{_LABELS[name]:<34} " + "  ".join(f"{label} {_measure(m, key):.3f}" for key, label in _PLOTTED))
    t = result["training_throughput"]
    print(f"TorchTrainer 2 workers {t['torchtrainer_2_workers_examples_per_s']:.2f} examples/s, single process "
          f"{t['single_process_1_core_examples_per_s']:.2f}: {t['ratio_per_core']:.2f}x per core")
    write_result(args.output, {"benchmark": "dataset-value", **result})
    if args.output is not None:
        plot_png(result, args.output.with_suffix(".png"))
        print(f"wrote {args.output.with_suffix('.png')}", file=sys.stderr, flush=True)
    return 0
