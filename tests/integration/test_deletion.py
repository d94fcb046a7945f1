"""Deletion (issue 18.3) on the real stack: a deleted session is gone from every read at once,
takes no more writes, and after the purge its planted values are nowhere: not in any table's
text, not in PostgreSQL's data files (after VACUUM FULL and a CHECKPOINT), not in the object
store, not in the logs. The purge resumes after being cut short and is harmless twice; a deleted
recorder takes its sessions and keys with it."""

from __future__ import annotations

import asyncio
import random
import subprocess
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from actors import auth
from actors.deletion.purger import purge, session_prefixes
from actors.storage import training_repo
from actors.storage.objectstore import make_object_store
from configs.dataset import SessionSelection
from jobs.purge import run_purge
from tests.support.client import Api
from tests.support.recorders import record_finished, recorder_client
from tests.support.sessions import page_png, record, shop_session, wait_terminal
from tests.support.stack import make_key, run_db, write_object

pytestmark = pytest.mark.integration

TYPED = "marmalade-quokka-typed"
HOST = "zanzibar-pelican.example"


def _planted_events() -> tuple[list[dict[str, Any]], list[tuple[str, int, bytes]]]:
    events, shots = shop_session(n_events=40, n_screens=3)
    # Pictures no other test uploads: their hashes are planted values too.
    base = random.randrange(10**6, 10**9)
    shots = [(shot_id, seq, page_png(base + i)) for i, (shot_id, seq, _) in enumerate(shots)]
    for event in events:
        if event.get("value") == "kettle":
            event["value"] = TYPED
        if isinstance(event.get("url"), str):
            event["url"] = event["url"].replace("shop.example", HOST)
    return events, shots


def _grep(root: Path, needles: list[bytes], skip: tuple[str, ...] = ()) -> list[str]:
    """Files under `root` holding any needle (grep -F over bytes), skipping paths with `skip`."""
    if not root.exists():
        return []
    args = ["grep", "-rlaF"] + [a for n in needles for a in ("-e", n.decode())] + [str(root)]
    found = subprocess.run(args, capture_output=True, text=True).stdout.split()
    return [f for f in found if not any(s in f for s in skip)]


async def _tables_holding(conn: asyncpg.Connection, needles: list[str]) -> list[str]:
    """Every table of the schema whose rows' text holds a needle."""
    tables = [r["t"] for r in await conn.fetch(
        "SELECT quote_ident(table_name) AS t FROM information_schema.tables"
        " WHERE table_schema = 'public' AND table_type = 'BASE TABLE'")]
    hits = []
    for table in tables:
        for needle in needles:
            if await conn.fetchval(f"SELECT count(*) FROM {table} t WHERE t::text LIKE '%' || $1 || '%'", needle):
                hits.append(f"{table}: {needle}")
    return hits


def _db(stack: Any, fn: Any) -> Any:
    async def go() -> Any:
        conn = await asyncpg.connect(stack.settings.database.url.get_secret_value())
        try:
            return await fn(conn)
        finally:
            await conn.close()
    return asyncio.run(go())


async def _checkpoint(conn: asyncpg.Connection) -> None:
    # Every table, not a list: whichever tables a session's rows reached (cards, flags, moderation,
    # search documents, ...) keep dead copies in their files until vacuumed.
    tables = [r["t"] for r in await conn.fetch(
        "SELECT quote_ident(table_name) AS t FROM information_schema.tables"
        " WHERE table_schema = 'public' AND table_type = 'BASE TABLE'")]
    for table in tables:
        await conn.execute(f"VACUUM FULL {table}")
    # The planner's statistics sample column values (pg_statistic's most common values): they keep
    # a purged value until the next ANALYZE, and then its dead copy until pg_statistic is vacuumed.
    await conn.execute("ANALYZE")
    await conn.execute("VACUUM FULL pg_statistic")
    await conn.execute("CHECKPOINT")


