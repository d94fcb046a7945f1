"""`tracemill dataset …` and `tracemill finetune …`: the training jobs from the shell.

    tracemill dataset build --config dataset.yaml      # jobs.build_dataset, in this process
    tracemill dataset show ID
    tracemill finetune start --dataset ID [--config ft.yaml] [--provider local]
    tracemill finetune resume ID | status ID | cancel ID

`build`, `start` and `resume` run the job's own code here, joined to the running cluster (its
Ray tasks spread over the cluster as under `ray job submit`); the settings are found as
`tracemill eval` finds them (RAY_ADDRESS, the state dir's cluster.json, or "auto").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import uuid
from pathlib import Path

from actors.errors import NotFound
from actors.storage import finetune_repo, training_repo
from actors.storage.postgres import connect_pool
from cluster.commands import Entry
from configs.dataset import DatasetBuildConfig
from configs.finetune import FineTuneSettings

__all__ = ["DATASET", "FINETUNE", "run_training_command"]

_STATE_DIR_HELP = "a `tracemill up` state dir (default ./.tracemill)"


def _dataset_arguments(dataset: argparse.ArgumentParser) -> None:
    ds = dataset.add_subparsers(dest="dataset_command", required=True)
    build = ds.add_parser("build", help="build a dataset now (jobs.build_dataset, in-process)")
    build.add_argument("--config", type=Path, required=True, help="the build's YAML config")
    show = ds.add_parser("show", help="a dataset's status, counts and files")
    show.add_argument("dataset_id", type=uuid.UUID)
    for parser in (build, show):
        parser.add_argument("--state-dir", help=_STATE_DIR_HELP)


def _finetune_arguments(finetune: argparse.ArgumentParser) -> None:
    ft = finetune.add_subparsers(dest="finetune_command", required=True)
    start = ft.add_parser("start", help="start a fine-tune and watch it to the end")
    start.add_argument("--dataset", type=uuid.UUID, required=True)
    start.add_argument("--config", type=Path, help="YAML: provider, model, hyperparameters")
    start.add_argument("--provider", choices=("openai", "local"),
                       help="'local': the element ranker on this cluster with Ray Train")
    resume = ft.add_parser("resume", help="continue a fine-tune whose driver stopped")
    resume.add_argument("finetune_id", type=uuid.UUID)
    for name, text in (("status", "a fine-tune's state and model"), ("cancel", "ask its driver to cancel it")):
        cmd = ft.add_parser(name, help=text)
        cmd.add_argument("finetune_id", type=uuid.UUID)
    for parser in ft.choices.values():
        parser.add_argument("--state-dir", help=_STATE_DIR_HELP)


def run_training_command(args: argparse.Namespace) -> int:
    from cluster.remote import cluster_settings  # Ray and Serve only once a command runs

    if args.command == "dataset" and args.dataset_command == "build":
        from jobs.build_dataset import build

        config = DatasetBuildConfig.from_file(args.config)  # validated before the cluster is joined
        result = build(cluster_settings(args.state_dir), config, None)
        print(json.dumps({"dataset_id": str(result.dataset_id), "status": result.status,
                          "examples": result.report["examples"], "files": result.files}, indent=2))
        return 0
    if args.command == "finetune" and args.finetune_command in ("start", "resume"):
        from jobs.finetune import execute

        ft = FineTuneSettings.from_file(args.config) if getattr(args, "config", None) else None
        return execute(cluster_settings(args.state_dir), ft, dataset_id=getattr(args, "dataset", None),
                       resume=getattr(args, "finetune_id", None), provider=getattr(args, "provider", None))
    return asyncio.run(_read(args))


async def _read(args: argparse.Namespace) -> int:
    from cluster.remote import database_settings

    pool = await connect_pool(database_settings(args.state_dir), max_size=1)
    try:
        if args.command == "dataset":
            row = await training_repo.dataset_row(pool, args.dataset_id)
            if row is None:
                raise NotFound(f"no dataset {args.dataset_id}")
            from serve_app.training_api import dataset_view

            view = dataset_view(row)
            view.pop("report")
            print(json.dumps(view, indent=2))
            return 0
        row = await finetune_repo.finetune_row(pool, args.finetune_id)
        if row is None:
            raise NotFound(f"no fine-tune {args.finetune_id}")
        if args.finetune_command == "cancel":
            await finetune_repo.request_cancel(pool, row["finetune_id"], row["org_id"])
            print(f"fine-tune {row['finetune_id']}: cancel requested (its driver acts on the next poll)")
            return 0
        model = await finetune_repo.model_for(pool, row["finetune_id"])
        print(json.dumps({k: str(row[k]) if row[k] is not None else None for k in (
            "finetune_id", "dataset_id", "status", "attempt", "provider", "base_model", "provider_job_id",
            "fine_tuned_model", "error", "updated_at")} | {"model_version": model and model["version"],
                                                 "model_id": model and str(model["model_id"])}, indent=2))
        return 0
    finally:
        await pool.close()


DATASET = Entry(_dataset_arguments, run_training_command)
FINETUNE = Entry(_finetune_arguments, run_training_command)
