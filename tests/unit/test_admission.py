"""Admission control's estimator (actors/ingest/admission.py): the measured service rate, the
delay it predicts, and refusals past the target, on a clock the test moves."""

from __future__ import annotations

import asyncio
import time

import pytest
from pydantic import ValidationError

from actors.errors import Overloaded
from actors.ingest.admission import AdmissionControl, LoopLag, ServiceRate
from configs.limits import AdmissionSettings, RateLimitSettings


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_samples_move_the_rate_by_ewma() -> None:
    rate = ServiceRate(alpha=0.5, initial_per_s=5_000)
    rate.observe(1_000, 1.0)
    assert rate.per_s == pytest.approx(3_000)  # 0.5 * 1000 + 0.5 * 5000
    rate.observe(1_000, 1.0)
    assert rate.per_s == pytest.approx(2_000)
    assert rate.seconds_for(4_000) == pytest.approx(2.0)


def test_a_sample_without_backlog_only_raises_the_rate() -> None:
    rate = ServiceRate(alpha=1.0, initial_per_s=1_000)
    rate.observe(10, 1.0, saturated=False)  # one small batch that waited on latency, not work
    assert rate.per_s == pytest.approx(1_000)
    rate.observe(3_000, 1.0, saturated=False)
    assert rate.per_s == pytest.approx(3_000)


def test_idle_time_is_not_counted_as_slow_service() -> None:
    clock = Clock()
    rate = ServiceRate(alpha=1.0, initial_per_s=10, clock=clock)
    rate.started(0)
    clock.now += 0.1
    rate.completed(100, 0)  # 100 units in 0.1 s of busy time: 1,000/s
    assert rate.per_s == pytest.approx(1_000)
    clock.now += 60  # a minute with nothing in flight
    rate.started(0)
    clock.now += 0.05
    rate.completed(100, 0)
    assert rate.per_s == pytest.approx(2_000)  # the idle minute is not in the sample


def test_completions_while_busy_sample_the_interval_since_the_previous_one() -> None:
    clock = Clock()
    rate = ServiceRate(alpha=1.0, initial_per_s=10, clock=clock)
    rate.started(0)
    clock.now += 0.2
    rate.completed(400, in_flight_after=600)  # 2,000/s
    clock.now += 0.5
    rate.completed(250, in_flight_after=350)  # the next 0.5 s: 500/s
    assert rate.per_s == pytest.approx(500)
    clock.now += 0.001  # too short to be a sample of its own: carried into the next
    rate.completed(100, in_flight_after=250)
    assert rate.samples == 2
    clock.now += 0.099
    rate.completed(100, in_flight_after=150)
    assert rate.per_s == pytest.approx(2_000)  # 200 units over 0.1 s


def test_admission_refuses_what_would_be_acked_past_the_target() -> None:
    clock = Clock()
    gate = AdmissionControl(AdmissionSettings(ack_target_ms=1000, ewma_alpha=1.0), "shard 0", clock=clock)
    gate.rate.observe(1_000, 1.0)  # measured: 1,000 events/s
    gate.admit(600)
    gate.admit(300)
    assert gate.estimate_s() == pytest.approx(0.9)
    with pytest.raises(Overloaded) as refused:
        gate.admit(200)  # 1,100 events ahead of its ack: 1.1 s
    assert gate.in_flight == 900  # nothing taken
    assert gate.refused == 1
    assert "shard 0" in refused.value.message
    assert 0.25 <= refused.value.retry_after_s <= 0.25 * 1.5  # excess 0.1 s, raised to the minimum
    gate.admit(100)  # exactly at the target: taken
    assert gate.in_flight == 1_000


def test_precheck_refuses_before_parsing_when_the_queue_alone_is_late() -> None:
    gate = AdmissionControl(AdmissionSettings(ack_target_ms=500, ewma_alpha=1.0), "replica")
    gate.rate.observe(100, 1.0)
    gate.admit(40)
    gate.precheck()  # 0.4 s ahead: fine
    gate.in_flight = 60  # as another frame of 20 was taken while the rate fell
    with pytest.raises(Overloaded):
        gate.precheck()  # 0.6 s ahead already


def test_an_empty_queue_always_admits_and_disabled_never_refuses() -> None:
    gate = AdmissionControl(AdmissionSettings(ack_target_ms=10, ewma_alpha=1.0), "replica")
    gate.rate.observe(1, 1.0)  # 1 event a second
    gate.admit(10_000)  # alone it would wait 10,000 s, but refusing it makes nothing faster
    off = AdmissionControl(AdmissionSettings(enabled=False, ack_target_ms=10, ewma_alpha=1.0), "replica")
    off.rate.observe(1, 1.0)
    off.admit(10)
    off.admit(10)
    assert off.in_flight == 20


def test_retry_after_follows_the_excess_within_bounds() -> None:
    settings = AdmissionSettings(ack_target_ms=1000, ewma_alpha=1.0, retry_after_min_ms=100,
                                 retry_after_max_ms=2000)
    gate = AdmissionControl(settings, "replica")
    gate.rate.observe(1_000, 1.0)
    gate.admit(1_500)
    with pytest.raises(Overloaded) as refused:
        gate.admit(500)  # 2 s: 1 s past the target
    assert 1.0 <= refused.value.retry_after_s <= 1.5
    gate.in_flight = 100_000
    with pytest.raises(Overloaded) as far:
        gate.precheck()
    assert far.value.retry_after_s == pytest.approx(2.0)  # capped


def test_failed_work_frees_its_place_without_teaching_the_rate() -> None:
    clock = Clock()
    gate = AdmissionControl(AdmissionSettings(ewma_alpha=1.0), "replica", clock=clock)
    gate.rate.observe(1_000, 1.0)
    gate.admit(500)
    clock.now += 5.0
    gate.done(500, completed=False)
    assert gate.in_flight == 0
    assert gate.rate.per_s == pytest.approx(1_000)  # 5 s of a failed call is no sample
    gate.admit(100)
    clock.now += 0.05
    gate.done(100)
    assert gate.rate.per_s == pytest.approx(2_000)


def test_settings_are_checked() -> None:
    assert RateLimitSettings().admission.ack_target_ms == 1000
    with pytest.raises(ValidationError):
        AdmissionSettings(retry_after_min_ms=3000, retry_after_max_ms=1000)
    with pytest.raises(ValidationError):
        AdmissionSettings(ewma_alpha=0)
    with pytest.raises(ValidationError):
        AdmissionSettings(unknown=1)  # type: ignore[call-arg]


def test_loop_lag_counts_in_the_estimate() -> None:
    async def scenario() -> tuple[float, float]:
        lag = LoopLag(alpha=1.0, interval_s=0.01)
        gate = AdmissionControl(AdmissionSettings(ack_target_ms=100, ewma_alpha=1.0), "replica", lag=lag)
        gate.rate.observe(1_000_000, 1.0)  # the queue itself is fast
        gate.admit(10)  # starts the measurement
        await asyncio.sleep(0.05)
        quiet = gate.estimate_s()
        time.sleep(0.3)  # the loop is held: whatever is ready waits 0.3 s
        for _ in range(3):  # the measuring task wakes (late) before this one
            await asyncio.sleep(0)
        return quiet, gate.estimate_s()

    quiet, held = asyncio.run(scenario())
    assert quiet < 0.05
    assert held > 0.2  # a frame read now would be acked past the 0.1 s target
