"""Typed settings of rate limits (per API key and per client address) and of quotas (per
organisation). Validated once at start with the rest of TracemillSettings.

Rate limits are counted by each ingress replica in its own memory (the `limits` library's
memory storage, fixed windows): **every figure below is per replica**. Serve
spreads requests over the replicas, so a client talking to R replicas may get up to R times a
figure through the whole deployment; to cap a deployment of a fixed R replicas at L, configure
L / R. Nothing is shared between replicas, so a check costs microseconds and no network hop.

The client address is the TCP peer of the replica. Behind Serve's HAProxy (the throughput mode
tracemill deploys with) that peer is the node's HAProxy, which adds no X-Forwarded-For: all
clients coming through one HAProxy then count as one address, which is why the per-address
figures default high and the per-key ones do the per-client work. `trusted_proxies` names the
peers whose X-Forwarded-For is believed (nothing is believed by default).

Quotas are counted in PostgreSQL, so they hold across replicas; per-organisation overrides
live in the `org_quotas` table (migration 0005).
"""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["AdmissionSettings", "AuthBackoffSettings", "QUOTA_NAMES", "QuotaName", "QuotaSettings", "Rate", "RateLimitSettings"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Rate(_Strict):
    """`amount` units per `window_s` seconds, in fixed windows: a client may get up to twice
    `amount` across a window boundary, the price of one counter increment per check."""

    amount: int = Field(ge=1, le=10**15)
    window_s: int = Field(ge=1, le=86_400)


class AuthBackoffSettings(_Strict):
    """Failed key lookups per address: `free_failures` within `window_s` cost nothing more;
    each failure beyond them blocks new lookups from that address for `base_s` doubled per
    extra failure, at most `max_s`. Keys this replica has already verified still pass, so a
    brute-forcer sharing an address (a NAT, the HAProxy) does not lock out working clients."""

    free_failures: int = Field(10, ge=1, le=10_000)
    window_s: int = Field(60, ge=1, le=86_400)
    base_s: float = Field(1.0, gt=0, le=3600)
    max_s: float = Field(30.0, gt=0, le=86_400)


class AdmissionSettings(_Strict):
    """Admission control (actors/ingest/admission.py): a frame or request whose ack would come
    later than `ack_target_ms`, judged from the work already queued and the rate this process
    measured it completing at, is refused at once (`slow_down` / 429 with Retry-After) rather
    than queued. Checked by each ingress replica for its streams and by each shard for its
    commit queue. The shards read it too, so it is part of their fingerprint."""

    enabled: bool = True
    ack_target_ms: int = Field(1000, ge=10, le=600_000)
    # Weight of the newest service-rate sample: high follows change fast, low rides out noise.
    ewma_alpha: float = Field(0.2, gt=0, le=1)
    # What a refused client is told to wait: the estimated excess over the target, within these.
    retry_after_min_ms: int = Field(250, ge=1, le=600_000)
    retry_after_max_ms: int = Field(5000, ge=1, le=600_000)

    @model_validator(mode="after")
    def _ordered(self) -> AdmissionSettings:
        if self.retry_after_min_ms > self.retry_after_max_ms:
            raise ValueError("retry_after_min_ms must not exceed retry_after_max_ms")
        return self


class RateLimitSettings(_Strict):
    """Per replica (see the module docstring). Defaults sit far above what the load generator
    drives from one address with one key (thousands of events/s), so only abuse trips them."""

    enabled: bool = True
    http_requests_per_key: Rate = Rate(amount=20_000, window_s=10)
    http_requests_per_address: Rate = Rate(amount=50_000, window_s=10)
    ws_frames_per_key: Rate = Rate(amount=50_000, window_s=10)
    ws_frames_per_address: Rate = Rate(amount=100_000, window_s=10)
    events_per_key: Rate = Rate(amount=1_000_000, window_s=10)
    events_per_address: Rate = Rate(amount=2_000_000, window_s=10)
    sessions_per_key: Rate = Rate(amount=10_000, window_s=60)
    sessions_per_address: Rate = Rate(amount=20_000, window_s=60)
    screenshot_bytes_per_key: Rate = Rate(amount=4 * 1024**3, window_s=60)
    screenshot_bytes_per_address: Rate = Rate(amount=8 * 1024**3, window_s=60)
    auth_backoff: AuthBackoffSettings = AuthBackoffSettings()
    # A key that failed a lookup is answered 401 from memory for this long: a flood of the
    # same bad key costs no query. A key created after such a failure waits at most this long.
    negative_cache_ttl_s: float = Field(30.0, ge=0, le=3600)
    negative_cache_entries: int = Field(50_000, ge=1, le=10_000_000)
    trusted_proxies: tuple[IPv4Network | IPv6Network, ...] = Field(
        (), description="peers whose X-Forwarded-For names the client (e.g. a load balancer's subnet)"
    )
    admission: AdmissionSettings = AdmissionSettings()


QuotaName = Literal["concurrent_datasets", "concurrent_finetunes", "finetunes_per_day", "sessions_per_day",
                    "stored_bytes"]
QUOTA_NAMES: tuple[QuotaName, ...] = ("concurrent_datasets", "concurrent_finetunes", "finetunes_per_day",
                                      "sessions_per_day", "stored_bytes")


class QuotaSettings(_Strict):
    """The deployment's default quota of every organisation; a row in `org_quotas` overrides
    one quota for one organisation. Days are UTC days. `stored_bytes` counts the screenshot
    bytes an organisation has uploaded."""

    enabled: bool = True
    # Generous by default (a deployment tightens them per organisation): a job whose driver
    # died counts as running until a read of it records the failure.
    concurrent_datasets: int = Field(16, ge=0)
    concurrent_finetunes: int = Field(16, ge=0)
    finetunes_per_day: int = Field(500, ge=0)
    sessions_per_day: int = Field(1_000_000, ge=0)
    stored_bytes: int = Field(1024**4, ge=0)  # 1 TiB

    def default(self, name: QuotaName) -> int:
        return int(getattr(self, name))
