"""Deletion (issue 18.3): how long a deleted session or recorder stays recoverable-by-operator
(hidden from every read, still in the database and object store) before the purge removes it."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["DeletionSettings"]


class DeletionSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # The purge (python -m jobs.purge, tracemill purge) removes what was deleted at least this
    # long ago; 0 purges on its next run (the tests). A week lets an operator undo a mistaken
    # delete from the database by hand; nothing reads a deleted session meanwhile.
    grace_period_s: int = Field(7 * 86_400, ge=0, le=90 * 86_400)
    # Sessions purged per database transaction batch (each session is its own transaction).
    batch: int = Field(100, ge=1, le=10_000)
