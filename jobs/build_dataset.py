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
from collections.abc import Sequence
from pathlib import Path

from actors.auth import DEFAULT_ORG_ID
from actors.errors import NotFound
from actors.storage.postgres import connect_pool
from actors.storage.training_repo import dataset_row
from actors.version import code_version
from configs.dataset import DatasetBuildConfig
from configs.settings import TracemillSettings
from actors.training.dataset.build import BuildResult, run_build
from jobs.entrypoint import join_cluster, run_entrypoint

__all__ = ["main", "parse_args"]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m jobs.build_dataset", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, help="the build's YAML config")
    parser.add_argument("--dataset-id", type=uuid.UUID,
                        help="build this dataset (its stored config unless --config is given)")
    parser.add_argument("--one-process", action="store_true",
                        help="build in this process without Ray tasks (the same files, byte for byte)")
    args = parser.parse_args(argv)
    if args.config is None and args.dataset_id is None:
        parser.error("give --config, --dataset-id, or both")
    return args


async def _stored_config(settings: TracemillSettings, dataset_id: uuid.UUID
                         ) -> tuple[DatasetBuildConfig, uuid.UUID]:
    pool = await connect_pool(settings.database, max_size=1)
    try:
        row = await dataset_row(pool, dataset_id)
    finally:
        await pool.close()
    if row is None:
        raise NotFound(f"no dataset {dataset_id}")
    return DatasetBuildConfig.build(json.loads(row["config"]), f"stored config of {dataset_id}"), row["org_id"]


def build(settings: TracemillSettings, config: DatasetBuildConfig | None,
          dataset_id: uuid.UUID | None, one_process: bool = False) -> BuildResult:
    org_id = (config.selection.org_id if config else None) or DEFAULT_ORG_ID
    if config is None:
        assert dataset_id is not None
        config, org_id = asyncio.run(_stored_config(settings, dataset_id))
    return asyncio.run(run_build(settings, config, dataset_id or uuid.uuid4(), org_id, code_version(),
                                 one_process=one_process))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)

    def go() -> int:
        config = DatasetBuildConfig.from_file(args.config) if args.config else None  # before any work
        result = build(join_cluster(), config, args.dataset_id, args.one_process)
        counts = result.report["examples"]
        print(f"dataset {result.dataset_id} {result.status}: {counts['train']} train and "
              f"{counts['validation']} validation examples; files: "
              + ", ".join(f"{name} ({f['bytes']} B)" for name, f in result.files.items()), flush=True)
        return 0

    return run_entrypoint("build_dataset", go)


if __name__ == "__main__":
    sys.exit(main())
