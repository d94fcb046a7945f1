"""After a fault scenario: hold what the server promised (cluster.chaos.resending_load.LoadTrack)
against what PostgreSQL and the object store actually hold.

- acked events: every seq 0..acked_through of a session is a row in `interactions`;
  `lost` counts the ones that are not.
- duplicates: the primary key (session_id, seq) forbids two rows, so a duplicate could only
  show as a counter that counted an event twice: `sessions.event_count` above the rows stored
  (and, for completeness, repeated seqs among the rows).
- screenshots: every one answered 2xx has its row, and its object (the WebP once compressed,
  else the raw upload) exists in the object store.
- finished sessions: every finish answered 202 reaches ready/rejected/failed within a bound.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from typing import Any

import asyncpg

from actors.storage.objectstore import make_object_store
from cluster.chaos.resending_load import LoadTrack
from configs.settings import TracemillSettings

__all__ = ["TERMINAL", "verify"]

TERMINAL = ("ready", "rejected", "failed")


async def verify(track: LoadTrack, settings: TracemillSettings, terminal_timeout_s: float = 120.0) -> dict[str, Any]:
    conn = await asyncpg.connect(settings.database.url.get_secret_value())
    store = make_object_store(settings.object_store)
    try:
        counts = Counter[str]()
        problems: list[str] = []
        for s in track.sessions:
            sid = uuid.UUID(s.sid)
            seqs = [r["seq"] for r in await conn.fetch("SELECT seq FROM interactions WHERE session_id = $1", sid)]
            stored = set(seqs)
            row = await conn.fetchrow("SELECT event_count FROM sessions WHERE session_id = $1", sid)
            counted = int(row["event_count"]) if row else 0
            lost = sum(1 for q in range(s.acked_through + 1) if q not in stored)
            # A vanished row also leaves the counter above the rows: that one is counted as lost.
            duplicated = (len(seqs) - len(stored)) + max(0, counted - len(stored) - lost)
            counts.update(acked=s.acked_through + 1, stored=len(stored), lost=lost, duplicated=duplicated,
                          shots_acked=len(s.shots_ok))
            if lost or duplicated:
                problems.append(f"{s.sid}: acked_through={s.acked_through} stored={len(stored)} "
                                f"event_count={counted} lost={lost} duplicated={duplicated}")
            for shot_id in s.shots_ok:
                shot = await conn.fetchrow("SELECT raw_key, webp_key FROM screenshots"
                                           " WHERE session_id = $1 AND screenshot_id = $2", sid, shot_id)
                key = (shot["webp_key"] or shot["raw_key"]) if shot else None
                if key is None or await store.size(key) is None:
                    counts["shots_missing"] += 1
                    problems.append(f"{s.sid}/{shot_id}: answered 2xx, {'no object' if shot else 'no row'}")
        terminal = await _wait_terminal(conn, [uuid.UUID(s.sid) for s in track.sessions if s.finish_accepted],
                                        terminal_timeout_s)
        stuck = terminal.pop("stuck")
        problems += [f"{sid}: still {status} after {terminal_timeout_s:.0f} s" for sid, status in stuck]
        return {
            "sessions": len(track.sessions),
            "events_acked": counts["acked"],
            "events_stored": counts["stored"],
            "lost": counts["lost"],
            "duplicated": counts["duplicated"],
            "screenshots_acked": counts["shots_acked"],
            "screenshots_missing": counts["shots_missing"],
            "finished": sum(1 for s in track.sessions if s.finish_accepted),
            "final_status": terminal["statuses"],
            "stuck": len(stuck),
            "terminal_within_s": terminal["within_s"],
            "problems": problems[:20],
        }
    finally:
        await store.close()
        await conn.close()


async def _wait_terminal(conn: asyncpg.Connection, sids: list[uuid.UUID], timeout_s: float) -> dict[str, Any]:
    """Poll until every session is terminal or the bound passes; report what each became."""
    started = time.monotonic()
    while True:
        rows = await conn.fetch("SELECT session_id, status FROM sessions WHERE session_id = ANY($1)", sids)
        statuses = {r["session_id"]: r["status"] for r in rows}
        pending = [(str(sid), statuses.get(sid, "missing")) for sid in sids if statuses.get(sid) not in TERMINAL]
        elapsed = time.monotonic() - started
        if not pending or elapsed > timeout_s:
            return {"statuses": dict(Counter(statuses.values())), "stuck": pending, "within_s": round(elapsed, 1)}
        await asyncio.sleep(0.5)


async def vision_outcomes(settings: TracemillSettings, sids: list[str]) -> dict[str, int]:
    """How the sessions' screenshots were analysed: vision_calls outcomes (ok / fallback)."""
    conn = await asyncpg.connect(settings.database.url.get_secret_value())
    try:
        rows = await conn.fetch("SELECT outcome, count(*) AS n FROM vision_calls WHERE session_id = ANY($1)"
                                " GROUP BY outcome", [uuid.UUID(s) for s in sids])
        return {r["outcome"]: int(r["n"]) for r in rows}
    finally:
        await conn.close()
