"""Cluster metrics (actors/telemetry.py), their alert rules and their Grafana dashboard.

No Ray here: helpers are no-ops without it, and record through an in-memory fake of
`ray.util.metrics` given to `use_backend`. Alerts and dashboard are checked against the exported
names the module derives (and parsed as PromQL when `promql-parser` is installed).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from actors import errors as E
from actors import telemetry as T
from configs.settings import ShardSettings

try:  # optional: a real PromQL parser (pip install promql-parser); brackets are checked anyway
    import promql_parser
except ImportError:  # pragma: no cover - depends on the environment
    promql_parser = None

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "configs" / "prometheus" / "alerts.yaml"
DASHBOARD = ROOT / "configs" / "grafana" / "tracemill-dashboard.json"
SEVERITIES = {"critical", "warning", "info"}
DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")
GRAFANA_VARS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}


class FakeRayMetrics:
    """An in-memory fake of `ray.util.metrics` (Ray 2.60), not of our code: Ray's constructor
    arguments, and it refuses what Ray refuses (inc <= 0, non-str tag values, missing tag keys,
    empty or non-positive boundaries; undeclared tag keys too). Every point is kept."""

    def __init__(self) -> None:
        self.defined: dict[str, tuple[str, _FakeMetric]] = {}
        self.points: dict[str, dict[tuple[tuple[str, str], ...], Any]] = {}

    def Counter(self, name: str, description: str = "", tag_keys: tuple[str, ...] | None = None) -> _FakeMetric:
        return _FakeMetric(self, "counter", name, tag_keys)

    def Gauge(self, name: str, description: str = "", tag_keys: tuple[str, ...] | None = None) -> _FakeMetric:
        return _FakeMetric(self, "gauge", name, tag_keys)

    def Histogram(self, name: str, description: str = "", boundaries: list[float] | None = None,
                  tag_keys: tuple[str, ...] | None = None) -> _FakeMetric:
        if not boundaries or any(b <= 0 for b in boundaries):
            raise ValueError(f"Invalid `boundaries` argument {boundaries}. Use positive values.")
        return _FakeMetric(self, "histogram", name, tag_keys)

    def series(self, name: str) -> dict[tuple[tuple[str, str], ...], Any]:
        return dict(self.points.get(name, {}))

    def value(self, name: str, **tags: str) -> Any:
        default: Any = [] if self.defined.get(name, ("",))[0] == "histogram" else 0.0
        return self.points.get(name, {}).get(tuple(sorted(tags.items())), default)


class _FakeMetric:
    def __init__(self, store: FakeRayMetrics, kind: str, name: str, tag_keys: tuple[str, ...] | None) -> None:
        assert re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", name), f"Ray would discard {name!r}"
        if not isinstance(tag_keys or (), tuple):
            raise TypeError(f"tag_keys should be a tuple type, got: {type(tag_keys)}")
        self.store, self.kind, self.name, self.tag_keys = store, kind, name, tag_keys or ()
        store.defined[name] = (kind, self)

    def _record(self, kind: str, value: Any, tags: dict[str, str] | None, update: Any) -> None:
        assert kind == self.kind, f"{self.name} is a {self.kind}, not a {kind}"
        if not isinstance(value, (int, float)):
            raise TypeError(f"value must be int or float, got {type(value)}.")
        tags = tags or {}
        if not all(isinstance(v, str) for v in tags.values()):
            raise TypeError("Tag values must be str")
        if set(tags) != set(self.tag_keys):
            raise ValueError(f"tags {sorted(tags)} do not match tag_keys {self.tag_keys}")
        series = self.store.points.setdefault(self.name, {})
        key = tuple(sorted(tags.items()))
        series[key] = update(series.get(key), float(value))

    def inc(self, value: float = 1.0, tags: dict[str, str] | None = None) -> None:
        if isinstance(value, (int, float)) and value <= 0:
            raise ValueError(f"value must be >0, got {value}")
        self._record("counter", value, tags, lambda old, v: (old or 0.0) + v)

    def set(self, value: float | None, tags: dict[str, str] | None = None) -> None:
        if value is not None:
            self._record("gauge", value, tags, lambda _old, v: v)

    def observe(self, value: float, tags: dict[str, str] | None = None) -> None:
        self._record("histogram", value, tags, lambda old, v: [*(old or []), v])


@pytest.fixture
def fake() -> Iterator[FakeRayMetrics]:
    backend = FakeRayMetrics()
    previous = T.use_backend(backend)
    yield backend
    T.use_backend(previous)


def _call_every_helper() -> None:
    T.record_events_received("ws", 3)
    T.record_ack("http", 2, 0.02)
    T.record_rejected("overloaded", 4)
    T.set_open_streams(5)
    T.set_shard_inflight(1, 10)
    T.record_slow_down(1)
    with T.time_task("compress"):
        pass
    T.record_vision("ok", 100, 20, 0.003)
    T.set_breaker_open(True)
    T.record_finalization("ready")
    T.set_finalizations_running(2)
    T.set_jobs("dataset", {"running": 1})
    T.set_model_backlog("moderation", 7)
    T.record_model_calls("vision", "batch", 3, cost_usd=0.002, tokens_in=40, tokens_out=9)
    T._inflight.clear()  # a process-wide count: other calls of this helper added to it
    T.model_inflight("card", 2)
    T.model_inflight("card", -1)


# --- the helpers ----------------------------------------------------------------------------

def test_helpers_are_noops_without_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    from ray.util import metrics as ray_metrics

    def refuse(*_a: object, **_k: object) -> None:
        raise AssertionError("no Ray metric may be created without Ray")

    for name in ("Counter", "Gauge", "Histogram"):
        monkeypatch.setattr(ray_metrics, name, refuse)
    # A full test run starts the integration stack in this process before or after the unit
    # tests, so "no Ray" is made true here rather than assumed.
    monkeypatch.setattr(T.ray, "is_initialized", lambda: False)
    previous = T.use_backend(None)  # also forgets instruments made earlier in the run
    try:
        _call_every_helper()
        assert T._instruments == {}
        with pytest.raises(KeyError), T.time_task("vision"):  # the block's own error comes through
            raise KeyError("x")
    finally:
        T.use_backend(previous)


def test_helpers_record_through_rays_metric_api(fake: FakeRayMetrics) -> None:
    _call_every_helper()
    assert fake.value("tracemill_events_received_total", transport="ws") == 3
    assert fake.value("tracemill_events_acked_total", transport="http") == 2
    assert fake.value("tracemill_ack_latency_seconds", transport="http") == [0.02]
    assert fake.value("tracemill_events_rejected_total", reason="overloaded") == 4
    assert fake.value("tracemill_open_streams") == 5
    assert fake.value("tracemill_shard_inflight_events", shard="1") == 10
    assert fake.value("tracemill_shard_slow_downs_total", shard="1") == 1
    assert len(fake.value("tracemill_task_duration_seconds", kind="compress")) == 1
    assert fake.value("tracemill_vision_calls_total", outcome="ok") == 1
    assert fake.value("tracemill_vision_tokens_total", direction="in") == 100
    assert fake.value("tracemill_vision_tokens_total", direction="out") == 20
    assert fake.value("tracemill_vision_cost_usd_total") == pytest.approx(0.003)
    assert fake.value("tracemill_vision_breaker_open") == 1
    assert fake.value("tracemill_finalizations_total", result="ready") == 1
    assert fake.value("tracemill_finalizations_running") == 2
    assert fake.value("tracemill_jobs", kind="dataset", state="running") == 1
    assert fake.value("tracemill_model_backlog", kind="moderation") == 7
    assert fake.value("tracemill_model_calls_total", kind="vision", mode="batch") == 3
    assert fake.value("tracemill_model_cost_usd_total", kind="vision") == pytest.approx(0.002)
    assert fake.value("tracemill_model_tokens_total", kind="vision", direction="out") == 9
    assert fake.value("tracemill_model_inflight", kind="card") == 1
    with pytest.raises(OSError), T.time_task("score"):
        raise OSError("disk")
    assert fake.value("tracemill_task_failures_total", kind="score") == 1
    # every defined metric was created once, with its declared type and tag keys
    assert set(fake.defined) == set(T.METRICS)
    for name, (kind, metric) in fake.defined.items():
        assert (kind, metric.tag_keys) == (T.METRICS[name].type, T.METRICS[name].tag_keys)


def test_zero_and_bad_values_are_skipped_not_raised(fake: FakeRayMetrics) -> None:
    T.record_events_received("ws", 0)  # Ray's Counter.inc refuses 0
    T.record_rejected("invalid_events", -2)
    T.record_vision("cached")  # no tokens, no cost
    T.record_ack("ws", 0, -1.0)  # an ack of duplicates only still has a latency
    T.set_open_streams(-3)
    T.record_events_received("ws", math.nan)
    T.record_events_received(None, "many")  # type: ignore[arg-type]
    T.set_jobs("finetune", {"running": "x"})  # type: ignore[dict-item]
    T.set_jobs("finetune", None)  # type: ignore[arg-type]
    for untouched in ("received", "rejected", "acked"):
        assert fake.series(f"tracemill_events_{untouched}_total") == {}
    assert fake.series("tracemill_vision_tokens_total") == fake.series("tracemill_vision_cost_usd_total") == {}
    assert fake.value("tracemill_vision_calls_total", outcome="cached") == 1
    assert fake.value("tracemill_ack_latency_seconds", transport="ws") == [0.0]
    assert fake.value("tracemill_open_streams") == 0


def test_a_failing_backend_never_breaks_the_caller(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def __getattr__(self, _name: str) -> Any:
            raise RuntimeError("metrics agent gone")

    previous = T.use_backend(Broken())  # type: ignore[arg-type]
    T._warned.clear()
    try:
        with caplog.at_level(logging.WARNING, logger=T.__name__):
            for _ in range(3):
                _call_every_helper()
        warned = [r for r in caplog.records if "tracemill_events_received_total" in r.getMessage()]
        assert len(warned) == 1  # logged once per metric, then silent
    finally:
        T.use_backend(previous)


def test_time_task_reraises_and_counts_the_failure(fake: FakeRayMetrics) -> None:
    with pytest.raises(ValueError, match="bad frame"), T.time_task("redact"):
        raise ValueError("bad frame")
    assert fake.value("tracemill_task_failures_total", kind="redact") == 1
    assert len(fake.value("tracemill_task_duration_seconds", kind="redact")) == 1
    with T.time_task("redact"):
        pass
    assert fake.value("tracemill_task_failures_total", kind="redact") == 1
    assert len(fake.value("tracemill_task_duration_seconds", kind="redact")) == 2


def test_time_task_leaves_cancellation_alone(fake: FakeRayMetrics) -> None:
    async def cancelled() -> None:
        with T.time_task("archive"):
            raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(cancelled())
    assert fake.series("tracemill_task_failures_total") == {}
    assert fake.series("tracemill_task_duration_seconds") == {}


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("transport", "ws", "ws"), ("transport", "grpc", "other"), ("transport", None, "other"),
        ("reason", "session_closed", "session_closed"), ("reason", str(uuid.uuid4()), "other"),
        ("kind", "vision", "vision"), ("kind", "Vision", "other"),
        ("outcome", "fallback", "fallback"), ("result", "rejected", "rejected"),
        ("state", "succeeded", "succeeded"), ("job_kind", "finetune", "finetune"),
        ("shard", 7, "7"), ("shard", "7", "7"), ("shard", "007", "other"), ("shard", -1, "other"),
        ("shard", T.MAX_SHARD_LABELS, "other"), ("shard", "abc", "other"), ("shard", 3.5, "other"),
    ],
)
def test_tag_values_are_normalised(key: str, value: object, expected: str) -> None:
    assert T.normalise(key, value) == expected


def test_cardinality_stays_bounded_whatever_callers_pass(fake: FakeRayMetrics) -> None:
    for i in range(500):
        session = str(uuid.uuid4())
        T.record_rejected(session)
        T.record_events_received(session, 1)
        T.set_shard_inflight(10_000 + i, 1)
        T.record_finalization(session)
        T.set_jobs(session, {session: 1})
    for name in ("events_rejected_total", "events_received_total", "shard_inflight_events", "finalizations_total"):
        assert len(fake.series(f"tracemill_{name}")) == 1, name
    assert len(fake.series("tracemill_jobs")) == len(T.ALLOWED["state"]) + 1  # + "other"


def test_set_jobs_sets_every_state_so_none_goes_stale(fake: FakeRayMetrics) -> None:
    T.set_jobs("dataset", {"running": 2, "queued": 1})
    T.set_jobs("dataset", {"succeeded": 3, "paused": 1})
    got = {dict(k)["state"]: v for k, v in fake.series("tracemill_jobs").items()}
    assert got == {"queued": 0, "running": 0, "succeeded": 3, "failed": 0, "other": 1}


def test_metric_definitions_follow_rays_rules_and_the_docstring_table() -> None:
    codes = {cls.code for cls in vars(E).values() if isinstance(cls, type) and issubclass(cls, E.TracemillError)}
    assert codes <= T.ALLOWED["reason"], codes - T.ALLOWED["reason"]  # every error code is a known reason
    for name, spec in T.METRICS.items():
        assert re.search(rf"\| {name} +\| .*\| ray_{name}(_bucket/_sum/_count)? +\|", T.__doc__ or ""), name
        assert name == spec.name and re.fullmatch(r"tracemill_[a-z0-9_]+", name)
        assert spec.name.endswith("_total") == (spec.type == "counter"), name
        for key in spec.tag_keys:
            assert key == "shard" or key in T.ALLOWED, (name, key)
        if spec.type == "histogram":
            assert list(spec.boundaries) == sorted(spec.boundaries) and spec.boundaries[0] > 0
    ack = T.METRICS["tracemill_ack_latency_seconds"].boundaries
    assert ack[0] == 0.005 and ack[-1] == 10.0
    assert "ray_tracemill_ack_latency_seconds_bucket" in T.exported_series()
    assert not any(n.endswith("_total_total") or not n.startswith("ray_tracemill_") for n in T.exported_series())


# --- PromQL checks shared by the alert rules and the dashboard ------------------------------

def _balanced(expr: str) -> bool:
    pairs, stack, quote, i = {")": "(", "]": "[", "}": "{"}, [], "", 0
    while i < len(expr):
        ch = expr[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "\"'`":
            quote = ch
        elif ch in "([{":
            stack.append(ch)
        elif ch in pairs and (not stack or stack.pop() != pairs[ch]):
            return False
        i += 1
    return not stack and not quote


def _names(expr: str) -> set[str]:
    """Metric names in `expr`: the parser's selectors if it is installed, plus any tracemill word."""
    names = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*tracemill[A-Za-z0-9_:]*", expr))
    if promql_parser is not None:
        def visit(node: Any) -> None:
            if isinstance(node, promql_parser.VectorSelector):
                assert node.name, f"selector without a metric name in {expr!r}"
                names.add(node.name)
        promql_parser.walk(promql_parser.parse(expr), visit)
    return names


