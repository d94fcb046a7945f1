"""Ray Job entrypoint: fine-tune a model on a built dataset, through a provider.

    ray job submit --working-dir . -- python -m jobs.finetune --dataset <id> --config ft.yaml
    ray job submit … -- python -m jobs.finetune --dataset <id> --provider local   # Ray Train, here
    python -m jobs.finetune --resume <finetune-id>      # after the driver died: same provider job

`OPENAI_BASE_URL` and `OPENAI_API_KEY` are honoured (the config may set base_url instead, so
Azure OpenAI and compatible hosts work). Exit codes: 0 succeeded, 1 the fine-tune failed or
was cancelled, 2 bad config or input (nothing started).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

from actors.storage.finetune_repo import finetune_row
from configs.base import validated
from configs.finetune import FineTuneSettings
from configs.settings import TracemillSettings
from actors.training.finetune.run import run_finetune, stored_settings
from jobs.entrypoint import EXIT_FAILED, job_main, stored_row

__all__ = ["add_arguments", "execute", "main", "with_deployment_credentials"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--dataset", type=uuid.UUID, help="start a fine-tune on this built dataset")
    target.add_argument("--resume", type=uuid.UUID, metavar="FINETUNE_ID",
                        help="continue a fine-tune whose driver stopped (or one queued by the API)")
    parser.add_argument("--config", type=Path, help="YAML: provider, model, hyperparameters, polling")
    parser.add_argument("--provider", choices=("openai", "local"),
                        help="overrides the config's (or the deployment's) provider")
    parser.add_argument("--finetune-id", type=uuid.UUID, help="id for a new fine-tune (default: random)")


def with_deployment_credentials(ft: FineTuneSettings, deployed: FineTuneSettings) -> FineTuneSettings:
    """Stored settings never hold the API key: take the deployment's key (and host, when the
    fine-tune names none) so a fine-tune queued by the API runs with the operator's account."""
    update = {k: getattr(deployed, k) for k in ("api_key", "base_url")
              if getattr(ft, k) is None and getattr(deployed, k) is not None}
    return ft.model_copy(update=update) if update else ft


def with_provider(ft: FineTuneSettings, provider: str | None) -> FineTuneSettings:
    """The settings with another provider, validated again (the pair must make sense)."""
    if provider is None or provider == ft.provider:
        return ft
    return validated(FineTuneSettings, {**ft.model_dump(), "provider": provider}, "invalid fine-tune settings",
                     one_line=True)


def execute(settings: TracemillSettings, ft: FineTuneSettings | None, *, dataset_id: uuid.UUID | None,
            resume: uuid.UUID | None, finetune_id: uuid.UUID | None = None, provider: str | None = None) -> int:
    """Start (dataset_id) or resume a fine-tune and drive it to the end; the exit code."""
    finetune_id = resume or finetune_id or uuid.uuid4()
    if ft is None:
        ft = stored_settings(stored_row(settings, finetune_row, finetune_id, "fine-tune")) if resume \
            else settings.finetune
    if not resume:
        ft = with_provider(ft, provider)
    ft = with_deployment_credentials(ft, settings.finetune)
    print(f"fine-tune {finetune_id}: {'resuming' if resume else 'starting'} ({ft.provider} {ft.base_model})",
          flush=True)
    row = asyncio.run(run_finetune(settings, ft, finetune_id, dataset_id=dataset_id))
    print(f"fine-tune {finetune_id} {row['status']}: model {row['fine_tuned_model'] or '-'}"
          f"{'; ' + row['error'] if row['error'] and row['status'] != 'succeeded' else ''}", flush=True)
    return 0 if row["status"] == "succeeded" else EXIT_FAILED


def _prepare(args: argparse.Namespace) -> Callable[[TracemillSettings], int]:
    ft = FineTuneSettings.from_file(args.config) if args.config else None
    return lambda settings: execute(settings, ft, dataset_id=args.dataset, resume=args.resume,
                                    finetune_id=args.finetune_id, provider=args.provider)


def main(argv: Sequence[str] | None = None) -> int:
    return job_main("finetune", __doc__, argv, add_arguments=add_arguments, prepare=_prepare)


if __name__ == "__main__":
    sys.exit(main())
