"""The session list: filters, sorts, keyset pages and full-text search, as parameterised SQL.

`SessionQuery` is the validated form of `GET /v1/sessions`'s query; `list_sql` turns it into
two statements (the page and the total) whose only variable parts are chosen from fixed
tables here: every value the caller sent is a bind parameter.

Indexes (migration 0008): each sort has an (org_id, sort key, session_id) btree, so a page is
an index range scan that stops after `limit + 1` rows, in either direction; `q` uses the GIN
index on the per-session `search_doc`. Sorting by event count has no index (its counter is
written on every committed batch): that sort reads the organisation's matching rows and keeps
the top `limit` in memory.

Cursors are opaque to clients: base64url JSON of the sort, the last row's sort key and its
session id. A cursor is valid only with the sort it was made for.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import asyncpg
from pydantic import BaseModel, ConfigDict, Field, model_validator

from actors.errors import InvalidInput

__all__ = [
    "ITEM_COLUMNS", "MAX_LIMIT", "MAX_Q_CHARS", "Cursor", "SessionQuery", "decode_cursor",
    "encode_cursor", "item", "list_sessions", "list_sql",
]

MAX_LIMIT = 100
MAX_Q_CHARS = 200
MAX_CURSOR_CHARS = 400

Sort = Literal["-started_at", "started_at", "-quality", "quality", "-events", "events"]
# Sort name → the SQL expression its index (migration 0008) is built on.
_SORT_KEYS = {
    "started_at": "coalesce(s.started_at, s.created_at)",
    "quality": "coalesce(s.quality_overall, -1)",
    "events": "s.event_count",
}
_WORD = re.compile(r"\w", re.UNICODE)

ITEM_COLUMNS = (
    "s.session_id, s.status, s.type, s.task, s.site, s.started_at, s.created_at, s.ended_at,"
    " s.event_count, s.screenshot_count, s.quality_overall, s.intent, s.frustration,"
    " s.review_state, s.title, s.card_title, s.caption, s.sentiment_label, s.sentiment_polarity"
)


class SessionQuery(BaseModel):
    """The list's query parameters (every one optional). Unknown names are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: Literal["recording", "finalizing", "ready", "rejected", "failed"] | None = None
    type: Literal["human", "automated", "hybrid"] | None = None
    quality_min: float | None = Field(None, ge=0, le=1)
    quality_max: float | None = Field(None, ge=0, le=1)
    since: datetime | None = Field(None, description="started at or after (ISO 8601 with a timezone)")
    until: datetime | None = Field(None, description="started before")
    site: str | None = Field(None, min_length=1, max_length=253, pattern=r"^[A-Za-z0-9.-]+$")
    intent: Literal["search", "browse", "compare", "add_to_cart", "checkout", "login",
                    "form_fill"] | None = None
    frustration: bool | None = None
    sentiment: Literal["negative", "neutral", "positive", "none"] | None = Field(
        None, description="the session's typed-text sentiment; none: nothing typed was scored")
    key_id: uuid.UUID | None = None
    review_state: Literal["none", "pending", "reviewed", "resolved"] | None = None
    q: str | None = Field(None, min_length=1, max_length=MAX_Q_CHARS)
    sort: Sort = "-started_at"
    cursor: str | None = Field(None, min_length=1, max_length=MAX_CURSOR_CHARS)
    limit: int = Field(25, ge=1, le=MAX_LIMIT)

    @model_validator(mode="after")
    def _ranges(self) -> SessionQuery:
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise ValueError(f"{name} needs a timezone (e.g. 2026-12-01T00:00:00Z)")
        if self.since and self.until and self.since >= self.until:
            raise ValueError("since must be before until")
        if self.quality_min is not None and self.quality_max is not None and self.quality_min > self.quality_max:
            raise ValueError("quality_min must not exceed quality_max")
        if self.q is not None and not _WORD.search(self.q):
            raise ValueError("q must contain at least one letter or digit")
        return self


@dataclass(frozen=True)
class Cursor:
    sort: str
    key: Any  # datetime for started_at, float for quality, int for events
    session_id: uuid.UUID