def _keys(stack: Any, org: uuid.UUID, sid: str) -> list[str]:
    async def go() -> list[str]:
        store = make_object_store(stack.settings.object_store)
        try:
            found: list[str] = []
            for prefix in session_prefixes(org, uuid.UUID(sid)):
                found += await store.list(prefix)
            return found
        finally:
            await store.close()
    return asyncio.run(go())


def _dataset_with(stack: Any, sid: str) -> tuple[uuid.UUID, uuid.UUID, str]:
    """A succeeded dataset whose train split holds the session, its file, and a model on it."""
    ds, ft, model = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    key = f"datasets/{auth.DEFAULT_ORG_ID}/{ds}/train.jsonl"
    write_object(stack, key, f'{{"text": "{TYPED}"}}\n'.encode())
    run_db(stack, "INSERT INTO datasets (dataset_id, org_id, name, status, config, code_version, files,"
                  " train_sessions) VALUES ($1, $2, 'deletion', 'succeeded', '{}', 'test', $3::jsonb, ARRAY[$4::uuid])",
           ds, auth.DEFAULT_ORG_ID, f'{{"train.jsonl": {{"key": "{key}", "bytes": 1}}}}', uuid.UUID(sid))
    run_db(stack, "INSERT INTO finetunes (finetune_id, org_id, dataset_id, provider, base_model, settings, status)"
                  " VALUES ($1, $2, $3, 'local', 'base', '{}', 'succeeded')", ft, auth.DEFAULT_ORG_ID, ds)
    run_db(stack, "INSERT INTO models (model_id, org_id, name, version, provider, base_model, finetune_id,"
                  " dataset_id, metrics) VALUES ($1, $2, $3, 1, 'local', 'base', $4, $5, '{}')",
           model, auth.DEFAULT_ORG_ID, f"deletion-{model}", ft, ds)
    return ds, model, key


def _read_routes(http: httpx.Client, sid: str) -> dict[str, int]:
    base = f"/v1/sessions/{sid}"
    return {path: http.get(path).status_code for path in (
        base, base + "/events", base + "/archive", base + "/replay", base + "/flags", base + "/screenshots/shot-0000")}


@pytest.fixture(scope="module")
def admin(stack: Any) -> Api:
    return Api(stack.endpoint, make_key(stack, ["admin"]))


