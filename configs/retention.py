"""Retention (issue 18.4): how long each kind of recorded data is kept by default, and the daily
schedule that runs the retention job and the deletion purge.

A workspace may choose its own periods (PUT /v1/workspaces/{id}/retention); a type it never set
follows these defaults, so changing a default here reaches every such workspace on the next run.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["DATA_TYPES", "MAX_DAYS", "DataType", "RetentionPeriods", "RetentionSettings", "ScheduleSettings"]

DataType = Literal["events", "screenshots", "archives", "datasets", "audit"]
DATA_TYPES: tuple[DataType, ...] = ("events", "screenshots", "archives", "datasets", "audit")
# Ten years: past that a period is a typo, and the shortest (one day) keeps the audit entry of
# the change that set it (the audit trigger refuses to delete entries younger than a day).
MAX_DAYS = 3650


class RetentionPeriods(BaseModel):
    """Days each type is kept after its session (or dataset, or audit entry) was created."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    events: int = Field(180, ge=1, le=MAX_DAYS)       # raw events (interactions, the live log)
    screenshots: int = Field(90, ge=1, le=MAX_DAYS)   # screenshot rows and their objects
    archives: int = Field(365, ge=1, le=MAX_DAYS)     # the finalised session's ZIP archive
    datasets: int = Field(730, ge=1, le=MAX_DAYS)     # built datasets: withdrawn, files removed
    audit: int = Field(400, ge=1, le=MAX_DAYS)        # audit log entries

    def days(self, data_type: DataType) -> int:
        return int(getattr(self, data_type))


class RetentionSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    defaults: RetentionPeriods = RetentionPeriods()
    # Sessions (or datasets) handled per transaction: a run killed midway loses at most one batch
    # of work, which the next run redoes.
    batch: int = Field(200, ge=1, le=10_000)
    # Months of event partitions the job creates ahead of the current one, so the ingest never
    # writes into the default partition in normal operation.
    partitions_ahead: int = Field(2, ge=1, le=24)


class ScheduleSettings(BaseModel):
    """The scheduler actor `tracemill up` starts (cluster/scheduler.py): every `period_s` it runs
    the retention job and then the deletion purge; one missed while the cluster was down runs
    when the scheduler starts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    period_s: int = Field(86_400, ge=60, le=30 * 86_400)
    # A run that fails is tried again this much later rather than a whole period later.
    retry_s: int = Field(600, ge=10, le=86_400)
    jobs: tuple[Literal["retention", "purge"], ...] = ("retention", "purge")