def encode_cursor(sort: str, key: Any, session_id: uuid.UUID) -> str:
    value = key.isoformat() if isinstance(key, datetime) else key
    raw = json.dumps({"s": sort, "k": value, "id": str(session_id)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _bad_cursor(why: str) -> InvalidInput:
    return InvalidInput("invalid query parameters", [{"field": "query.cursor", "error": why}])


def decode_cursor(text: str, sort: str) -> Cursor:
    """The cursor a previous page returned; a malformed one, or one made for another sort, is
    refused (422) rather than silently restarting the list."""
    try:
        data = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        if not isinstance(data, dict) or set(data) != {"s", "k", "id"}:
            raise ValueError
        session_id = uuid.UUID(str(data["id"]))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise _bad_cursor("not a cursor this API returned") from None
    if data["s"] != sort:
        raise _bad_cursor(f"made for sort={data['s']!s:.20}, not sort={sort}")
    key, name = data["k"], sort.lstrip("-")
    try:
        if name == "started_at" and isinstance(key, str):
            parsed: Any = datetime.fromisoformat(key)
            if parsed.tzinfo is None:
                raise ValueError
        elif name == "quality" and isinstance(key, (int, float)) and not isinstance(key, bool):
            parsed = float(key)
        elif name == "events" and isinstance(key, int) and not isinstance(key, bool):
            parsed = key
        else:
            raise ValueError
    except ValueError:
        raise _bad_cursor("not a cursor this API returned") from None
    return Cursor(sort, parsed, session_id)


def _filters(query: SessionQuery, org_id: uuid.UUID,
             workspace_id: uuid.UUID | None = None) -> tuple[list[str], list[Any]]:
    where, args = ["s.org_id = $1", "s.deleted_at IS NULL"], [org_id]

    def add(clause: str, value: Any) -> None:
        args.append(value)
        where.append(clause.format(f"${len(args)}"))

    started = _SORT_KEYS["started_at"]
    for clause, value in (
        ("s.workspace_id = {}", workspace_id),  # migration 0009: the caller's workspace
        ("s.status = {}", query.status),
        ("s.type = {}", query.type),
        ("s.quality_overall >= {}", query.quality_min),
        ("s.quality_overall <= {}", query.quality_max),
        (started + " >= {}", query.since),
        (started + " < {}", query.until),
        ("s.site = {}", query.site.lower() if query.site else None),
        ("s.intent = {}", query.intent),
        ("s.created_by_key = {}", query.key_id),  # migration 0009 (H8): the key that created it
        ("s.review_state = {}", query.review_state),
        ("s.search_doc @@ websearch_to_tsquery('simple', {})", query.q),
    ):
        if value is not None:
            add(clause, value)
    if query.frustration is not None:
        where.append("s.frustration > 0" if query.frustration else "s.frustration = 0")
    if query.sentiment == "none":
        where.append("s.sentiment_label IS NULL")
    elif query.sentiment is not None:
        add("s.sentiment_label = {}", query.sentiment)
    return where, args


def list_sql(query: SessionQuery, org_id: uuid.UUID,
             workspace_id: uuid.UUID | None = None) -> tuple[str, str, list[Any], list[Any]]:
    """(page SQL, total SQL, page args, total args). The page fetches limit + 1 rows so the
    caller knows whether another page follows."""
    where, args = _filters(query, org_id, workspace_id)
    total_sql = f"SELECT count(*) FROM sessions s WHERE {' AND '.join(where)}"
    total_args = list(args)
    name = query.sort.lstrip("-")
    key = _SORT_KEYS[name]
    desc = query.sort.startswith("-")
    if query.cursor is not None:
        cursor = decode_cursor(query.cursor, query.sort)
        args += [cursor.key, cursor.session_id]
        op = "<" if desc else ">"
        where.append(f"({key}, s.session_id) {op} (${len(args) - 1}, ${len(args)})")
    direction = "DESC" if desc else "ASC"
    args.append(query.limit + 1)
    page_sql = (
        f"SELECT {ITEM_COLUMNS}, {key} AS sort_key FROM sessions s WHERE {' AND '.join(where)}"
        f" ORDER BY {key} {direction}, s.session_id {direction} LIMIT ${len(args)}"
    )
    return page_sql, total_sql, args, total_args


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def item(row: Any) -> dict[str, Any]:
    """One list entry, in the shape OWNERS.md fixes for the pages."""
    return {
        "session_id": str(row["session_id"]),
        "status": row["status"],
        "session_type": row["type"],
        "task": row["task"],
        "site": row["site"],
        "started_at": _iso(row["started_at"] or row["created_at"]),
        "finished_at": _iso(row["ended_at"]),
        "event_count": row["event_count"],
        "screenshot_count": row["screenshot_count"],
        "quality": row["quality_overall"],
        "intent": row["intent"],
        "frustration": row["frustration"],
        "review_state": row["review_state"],
        "title": row["title"],
        "card_title": row["card_title"],  # migration 0015 (actors/cards)
        "caption": row["caption"],
        "sentiment": row["sentiment_label"],
        "sentiment_polarity": row["sentiment_polarity"],
    }


async def list_sessions(conn: asyncpg.Pool | asyncpg.Connection, query: SessionQuery,
                        org_id: uuid.UUID, workspace_id: uuid.UUID | None = None) -> dict[str, Any]:
    page_sql, total_sql, args, total_args = list_sql(query, org_id, workspace_id)
    try:
        rows = await conn.fetch(page_sql, *args)
        total = await conn.fetchval(total_sql, *total_args)
    except asyncpg.UndefinedColumnError:
        # key_id filters on the column migration 0009 adds; before it, say so plainly.
        raise InvalidInput("invalid query parameters", [
            {"field": "query.key_id", "error": "sessions do not record their key yet"}]) from None
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    next_cursor = None
    if more and rows:
        last = rows[-1]
        next_cursor = encode_cursor(query.sort, last["sort_key"], last["session_id"])
    return {"items": [item(r) for r in rows], "next_cursor": next_cursor, "total": int(total)}
