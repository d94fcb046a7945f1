"""The consent gate of the write paths: may this caller's recorder record now?

Keys without a recorder (scripts, operators) pass without a lookup. For a recorder, the state
(the workspace's current notice version, whether it is required, whether the recorder holds an
open record for that version) is one query, remembered per replica for `ttl_s` seconds when it
allows recording, so the events path pays a dictionary lookup per batch or frame. A refusal is
never remembered: a recorder who has just agreed, through any replica, records at once.

The cost of remembering: a withdrawal made through another replica (or a notice change that
makes consent required there) reaches this one within `ttl_s` (the settings' `auth.cache_ttl_s`,
as for a revoked key). The replica that took the withdrawal or the change updates itself at once.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from actors.errors import ConsentRequired

__all__ = ["ConsentGate", "ConsentState", "Loader"]


@dataclass(frozen=True)
class ConsentState:
    version: str  # the workspace's current notice version
    required: bool
    agreed: bool  # an open record of the recorder names that version

    @property
    def allows(self) -> bool:
        return self.agreed or not self.required


class _Caller(Protocol):
    @property
    def workspace_id(self) -> uuid.UUID: ...

    @property
    def recorder_id(self) -> uuid.UUID | None: ...


# (connection pool, workspace, recorder) -> the state, from the database.
Loader = Callable[[Any, uuid.UUID, uuid.UUID], Awaitable[ConsentState]]


@dataclass
class ConsentGate:
    ttl_s: float
    load: Loader
    max_entries: int = 50_000
    _entries: dict[tuple[uuid.UUID, uuid.UUID], tuple[float, ConsentState]] = field(default_factory=dict, repr=False)

    async def check(self, pool: Any, caller: _Caller) -> None:
        """ConsentRequired unless the caller may record now."""
        recorder = caller.recorder_id
        if recorder is None:
            return
        key = (caller.workspace_id, recorder)
        hit = self._entries.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return  # only states that allow recording are remembered
        state = await self.load(pool, caller.workspace_id, recorder)
        self.remember(caller.workspace_id, recorder, state)
        if not state.allows:
            raise ConsentRequired(
                f"recorder {recorder} has not agreed to this workspace's notice (version {state.version!r}):"
                " show it (GET /v1/consent/notice) and agree (POST /v1/consent)",
                [{"version": state.version, "notice": "/v1/consent/notice"}])

    def remember(self, workspace_id: uuid.UUID, recorder_id: uuid.UUID, state: ConsentState) -> None:
        """Record a state this replica learnt (a load, an agreement, a withdrawal)."""
        key = (workspace_id, recorder_id)
        if not state.allows or self.ttl_s <= 0:
            self._entries.pop(key, None)
            return
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[key] = (time.monotonic() + self.ttl_s, state)

    def forget(self, workspace_id: uuid.UUID, recorder_id: uuid.UUID) -> None:
        """The recorder withdrew: it is looked up again (and refused) from its next request."""
        self._entries.pop((workspace_id, recorder_id), None)

    def forget_workspace(self, workspace_id: uuid.UUID) -> None:
        """The workspace's notice changed: its recorders are looked up again."""
        for key in [k for k in self._entries if k[0] == workspace_id]:
            del self._entries[key]
