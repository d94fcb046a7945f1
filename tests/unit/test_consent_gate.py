"""Consent without Ray or a database: the gate's cache (what it remembers, what it never does),
the current record of a history, and the notice and answer bodies."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import ValidationError

from actors.consent.consent_gate import ConsentGate, ConsentState
from actors.consent.notice import ConsentAnswer, NoticeBody
from actors.consent.records import current_of
from actors.errors import ConsentRequired, Forbidden
from serve_app.permissions_table import permission_for

WS = uuid.uuid4()


class Table:
    """The database's answer per recorder, and how often it was asked."""

    def __init__(self) -> None:
        self.states: dict[uuid.UUID, ConsentState] = {}
        self.loads = 0

    async def load(self, pool: Any, workspace_id: uuid.UUID, recorder_id: uuid.UUID) -> ConsentState:
        self.loads += 1
        return self.states[recorder_id]


def _caller(recorder: uuid.UUID | None) -> Any:
    return SimpleNamespace(workspace_id=WS, recorder_id=recorder)


def _check(gate: ConsentGate, recorder: uuid.UUID | None) -> None:
    asyncio.run(gate.check(None, _caller(recorder)))


def test_a_key_without_a_recorder_passes_without_a_lookup() -> None:
    table = Table()
    gate = ConsentGate(30.0, table.load)
    _check(gate, None)
    assert table.loads == 0


def test_refused_with_the_notice_version_and_never_remembered() -> None:
    table, rec = Table(), uuid.uuid4()
    table.states[rec] = ConsentState("v2", required=True, agreed=False)
    gate = ConsentGate(30.0, table.load)
    with pytest.raises(ConsentRequired) as refused:
        _check(gate, rec)
    assert isinstance(refused.value, Forbidden) and refused.value.code == "consent_required"
    assert refused.value.details[0]["version"] == "v2"
    table.states[rec] = ConsentState("v2", required=True, agreed=True)  # agreed through another replica
    _check(gate, rec)
    assert table.loads == 2


def test_an_allowed_state_is_remembered_until_forgotten() -> None:
    table, rec = Table(), uuid.uuid4()
    table.states[rec] = ConsentState("v1", required=True, agreed=True)
    gate = ConsentGate(30.0, table.load)
    for _ in range(5):
        _check(gate, rec)
    assert table.loads == 1
    table.states[rec] = ConsentState("v1", required=True, agreed=False)  # withdrawn elsewhere
    _check(gate, rec)  # within the cache time: still allowed here
    gate.forget(WS, rec)  # the withdrawal went through this replica
    with pytest.raises(ConsentRequired):
        _check(gate, rec)


def test_a_notice_change_forgets_the_workspace_and_ttl_zero_remembers_nothing() -> None:
    table, rec = Table(), uuid.uuid4()
    table.states[rec] = ConsentState("v1", required=False, agreed=False)  # not required: allowed
    gate = ConsentGate(30.0, table.load)
    _check(gate, rec)
    table.states[rec] = ConsentState("v2", required=True, agreed=False)
    gate.forget_workspace(WS)
    with pytest.raises(ConsentRequired):
        _check(gate, rec)
    fresh = ConsentGate(0.0, table.load)
    table.states[rec] = ConsentState("v2", required=True, agreed=True)
    _check(fresh, rec)
    _check(fresh, rec)
    assert table.loads == 4


def test_remembering_an_agreement_lets_the_recorder_record_without_a_lookup() -> None:
    table, rec = Table(), uuid.uuid4()
    gate = ConsentGate(30.0, table.load)
    gate.remember(WS, rec, ConsentState("v1", required=True, agreed=True))
    _check(gate, rec)
    assert table.loads == 0


def _row(version: str, minutes: int, withdrawn: bool = False) -> dict[str, Any]:
    at = datetime(2026, 12, 8, tzinfo=timezone.utc) + timedelta(minutes=minutes)
    return {"notice_version": version, "agreed_at": at, "withdrawn_at": at + timedelta(seconds=1) if withdrawn else None}


def test_the_current_record_is_the_newest_open_one_of_the_current_version() -> None:
    history = [_row("v2", 3, withdrawn=True), _row("v1", 2), _row("v2", 1)]  # newest first
    assert current_of(history, "v2") is history[2]
    assert current_of(history, "v1") is history[1]
    assert current_of(history, "v3") is None
    assert current_of([_row("v1", 1, withdrawn=True)], "v1") is None


def test_notice_bodies_are_strict() -> None:
    good = {"version": "2026-12.a", "text": "We record pages.", "required": True, "recorded": ["pages"],
            "masked": ["passwords"], "retention_days": 30}
    assert NoticeBody.model_validate(good).retention_days == 30
    for bad in ({**good, "version": ""}, {**good, "version": "has space"}, {**good, "required": "yes"},
                {**good, "text": "a\x00b"}, {**good, "retention_days": 0}, {**good, "recorded": [""]},
                {**good, "extra": 1}, {k: v for k, v in good.items() if k != "required"},
                {**good, "masked": ["x"] * 51}, {**good, "text": "x" * 20_001}):
        with pytest.raises(ValidationError):
            NoticeBody.model_validate(bad)
    with pytest.raises(ValidationError):
        ConsentAnswer.model_validate({"version": 1})


def test_recorders_manage_their_consent_and_admins_set_the_notice() -> None:
    assert permission_for("POST", "/v1/consent") == "sessions.create"
    assert permission_for("DELETE", "/v1/consent") == "sessions.create"
    assert permission_for("GET", "/v1/consent/notice") == "sessions.create"
    assert permission_for("PUT", f"/v1/workspaces/{WS}/notice") == "workspaces.manage"
