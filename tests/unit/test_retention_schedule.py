"""The daily schedule's arithmetic (actors/retention/scheduler.py) and the retention settings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from actors.retention.scheduler import seconds_until_due
from configs.retention import RetentionPeriods, RetentionSettings, ScheduleSettings

NOW = datetime(2026, 12, 8, 12, 0, tzinfo=UTC)
DAILY = ScheduleSettings(period_s=86_400, retry_s=600)


def _row(started_ago_s: float | None, finished_ago_s: float | None) -> dict[str, datetime | None]:
    return {"started_at": None if started_ago_s is None else NOW - timedelta(seconds=started_ago_s),
            "finished_at": None if finished_ago_s is None else NOW - timedelta(seconds=finished_ago_s)}


def test_never_run_is_due_at_once() -> None:
    assert seconds_until_due(None, DAILY, NOW.timestamp()) <= 0
    assert seconds_until_due(_row(None, None), DAILY, NOW.timestamp()) <= 0


def test_a_run_missed_while_down_is_due_when_the_scheduler_starts() -> None:
    assert seconds_until_due(_row(3 * 86_400, 3 * 86_400 - 60), DAILY, NOW.timestamp()) < 0


def test_a_finished_run_waits_a_period_from_its_start() -> None:
    assert seconds_until_due(_row(3600, 3000), DAILY, NOW.timestamp()) == pytest.approx(86_400 - 3600)


def test_an_unfinished_run_is_retried_after_retry_s() -> None:
    # started after the last success finished: it failed or was killed midway
    assert seconds_until_due(_row(60, 86_400), DAILY, NOW.timestamp()) == pytest.approx(600 - 60)
    assert seconds_until_due(_row(700, None), DAILY, NOW.timestamp()) < 0


def test_settings_are_strict() -> None:
    with pytest.raises(ValidationError):
        RetentionPeriods(events=0)
    with pytest.raises(ValidationError):
        RetentionSettings.model_validate({"defaults": {"events": 30}, "typo": 1})
    with pytest.raises(ValidationError):
        ScheduleSettings(period_s=5)
    assert RetentionPeriods().days("audit") == 400
