"""The report of a dataset build: what was selected, what the examples hold, what training on
them would cost, and a PNG of the selected sessions' quality."""

from __future__ import annotations

import io
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from configs.dataset import DatasetBuildConfig

__all__ = ["TOKEN_ESTIMATE_NOTE", "build_report", "file_listing", "quality_plot_png"]

TOKEN_ESTIMATE_NOTE = (
    "Tokens are estimated without tokenizer files (they cannot be downloaded here): "
    "ceil(UTF-8 bytes / 4) per text, 4 per message, 3 per example, and OpenAI's tile rule for "
    "images (85 low detail, 1105 for a 1280x800 screenshot otherwise); see "
    "jobs/dataset_format.estimate_tokens. Expect about +-35% on prose, up to ~30% low on JSON.")
_BINS = 10
# What each file of a build holds, by the end of its name (most specific first).
_FILE_KINDS = (
    (".ranking.jsonl", "ranking rows, one per action step: candidates with the positive marked"),
    (".parquet", "the ranking rows as Parquet (one row per step, candidates as list<struct>; "
                 "columns documented in actors/training/dataset/parquet.py)"),
    (".jsonl", "OpenAI chat fine-tuning examples, one per action step"),
    (".png", "quality histogram of the selected sessions"),
)


def _histogram(values: Sequence[float]) -> dict[str, list[float] | list[int]]:
    counts = [0] * _BINS
    for v in values:
        counts[min(int(v * _BINS), _BINS - 1)] += 1
    return {"edges": [round(i / _BINS, 2) for i in range(_BINS + 1)], "counts": counts}


def build_report(config: DatasetBuildConfig, *, qualities: dict[str, float | None],
                 train_ids: Sequence[str], validation_ids: Sequence[str],
                 train_stats: dict[str, Any], val_stats: dict[str, Any], dropped: dict[str, int],
                 empty_sessions: int, seconds: float, tasks: int,
                 executor: str = "ray") -> dict[str, Any]:
    """`train_stats` / `val_stats` as `formats.dataset_stats` returns them (a streaming build
    never holds the examples themselves)."""
    per_epoch = train_stats["tokens"]["total"]
    scored = [q for q in qualities.values() if q is not None]
    examples = train_stats["examples"] + val_stats["examples"]
    return {
        "name": config.name,
        "sessions": {"selected": len(qualities), "train": len(train_ids),
                     "validation": len(validation_ids), "without_examples": empty_sessions},
        "examples": {"train": train_stats["examples"], "validation": val_stats["examples"],
                     "duplicates_dropped": dropped},
        "train": train_stats,
        "validation": val_stats,
        "cost": {"training_tokens_per_epoch": per_epoch, "n_epochs": config.cost.n_epochs,
                 "price_per_million_tokens": config.cost.price_per_million_tokens,
                 "estimated_usd": round(per_epoch * config.cost.n_epochs
                                        * config.cost.price_per_million_tokens / 1e6, 4)},
        "quality": {"scored_sessions": len(scored),
                    "min": min(scored, default=None), "median": statistics.median(scored) if scored else None,
                    "max": max(scored, default=None), "histogram": _histogram(scored)},
        "token_estimate": TOKEN_ESTIMATE_NOTE,
        "build": {"seconds": round(seconds, 3), "tasks": tasks, "executor": executor,
                  "max_sessions_per_task": config.sessions_per_task,
                  "task_target_seconds": config.task_target_seconds,
                  "examples_per_s": round(examples / seconds, 1) if seconds > 0 else None},
    }


def file_listing(contents: Mapping[str, tuple[int, str, int | None]]) -> dict[str, dict[str, Any]]:
    """The files of a build for its report: (bytes, content type, rows or None) by name."""
    return {name: {"bytes": size, "content_type": content_type, "rows": rows,
                   "holds": next((what for end, what in _FILE_KINDS if name.endswith(end)), None)}
            for name, (size, content_type, rows) in contents.items()}


def quality_plot_png(qualities: dict[str, float | None], validation_ids: Sequence[str],
                     min_quality: float | None, title: str) -> bytes:
    """A stacked histogram of overall quality, train and validation sessions apart."""
    import matplotlib

    matplotlib.use("Agg")  # no display on a cluster node
    import matplotlib.pyplot as plt

    val = set(validation_ids)
    train_q = [q for s, q in qualities.items() if q is not None and s not in val]
    val_q = [q for s, q in qualities.items() if q is not None and s in val]
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    try:
        ax.hist([train_q, val_q], bins=[i / _BINS for i in range(_BINS + 1)], stacked=True,
                label=[f"train ({len(train_q)})", f"validation ({len(val_q)})"],
                color=["#3b6ea8", "#e0a030"], edgecolor="white")
        if min_quality is not None:
            ax.axvline(min_quality, color="#b03030", linestyle="--", label=f"min_quality {min_quality}")
        ax.set(xlim=(0, 1), xlabel="overall quality", ylabel="sessions",
               title=f"Quality of the sessions in {title}")
        ax.legend(loc="upper left")
        fig.tight_layout()
        out = io.BytesIO()
        fig.savefig(out, format="png")
        return out.getvalue()
    finally:
        plt.close(fig)
