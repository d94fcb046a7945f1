"""Fine-tuning the ranker with Ray Train: a TorchTrainer whose workers run `train_loop` under
DDP (gloo on CPU, NCCL with `use_gpu`).

Each worker reads the same rows (an object ref), takes its shard of a per-epoch seeded
permutation (every worker gets the same number of batches, so the collectives line up) and
steps the optimizer; DDP averages the gradients. After each epoch every worker reports its
loss, and rank 0 also evaluates on the validation rows and reports a checkpoint (the model and
the optimizer state), which Ray Train persists under the run's storage path. A worker that
dies is replaced: with `FailureConfig(max_failures=…)` the whole group restarts and resumes from
the last checkpoint (`ray.train.get_checkpoint()`); a run started again under the same name and
storage does the same. Rank 0 prints progress lines (epoch, step, loss, examples/s) into the job
log and sends them to the job actor, whose events reach `finetune_events`.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray

from actors.training.dataset.ranking import RankingRow
from actors.training.evaluation.ranker_scoring import positive_rank, ranking_measures
from actors.training.ranker.model import (
    Featurizer,
    RankerModel,
    load_model,
    ranking_loss,
    save_model,
    torch,
)
from actors.training.ranker.storage import resolve_base_model, train_storage
from configs.finetune import LocalTrainSettings
from configs.settings import ObjectStoreSettings

__all__ = ["FitOutcome", "evaluate", "fit", "train_loop"]

_HOOK_DELAY_S = 5.0  # > 2 health checks of the controller: the checkpoint is registered first
_log = logging.getLogger("tracemill.ranker")


def _progress_log() -> logging.Logger:
    """Straight to the worker's stdout (the job log), once: Ray Train's patched print would
    write every line twice (to its logger and, stdout being redirected, to stdout too)."""
    if not _log.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        _log.addHandler(handler)
        _log.setLevel(logging.INFO)
        _log.propagate = False
    return _log


@dataclass(frozen=True)
class FitOutcome:
    checkpoints: list[tuple[str, dict[str, Any]]]  # (filesystem path, metrics), by epoch
    metrics: dict[str, Any]
    cancelled: bool


def _rows(ref: Any) -> list[RankingRow]:
    return [RankingRow.model_validate(r) for r in (ray.get(ref) if ref is not None else [])]


def evaluate(model: Any, featurizer: Featurizer, rows: list[RankingRow], batch_size: int = 16) -> dict[str, float]:
    """Element accuracy (top-1 is the positive), recall@5, action-type accuracy and loss."""
    if not rows:
        return {}
    ranks: list[int | None] = []
    actions = 0
    loss_sum = 0.0
    model.eval()
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            batch = featurizer.batch(rows[start:start + batch_size])
            scores, logits = model(batch)
            loss, _ = ranking_loss(scores, logits, batch)
            loss_sum += float(loss) * len(batch.positive)
            actions += int((logits.argmax(-1) == batch.action).sum())
            for i, pos in enumerate(batch.positive.tolist()):
                if pos >= 0:
                    ranks.append(positive_rank(scores[i].argsort(descending=True).tolist(), pos))
    model.train()
    out = {"val_loss": loss_sum / len(rows), "val_action_accuracy": actions / len(rows)}
    if ranks:
        measures = ranking_measures(ranks)
        out.update(val_element_accuracy=measures["recall_at_1"], val_recall_at_5=measures["recall_at_5"])
    return out


def _shard(n: int, epoch: int, seed: int, rank: int, world: int, per_worker: int) -> list[int]:
    """This worker's row indices for the epoch: a seeded permutation cycled to fill every
    worker's batches, dealt round-robin."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    perm = torch.randperm(n, generator=g).tolist()
    total = per_worker * world
    dealt = (perm * math.ceil(total / n))[:total]
    return dealt[rank::world]


class _Progress:
    """Rank 0's progress lines and events; asks the job actor whether to stop."""

    def __init__(self, actor_name: str | None, namespace: str | None, rank: int) -> None:
        self.actor, self.rank = None, rank
        if rank == 0 and actor_name:
            try:
                self.actor = ray.get_actor(actor_name, namespace=namespace)
            except ValueError:
                self.actor = None  # run without a job actor (a benchmark): lines only

    def say(self, message: str, data: dict[str, Any] | None = None) -> None:
        if self.rank != 0:
            return
        _progress_log().info(message)
        if self.actor is not None:
            self.actor.add_event.remote(message, data)

    def cancelled(self) -> bool:
        return bool(self.actor is not None and ray.get(self.actor.cancel_requested.remote()))


def _agree(flag: bool) -> bool:
    """Rank 0's answer for everyone, so all workers leave the loop at the same step."""
    if not torch.distributed.is_initialized():
        return flag
    t = torch.tensor([1.0 if flag else 0.0])
    torch.distributed.broadcast(t, src=0)
    return bool(t.item())


def _mean(value: float) -> float:
    if not torch.distributed.is_initialized():
        return value
    t = torch.tensor([value])
    torch.distributed.all_reduce(t)
    return float(t.item()) / torch.distributed.get_world_size()


