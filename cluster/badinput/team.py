"""Cases for the routes of accounts, organisations and keys, search and review, moderation and
deletion and export: a wrong method on each (routing answers before any handler runs), and the bad bodies
and parameters each handler must refuse in the error shape without changing anything."""

from __future__ import annotations

from cluster.badinput.case import U401, U403, U404, U405, U422, BadCase

__all__ = ["team_cases"]

S = "/v1/sessions/@session@"
JSON = (("Content-Type", "application/json"),)
U404_422 = frozenset({404, 422})


def _wrong_methods() -> list[BadCase]:
    rows: list[tuple[str, str, str, str | None]] = [
        ("/docs/assets/{name}", "POST", "/docs/assets/swagger-ui.css", None),
        ("/v1/analytics/trends", "DELETE", "/v1/analytics/trends", "read"),
        ("/v1/audit", "DELETE", "/v1/audit", "admin"),
        ("/v1/auth/me", "POST", "/v1/auth/me", "read"),
        ("/v1/auth/password", "GET", "/v1/auth/password", None),
        ("/v1/auth/refresh", "GET", "/v1/auth/refresh", None),
        ("/v1/auth/signin", "GET", "/v1/auth/signin", None),
        ("/v1/flags/{flag_id}", "DELETE", "/v1/flags/@uuid@", "admin"),
        ("/v1/invitations", "DELETE", "/v1/invitations", "admin"),
        ("/v1/invitations/accept", "GET", "/v1/invitations/accept", None),
        ("/v1/keys", "DELETE", "/v1/keys", "admin"),
        ("/v1/moderation/thresholds", "DELETE", "/v1/moderation/thresholds", "admin"),
        ("/v1/orgs", "DELETE", "/v1/orgs", "admin"),
        ("/v1/recorders/{recorder_id}", "PATCH", "/v1/recorders/@uuid@", "admin"),
        ("/v1/recorders/{recorder_id}/export", "GET", "/v1/recorders/@uuid@/export", "admin"),
        ("/v1/exports/{export_id}", "DELETE", "/v1/exports/@uuid@", "admin"),
        ("/v1/exports/{export_id}/download", "POST", "/v1/exports/@uuid@/download", "admin"),
        ("/v1/review/queue", "POST", "/v1/review/queue", "admin"),
        ("/v1/sessions/{id}/flags", "DELETE", S + "/flags", "admin"),
        ("/v1/workspaces", "DELETE", "/v1/workspaces", "admin"),
    ]
    return [BadCase("method_path", r, m, p, "wrong_method", U405, k) for r, m, p, k in rows]  # type: ignore[arg-type]


def _bad_requests() -> list[BadCase]:
    return [
        BadCase("team", "/v1/auth/signin", "POST", "/v1/auth/signin", "no_password", U422, None, JSON,
                b'{"email": "a@example.org"}'),
        BadCase("team", "/v1/auth/signin", "POST", "/v1/auth/signin", "unknown_account", U401, None, JSON,
                b'{"email": "nobody-here@example.org", "password": "not the password at all"}'),
        BadCase("team", "/v1/auth/me", "GET", "/v1/auth/me", "no_credential", U401, None),
        BadCase("team", "/v1/auth/refresh", "POST", "/v1/auth/refresh", "no_cookie", U401, None),
        BadCase("team", "/v1/invitations/accept", "POST", "/v1/invitations/accept", "unknown_token", U404_422 | U401,
                None, JSON, b'{"token": "not-an-invitation", "password": "a long enough passphrase"}'),
        BadCase("team", "/v1/analytics/trends", "GET", "/v1/analytics/trends?metric=bogus", "unknown_metric", U422, "read"),
        BadCase("team", "/v1/sessions", "GET", "/v1/sessions?limit=101", "limit_101", U422, "read"),
        BadCase("team", "/v1/sessions", "GET", "/v1/sessions?cursor=%00%ff", "bad_cursor", U422, "read"),
        BadCase("team", "/v1/sessions/{id}/flags", "POST", S + "/flags", "unknown_reason", U422, "admin", JSON,
                b'{"reason": "because"}'),
        BadCase("team", "/v1/flags/{flag_id}", "PATCH", "/v1/flags/@uuid@", "unknown_flag", U404_422, "admin", JSON,
                b'{"state": "resolved"}'),
        BadCase("team", "/v1/keys", "POST", "/v1/keys", "unknown_role", U422, "admin", JSON, b'{"role": "god"}'),
        BadCase("team", "/v1/workspaces", "POST", "/v1/workspaces", "empty_name", U422, "admin", JSON, b'{"name": ""}'),
        BadCase("team", "/v1/moderation/thresholds", "PUT", "/v1/moderation/thresholds", "warn_above_block", U422,
                "admin", JSON, b'{"warn": 0.9, "block": 0.5}'),
        BadCase("team", "/v1/recorders/{recorder_id}", "DELETE", "/v1/recorders/not-a-uuid", "bad_id", U404_422, "admin"),
        BadCase("team", "/v1/recorders/{recorder_id}", "DELETE", "/v1/recorders/@uuid@", "unknown_recorder", U404,
                "admin"),
        BadCase("team", "/v1/recorders/{recorder_id}/export", "POST", "/v1/recorders/not-a-uuid/export", "bad_id",
                U422, "admin"),
        BadCase("team", "/v1/recorders/{recorder_id}/export", "POST", "/v1/recorders/@uuid@/export",
                "unknown_recorder", U404, "admin"),
        BadCase("team", "/v1/recorders/{recorder_id}/export", "POST", "/v1/recorders/@uuid@/export", "analyst",
                U403, "read"),
        BadCase("team", "/v1/exports/{export_id}", "GET", "/v1/exports/not-a-uuid", "bad_id", U422, "admin"),
        BadCase("team", "/v1/exports/{export_id}", "GET", "/v1/exports/@uuid@", "unknown_export", U404, "admin"),
        BadCase("team", "/v1/exports/{export_id}/download", "GET", "/v1/exports/1e308/download", "bad_id", U422,
                "admin"),
        BadCase("team", "/v1/exports/{export_id}/download", "GET", "/v1/exports/@uuid@/download", "unknown_export",
                U404, "admin"),
        BadCase("team", "/v1/review/queue", "GET", "/v1/review/queue?limit=0", "limit_zero", U422, "admin"),
        BadCase("team", "/v1/audit", "GET", "/v1/audit?limit=0", "limit_zero", U422, "admin"),
    ]


def team_cases() -> list[BadCase]:
    return _wrong_methods() + _bad_requests()