def test_deleted_session_is_hidden_then_purged_everywhere(stack: Any, api: Api, admin: Api) -> None:
    events, shots = _planted_events()
    task = f"deletion {uuid.uuid4()}"
    sid = record(api, events, shots, task=task)
    assert wait_terminal(api, sid)["status"] in ("ready", "rejected")
    shot_sha = run_db(stack, "SELECT sha256 FROM screenshots WHERE session_id = $1 LIMIT 1", uuid.UUID(sid))[0][0]
    run_db(stack, "INSERT INTO vision_cache (image_sha256, model, prompt_version, analysis) VALUES"
                  " ($1, 'test', 'v1', $2::jsonb) ON CONFLICT DO NOTHING", shot_sha, f'{{"caption": "{TYPED}"}}')
    ds, model, ds_key = _dataset_with(stack, sid)
    needles = [TYPED, HOST, shot_sha]
    assert _db(stack, lambda c: _tables_holding(c, [TYPED]))  # planted, and findable: the search can fail
    assert api.http.get(f"/v1/sessions/{sid}/events").status_code == 200
    assert api.http.get("/v1/sessions", params={"q": task}).json()["total"] == 1

    settings = stack.settings.deletion.model_copy(update={"grace_period_s": 0})

    async def cut(step: str | None) -> Any:
        pool = await asyncpg.create_pool(stack.settings.database.url.get_secret_value(), min_size=0, max_size=1)
        store = make_object_store(stack.settings.object_store)
        try:
            return await purge(pool, store, settings, stop_after=step)
        finally:
            await store.close()
            await pool.close()

    # Sessions other tests deleted (the authorisation matrix deletes some) are purged first: a
    # purge cut short stops after a step of the first session due, which must be this one.
    asyncio.run(cut(None))

    deleted = admin.http.delete(f"/v1/sessions/{sid}")
    assert deleted.status_code == 202, deleted.text
    assert set(deleted.json()) == {"session_id", "deleted_at", "purge_after"}
    assert admin.http.delete(f"/v1/sessions/{sid}").status_code == 404  # once: then it is gone
    # Hidden from every read at once: the session's routes, list and search, the review queue,
    # the dashboard, a new dataset's selection.
    assert set(_read_routes(api.http, sid).values()) == {404}, _read_routes(api.http, sid)
    assert set(_read_routes(admin.http, sid).values()) == {404}
    listed = api.http.get("/v1/sessions", params={"limit": 100}).json()
    assert sid not in {i["session_id"] for i in listed["items"]}
    assert api.http.get("/v1/sessions", params={"q": task}).json()["total"] == 0
    assert sid not in admin.http.get("/v1/review/queue", params={"limit": 100}).text
    assert sid not in admin.http.get("/v1/stats").text
    picked = _db(stack, lambda c: training_repo.select_sessions(
        c, auth.DEFAULT_ORG_ID, SessionSelection(statuses=["ready", "rejected"], task_contains=task)))
    assert picked == []
    # Writes are refused; whatever an open stream or another replica sends is not stored.
    late = api.post_events(sid, [{"seq": 500, "type": "scroll", "ts": 1732262400000, "x": 0, "y": 1}])
    assert late.status_code == 404, late.text
    assert run_db(stack, "SELECT count(*) FROM interactions WHERE session_id = $1 AND seq = 500",
                  uuid.UUID(sid))[0][0] == 0
    assert admin.http.post(f"/v1/sessions/{sid}/flags", json={"reason": "other"}).status_code == 404

    # The positive control for the file grep: the values are in the data files before the purge.
    _db(stack, _checkpoint)
    pgdata = Path(stack.state_dir) / "pgdata"
    assert _grep(pgdata, [TYPED.encode()], skip=("pg_wal",))
    # Within the grace period nothing is purged.
    kept = asyncio.run(run_purge(stack.settings))
    assert sid not in kept.session_ids

    # A purge cut short after each step, then finished; then run again (nothing left to do).
    asyncio.run(cut("plan"))
    asyncio.run(cut("rows"))
    assert run_db(stack, "SELECT count(*) FROM sessions WHERE session_id = $1", uuid.UUID(sid))[0][0] == 0
    assert _keys(stack, auth.DEFAULT_ORG_ID, sid)  # the rows went first; the objects are still listed
    done = asyncio.run(run_purge(stack.settings, grace_s=0))
    assert sid in done.session_ids
    again = asyncio.run(run_purge(stack.settings, grace_s=0))
    assert sid not in again.session_ids

    # Nowhere: no table's text, no data file, no object, no log line.
    assert _db(stack, lambda c: _tables_holding(c, needles)) == []
    _db(stack, _checkpoint)
    assert _grep(pgdata, [n.encode() for n in needles], skip=("pg_wal",)) == []
    assert _keys(stack, auth.DEFAULT_ORG_ID, sid) == []
    objects = Path(stack.settings.object_store.local_dir) if stack.settings.object_store.local_dir else None
    if objects is not None:
        assert _grep(objects, [TYPED.encode(), HOST.encode()]) == []
    logs = [Path(stack.state_dir)] + ([Path(stack.ray_temp_dir)] if stack.ray_temp_dir else [])
    for root in logs:
        assert _grep(root, [TYPED.encode(), HOST.encode()], skip=("pg_wal", "pgdata")) == []
    # The dataset that held it is withdrawn with its files; the model trained on it is flagged.
    ds_row = run_db(stack, "SELECT withdrawn_at, files::text AS files FROM datasets WHERE dataset_id = $1", ds)[0]
    assert ds_row["withdrawn_at"] is not None and ds_row["files"] == "{}"
    assert run_db(stack, "SELECT flagged_at FROM models WHERE model_id = $1", model)[0][0] is not None
    assert not Path(objects / ds_key).exists() if objects is not None else True
    # The audit trail has the delete and the purge, with ids and counts only.
    entries = run_db(stack, "SELECT action, details::text AS details FROM audit_log WHERE target = $1"
                            " AND action IN ('session.delete', 'data.purge') ORDER BY audit_id", sid)
    assert [e["action"] for e in entries] == ["session.delete", "data.purge"]
    assert not any(TYPED in e["details"] for e in entries)


