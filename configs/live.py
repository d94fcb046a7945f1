"""Live updates (GET /v1/live): how long one stream lasts, how often it says it is alive, how
much a reconnecting client may catch up on, how long the events log keeps events."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["LiveSettings"]


class LiveSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # A stream ends after this long and the page reconnects with Last-Event-ID (catching up
    # from the log): a replica that drains or a proxy that cuts idle connections loses nothing,
    # and no stream holds a replica's shutdown for longer than its graceful timeout allows.
    max_stream_s: float = Field(300.0, gt=0, le=3600)
    # A comment line this often keeps proxies from closing a quiet stream.
    heartbeat_s: float = Field(15.0, gt=0, le=300)
    # At most this many missed events are replayed on reconnect; older ones are in the list API.
    catch_up_max: int = Field(1000, ge=1, le=10_000)
    # The events log keeps this long; each replica prunes older rows now and then.
    retention_s: int = Field(86_400, ge=60, le=30 * 86_400)
    # Open streams per ingress replica (each holds one of Serve's max_ongoing_requests slots).
    max_streams: int = Field(500, ge=1, le=10_000)
