"""Typed settings, one model per area, validated once at start-up.

They are built in the driver (`tracemill up`, a job entrypoint, a test) or in the Serve app
builder, and passed explicitly into `.bind()` / `.remote()`. No module-level singletons:
a Ray worker must never read settings from its own environment behind the driver's back.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    model_validator,
)

from configs.base import CONFIG_DIR, SettingsError, describe_validation_error, load_yaml, validated
from configs.cards import CardSettings, SentimentSettings
from configs.deletion import DeletionSettings
from configs.retention import RetentionSettings, ScheduleSettings
from configs.finetune import FineTuneSettings
from configs.limits import QuotaSettings, RateLimitSettings
from configs.live import LiveSettings
from configs.batching import BatchSettings
from configs.moderation import ModerationSettings
from configs.openai import openai_from_env
from configs.pipeline import DEFAULT_PIPELINE_FILE, PipelineSettings
from configs.processing import ProcessingSettings
from configs.encryption import EncryptionSettings, encryption_from_env
from configs.secrets import SECRETS_FILE_ENV, merge_secrets, read_secrets_file, secrets_file_named, split_secrets
from configs.security import SecuritySettings, security_from_env
from configs.accounts import AccountSettings

__all__ = [
    "CLUSTER_ADDRESS_ENV",
    "CONFIG_DIR",
    "AuthSettings",
    "DatabaseSettings",
    "IngestLimits",
    "ObjectStoreSettings",
    "SettingsError",
    "ShardSettings",
    "TracemillSettings",
    "describe_validation_error",
    "job_cluster_address",
    "load_yaml",
    "secret_from_env",
]

# Where a job driver's submitter says the driver's cluster is (job_cluster_address).
CLUSTER_ADDRESS_ENV = "TRACEMILL_RAY_ADDRESS"


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
    # S3 server-side encryption, on unless turned off: "AES256" (SSE-S3), "aws:kms", or None
    # ("none" in TRACEMILL_S3_SSE) for S3-compatible servers without it.
    server_side_encryption: Literal["AES256", "aws:kms", "aws:kms:dsse"] | None = "AES256"
    storage_class: str | None = Field(None, description="e.g. INTELLIGENT_TIERING for archives")
    # Objects above this size (archives) go to S3 in parts; S3's minimum part is 5 MiB.
    multipart_threshold_bytes: int = Field(16 * 1024 * 1024, ge=5 * 1024 * 1024)

    @model_validator(mode="after")
    def _check_kind(self) -> ObjectStoreSettings:
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
    # Keys are stored as HMAC-SHA256(pepper, key): a secret like the DSN, never in the database,
    # Ray's KV store or the Serve config. None: this process cannot issue or check keys.
    pepper: SecretStr | None = Field(None, min_length=32, description="TRACEMILL_KEY_PEPPER(_FILE)")


class TracemillSettings(_Strict):
    database: DatabaseSettings
    object_store: ObjectStoreSettings
    ingest: IngestLimits = IngestLimits()
    shards: ShardSettings = ShardSettings()
    auth: AuthSettings = AuthSettings()
    limits: RateLimitSettings = RateLimitSettings()  # per ingress replica: configs/limits.py
    quotas: QuotaSettings = QuotaSettings()
    processing: ProcessingSettings = ProcessingSettings()
    pipeline: PipelineSettings = PipelineSettings()
    # The deployment's fine-tune provider: where POST /v1/finetunes sends datasets, and the
    # key it uses; an API caller picks only the model and hyperparameters, never the host.
    finetune: FineTuneSettings = FineTuneSettings()
    security: SecuritySettings = SecuritySettings()
    # Live updates (GET /v1/live): stream length, keep-alives, catch-up, log retention (configs/live.py).
    live: LiveSettings = LiveSettings()
    # People's accounts: argon2id, access/refresh tokens, sign-in limits (configs/accounts.py).
    accounts: AccountSettings = AccountSettings()
    # Session cards (title, caption, contact sheet) and typed-text sentiment (configs/cards.py).
    cards: CardSettings = CardSettings()
    sentiment: SentimentSettings = SentimentSettings()
    # Moderation of training data: provider, model, default thresholds (configs/moderation.py).
    moderation: ModerationSettings = ModerationSettings()
    # Calls that are not urgent through the provider's Batch API (configs/batching.py).
    batching: BatchSettings = BatchSettings()
    # Deleted sessions and recorders: the grace period before the purge (configs/deletion.py).
    deletion: DeletionSettings = DeletionSettings()
    # Retention periods' defaults and the daily schedule of retention + purge (configs/retention.py).
    retention: RetentionSettings = RetentionSettings()
    schedule: ScheduleSettings = ScheduleSettings()
    # Encryption at rest of event values: the KEK (a secret) and its scope (configs/encryption.py).
    encryption: EncryptionSettings = EncryptionSettings()
    # Our loggers' level in every process (actors.logs.setup_logging); TRACEMILL_LOG_LEVEL.
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @classmethod
    def build(cls, data: Mapping[str, Any]) -> TracemillSettings:
        return validated(cls, data)

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
    ) -> TracemillSettings:
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
                "server_side_encryption": _sse(env.get("TRACEMILL_S3_SSE")),
                "storage_class": env.get("TRACEMILL_S3_STORAGE_CLASS") or None,
            }
        if env.get("TRACEMILL_SHARDS"):
            data["shards"] = {"count": env["TRACEMILL_SHARDS"]}
        pepper = secret_from_env(env, "TRACEMILL_KEY_PEPPER")
        if pepper:
            data["auth"] = {"pepper": pepper}
        data["pipeline"] = PipelineSettings.from_file(
            env.get("TRACEMILL_PIPELINE_CONFIG") or DEFAULT_PIPELINE_FILE
        ).model_dump()
        vision = _vision_from_env(env)
        if vision:
            data["processing"] = {"vision": vision}
        finetune = _finetune_from_env(env)
        if finetune:
            data["finetune"] = finetune
        for section in ("cards", "sentiment", "moderation"):
            if found := _model_from_env(env, section):
                data[section] = found
        if token_key := secret_from_env(env, "TRACEMILL_TOKEN_KEY"):
            data["accounts"] = {"token_key": token_key}
        if security := security_from_env(env):
            data["security"] = security
        if encryption := encryption_from_env(env, secret_from_env(env, "TRACEMILL_ENCRYPTION_KEK")):
            data["encryption"] = encryption
        if env.get("TRACEMILL_LOG_LEVEL"):
            data["log_level"] = env["TRACEMILL_LOG_LEVEL"].upper()
        _deep_merge(data, dict(overrides or {}))
        return cls.build(data)

    def to_args(self) -> dict[str, Any]:
        """Plain JSON-able dict with secrets revealed: for tests and in-process callers only;
        what leaves the process for Ray is `public_args()` (configs/secrets.py)."""
        public, secrets = split_secrets(self)
        return merge_secrets(public, secrets)

    def public_args(self) -> dict[str, Any]:
        """JSON-able dict without any secret: what may go into Serve's `args` and Ray's KV store."""
        return split_secrets(self)[0]

    def secret_values(self) -> dict[str, str]:
        """{dotted path: value} of every secret that is set: what the secrets file holds."""
        return split_secrets(self)[1]

    @classmethod
    def with_secrets(
        cls, public: Mapping[str, Any], env: Mapping[str, str] | None = None, secrets_file: str | None = None
    ) -> TracemillSettings:
        """`public` (public_args of a deployment) completed with the secrets this process is
        given: the secrets file its environment or the deployment names, else the documented
        variables of its own environment (DATABASE_URL, OPENAI_API_KEY, ...: a KubeRay pod)."""
        env = os.environ if env is None else env
        found = secrets_file_named(env, secrets_file)
        if found is not None:
            return cls.build(merge_secrets(public, read_secrets_file(found)))
        if (env.get(SECRETS_FILE_ENV) or secrets_file) and not env.get("DATABASE_URL"):
            raise SettingsError(
                f"the secrets file {env.get(SECRETS_FILE_ENV) or secrets_file} is not on this node and "
                "DATABASE_URL is not set here: give every node the file or the variables")
        return cls.from_env(env, public)


def job_cluster_address(env: Mapping[str, str] | None = None) -> str:
    """The Ray cluster a job driver joins. Ray's job supervisor gives each driver RAY_ADDRESS
    from /tmp/ray/ray_current_cluster: the cluster most recently started on the machine, which
    need not be the one running the job (two clusters on one machine: seen with the test
    suite). Submitters that know better set CLUSTER_ADDRESS_ENV."""
    env = os.environ if env is None else env
    return env.get(CLUSTER_ADDRESS_ENV) or env.get("RAY_ADDRESS") or "auto"


def _vision_from_env(env: Mapping[str, str]) -> dict[str, Any]:
    """The vision provider's settings from the standard OpenAI variables and ours."""
    names = {"TRACEMILL_VISION_PROVIDER": "provider", "TRACEMILL_VISION_MODEL": "model"}
    return openai_from_env(env) | {field: env[name] for name, field in names.items() if env.get(name)}


def _finetune_from_env(env: Mapping[str, str]) -> dict[str, Any]:
    model = env.get("TRACEMILL_FINETUNE_MODEL")
    return openai_from_env(env) | ({"model": model} if model else {})


def _model_from_env(env: Mapping[str, str], section: str) -> dict[str, Any]:
    """cards / sentiment: TRACEMILL_<SECTION>_PROVIDER and _MODEL; the OPENAI_* variables only
    once a provider is chosen (they configure vision too, and must not switch this on)."""
    prefix = f"TRACEMILL_{section.upper()}_"
    found = {f: env[prefix + f.upper()] for f in ("provider", "model") if env.get(prefix + f.upper())}
    return openai_from_env(env) | found if found else {}


def _sse(value: str | None) -> str | None:
    if not value:
        return "AES256"
    return None if value.strip().lower() in ("none", "off") else value.strip()


def secret_from_env(env: Mapping[str, str], name: str) -> str | None:
    """A secret given as NAME, or as a file named by NAME_FILE (a mounted secret)."""
    if env.get(name):
        return env[name]
    path = env.get(f"{name}_FILE")
    if not path:
        return None
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        raise SettingsError(f"{name}_FILE: cannot read {path}: {exc.strerror}") from None


def _deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = value
