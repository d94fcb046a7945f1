"""What tracemill keeps about a recorded session, and where: the one list the purge removes
(actors/deletion, actors/storage/deletion_repo.py) and the export gathers (actors/export).

A session's rows are in `sessions` and the tables that cascade from it (interactions,
screenshots, vision_calls, privacy_audit, review_flags, moderation_scores); its objects are
named by those rows (screenshots' raw and painted keys, the archive) and live under
`session_prefixes`; its pictures' hashes key the vision cache; datasets that drew on it list it
in their train or validation sessions, and models name those datasets.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

__all__ = [
    "SESSION_TABLES",
    "datasets_holding",
    "datasets_holding_sql",
    "export_prefix",
    "models_of",
    "session_image_hashes_sql",
    "session_object_keys_sql",
    "session_prefixes",
]

Conn = asyncpg.Connection | asyncpg.Pool

# Tables whose rows belong to one session (each has session_id and cascades from sessions).
SESSION_TABLES = ("interactions", "screenshots", "vision_calls", "privacy_audit", "review_flags",
                  "moderation_scores")


def session_prefixes(org_id: uuid.UUID, session_id: uuid.UUID) -> list[str]:
    """Every object-store prefix a session's objects live under: raw uploads
    (serve_app/screenshots_api.py), painted WebPs (actors/processing/screenshots.py), contact
    sheets (actors/cards/step.py) and the archive (actors/processing/archive.py)."""
    return [f"raw/{org_id}/{session_id}/", f"webp/{org_id}/{session_id}/",
            f"screenshots/{org_id}/{session_id}/", f"archives/{org_id}/{session_id}.zip"]


def export_prefix(org_id: uuid.UUID, recorder_id: uuid.UUID) -> str:
    """Where a recorder's export ZIPs live (actors/export): a copy of every session it recorded,
    so the purge of any of them removes the prefix."""
    return f"exports/{org_id}/{recorder_id}/"


def session_image_hashes_sql(session_id: str) -> str:
    """SQL array of the hashes of a session's pictures (the vision cache's keys); `session_id`
    is the SQL expression naming the session."""
    return (f"ARRAY(SELECT sha256 FROM screenshots WHERE session_id = {session_id} AND sha256 IS NOT NULL"
            f" UNION SELECT image_sha256 FROM vision_calls WHERE session_id = {session_id})")


def session_object_keys_sql(session_id: str, archive_key: str) -> str:
    """SQL array of the object keys a session's rows name: its screenshots' raw and painted
    images and its archive (`archive_key`, the SQL expression of sessions.archive_key)."""
    return (f"ARRAY(SELECT k FROM (SELECT unnest(ARRAY[raw_key, webp_key]) AS k FROM screenshots"
            f" WHERE session_id = {session_id} UNION SELECT {archive_key}) keys WHERE k IS NOT NULL)")


def datasets_holding_sql(session_ids: str) -> str:
    """SQL condition on `datasets`: it drew on any of `session_ids` (an SQL uuid[] expression)."""
    return f"(train_sessions && {session_ids} OR validation_sessions && {session_ids})"


async def datasets_holding(conn: Conn, session_ids: list[uuid.UUID]) -> list[dict[str, Any]]:
    """The datasets that drew on any of the sessions, with which of them they hold."""
    rows = await conn.fetch(
        "SELECT dataset_id, name, status, created_at, finished_at, withdrawn_at, withdrawn_reason,"
        " ARRAY(SELECT unnest(train_sessions || validation_sessions) INTERSECT SELECT unnest($1::uuid[]))"
        "  AS sessions FROM datasets WHERE " + datasets_holding_sql("$1::uuid[]") + " ORDER BY created_at",
        session_ids)
    return [dict(r) for r in rows]


async def models_of(conn: Conn, dataset_ids: list[uuid.UUID]) -> list[dict[str, Any]]:
    """The models trained on any of the datasets (the registry's rows, flags included)."""
    rows = await conn.fetch(
        "SELECT model_id, name, version, provider, base_model, dataset_id, created_at, flagged_at, flag_reason"
        " FROM models WHERE dataset_id = ANY($1::uuid[]) ORDER BY created_at", dataset_ids)
    return [dict(r) for r in rows]
