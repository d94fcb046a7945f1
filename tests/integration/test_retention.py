"""Retention (issue 18.4) on the real stack: a workspace's periods through the admin route (bad
bodies 422, non-admins 403, both changing nothing), and the retention job: sessions aged by
moving their timestamps lose their events, screenshots (rows and objects) and archive, an old
dataset is withdrawn with its file and its model flagged, old audit entries go through the one
path the append-only trigger allows; the session rows and the trends they feed stay. A run
stopped midway is finished by the next. Every run uses defaults of ten years, so only this
test's workspace (whose periods are short) has anything past its period.

    pytest tests/integration/test_retention.py -s -k partition_time   # the README figure
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from actors import auth
from actors.deletion.purger import session_prefixes
from actors.retention.job import run_retention
from actors.storage import retention_repo
from actors.storage.objectstore import make_object_store
from configs.retention import RetentionPeriods, RetentionSettings
from tests.support.client import Api
from tests.support.sessions import record, shop_session, wait_terminal
from tests.support.stack import run_db, write_object

pytestmark = pytest.mark.integration

TEN_YEARS = RetentionSettings(defaults=RetentionPeriods(events=3650, screenshots=3650, archives=3650,
                                                        datasets=3650, audit=3650))
SHORT = {"events": 100, "screenshots": 100, "archives": 100, "datasets": 100, "audit": 100}


def _db(stack: Any, fn: Any) -> Any:
    async def go() -> Any:
        pool = await asyncpg.create_pool(stack.settings.database.url.get_secret_value(), min_size=1, max_size=2)
        store = make_object_store(stack.settings.object_store)
        try:
            return await fn(pool, store)
        finally:
            await store.close()
            await pool.close()
    return asyncio.run(go())


def _retention(stack: Any, **kw: Any) -> Any:
    return _db(stack, lambda pool, store: run_retention(pool, store, TEN_YEARS, progress=print, **kw))


@pytest.fixture(scope="module")
def workspace(stack: Any) -> dict[str, Any]:
    """A workspace of its own, with an admin key and an analyst key."""
    ws = uuid.uuid4()
    run_db(stack, "INSERT INTO workspaces (workspace_id, org_id, name) VALUES ($1, $2, $3)",
           ws, auth.DEFAULT_ORG_ID, f"retention-{ws}")

    async def keys(pool: Any, _store: Any) -> dict[str, str]:
        out = {}
        for role in ("admin", "analyst"):
            out[role] = (await auth.create_key(pool, role=role, org_id=auth.DEFAULT_ORG_ID, workspace_id=ws,
                                               name=f"retention-{role}", pepper=auth.pepper_of(stack.settings.auth)))[1]
        return out

    found = _db(stack, keys)
    return {"id": ws, "admin": Api(stack.endpoint, found["admin"]), "analyst": Api(stack.endpoint, found["analyst"])}


def test_periods_route_sets_validates_and_refuses(stack: Any, workspace: dict[str, Any]) -> None:
    admin, path = workspace["admin"], f"/v1/workspaces/{workspace['id']}/retention"
    first = admin.http.get(path)
    assert first.status_code == 200, first.text
    assert first.json()["own"] == [] and first.json()["events"] == stack.settings.retention.defaults.events
    bad: list[Any] = [{}, {"events": 0}, {"events": 3651}, {"events": "30"}, {"events": True}, {"events": 1.5},
                      {"bogus": 1}, [], {"audit": -1, "events": 30}]
    for body in bad:
        response = admin.http.put(path, json=body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["error"]["code"], response.text
    assert admin.http.put(path, content=b"{", headers={"Content-Type": "application/json"}).status_code == 400
    for api in (workspace["analyst"],):
        assert api.http.get(path).status_code == 403
        assert api.http.put(path, json={"events": 1}).status_code == 403
    other = f"/v1/workspaces/{uuid.uuid4()}/retention"
    assert admin.http.put(other, json={"events": 1}).status_code == 404
    assert admin.http.get(path).json() == first.json()  # nothing above changed anything

    done = admin.http.put(path, json=SHORT)
    assert done.status_code == 200, done.text
    assert {t: done.json()[t] for t in SHORT} == SHORT and done.json()["own"] == sorted(SHORT)
    reset = admin.http.put(path, json={"audit": None})
    assert reset.json()["audit"] == stack.settings.retention.defaults.audit and "audit" not in reset.json()["own"]
    assert admin.http.put(path, json={"audit": 100}).json()["audit"] == 100
    entries = run_db(stack, "SELECT details FROM audit_log WHERE action = 'retention.update' AND target = $1",
                     str(workspace["id"]))
    assert len(entries) == 3  # the refused and failed requests wrote none


def _age(stack: Any, sid: str, days: int) -> None:
    run_db(stack, "UPDATE sessions SET created_at = created_at - make_interval(days => $2),"
                  " started_at = started_at - make_interval(days => $2), ended_at = ended_at - make_interval(days => $2)"
                  " WHERE session_id = $1", uuid.UUID(sid), days)


def _state(stack: Any, sid: str) -> dict[str, Any]:
    sid_ = uuid.UUID(sid)
    row = run_db(stack, "SELECT event_count, screenshot_count, quality_overall, status, analysis IS NOT NULL AS analysed,"
                        " archive_key, events_expired_at, screenshots_expired_at, archive_expired_at"
                        " FROM sessions WHERE session_id = $1", sid_)[0]
    counts = run_db(stack, "SELECT (SELECT count(*) FROM interactions WHERE session_id = $1) AS events,"
                           " (SELECT count(*) FROM screenshots WHERE session_id = $1) AS shots", sid_)[0]

    async def objects(_pool: Any, store: Any) -> list[str]:
        return [k for p in session_prefixes(auth.DEFAULT_ORG_ID, sid_) for k in await store.list(p)]

    return {**dict(row), **dict(counts), "objects": _db(stack, objects)}


def _trend(api: Api, day: datetime, metric: str, nudge_s: int) -> Any:
    # A different `until` per call: the route caches a query's answer for a few seconds.
    params = {"metric": metric, "group_by": "day", "since": day.isoformat(),
              "until": (day + timedelta(days=1, seconds=nudge_s)).isoformat()}
    response = api.http.get("/v1/analytics/trends", params=params)
    assert response.status_code == 200, response.text
    return response.json()["points"]


def _plant_dataset_and_audit(stack: Any, ws: uuid.UUID) -> tuple[uuid.UUID, uuid.UUID, str, int]:
    ds, ft, model = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    key = f"datasets/{auth.DEFAULT_ORG_ID}/{ds}/train.jsonl"
    write_object(stack, key, b'{"text": "retention-dataset-line"}\n')
    run_db(stack, "INSERT INTO datasets (dataset_id, org_id, workspace_id, name, status, config, code_version, files,"
                  " created_at) VALUES ($1, $2, $3, 'retention', 'succeeded', '{}', 'test', $4::jsonb,"
                  " now() - interval '200 days')",
           ds, auth.DEFAULT_ORG_ID, ws, f'{{"train.jsonl": {{"key": "{key}", "bytes": 1}}}}')
    run_db(stack, "INSERT INTO finetunes (finetune_id, org_id, workspace_id, dataset_id, provider, base_model,"
                  " settings, status) VALUES ($1, $2, $3, $4, 'local', $5, '{}', 'succeeded')",
           ft, auth.DEFAULT_ORG_ID, ws, ds, f"retention-base-{model}")
    run_db(stack, "INSERT INTO models (model_id, org_id, workspace_id, name, version, provider, base_model, finetune_id,"
                  " dataset_id, metrics) VALUES ($1, $2, $3, $4, 1, 'local', $7, $5, $6, '{}')",
           model, auth.DEFAULT_ORG_ID, ws, f"retention-{model}", ft, ds, f"retention-base-{model}")
    old = run_db(stack, "INSERT INTO audit_log (at, org_id, workspace_id, actor_kind, action, outcome, target)"
                        " VALUES (now() - interval '200 days', $1, $2, 'system', 'data.purge', 'success', 'old-entry')"
                        " RETURNING audit_id", auth.DEFAULT_ORG_ID, ws)[0][0]
    return ds, model, key, old


def test_job_removes_what_is_past_and_keeps_the_rest(stack: Any, workspace: dict[str, Any]) -> None:
    admin, ws = workspace["admin"], workspace["id"]
    assert admin.http.put(f"/v1/workspaces/{ws}/retention", json=SHORT).status_code == 200
    sids = []
    for _ in range(2):
        events, shots = shop_session(n_events=60, n_screens=3)
        sid = record(admin, events, shots, task="retention kettle")
        assert wait_terminal(admin, sid)["status"] in ("ready", "rejected")
        sids.append(sid)
    deadline = time.monotonic() + 60
    while any(_state(stack, s)["archive_key"] is None for s in sids) and time.monotonic() < deadline:
        time.sleep(0.5)
    old, young = sids
    _age(stack, old, 200)
    ds, model, ds_key, old_entry = _plant_dataset_and_audit(stack, ws)
    before, kept_before = _state(stack, old), _state(stack, young)
    assert before["events"] > 0 and before["shots"] > 0 and before["archive_key"] and before["objects"]
    day = datetime.fromisoformat(run_db(stack, "SELECT date_trunc('day', coalesce(started_at, created_at))::text AS d"
                                               " FROM sessions WHERE session_id = $1", uuid.UUID(old))[0]["d"])
    day = day.replace(tzinfo=UTC) if day.tzinfo is None else day
    trends = {m: _trend(admin, day, m, 0) for m in ("sessions", "events", "mean_quality")}
    assert trends["events"] and trends["events"][0]["value"] == before["event_count"]

    # Stopped after the first screenshots' objects went, before their rows: the next run finishes.
    cut = _retention(stack, stop_after="screenshots")
    assert cut.stopped
    halfway = _state(stack, old)
    assert halfway["events"] == 0 and halfway["shots"] == before["shots"] and halfway["screenshots_expired_at"] is None
    report = _retention(stack)
    assert not report.stopped and report.archives >= 1 and report.datasets >= 1

    after, kept = _state(stack, old), _state(stack, young)
    assert (after["events"], after["shots"], after["objects"], after["archive_key"]) == (0, 0, [], None)
    assert after["events_expired_at"] and after["screenshots_expired_at"] and after["archive_expired_at"]
    for field in ("event_count", "screenshot_count", "quality_overall", "status", "analysed"):
        assert after[field] == before[field], field
    assert kept == kept_before  # the young session lost nothing
    assert {m: _trend(admin, day, m, 1) for m in trends} == trends

    row = run_db(stack, "SELECT withdrawn_at, withdrawn_reason, files::text AS files FROM datasets WHERE dataset_id = $1", ds)[0]
    assert row["withdrawn_at"] and "retention" in row["withdrawn_reason"] and row["files"] == "{}"
    assert run_db(stack, "SELECT flagged_at FROM models WHERE model_id = $1", model)[0]["flagged_at"]
    assert _db(stack, lambda _p, store: store.list(ds_key)) == []
    assert not run_db(stack, "SELECT 1 FROM audit_log WHERE audit_id = $1", old_entry)
    assert run_db(stack, "SELECT count(*) AS n FROM audit_log WHERE action = 'retention.update' AND target = $1",
                  str(ws))[0]["n"] >= 1  # young entries stay
    with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):  # outside the job: still append-only
        run_db(stack, "DELETE FROM audit_log WHERE workspace_id = $1", ws)

    again = _retention(stack)  # a second run finds nothing of this workspace's to do
    assert _state(stack, old) == after and _state(stack, young) == kept
    assert again.datasets == 0 and again.archives == 0


def test_partition_time(stack: Any, workspace: dict[str, Any]) -> None:
    """A month of 1,000 sessions × 50 events dropped as a partition, against the same removed
    session by session (the job's path for the remainder), in the same run. Printed for the README."""
    ws, n, per = workspace["id"], 1000, 50
    run_db(stack, "INSERT INTO workspace_retention (workspace_id, org_id, events_days) VALUES ($1, $2, 100)"
                  " ON CONFLICT (workspace_id) DO UPDATE SET events_days = 100", ws, auth.DEFAULT_ORG_ID)

    async def seed(pool: Any, month: str) -> list[uuid.UUID]:
        await pool.execute("SELECT tracemill_events_partition($1::date)", datetime.fromisoformat(month).date())
        ids = [uuid.uuid4() for _ in range(n)]
        await pool.execute(
            "INSERT INTO sessions (session_id, org_id, workspace_id, type, status, request_hash, event_count,"
            " created_at) SELECT id, $2, $3, 'human', 'ready', '\\x00', $4, $5::timestamptz FROM unnest($1::uuid[]) id",
            ids, auth.DEFAULT_ORG_ID, ws, per, datetime.fromisoformat(month + "T12:00:00+00:00"))
        await pool.execute(
            "INSERT INTO interactions (session_id, seq, type, ts, url, payload, session_month)"
            " SELECT id, g, 'click', now(), 'https://partition.example/p', '{\"x\": 1}', $2::date"
            " FROM unnest($1::uuid[]) id, generate_series(0, $3 - 1) g",
            ids, datetime.fromisoformat(month).date(), per)
        return ids

    async def measure(pool: Any, store: Any) -> dict[str, Any]:
        rows_ids = await seed(pool, "2001-02-01")
        dropped_ids = await seed(pool, "2001-01-01")
        started = time.perf_counter()
        async with pool.acquire() as conn:
            for i in range(0, n, TEN_YEARS.batch):
                await retention_repo.expire_events(conn, rows_ids[i:i + TEN_YEARS.batch])
        by_rows = time.perf_counter() - started
        report = await run_retention(pool, store, TEN_YEARS, progress=print)
        left = await pool.fetchval("SELECT count(*) FROM interactions WHERE session_id = ANY($1::uuid[])",
                                   dropped_ids + rows_ids)
        marked = await pool.fetchval("SELECT count(*) FROM sessions WHERE session_id = ANY($1::uuid[])"
                                     " AND events_expired_at IS NOT NULL", dropped_ids)
        return {"by_rows": by_rows, "report": report, "left": left, "marked": marked}

    got = _db(stack, measure)
    report = got["report"]
    assert "interactions_p200101" in report.partitions_dropped and got["left"] == 0 and got["marked"] == n
    print(f"\nretention of a month's partition ({n:,} sessions x {per} events = {n * per:,} rows):"
          f" dropped in {report.partitions_seconds:.3f} s (the whole job's run {report.seconds:.2f} s);"
          f" the same month session by session {got['by_rows']:.3f} s"
          f" ({got['by_rows'] / max(report.partitions_seconds, 1e-9):.1f}x the drop)")


def test_the_scheduler_ran_the_missed_run_at_start(stack: Any) -> None:
    """`up` started the scheduler; on a fresh database the daily run was never made, so it ran at
    once (retention then the purge) and recorded its end."""
    import ray

    from actors.retention.scheduler import RUN_NAME, SCHEDULER_NAME

    assert ray.get_actor(SCHEDULER_NAME, namespace=stack.settings.shards.namespace) is not None
    deadline, row = time.monotonic() + 60, None
    while time.monotonic() < deadline:
        rows = run_db(stack, "SELECT started_at, finished_at, report FROM scheduled_runs WHERE name = $1", RUN_NAME)
        row = rows[0] if rows else None
        if row is not None and row["finished_at"] is not None:
            break
        time.sleep(0.5)
    assert row is not None and row["finished_at"] is not None and row["finished_at"] >= row["started_at"], row
    assert {"retention", "purge"} <= set(json.loads(row["report"]))