def _check_expr(expr: str, where: str) -> None:
    assert _balanced(expr), f"{where}: unbalanced brackets or quotes in {expr!r}"
    used = _names(expr)
    assert used, f"{where}: names no metric"
    unknown = used - T.exported_series()
    assert not unknown, f"{where}: {sorted(unknown)} are not exported by actors/telemetry.py"


# --- alert rules ----------------------------------------------------------------------------

def _rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text())
    assert set(doc) == {"groups"} and doc["groups"]
    rules = []
    for group in doc["groups"]:
        assert group["name"] and group["rules"], group
        rules += group["rules"]
    return rules


def test_alert_rules_are_complete() -> None:
    rules = _rules()
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names))
    for rule in rules:
        assert {"alert", "expr", "for", "labels", "annotations"} <= set(rule), rule
        assert set(rule) <= {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}, rule
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", rule["alert"])
        assert DURATION.fullmatch(str(rule["for"])), rule["for"]
        if promql_parser is not None:
            assert promql_parser.parse_duration(rule["for"]).total_seconds() > 0
        assert rule["labels"]["severity"] in SEVERITIES
        assert rule["annotations"]["summary"].strip() and rule["annotations"]["description"].strip()


def test_alert_expressions_use_exported_names() -> None:
    for rule in _rules():
        _check_expr(rule["expr"], rule["alert"])
        assert "$__" not in rule["expr"]  # Grafana variables mean nothing to Prometheus