def test_deleting_a_recorder_takes_its_sessions_and_keys(stack: Any, api: Api, admin: Api) -> None:
    recorder, rec = recorder_client(stack)
    sids = [rec.create_session(task=f"recorder {recorder}") for _ in range(2)]
    for sid in sids:
        put = rec.http.put(f"/v1/sessions/{sid}/screenshots/s1", content=page_png(1), headers={"Content-Type": "image/png"})
        assert put.status_code == 201, put.text
    # Refused: a reader, an unknown id, a malformed one, another organisation's admin.
    assert api.http.delete(f"/v1/recorders/{recorder}").status_code == 403
    assert admin.http.delete(f"/v1/recorders/{uuid.uuid4()}").status_code == 404
    assert admin.http.delete("/v1/recorders/not-a-uuid").status_code == 404
    other_org = uuid.uuid4()
    run_db(stack, "INSERT INTO organizations (org_id, name) VALUES ($1, $2)", other_org, f"del-{other_org}")
    other = Api(stack.endpoint, make_key(stack, ["admin"], org_id=other_org))
    assert other.http.delete(f"/v1/recorders/{recorder}").status_code == 404
    assert other.http.delete(f"/v1/sessions/{sids[0]}").status_code == 404
    assert api.session(sids[0])["session_id"] == sids[0]  # the refusals changed nothing

    gone = admin.http.delete(f"/v1/recorders/{recorder}")
    assert gone.status_code == 202, gone.text
    assert gone.json()["sessions"] == 2 and gone.json()["keys_revoked"] == 1
    for sid in sids:
        assert api.http.get(f"/v1/sessions/{sid}").status_code == 404
    assert run_db(stack, "SELECT count(*) FROM api_keys WHERE recorder_id = $1 AND revoked_at IS NULL",
                  recorder)[0][0] == 0  # its key records nothing more (once the replicas' key caches expire)

    report = asyncio.run(run_purge(stack.settings, grace_s=0))
    assert set(sids) <= set(report.session_ids) and report.recorders >= 1
    assert run_db(stack, "SELECT count(*) FROM recorders WHERE recorder_id = $1", recorder)[0][0] == 0
    assert run_db(stack, "SELECT count(*) FROM sessions WHERE session_id = ANY($1::uuid[])",
                  [uuid.UUID(s) for s in sids])[0][0] == 0
    assert all(_keys(stack, auth.DEFAULT_ORG_ID, s) == [] for s in sids)


def test_purge_time_of_a_recorder_with_100_sessions(stack: Any, admin: Api) -> None:
    """The README's figure (printed, not asserted): a recorder with 100 sessions of 20 events and
    one screenshot each, finished, deleted and purged."""
    recorder, rec = recorder_client(stack)
    sids, finished = record_finished(rec, admin, 100, "purge figure")
    deleted = admin.http.delete(f"/v1/recorders/{recorder}")
    assert deleted.status_code == 202 and deleted.json()["sessions"] == 100
    report = asyncio.run(run_purge(stack.settings, grace_s=0))
    assert report.sessions >= 100
    print(f"\npurge figure: {report.as_dict()} statuses {sorted(set(finished))}")
