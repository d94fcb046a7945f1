"""Typed settings, one model per area, validated once at start-up.

They are built in the driver (`tracemill up`, a job entrypoint, a test) or in the Serve app
builder, and passed explicitly into `.bind()` / `.remote()`. No module-level singletons:
a Ray worker must never read settings from its own environment behind the driver's back.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

__all__ = [
    "DatabaseSettings",
    "ObjectStoreSettings",
    "IngestLimits",
    "ShardSettings",
    "AuthSettings",
    "TracemillSettings",
    "SettingsError",
    "load_yaml",
    "describe_validation_error",
    "CONFIG_DIR",
]

CONFIG_DIR = Path(__file__).resolve().parent


class SettingsError(ValueError):
    """Settings or a config file that do not validate; the message names every problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseSettings(_Strict):
    url: SecretStr = Field(description="asyncpg DSN; unix-socket DSNs (host=/path) work too")
    pool_min: int = Field(1, ge=0, le=100)
    pool_max: int = Field(4, ge=1, le=100)
    connect_timeout_s: float = Field(5.0, gt=0, le=120)
    command_timeout_s: float = Field(30.0, gt=0, le=600)


class ObjectStoreSettings(_Strict):
    kind: Literal["local", "s3"] = "local"
    local_dir: Path | None = None
    bucket: str | None = None
    region: str | None = None
    endpoint_url: str | None = Field(None, description="S3-compatible endpoint (MinIO, R2, moto)")
    prefix: str = ""
    server_side_encryption: str | None = None
    storage_class: str | None = None

    @model_validator(mode="after")
    def _check_kind(self) -> "ObjectStoreSettings":
        if self.kind == "local" and self.local_dir is None:
            raise ValueError("object_store.local_dir is required when kind is 'local'")
        if self.kind == "s3" and not self.bucket:
            raise ValueError("object_store.bucket is required when kind is 's3'")
        return self


class IngestLimits(_Strict):
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    max_frame_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    max_events_per_batch: int = Field(1000, ge=1, le=100_000)
    max_event_bytes: int = Field(512 * 1024, ge=256)
    max_string_chars: int = Field(8192, ge=16)
    max_html_chars: int = Field(256 * 1024, ge=1024)
    max_metadata_bytes: int = Field(16 * 1024, ge=256)
    max_screenshot_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    max_screenshot_pixels: int = Field(40_000_000, ge=10_000)
    ws_auth_timeout_s: float = Field(5.0, gt=0, le=60)


class ShardSettings(_Strict):
    count: int = Field(4, ge=1, le=1024)
    num_cpus: float = Field(0.1, gt=0, le=8)
    namespace: str = "tracemill"
    commit_window_ms: float = Field(2.0, ge=0, le=1000)
    max_batch_events: int = Field(20_000, ge=1)
    max_inflight_events: int = Field(100_000, ge=1)
    slow_down_ms: int = Field(250, ge=1)
    commit_attempts: int = Field(4, ge=1, le=20)
    pool_max: int = Field(2, ge=1, le=32)


class AuthSettings(_Strict):
    cache_ttl_s: float = Field(30.0, ge=0, le=3600)


class TracemillSettings(_Strict):
    database: DatabaseSettings
    object_store: ObjectStoreSettings
    ingest: IngestLimits = IngestLimits()
    shards: ShardSettings = ShardSettings()
    auth: AuthSettings = AuthSettings()

    @classmethod
    def build(cls, data: Mapping[str, Any]) -> "TracemillSettings":
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise SettingsError(describe_validation_error(exc)) from None

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
    ) -> "TracemillSettings":
        """Settings from the documented environment variables, then explicit overrides."""
        env = os.environ if env is None else env
        data: dict[str, Any] = {"database": {}, "object_store": {}}
        if env.get("DATABASE_URL"):
            data["database"]["url"] = env["DATABASE_URL"]
        bucket = env.get("TRACEMILL_S3_BUCKET")
        if bucket:
            data["object_store"] = {
                "kind": "s3",
                "bucket": bucket,
                "region": env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION"),
                "endpoint_url": env.get("AWS_ENDPOINT_URL"),
                "prefix": env.get("TRACEMILL_S3_PREFIX", ""),
            }
        if env.get("TRACEMILL_SHARDS"):
            data["shards"] = {"count": env["TRACEMILL_SHARDS"]}
        _deep_merge(data, dict(overrides or {}))
        return cls.build(data)

    def to_args(self) -> dict[str, Any]:
        """Plain JSON-able dict with secrets revealed: for Serve config `args` and runtime envs."""
        data = self.model_dump(mode="json")
        data["database"]["url"] = self.database.url.get_secret_value()
        return data


def load_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping, turning every failure into a SettingsError that names the file."""
    try:
        loaded = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise SettingsError(f"config file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise SettingsError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(loaded, dict):
        raise SettingsError(f"{path}: expected a mapping at the top level")
    return loaded


def describe_validation_error(exc: ValidationError, heading: str = "invalid settings") -> str:
    """One line per problem, each naming the field: what every settings loader reports."""
    lines = [f"{heading} ({exc.error_count()} problem(s)):"]
    for err in exc.errors(include_url=False, include_input=False):
        where = ".".join(str(p) for p in err["loc"]) or "(root)"
        lines.append(f"  {where}: {err['msg']}")
    return "\n".join(lines)


def _deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = value