def test_alerts_cover_what_operators_need() -> None:
    exprs = " ".join(r["expr"] for r in _rules())
    for series in ("ray_tracemill_ack_latency_seconds_bucket", "ray_tracemill_events_rejected_total",
                   "ray_tracemill_vision_breaker_open", "ray_tracemill_finalizations_total",
                   "ray_tracemill_shard_inflight_events", "ray_tracemill_shard_slow_downs_total"):
        assert series in exprs, series


def test_shard_saturation_threshold_follows_the_shard_setting() -> None:
    rule = next(r for r in _rules() if r["alert"] == "TracemillShardSaturated")
    limit = ShardSettings.model_fields["max_inflight_events"].default
    assert rule["expr"].replace(" ", "").endswith(f">0.8*{limit}")


# --- Grafana dashboard ----------------------------------------------------------------------

def _panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in items:
        yield panel
        yield from _panels(panel.get("panels", []))  # collapsed rows hold their panels


def _grafana_to_promql(expr: str) -> str:
    for var, value in GRAFANA_VARS.items():
        expr = expr.replace(var, value)
    assert "$" not in expr, f"unknown Grafana variable in {expr!r}"
    return expr


def test_dashboard_is_wellformed() -> None:
    dash = json.loads(DASHBOARD.read_text())
    assert dash["schemaVersion"] >= 36 and dash["uid"] and dash["title"]
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    panels = list(_panels(dash["panels"]))
    ids = [p["id"] for p in panels]
    assert all(isinstance(i, int) for i in ids) and len(ids) == len(set(ids))
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, panel["title"]
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"]) and panel["targets"], panel["title"]
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]


def test_dashboard_queries_use_exported_names_and_show_every_metric() -> None:
    dash = json.loads(DASHBOARD.read_text())
    shown: set[str] = set()
    for panel in _panels(dash["panels"]):
        for target in panel.get("targets", []):
            expr = _grafana_to_promql(target["expr"])
            _check_expr(expr, panel["title"])
            shown |= _names(expr)
    exported_bases = {T.EXPORT_PREFIX + name for name in T.METRICS}
    missing = {b for b in exported_bases if not any(s.startswith(b) for s in shown)}
    assert not missing, f"metrics on no panel: {sorted(missing)}"
