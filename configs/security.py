"""HTTP security settings of the API: browser origins (CORS), HSTS, the /metrics key.

Nothing here is secret: the /metrics key is kept as its SHA-256, so these settings can travel
in Serve's config and Ray's key-value store like any other (issue 13, item 4).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from configs.base import SettingsError

__all__ = ["SecuritySettings", "hash_metrics_key", "security_from_env"]

# An origin as browsers send it: scheme://host[:port], nothing after. Extensions are
# chrome-extension://<32 letters a-p>; "*" is refused on purpose (default deny).
_WEB_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$|^https?://\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")
_EXTENSION_ORIGIN = re.compile(r"^chrome-extension://[a-p]{32}$")
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
MIN_METRICS_KEY_CHARS = 32


class SecuritySettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Browser origins allowed to call the API cross-origin (the dashboard's own origin needs no
    # entry: its requests are same-origin). Empty: every cross-origin browser call is refused.
    cors_origins: tuple[str, ...] = ()
    cors_max_age_s: int = Field(600, ge=0, le=86_400)
    # HSTS goes out on responses the server itself received over TLS; behind a TLS-terminating
    # proxy, set this so that the proxy's `X-Forwarded-Proto: https` counts too. Only for a
    # proxy that always overwrites that header: a client could otherwise set it.
    trust_forwarded_proto: bool = False
    hsts_max_age_s: int = Field(31_536_000, ge=0, le=63_072_000)
    # When set, GET /metrics needs `Authorization: Bearer <key>`; stored as the key's SHA-256.
    metrics_key_sha256: str | None = None

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, origins: tuple[str, ...]) -> tuple[str, ...]:
        for origin in origins:
            if not (_WEB_ORIGIN.match(origin) or _EXTENSION_ORIGIN.match(origin)):
                raise ValueError(
                    f"{origin[:100]!r} is not an origin: scheme://host[:port] with no path or "
                    "trailing slash, or chrome-extension://<32-letter id>; '*' is not allowed"
                )
        return tuple(dict.fromkeys(o.lower() for o in origins))

    @field_validator("metrics_key_sha256")
    @classmethod
    def _digest(cls, value: str | None) -> str | None:
        if value is not None and not _SHA256_HEX.match(value):
            raise ValueError("metrics_key_sha256 must be 64 lowercase hex digits (use TRACEMILL_METRICS_KEY)")
        return value


def hash_metrics_key(key: str) -> str:
    if len(key) < MIN_METRICS_KEY_CHARS:
        raise SettingsError(f"TRACEMILL_METRICS_KEY must be at least {MIN_METRICS_KEY_CHARS} characters")
    return hashlib.sha256(key.encode()).hexdigest()


def security_from_env(env: Mapping[str, str]) -> dict[str, Any]:
    """TRACEMILL_CORS_ORIGINS (comma-separated), TRACEMILL_TRUST_FORWARDED_PROTO (1/true),
    TRACEMILL_METRICS_KEY (hashed here, so the key itself goes nowhere)."""
    data: dict[str, Any] = {}
    if env.get("TRACEMILL_CORS_ORIGINS"):
        data["cors_origins"] = [o.strip() for o in env["TRACEMILL_CORS_ORIGINS"].split(",") if o.strip()]
    if env.get("TRACEMILL_TRUST_FORWARDED_PROTO"):
        data["trust_forwarded_proto"] = env["TRACEMILL_TRUST_FORWARDED_PROTO"].strip().lower() in ("1", "true", "yes")
    if env.get("TRACEMILL_METRICS_KEY"):
        data["metrics_key_sha256"] = hash_metrics_key(env["TRACEMILL_METRICS_KEY"])
    return data
