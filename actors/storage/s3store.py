"""The S3 object store (boto3): AWS S3 and S3-compatible stores such as MinIO, R2 or moto.

Blocking boto3 calls run in threads; transient faults (5xx, throttling, connection errors)
become DependencyUnavailable with the server's Retry-After when it sends one.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Callable, TypeVar

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.exceptions import HTTPClientError, IncompleteReadError, NoCredentialsError
from botocore.exceptions import PartialCredentialsError

from actors.errors import ConfigError, DependencyUnavailable, NotFound, TracemillError
from actors.storage.objectstore import (
    DEFAULT_PING_TIMEOUT_S,
    MAX_KEY_CHARS,
    MiB,
    OCTET_STREAM,
    ObjectStore,
    settings_prefix,
    validate_key,
    validate_prefix,
)
from configs.settings import ObjectStoreSettings

__all__ = ["S3ObjectStore"]

T = TypeVar("T")


# --------------------------------------------------------------------------- S3

# Codes for which retrying later is the right answer (besides every 5xx).
_THROTTLE_CODES = frozenset({
    "SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded",
    "TooManyRequestsException", "RequestThrottled", "RequestTimeout", "ServiceUnavailable",
})
# Credentials or policy problems: the store is unusable until an operator fixes them.
_AUTH_CODES = frozenset({
    "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken",
    "InvalidToken", "TokenRefreshRequired", "AllAccessDisabled",
})
_MISSING_KEY_CODES = frozenset({"NoSuchKey", "NotFound", "404"})


class S3ObjectStore(ObjectStore):
    """Objects in an S3 bucket (or MinIO / R2 / moto via `endpoint_url`) under `prefix`.

    Credentials come from boto3's standard chain (environment, shared config, instance
    role). Error messages carry only the operation, the S3 error code and `describe()`.
    """

    def __init__(
        self,
        settings: ObjectStoreSettings,
        *,
        multipart_threshold_bytes: int = 64 * MiB,
        multipart_chunk_bytes: int = 16 * MiB,
        max_concurrency: int = 4,
        connect_timeout_s: float = 3.0,
        read_timeout_s: float = 30.0,
        max_attempts: int = 3,
        ping_timeout_s: float = DEFAULT_PING_TIMEOUT_S,
    ) -> None:
        if not settings.bucket:
            raise ConfigError("object_store.bucket is required for an S3 object store")
        self._bucket = settings.bucket
        prefix = settings_prefix(settings)
        self._prefix = f"{prefix}/" if prefix else ""
        self._extra: dict[str, str] = {}
        if settings.server_side_encryption:
            self._extra["ServerSideEncryption"] = settings.server_side_encryption
        if settings.storage_class:
            self._extra["StorageClass"] = settings.storage_class
        self._ping_timeout_s = ping_timeout_s
        self._transfer = TransferConfig(
            multipart_threshold=multipart_threshold_bytes,
            multipart_chunksize=multipart_chunk_bytes,
            max_concurrency=max_concurrency,
        )
        compat: dict[str, Any] = {}
        if settings.endpoint_url:
            # S3-compatible servers rarely have wildcard DNS for virtual-hosted buckets, and
            # many reject the CRC trailers botocore sends to AWS by default.
            compat = {
                "s3": {"addressing_style": "path"},
                "request_checksum_calculation": "when_required",
                "response_checksum_validation": "when_required",
            }
        # An own Session: boto3's default one is not safe to build clients from in threads.
        session = boto3.session.Session()
        where = {"region_name": settings.region, "endpoint_url": settings.endpoint_url}
        self._client: Any = session.client("s3", **where, config=Config(
            signature_version="s3v4",  # botocore presigns with SigV2 otherwise; AWS wants V4
            connect_timeout=connect_timeout_s,
            read_timeout=read_timeout_s,
            retries={"mode": "standard", "total_max_attempts": max_attempts},
            max_pool_connections=max(10, max_concurrency + 4),
            **compat,
        ))
        # A second client because /readyz needs ~2 s at most, without retries or backoff.
        # ("total_": botocore's plain max_attempts counts retries, not attempts.)
        self._ping_client: Any = session.client("s3", **where, config=Config(
            connect_timeout=ping_timeout_s,
            read_timeout=ping_timeout_s,
            retries={"mode": "standard", "total_max_attempts": 1},
            **compat,
        ))

    def describe(self) -> str:
        return f"s3://{self._bucket}/{self._prefix}".rstrip("/")

    def _full_key(self, key: str) -> str:
        full = self._prefix + validate_key(key)
        if len(full.encode()) > MAX_KEY_CHARS:
            raise ValueError(f"object key plus prefix exceeds {MAX_KEY_CHARS} bytes: {key[:80]!r}")
        return full

    async def put(self, key: str, data: bytes, content_type: str = OCTET_STREAM) -> None:
        full = self._full_key(key)
        await self._call("put", key, lambda: self._client.put_object(
            Bucket=self._bucket, Key=full, Body=data, ContentType=content_type, **self._extra
        ))

    async def put_file(self, key: str, path: Path, content_type: str) -> None:
        full = self._full_key(key)
        extra = {"ContentType": content_type, **self._extra}

        def upload() -> None:
            # upload_fileobj, unlike upload_file, lets ClientError through unwrapped.
            with open(path, "rb") as f:
                self._client.upload_fileobj(f, self._bucket, full, ExtraArgs=extra,
                                            Config=self._transfer)

        await self._call("put_file", key, upload)

    async def get(self, key: str) -> bytes:
        full = self._full_key(key)

        def read() -> bytes:
            body = self._client.get_object(Bucket=self._bucket, Key=full)["Body"]
            try:
                data: bytes = body.read()
                return data
            finally:
                body.close()

        return await self._call("get", key, read)

    async def presigned_url(self, key: str, expires_s: int) -> str:
        full = self._full_key(key)
        return await self._call("presign", key, lambda: self._client.generate_presigned_url(
            "get_object", Params={"Bucket": self._bucket, "Key": full}, ExpiresIn=expires_s))

    async def size(self, key: str) -> int | None:
        full = self._full_key(key)
        try:
            head = await self._call(
                "size", key, lambda: self._client.head_object(Bucket=self._bucket, Key=full)
            )
        except NotFound:
            return None
        return int(head["ContentLength"])

    async def delete(self, key: str) -> None:
        full = self._full_key(key)
        try:
            await self._call(
                "delete", key, lambda: self._client.delete_object(Bucket=self._bucket, Key=full)
            )
        except NotFound:
            pass  # AWS answers 204 anyway; some S3-compatible servers say NoSuchKey

    async def list(self, prefix: str) -> list[str]:
        full_prefix = self._prefix + validate_prefix(prefix)

        def collect() -> list[str]:
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self._bucket, Prefix=full_prefix
            )
            cut = len(self._prefix)
            return sorted(o["Key"][cut:] for page in pages for o in page.get("Contents", ()))

        return await self._call("list", None, collect)

    async def ping(self) -> None:
        try:
            await self._probe(lambda: self._ping_client.head_bucket(Bucket=self._bucket),
                              self._ping_timeout_s)
        except (ClientError, BotoCoreError) as exc:
            err = self._translate(exc, "ping", None)
            if not isinstance(err, DependencyUnavailable):
                err = DependencyUnavailable(err.message, retry_after_s=5.0)
            raise err from exc

    async def close(self) -> None:
        self._client.close()
        self._ping_client.close()

    async def _call(self, op: str, key: str | None, fn: Callable[[], T]) -> T:
        try:
            return await asyncio.to_thread(fn)
        except (ClientError, BotoCoreError) as exc:
            raise self._translate(exc, op, key) from exc

    def _translate(self, exc: Exception, op: str, key: str | None) -> TracemillError:
        # Codes only: S3's free text may echo request details, and botocore's messages may
        # contain the endpoint URL including any user:password in it.
        down = f"object store unavailable: {self.describe()}"
        if isinstance(exc, ClientError):
            meta = exc.response.get("ResponseMetadata", {})
            code = str(exc.response.get("Error", {}).get("Code") or "")
            status = int(meta.get("HTTPStatusCode") or 0)
            what = f"{op} failed ({code or 'HTTP'} {status})"
            if code == "NoSuchBucket" or (key is None and status == 404):
                return DependencyUnavailable(f"{down}: bucket does not exist", 30.0)
            if key is not None and (code in _MISSING_KEY_CODES or status == 404):
                return NotFound(f"object not found: {key}")
            throttled = code in _THROTTLE_CODES or status == 429
            if throttled or status >= 500:
                retry_after_s = _retry_after(meta, 2.0 if throttled else 1.0)
                return DependencyUnavailable(f"{down}: {what}", retry_after_s)
            if code in _AUTH_CODES or status in (401, 403):
                return DependencyUnavailable(f"{down}: {what}: access denied", 30.0)
            return TracemillError(f"object store rejected {op} on {self.describe()}: {what}")
        if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
            return DependencyUnavailable(f"{down}: no usable AWS credentials", 30.0)
        if isinstance(exc, (BotoConnectionError, HTTPClientError, IncompleteReadError)):
            return DependencyUnavailable(f"{down}: {op} failed ({type(exc).__name__})", 1.0)
        return TracemillError(f"object store {op} on {self.describe()}: {type(exc).__name__}")


def _retry_after(meta: dict[str, Any], default: float) -> float:
    """Honour a Retry-After header in seconds, clamped so a bad server cannot stall us."""
    value = (meta.get("HTTPHeaders") or {}).get("retry-after")
    try:
        return min(max(float(value), 0.1), 60.0) if value is not None else default
    except ValueError:
        return default
