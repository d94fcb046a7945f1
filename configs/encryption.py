"""Encryption at rest (issue 18.5): the key-encryption key (KEK) and which workspaces use it.

The KEK is a secret (a `SecretStr`, so configs/secrets.py keeps it out of Ray's KV store and
Serve's config and hands it to processes through the secrets file or their environment). It
only ever wraps and unwraps the per-workspace data keys stored in `data_keys`; event values are
encrypted under those. With no KEK (and no KMS key) nothing is encrypted and the write path is
unchanged.

Two ways to hold the KEK:
- `kek`: 32 random bytes, base64 (TRACEMILL_ENCRYPTION_KEK or TRACEMILL_ENCRYPTION_KEK_FILE);
- `kms_key_id`: an AWS KMS key (TRACEMILL_ENCRYPTION_KMS_KEY_ID, plus the usual AWS_REGION /
  AWS_ENDPOINT_URL and credentials); data keys are then wrapped by KMS Encrypt/Decrypt.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

__all__ = ["EncryptionSettings", "KEK_BYTES", "decode_kek", "encryption_from_env"]

KEK_BYTES = 32


def decode_kek(text: str) -> bytes:
    """The KEK's 32 bytes from its base64 text (standard or URL-safe, padding optional)."""
    cleaned = text.strip()
    padded = cleaned + "=" * (-len(cleaned) % 4)
    try:
        raw = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the encryption KEK must be base64 (e.g. `openssl rand -base64 32`)") from None
    if len(raw) != KEK_BYTES:
        raise ValueError(f"the encryption KEK must be {KEK_BYTES} bytes, base64 (got {len(raw)} bytes)")
    return raw


class EncryptionSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # The key-encryption key, base64 of 32 bytes. Never logged, never in the database.
    kek: SecretStr | None = Field(None, description="TRACEMILL_ENCRYPTION_KEK(_FILE)")
    # Or an AWS KMS key (id, ARN or alias) that wraps the data keys instead of `kek`.
    kms_key_id: str | None = Field(None, max_length=2048)
    kms_region: str | None = None
    kms_endpoint_url: str | None = None
    # "all": every workspace's new events are encrypted (its data key is made on first write);
    # "keyed": only workspaces given a data key (`tracemill keys rotate-data-key --workspace W`).
    scope: Literal["all", "keyed"] = "all"
    # How long a writer trusts its cached "current data key of workspace W" before asking the
    # table again: a rotation's new key is used by every writer within this time.
    active_key_ttl_s: float = Field(10.0, ge=0, le=3600)
    # Rows re-encrypted per transaction by a data key rotation.
    rotate_batch: int = Field(500, ge=1, le=100_000)

    @field_validator("kek")
    @classmethod
    def _kek(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            decode_kek(value.get_secret_value())
        return value

    @model_validator(mode="after")
    def _one_kek(self) -> EncryptionSettings:
        if self.kek is not None and self.kms_key_id is not None:
            raise ValueError("set either encryption.kek or encryption.kms_key_id, not both")
        return self

    @property
    def enabled(self) -> bool:
        return self.kek is not None or self.kms_key_id is not None


def encryption_from_env(env: Mapping[str, str], kek: str | None) -> dict[str, Any]:
    """The `encryption` section from the documented variables (`kek` read by the caller through
    its NAME / NAME_FILE helper); empty when none is set."""
    found: dict[str, Any] = {}
    if kek:
        found["kek"] = kek
    if env.get("TRACEMILL_ENCRYPTION_KMS_KEY_ID"):
        found["kms_key_id"] = env["TRACEMILL_ENCRYPTION_KMS_KEY_ID"]
        found["kms_region"] = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
        found["kms_endpoint_url"] = env.get("AWS_ENDPOINT_URL") or None
    if env.get("TRACEMILL_ENCRYPTION_SCOPE"):
        found["scope"] = env["TRACEMILL_ENCRYPTION_SCOPE"]
    return found
