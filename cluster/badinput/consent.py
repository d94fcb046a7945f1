"""Cases for the consent routes (issue 18.1): wrong methods, bad answers and notices, a key
without a recorder (409 no_recorder), a role without the permission, another workspace's or a
malformed workspace id. None may store a consent record or a notice (the judge counts both)."""

from __future__ import annotations

from cluster.badinput.case import JSON, U400, U403, U404, U405, U409, U415, U422, BadCase

__all__ = ["consent_cases"]

_NOTICE = "/v1/workspaces/{workspace_id}/notice"
_OWN = "/v1/workspaces/@workspace@/notice"  # the corpus organisation's workspace (the judge's setup)
_GOOD = (b'{"version": "corpus-1", "text": "We record pages.", "required": true, "recorded": ["pages"],'
         b' "masked": ["passwords"], "retention_days": 30}')


def _wrong_methods() -> list[BadCase]:
    return [
        BadCase("method_path", "/v1/consent", "PATCH", "/v1/consent", "wrong_method", U405, "ingest"),
        BadCase("method_path", "/v1/consent/notice", "POST", "/v1/consent/notice", "wrong_method", U405, "ingest"),
        BadCase("method_path", _NOTICE, "GET", "/v1/workspaces/@uuid@/notice", "wrong_method", U405, "admin"),
    ]


def _answers() -> list[BadCase]:
    rows: list[tuple[str, bytes, frozenset[int], str | None]] = [
        ("empty_object", b"{}", U422, "version"),
        ("version_number", b'{"version": 7}', U422, "version"),
        ("version_empty", b'{"version": ""}', U422, "version"),
        ("version_too_long", b'{"version": "' + b"v" * 65 + b'"}', U422, "version"),
        ("extra_field", b'{"version": "default-1", "granted": true}', U422, "granted"),
        ("array", b'["default-1"]', U422, None),
        ("no_recorder", b'{"version": "default-1"}', U409, None),  # the corpus keys name no recorder
    ]
    cases = [BadCase("consent", "/v1/consent", "POST", "/v1/consent", n, e, "ingest", JSON, b, field=f)
             for n, b, e, f in rows]
    return cases + [
        BadCase("consent", "/v1/consent", "POST", "/v1/consent", "malformed", U400, "ingest", JSON, b'{"version": '),
        BadCase("consent", "/v1/consent", "POST", "/v1/consent", "text_plain", U415, "ingest",
                (("Content-Type", "text/plain"),), b'{"version": "default-1"}'),
        BadCase("consent", "/v1/consent", "POST", "/v1/consent", "analyst", U403, "read", JSON,
                b'{"version": "default-1"}'),
        BadCase("consent", "/v1/consent", "DELETE", "/v1/consent", "no_recorder", U409, "ingest"),
        BadCase("consent", "/v1/consent", "GET", "/v1/consent", "analyst", U403, "read"),
        BadCase("consent", "/v1/consent/notice", "GET", "/v1/consent/notice", "no_credential",
                frozenset({401}), None),
    ]


def _notices() -> list[BadCase]:
    rows: list[tuple[str, bytes, str | None]] = [
        ("empty_object", b"{}", "version"),
        ("required_string", _GOOD.replace(b"true", b'"yes"'), "required"),
        ("version_space", _GOOD.replace(b"corpus-1", b"corpus 1"), "version"),
        ("text_nul", _GOOD.replace(b"We record", b"We\\u0000record"), "text"),
        ("text_empty", _GOOD.replace(b"We record pages.", b""), "text"),
        ("retention_negative", _GOOD.replace(b": 30", b": -1"), "retention_days"),
        ("retention_float", _GOOD.replace(b": 30", b": 30.5"), "retention_days"),
        ("recorded_string", _GOOD.replace(b'["pages"]', b'"pages"'), "recorded"),
        ("masked_item_number", _GOOD.replace(b'["passwords"]', b"[1]"), "masked.0"),
        ("extra_field", _GOOD.replace(b"{", b'{"active": true, ', 1), "active"),
    ]
    cases = [BadCase("consent", _NOTICE, "PUT", _OWN, n, U422, "admin", JSON, b, field=f) for n, b, f in rows]
    return cases + [
        BadCase("consent", _NOTICE, "PUT", _OWN, "malformed", U400, "admin", JSON, _GOOD[:-3]),
        BadCase("consent", _NOTICE, "PUT", _OWN, "recorder_key", U403, "ingest", JSON, _GOOD),
        BadCase("consent", _NOTICE, "PUT", "/v1/workspaces/@uuid@/notice", "unknown_workspace", U404, "admin",
                JSON, _GOOD),
        BadCase("consent", _NOTICE, "PUT", "/v1/workspaces/not-a-uuid/notice", "bad_id", U404, "admin", JSON, _GOOD),
    ]


def consent_cases() -> list[BadCase]:
    return _wrong_methods() + _answers() + _notices()