def train_loop(config: dict[str, Any]) -> dict[str, Any]:
    """The function every Ray Train worker runs."""
    import ray.train
    import ray.train.torch

    local = LocalTrainSettings.model_validate(config["local"])
    store = ObjectStoreSettings.model_validate(config["object_store"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(max(1, int(local.cpus_per_worker)))
    torch.manual_seed(local.seed)
    train_rows, val_rows = _rows(config["train"]), _rows(config["validation"])
    progress = _Progress(config.get("actor"), config.get("namespace"), rank)

    start_epoch, resumed, state = 0, False, None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            model, tokenizer, meta = load_model(Path(d))
            state = torch.load(Path(d) / "train_state.pt", map_location="cpu", weights_only=False)
        start_epoch, resumed = int(meta["epoch"]), True
        progress.say(f"resumed from the checkpoint of epoch {start_epoch}", {"resumed_from_epoch": start_epoch})
    else:
        base = resolve_base_model(local, store)
        model = RankerModel(base)
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(base), local_files_only=True)
    device = ray.train.torch.get_device()
    ddp = ray.train.torch.prepare_model(model, parallel_strategy_kwargs={"find_unused_parameters": True})
    optimizer = torch.optim.AdamW(ddp.parameters(), lr=local.learning_rate)
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
    featurizer = Featurizer(tokenizer, local.max_length, local.max_candidates)
    per_worker = math.ceil(len(train_rows) / world)
    steps = math.ceil(per_worker / local.batch_size)
    metrics: dict[str, Any] = {}
    cancelled = False
    for epoch in range(start_epoch, local.epochs):
        order = _shard(len(train_rows), epoch, local.seed, rank, world, steps * local.batch_size)
        started, loss_sum = time.monotonic(), 0.0
        for step in range(steps):
            rows = [train_rows[i] for i in order[step * local.batch_size:(step + 1) * local.batch_size]]
            batch = model.to_device(featurizer.batch(rows), device)
            scores, logits = ddp(batch)
            loss, parts = ranking_loss(scores, logits, batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss_sum += float(loss.detach())
            if (step + 1) % local.log_every_steps == 0 or step + 1 == steps:
                rate = (step + 1) * local.batch_size * world / max(time.monotonic() - started, 1e-9)
                value = float(loss.detach())
                progress.say(f"epoch {epoch + 1}/{local.epochs} step {step + 1}/{steps} loss {value:.4f} "
                             f"examples/s {rate:.1f}", {"epoch": epoch + 1, "step": step + 1, "loss": value,
                                                        "examples_per_s": rate, **parts})
                if cancelled := _agree(progress.cancelled()):
                    break
        if cancelled:
            break
        seconds = time.monotonic() - started
        metrics = {"epoch": epoch + 1, "step": (epoch + 1) * steps, "train_loss": _mean(loss_sum / steps),
                   "examples_per_s": steps * local.batch_size * world / max(seconds, 1e-9),
                   "epoch_seconds": seconds}
        if rank == 0:
            metrics.update(evaluate(model, featurizer, val_rows))
            with tempfile.TemporaryDirectory(prefix="tracemill-ranker-") as d:
                save_model(model, tokenizer, Path(d), {"epoch": epoch + 1, "max_length": local.max_length,
                                                       "seed": local.seed, "base_model": local.base_model_name,
                                                       "metrics": metrics})
                torch.save({"optimizer": optimizer.state_dict()}, Path(d) / "train_state.pt")
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d),
                                 checkpoint_dir_name=f"epoch_{epoch + 1:03d}")
            progress.say(f"epoch {epoch + 1}/{local.epochs} done: " + ", ".join(
                f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, float)), {"checkpoint_metrics": metrics})
        else:
            ray.train.report(metrics)
        if local.fail_once_after_epoch == epoch + 1 and not resumed and rank == 1:
            time.sleep(_HOOK_DELAY_S)
            os._exit(1)  # the test hook: this worker dies once, after the epoch's checkpoint
    return {"metrics": metrics, "cancelled": cancelled}


def fit(train: list[dict[str, Any]], validation: list[dict[str, Any]], local: LocalTrainSettings,
        object_store: ObjectStoreSettings, run_name: str, actor: str | None = None,
        namespace: str | None = None) -> FitOutcome:
    """Train under Ray Train (blocking); the persisted checkpoints and the last metrics."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    storage_path, filesystem = train_storage(object_store)
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={"local": local.model_dump(mode="json"),
                           "object_store": object_store.model_dump(mode="json"),
                           "train": ray.put(train), "validation": ray.put(validation),
                           "actor": actor, "namespace": namespace},
        scaling_config=ScalingConfig(num_workers=local.num_workers, use_gpu=local.use_gpu,
                                     resources_per_worker={"CPU": local.cpus_per_worker}),
        torch_config=TorchConfig(backend="nccl" if local.use_gpu else "gloo"),
        run_config=RunConfig(name=run_name, storage_path=storage_path, storage_filesystem=filesystem,
                             failure_config=FailureConfig(max_failures=local.max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=local.checkpoints_to_keep)))
    result = trainer.fit()
    checkpoints = sorted(((c.path, dict(m)) for c, m in (result.best_checkpoints or [])),
                         key=lambda cm: int(cm[1].get("epoch", 0)))
    value = result.return_value if isinstance(result.return_value, dict) else {}
    return FitOutcome(checkpoints, dict(value.get("metrics") or result.metrics or {}),
                      bool(value.get("cancelled")))
