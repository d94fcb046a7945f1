"""Ray Job entrypoint: build a fine-tuning dataset from recorded sessions.

    ray job submit --working-dir . -- python -m jobs.build_dataset --config configs/dataset.example.yaml
    python -m jobs.build_dataset --dataset-id <id>     # a build queued by POST /v1/datasets
    python -m jobs.build_dataset --config … --one-process   # no Ray tasks: the same files, slower

The same code runs for `tracemill dataset build` and `POST /v1/datasets`. Exit codes: 0 built,
2 bad config or input (nothing built), 1 the build failed (its row says why).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

from actors.auth import DEFAULT_ORG_ID
from actors.storage.training_repo import dataset_row
from actors.version import code_version
from configs.dataset import DatasetBuildConfig
from configs.settings import TracemillSettings
from actors.training.dataset.build import BuildResult, run_build
from jobs.entrypoint import job_main, stored_row

__all__ = ["add_arguments", "build", "main"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="the build's YAML config")
    parser.add_argument("--dataset-id", type=uuid.UUID,
                        help="build this dataset (its stored config unless --config is given)")
    parser.add_argument("--one-process", action="store_true",
                        help="build in this process without Ray tasks (the same files, byte for byte)")


def _check(args: argparse.Namespace) -> str | None:
    return "give --config, --dataset-id, or both" if args.config is None and args.dataset_id is None else None


def _stored_config(settings: TracemillSettings, dataset_id: uuid.UUID) -> tuple[DatasetBuildConfig, uuid.UUID]:
    row = stored_row(settings, dataset_row, dataset_id, "dataset")
    return DatasetBuildConfig.build(json.loads(row["config"]), f"stored config of {dataset_id}"), row["org_id"]


def build(settings: TracemillSettings, config: DatasetBuildConfig | None,
          dataset_id: uuid.UUID | None, one_process: bool = False) -> BuildResult:
    org_id = (config.selection.org_id if config else None) or DEFAULT_ORG_ID
    if config is None:
        assert dataset_id is not None
        config, org_id = _stored_config(settings, dataset_id)
    return asyncio.run(run_build(settings, config, dataset_id or uuid.uuid4(), org_id, code_version(),
                                 one_process=one_process))


def _prepare(args: argparse.Namespace) -> Callable[[TracemillSettings], int]:
    config = DatasetBuildConfig.from_file(args.config) if args.config else None

    def work(settings: TracemillSettings) -> int:
        result = build(settings, config, args.dataset_id, args.one_process)
        counts = result.report["examples"]
        print(f"dataset {result.dataset_id} {result.status}: {counts['train']} train and "
              f"{counts['validation']} validation examples; files: "
              + ", ".join(f"{name} ({f['bytes']} B)" for name, f in result.files.items()), flush=True)
        return 0

    return work


def main(argv: Sequence[str] | None = None) -> int:
    return job_main("build_dataset", __doc__, argv, add_arguments=add_arguments, prepare=_prepare, check=_check)


if __name__ == "__main__":
    sys.exit(main())
