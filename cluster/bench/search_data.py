"""Synthetic finalised sessions written straight into PostgreSQL with `generate_series`, for the
search benchmark and the EXPLAIN test: a million events in seconds rather than the hours
ingest would take. Sessions are inserted as `finalizing` and then moved to their final status
with an analysis, so migration 0008's trigger fills site, title, intent, frustration and the
search document exactly as it does for recorded sessions.

Words: session i's pages and buttons name 3 of 40 product words (i to i+2), so each word is in
~3/40 of the sessions (a common term); its task names a code `sku<n>`, n < sessions/10, each
in ~10 sessions (a rare term).
"""

from __future__ import annotations

import uuid
from typing import Any

__all__ = ["COMMON_WORD", "PRODUCTS", "generate"]

PRODUCTS = [
    "kettle", "lamp", "toaster", "blender", "chair", "desk", "sofa", "mirror", "rug", "pillow",
    "blanket", "mug", "teapot", "skillet", "grinder", "scale", "fan", "heater", "vacuum", "iron",
    "jacket", "boots", "scarf", "gloves", "backpack", "wallet", "watch", "umbrella", "tent", "bicycle",
    "helmet", "camera", "tripod", "speaker", "headphones", "keyboard", "monitor", "router", "charger", "drone",
]
COMMON_WORD = "kettle"

_SESSIONS = """
INSERT INTO sessions (session_id, org_id, type, status, task, request_hash, event_count,
                      screenshot_count, max_seq, acked_through, started_at, created_at)
SELECT md5($2 || i)::uuid, $1, (ARRAY['human', 'automated', 'hybrid'])[1 + i % 3], 'finalizing',
       'buy a ' || ($4::text[])[1 + i % 40] || ' sku' || (i % greatest($3::int / 10, 1)),
       '\\x00'::bytea, $5::bigint, 0, $5::bigint - 1, $5::bigint - 1,
       now() - make_interval(mins => i), now() - make_interval(mins => i)
FROM generate_series(1, $3::int) AS i
"""

_EVENTS = """
INSERT INTO interactions (session_id, seq, type, ts, url, target, payload, session_month)
SELECT md5($1 || i)::uuid, j,
       CASE WHEN j % 10 = 0 THEN 'navigation' ELSE 'click' END,
       now() - make_interval(mins => i) + make_interval(secs => j),
       'https://shop' || (i % 50) || '.example/p/' || ($4::text[])[1 + (i + j / 10 % 3) % 40] || '-' || j / 10,
       CASE WHEN j % 10 <> 0 THEN jsonb_build_object(
            'tag', 'button', 'text', 'Add ' || ($4::text[])[1 + (i + j % 3) % 40] || ' to cart',
            'attributes', jsonb_build_object('data-testid', 'add-' || j % 7)) END,
       CASE WHEN j % 10 = 0 THEN jsonb_build_object(
            'title', initcap(($4::text[])[1 + (i + j / 10 % 3) % 40]) || ' | Shop ' || (i % 50))
            ELSE jsonb_build_object('x', 100 + j, 'y', 200) END,
       s.month
FROM generate_series(1, $2) AS i
CROSS JOIN LATERAL (SELECT tracemill_session_month(created_at) AS month FROM sessions
                    WHERE session_id = md5($1 || i)::uuid) AS s,
     generate_series(0, $3 - 1) AS j
"""

_FINALISE = """
UPDATE sessions SET
    status = CASE WHEN ('x' || substr(session_id::text, 1, 8))::bit(32)::int % 5 = 0
                  THEN 'rejected' ELSE 'ready' END,
    quality_overall = round((abs(('x' || substr(session_id::text, 10, 4))::bit(16)::int) / 65535.0)::numeric, 4),
    finalized_at = now(), finalize_stage = 'done', ended_at = started_at + interval '10 minutes',
    analysis = jsonb_build_object('context', jsonb_build_object(
        'intent_counts', jsonb_build_object(
            (ARRAY['search', 'browse', 'compare', 'add_to_cart', 'checkout'])[
                1 + abs(('x' || substr(session_id::text, 15, 4))::bit(16)::int) % 5], 3, 'navigate', 9),
        'frustration', CASE WHEN ('x' || substr(session_id::text, 20, 4))::bit(16)::int % 7 = 0
                            THEN '[{"kind": "rage_click"}]'::jsonb ELSE '[]'::jsonb END))
WHERE org_id = $1 AND status = 'finalizing'
"""


async def generate(conn: Any, org_id: uuid.UUID, sessions: int, events_per_session: int,
                   tag: str | None = None) -> str:
    """Insert `sessions` finalised sessions of `events_per_session` events each into `org_id`
    (which must exist). `tag` makes the session ids (md5(tag || i)); returns it."""
    tag = tag or uuid.uuid4().hex[:12]
    await conn.execute(_SESSIONS, org_id, tag, sessions, PRODUCTS, events_per_session)
    await conn.execute(_EVENTS, tag, sessions, events_per_session, PRODUCTS)
    await conn.execute(_FINALISE, org_id)
    # VACUUM, not only ANALYZE: it moves the GIN index's pending list (where rows inserted in
    # bulk wait) into the index proper, as autovacuum does on a live database; until then the
    # planner rightly prices the index high and scans the table.
    await conn.execute("VACUUM ANALYZE sessions")
    await conn.execute("ANALYZE interactions")
    return tag
