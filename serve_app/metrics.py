"""Metrics of one ingress replica: rendered by its own `GET /metrics` (prometheus_client),
and mirrored into the cluster-wide `ray.util.metrics` series (actors.telemetry) that Ray's
metrics agent exports for the whole cluster. Call sites use the methods below, so the two
never disagree.

Labels never carry a session id: cardinality stays bounded however many sessions stream.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from actors import telemetry

__all__ = ["IngressMetrics", "CONTENT_TYPE_LATEST"]


class IngressMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.events_received = Counter(
            "tracemill_events_received", "Events received in valid frames", ["transport"], registry=self.registry
        )
        self.events_accepted = Counter(
            "tracemill_events_accepted", "Events newly stored and acked", ["transport"], registry=self.registry
        )
        self.events_duplicate = Counter(
            "tracemill_events_duplicate", "Events acked as already stored", ["transport"], registry=self.registry
        )
        self.rejected = Counter(
            "tracemill_requests_rejected", "Requests or frames refused, by error code", ["code"], registry=self.registry
        )
        self.slow_downs = Counter("tracemill_slow_downs", "slow_down / 429 answers", registry=self.registry)
        self.ack_latency = Histogram(
            "tracemill_ack_latency_seconds",
            "From a frame or request read to its ack",
            ["transport"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        self.open_streams = Gauge("tracemill_open_streams", "Open WebSocket streams", registry=self.registry)
        self.screenshots = Counter(
            "tracemill_screenshots_stored", "Screenshots stored", ["result"], registry=self.registry
        )

        self._streams = 0

    def record_received(self, transport: str, n: int) -> None:
        self.events_received.labels(transport).inc(n)
        telemetry.record_events_received(transport, n)

    def record_ack(self, transport: str, ack: dict[str, int], seconds: float) -> None:
        """One answered batch: what it stored, what it repeated, how long it took."""
        self.events_accepted.labels(transport).inc(ack["accepted"])
        self.events_duplicate.labels(transport).inc(ack["duplicates"])
        self.ack_latency.labels(transport).observe(seconds)
        telemetry.record_ack(transport, ack["accepted"] + ack["duplicates"], seconds)

    def record_rejected(self, code: str, events: int = 1) -> None:
        """A refused frame or request, by error code (events: how many it carried, if known)."""
        self.rejected.labels(code).inc()
        telemetry.record_rejected(code, max(1, events))

    def record_slow_down(self, code: str = "overloaded") -> None:
        """A shed batch (overloaded: a server fault) or a rate-limited one (the client's)."""
        self.slow_downs.inc()
        telemetry.record_rejected(code)

    def stream_opened(self) -> None:
        self._streams += 1
        self.open_streams.inc()
        telemetry.set_open_streams(self._streams)

    def stream_closed(self) -> None:
        self._streams -= 1
        self.open_streams.dec()
        telemetry.set_open_streams(self._streams)

    def render(self) -> bytes:
        return generate_latest(self.registry)
