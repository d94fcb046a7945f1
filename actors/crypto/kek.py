"""Key-encryption keys: what wraps a workspace's data key before it is stored in `data_keys`.

Two kinds behind one small interface: a local KEK (32 bytes from the environment secret; the
data key is AES-256-GCM encrypted under it) and an AWS KMS key (KMS Encrypt / Decrypt through
boto3, so the KEK never leaves KMS). `ref` names the KEK in each stored row, so a process given
another KEK says so instead of failing on a tag.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from actors.errors import DataKeyUnavailable
from configs.encryption import EncryptionSettings, decode_kek

__all__ = ["Kek", "LocalKek", "KmsKek", "kek_from_settings"]

_NONCE = 12
_AAD = b"tracemill data key v1"


class Kek(Protocol):
    ref: str

    async def wrap(self, data_key: bytes, workspace_id: str) -> bytes: ...

    async def unwrap(self, wrapped: bytes, workspace_id: str) -> bytes: ...


class LocalKek:
    """The KEK held in this process's memory, from the environment secret."""

    def __init__(self, kek: bytes):
        self._aead = AESGCM(kek)
        # A fingerprint, not the key: 8 bytes of a hash under a fixed label.
        self.ref = "local:" + hashlib.sha256(b"tracemill kek ref\0" + kek).hexdigest()[:16]

    async def wrap(self, data_key: bytes, workspace_id: str) -> bytes:
        nonce = os.urandom(_NONCE)
        return nonce + self._aead.encrypt(nonce, data_key, _AAD + workspace_id.encode())

    async def unwrap(self, wrapped: bytes, workspace_id: str) -> bytes:
        try:
            return self._aead.decrypt(wrapped[:_NONCE], wrapped[_NONCE:], _AAD + workspace_id.encode())
        except InvalidTag:
            raise DataKeyUnavailable("a stored data key does not unwrap under this KEK (altered row?)") from None


class KmsKek:
    """An AWS KMS key: data keys are wrapped by KMS Encrypt, with the workspace as encryption
    context. boto3 is blocking, so calls run in a worker thread (a data key is unwrapped once
    per process and cached, so this is rare)."""

    def __init__(self, key_id: str, region: str | None, endpoint_url: str | None):
        import boto3  # only a deployment with a KMS key needs it loaded

        self._key_id = key_id
        self._client: Any = boto3.client("kms", region_name=region or "us-east-1", endpoint_url=endpoint_url)
        self.ref = "kms:" + key_id

    async def wrap(self, data_key: bytes, workspace_id: str) -> bytes:
        answer = await asyncio.to_thread(
            self._client.encrypt, KeyId=self._key_id, Plaintext=data_key,
            EncryptionContext={"tracemill_workspace": workspace_id},
        )
        return bytes(answer["CiphertextBlob"])

    async def unwrap(self, wrapped: bytes, workspace_id: str) -> bytes:
        try:
            answer = await asyncio.to_thread(
                self._client.decrypt, KeyId=self._key_id, CiphertextBlob=wrapped,
                EncryptionContext={"tracemill_workspace": workspace_id},
            )
        except Exception as exc:  # noqa: BLE001 - botocore's errors are many; the cause is kept
            raise DataKeyUnavailable(f"KMS could not unwrap a data key: {type(exc).__name__}") from exc
        return bytes(answer["Plaintext"])


def kek_from_settings(settings: EncryptionSettings) -> Kek | None:
    """The KEK the settings configure; None when encryption is off."""
    if settings.kek is not None:
        return LocalKek(decode_kek(settings.kek.get_secret_value()))
    if settings.kms_key_id is not None:
        return KmsKek(settings.kms_key_id, settings.kms_region, settings.kms_endpoint_url)
    return None
