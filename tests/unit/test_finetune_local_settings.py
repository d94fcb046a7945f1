"""The local provider's settings and its preflight: what cannot train is refused with one clear
message before any work (no Ray, no database)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from actors.errors import InvalidInput
from actors.training.finetune.local_provider import preflight
from configs.base import SettingsError, validated
from configs.finetune import FineTuneSettings
from jobs.finetune import with_provider


def settings(**local: object) -> FineTuneSettings:
    return FineTuneSettings(provider="local", local=local)


def dataset(files: dict, counts: dict) -> dict:
    return {"dataset_id": "d-1", "files": json.dumps(files), "counts": json.dumps(counts)}


RANKED = dataset({"train.ranking.jsonl": {}}, {"ranking": {"train": {"rows": 30, "rows_with_positive": 28}}})


def test_defaults_name_the_packaged_encoder_and_the_provider_switch_revalidates() -> None:
    ft = settings()
    assert (ft.base_model, ft.local.epochs, ft.local.use_gpu) == ("all-MiniLM-L6-v2", 3, False)
    assert FineTuneSettings().base_model == FineTuneSettings().model  # openai: the snapshot it tunes
    assert with_provider(FineTuneSettings(), "local").provider == "local"
    assert with_provider(ft, None) is ft


@pytest.mark.parametrize("local, field", [
    ({"epochs": 0}, "local.epochs"), ({"num_workers": 0}, "local.num_workers"),
    ({"max_length": 4}, "local.max_length"), ({"batch": 3}, "local.batch"),
])
def test_bad_numbers_name_their_field(local: dict, field: str) -> None:
    with pytest.raises(SettingsError, match=field):
        validated(FineTuneSettings, {"provider": "local", "local": local}, "invalid", one_line=True)


def test_preflight_refuses_a_missing_base_model_and_a_dataset_without_candidates(tmp_path: Path) -> None:
    preflight(settings(), RANKED)  # the packaged model and ranking rows: fine
    with pytest.raises(InvalidInput, match="no such directory"):
        preflight(settings(base_model=str(tmp_path / "nope")), RANKED)
    with pytest.raises(InvalidInput, match="holds no transformers model"):
        preflight(settings(base_model=str(tmp_path)), RANKED)
    for ds in (dataset({"train.jsonl": {}}, {"train_examples": 40}),
               dataset({"train.ranking.jsonl": {}}, {"ranking": {"train": {"rows": 5, "rows_with_positive": 0}}})):
        with pytest.raises(InvalidInput, match="no ranking rows with a positive candidate") as err:
            preflight(settings(), ds)
        assert err.value.code == "dataset_without_candidates"
