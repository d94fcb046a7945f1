"""A workspace's data key rotated without downtime (`tracemill keys rotate-data-key`).

1. A new data key is made; it is the workspace's current key at once, and every writer uses it
   within `encryption.active_key_ttl_s` (their cached choice expires).
2. The workspace's events are re-encrypted under it in batches of `encryption.rotate_batch`
   rows, one short transaction each, in (session, seq) order. Readers go on reading all along:
   every value names its own key, and the old keys stay until the end. A plain row (stored
   before the workspace was encrypted) is encrypted too, so a first "rotation" turns
   encryption on for what is already stored.
3. After the writers' cache time, a second pass takes what a writer still wrote under an old
   key meanwhile; the old keys are then retired (kept, never used for writes again).
An interrupted rotation is resumed by running it again (a new key; rows under any older key move).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncpg

from actors.crypto.event_fields import is_encrypted_row, open_row, row_key_ids, seal_row
from actors.crypto.keyring import Keyring

__all__ = ["Rotation", "rotate_data_key"]

_PAGE = (
    "SELECT i.session_id, i.seq, i.type, i.url, i.target::text AS target, i.payload::text AS payload"
    " FROM interactions i JOIN sessions s ON s.session_id = i.session_id"
    " WHERE s.workspace_id = $1 AND (i.session_id, i.seq) > ($2::uuid, $3::bigint)"
    " ORDER BY i.session_id, i.seq LIMIT $4"
)
_COUNT = ("SELECT count(*) FROM interactions i JOIN sessions s ON s.session_id = i.session_id"
          " WHERE s.workspace_id = $1")
# Only a row still as it was read is replaced: nothing else rewrites stored events, but a
# second rotation started by mistake must not interleave with this one's writes.
_UPDATE = (
    "UPDATE interactions SET url = $3, target = $4::jsonb, payload = $5::jsonb"
    " WHERE session_id = $1 AND seq = $2 AND url IS NOT DISTINCT FROM $6 AND payload = $7::jsonb"
)
_LOWEST = uuid.UUID(int=0)


@dataclass
class Rotation:
    workspace_id: uuid.UUID
    new_key_id: int
    retired_key_ids: list[int]
    rows: int = 0             # the workspace's event rows when the rotation began
    re_encrypted: int = 0     # rows moved to the new key (or encrypted for the first time)
    passes: int = 0


async def rotate_data_key(pool: asyncpg.Pool, keyring: Keyring, workspace_id: uuid.UUID, *,
                          progress: Callable[[Rotation], None] | None = None,
                          settle_s: float | None = None) -> Rotation:
    """Rotate `workspace_id`'s data key and move its stored events to the new one."""
    old = [int(r["key_id"]) for r in await pool.fetch(
        "SELECT key_id FROM data_keys WHERE workspace_id = $1 AND retired_at IS NULL", workspace_id)]
    new_key_id = await keyring.create_key(pool, workspace_id)
    done = Rotation(workspace_id, new_key_id, old, rows=int(await pool.fetchval(_COUNT, workspace_id)))
    await _pass(pool, keyring, done, progress)
    # Writers that chose the old key just before the new one existed commit within their cache
    # time; the second pass takes what they wrote.
    await asyncio.sleep(keyring.settings.active_key_ttl_s + 1.0 if settle_s is None else settle_s)
    await _pass(pool, keyring, done, progress)
    if old:
        await pool.execute("UPDATE data_keys SET retired_at = clock_timestamp() WHERE key_id = ANY($1::int[])"
                           " AND retired_at IS NULL", old)
    return done


async def _pass(pool: asyncpg.Pool, keyring: Keyring, done: Rotation,
                progress: Callable[[Rotation], None] | None) -> None:
    done.passes += 1
    after: tuple[uuid.UUID, int] = (_LOWEST, -1)
    aead = await keyring.key(pool, done.new_key_id)
    while True:
        rows = await pool.fetch(_PAGE, done.workspace_id, after[0], after[1], keyring.settings.rotate_batch)
        if not rows:
            return
        after = (rows[-1]["session_id"], rows[-1]["seq"])
        updates: list[tuple[Any, ...]] = []
        for row in rows:
            if is_encrypted_row(row) and row_key_ids(row) == {done.new_key_id}:
                continue
            plain = await open_row(keyring, pool, row["session_id"], row)
            sealed = seal_row(aead, done.new_key_id, (row["session_id"], row["seq"], row["type"], None,
                                                      plain["url"], plain["target"], plain["payload"]))
            updates.append((row["session_id"], row["seq"], sealed[4], sealed[5], sealed[6],
                            row["url"], row["payload"]))
        if updates:
            async with pool.acquire() as conn, conn.transaction():
                await conn.executemany(_UPDATE, updates)
            done.re_encrypted += len(updates)
        if progress is not None:
            progress(done)
