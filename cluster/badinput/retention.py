"""Cases for the retention periods route (issue 18.4): a wrong method, bodies that are not a set
of whole days within 1..3650 per known data type, a role without workspaces.manage, another
workspace's or a malformed workspace id. None may change a workspace's periods."""

from __future__ import annotations

from cluster.badinput.case import JSON, U400, U403, U404, U405, U415, U422, BadCase

__all__ = ["retention_cases"]

_ROUTE = "/v1/workspaces/{workspace_id}/retention"
_OWN = "/v1/workspaces/@workspace@/retention"  # the corpus organisation's workspace (the judge's setup)


def retention_cases() -> list[BadCase]:
    rows: list[tuple[str, bytes, str | None]] = [
        ("empty_object", b"{}", None),
        ("days_zero", b'{"events": 0}', "events"),
        ("days_over_ten_years", b'{"screenshots": 3651}', "screenshots"),
        ("days_string", b'{"archives": "30"}', "archives"),
        ("days_bool", b'{"datasets": true}', "datasets"),
        ("days_float", b'{"audit": 1.5}', "audit"),
        ("unknown_type", b'{"events": 30, "logs": 30}', "logs"),
        ("array", b"[30]", None),
    ]
    cases = [BadCase("retention", _ROUTE, "PUT", _OWN, n, U422, "admin", JSON, b, field=f) for n, b, f in rows]
    return cases + [
        BadCase("method_path", _ROUTE, "DELETE", "/v1/workspaces/@uuid@/retention", "wrong_method", U405, "admin"),
        BadCase("retention", _ROUTE, "PUT", _OWN, "malformed", U400, "admin", JSON, b'{"events": '),
        BadCase("retention", _ROUTE, "PUT", _OWN, "text_plain", U415, "admin", (("Content-Type", "text/plain"),),
                b'{"events": 30}'),
        BadCase("retention", _ROUTE, "PUT", _OWN, "analyst", U403, "read", JSON, b'{"events": 30}'),
        BadCase("retention", _ROUTE, "GET", _OWN, "recorder_key", U403, "ingest"),
        BadCase("retention", _ROUTE, "PUT", "/v1/workspaces/@uuid@/retention", "unknown_workspace", U404, "admin",
                JSON, b'{"events": 30}'),
        BadCase("retention", _ROUTE, "GET", "/v1/workspaces/not-a-uuid/retention", "bad_id", U404, "admin"),
    ]
