"""Corpus tables of cluster.badinput.corpus: unicode, injection, screenshots, queries and methods,
and slow partial uploads."""

from __future__ import annotations

import json
from urllib.parse import quote

from cluster.badinput.case import (
    JSON, S, U404, U405, U408, U409, U413, U422, BadCase, SlowUpload,
)
from cluster.badinput.data import TS, png

__all__ = ["injection_cases", "misc_cases", "screenshot_cases", "slow_cases", "unicode_cases"]

_EV = "/v1/sessions/{id}/events"
_SHOT = "/v1/sessions/{id}/screenshots/{sid}"
_FILE = "/v1/datasets/{id}/files/{name}"


def _j(obj: object) -> bytes:
    return json.dumps(obj).encode()


def _evs(*events: object) -> bytes:
    return json.dumps({"events": list(events)}).encode()


def _ev(url: object = "https://shop.example/", **extra: object) -> bytes:
    event = {"seq": 0, "type": "navigation", "ts": TS, "url": url, **extra}
    return _evs(event)


def unicode_cases() -> list[BadCase]:
    # json.dumps writes lone surrogates as the escape "\ud800", which is valid JSON text
    # naming a code point that no UTF-8 text (or PostgreSQL) can hold.
    rows: list[tuple[str, str, str, str, bytes, frozenset[int]]] = [
        (_EV, S + "/events", "ingest", "lone_high_surrogate_url", _ev("https://x/\ud800"), U422),
        (_EV, S + "/events", "ingest", "lone_low_surrogate_title", _ev(title="\udfff"), U422),
        (_EV, S + "/events", "ingest", "surrogate_in_unknown_field", _ev(extra_field="\ud800"), U422),
        (_EV, S + "/events", "ingest", "nul_in_url", _ev("https://x/\x00"), U422),
        (_EV, S + "/events", "ingest", "nul_in_type", _evs({"seq": 0, "type": "click\x00", "ts": TS}), U422),
        (_EV, S + "/events", "ingest", "rtl_override_type", _evs({"seq": 0, "type": "\u202ekcilc", "ts": TS}), U422),
        (_EV, S + "/events", "ingest", "fullwidth_digits_seq", _evs({"seq": "\uff11", "type": "click", "ts": TS}), U422),
        (_EV, S + "/events", "ingest", "url_9000_emoji", _ev("\U0001f600" * 9000), U422),
        (_EV, S + "/events", "ingest", "nul_in_custom_key",
         _evs({"seq": 0, "type": "custom", "ts": TS, "name": "n", "data": {"k\x00": 1}}), U422),
        (_EV, S + "/events", "ingest", "surrogate_in_custom_data",
         _evs({"seq": 0, "type": "custom", "ts": TS, "name": "n", "data": ["\ud83d"]}), U422),
        ("/v1/sessions", "/v1/sessions", "ingest", "surrogate_task", _j({"type": "human", "task": "\ud800"}), U422),
        ("/v1/sessions", "/v1/sessions", "ingest", "nul_task", _j({"type": "human", "task": "a\x00b"}), U422),
        ("/v1/sessions", "/v1/sessions", "ingest", "surrogate_metadata_key",
         _j({"type": "human", "metadata": {"\udc00": 1}}), U422),
        ("/v1/sessions", "/v1/sessions", "ingest", "nul_metadata_value",
         _j({"type": "human", "metadata": {"k": "\x00"}}), U422),
        ("/v1/sessions", "/v1/sessions", "ingest", "homoglyph_type", _j({"type": "hum\u0430n"}), U422),
        ("/v1/sessions", "/v1/sessions", "ingest", "rtl_client_name_over_limit",
         _j({"type": "human", "client": {"name": "\u202e" * 200, "version": "1"}}), U422),
        ("/v1/sessions", "/v1/sessions", "ingest", "zero_width_uuid",
         _j({"type": "human", "session_id": "\u200b00000000-0000-4000-8000-000000000000"}), U422),
        ("/v1/datasets", "/v1/datasets", "admin", "zero_width_name", _j({"name": "a\u200bb"}), U422),
        ("/v1/datasets", "/v1/datasets", "admin", "surrogate_task_contains",
         _j({"name": "a", "selection": {"task_contains": "\ud800"}}), U422),
        ("/v1/datasets", "/v1/datasets", "admin", "nul_system_prompt",
         _j({"name": "a", "format": {"system_prompt": "\x00"}}), U422),
        ("/v1/finetunes", "/v1/finetunes", "admin", "surrogate_suffix",
         _j({"dataset_id": "@uuid@", "suffix": "\ud800"}), frozenset({404, 422})),
        ("/v1/finetunes", "/v1/finetunes", "admin", "nul_model",
         _j({"dataset_id": "@uuid@", "model": "gpt\x00"}), frozenset({404, 422})),
    ]
    return [BadCase("unicode", r, "POST", p, n, e, k, JSON, b) for r, p, k, n, b, e in rows]


_TRAVERSAL = ["../../etc/passwd", "..%2F..%2Fetc%2Fpasswd", "....//....//etc/passwd", "..\\..\\windows\\win.ini",
              "%2e%2e%2f%2e%2e%2fetc%2fpasswd", "/etc/passwd", "train.jsonl\x00.png", "train.jsonl/../report.json"]
_SQL = ["1' OR '1'='1", "x'; DROP TABLE sessions; --", "1 UNION SELECT api_key FROM api_keys"]


def injection_cases() -> list[BadCase]:
    cases: list[BadCase] = []

    def add(route: str, method: str, path: str, name: str, expect: frozenset[int], key: str, body: bytes | None = None,
            headers: tuple[tuple[str, str], ...] = ()) -> None:
        cases.append(BadCase("injection", route, method, path, name, expect, key, headers, body))  # type: ignore[arg-type]

    image = (("Content-Type", "image/png"),)
    for i, bad in enumerate(_TRAVERSAL + _SQL):
        seg = quote(bad, safe="")
        # A traversal decoded into the path may stop matching the route (404) or reach it
        # and fail the id check (422); it may never reach storage.
        add(_SHOT, "PUT", f"{S}/screenshots/{seg}", f"screenshot_id_{i}", frozenset({404, 422}), "ingest", png(), image)
        add(_SHOT, "GET", f"{S}/screenshots/{seg}", f"screenshot_id_{i}", U404, "read")
        add(_FILE, "GET", f"/v1/datasets/@dataset@/files/{seg}", f"file_name_{i}", U404, "read")
    for i, bad in enumerate(_SQL + ["../../etc/passwd", "00000000-0000-0000-0000-000000000000'--"]):
        seg = quote(bad, safe="")
        add("/v1/sessions/{id}", "GET", f"/v1/sessions/{seg}", f"session_id_{i}", U404, "read")
        add(_EV, "POST", f"/v1/sessions/{seg}/events", f"session_id_{i}", U404, "ingest", b'{"events": []}', JSON)
        add("/v1/datasets/{id}", "GET", f"/v1/datasets/{seg}", f"dataset_id_{i}", U404, "read")
        add("/v1/finetunes/{id}/cancel", "POST", f"/v1/finetunes/{seg}/cancel", f"finetune_id_{i}", U404, "admin")
        # The model is looked up (and must be the caller's) before the body is read.
        add("/v1/models/{id}/predict", "POST", f"/v1/models/{seg}/predict", f"model_id_{i}", U404, "read",
            _j({"task": "t", "candidates": [{"id": "a", "text": "b"}]}), JSON)
    for i, bad in enumerate(_SQL):
        add(_EV, "GET", f"{S}/events?after_seq={quote(bad)}", f"after_seq_{i}", U422, "read")
        add("/v1/stats", "GET", f"/v1/stats?limit={quote(bad)}", f"limit_{i}", U422, "read")
        add("/v1/datasets", "POST", "/v1/datasets", f"sql_name_{i}", U422, "admin", _j({"name": bad}), JSON)
        add("/v1/sessions", "POST", "/v1/sessions", f"sql_type_{i}", U422, "ingest", _j({"type": bad}), JSON)
    add("/v1/finetunes", "POST", "/v1/finetunes", "provider_override", U422, "admin",
        _j({"dataset_id": "@uuid@", "provider": "evil", "base_url": "http://169.254.169.254/"}), JSON)
    add("/v1/finetunes", "POST", "/v1/finetunes", "api_key_override", U422, "admin",
        _j({"dataset_id": "@uuid@", "api_key": "sk-attacker"}), JSON)
    add("/v1/datasets", "POST", "/v1/datasets", "other_org", U422, "admin",
        _j({"name": "x", "selection": {"org_id": "00000000-0000-4000-8000-000000000001"}}), JSON)
    add("/v1/sessions/{id}", "GET", S, "spoofed_forwarding_headers", frozenset({401}), None, None,
        (("Authorization", "Bearer tm_fake"), ("X-Forwarded-For", "127.0.0.1, evil"), ("X-Original-URL", "/admin")))
    # The request id is echoed into a response header, the error body and every log line: a
    # hostile one must come back verbatim in both places and inject nothing (the runner checks).
    for name, rid in (("request_id_encoded_crlf", "r%0d%0aSet-Cookie:%20admin=1"),
                      ("request_id_json_breaker", 'r","code":"ok","x":"'), ("request_id_sql", "r'; DROP TABLE api_keys; --"),
                      ("request_id_log_forging", r"r\n{\"level\": \"error\"}"), ("request_id_2kb", "r" * 2048)):
        add("/v1/sessions/{id}", "GET", S, name, frozenset({401}), None, None, (("X-Request-ID", rid),))
    return cases


def screenshot_cases(images: list[tuple[str, str, bytes, frozenset[int]]]) -> list[BadCase]:
    cases = []
    for name, media, body, expect in images:
        headers = (("Content-Type", media),) if media else ()
        cases.append(BadCase("hostile_image", _SHOT, "PUT", f"{S}/screenshots/{name.replace('_', '-')}", name, expect,
                             "ingest", headers, body))
    good, image = png(), (("Content-Type", "image/png"),)
    query = [("seq_text", "seq=abc"), ("seq_negative", "seq=-1"), ("seq_2_pow_60", "seq=1152921504606846976"),
             ("seq_float", "seq=1.5"), ("captured_at_text", "captured_at=yesterday"),
             ("captured_at_1970_seconds", "captured_at=1732262400"), ("trigger_bogus", "trigger=bogus"),
             ("unknown_param", "color=red"), ("trigger_sql", "trigger=" + quote("click' OR 1=1"))]
    for name, q in query:
        cases.append(BadCase("query", _SHOT, "PUT", f"{S}/screenshots/q-{name.replace('_', '-')}?{q}", name, U422,
                             "ingest", image, good))
    for name, shot in (("id_129_chars", "a" * 129), ("id_leading_dot", ".hidden"), ("id_space", "a%20b"),
                       ("id_rtl", quote("a\u202eb")), ("id_emoji", quote("\U0001f600"))):
        cases.append(BadCase("injection", _SHOT, "PUT", f"{S}/screenshots/{shot}", name, U422, "ingest", image, good))
    cases += [
        BadCase("state", _SHOT, "PUT", "/v1/sessions/@closed@/screenshots/late", "closed_session", U409, "ingest", image, good),
        BadCase("state", _SHOT, "PUT", "/v1/sessions/@uuid@/screenshots/x", "unknown_session", U404, "ingest", image, good),
        BadCase("state", _EV, "POST", "/v1/sessions/@closed@/events", "closed_session", U409, "ingest", JSON,
                _evs({"seq": 0, "type": "scroll", "ts": TS, "x": 0, "y": 0})),
        BadCase("state", "/v1/finetunes", "POST", "/v1/finetunes", "dataset_not_built", frozenset({404, 409}), "admin", JSON,
                b'{"dataset_id": "@dataset@"}'),
        BadCase("state", _FILE, "GET", "/v1/datasets/@dataset@/files/train.jsonl", "dataset_not_built", U404, "read"),
        BadCase("state", "/v1/sessions/{id}/archive", "GET", S + "/archive", "not_archived", U404, "read"),
        BadCase("state", "/v1/sessions/{id}/screenshots/{sid}", "GET", S + "/screenshots/never", "never_uploaded", U404, "read"),
    ]
    return cases


def misc_cases() -> list[BadCase]:
    rows: list[tuple[str, str, str, str, frozenset[int], str | None]] = [
        (_EV, "GET", S + "/events?after_seq=-2", "after_seq_minus_2", U422, "read"),
        (_EV, "GET", S + "/events?limit=0", "limit_zero", U422, "read"),
        (_EV, "GET", S + "/events?limit=99999999999999999999999", "limit_huge", U422, "read"),
        (_EV, "GET", S + "/events?limit=1e3", "limit_float", U422, "read"),
        (_EV, "GET", S + "/events?surprise=1", "unknown_param", U422, "read"),
        ("/v1/stats", "GET", "/v1/stats?limit=0", "limit_zero", U422, "read"),
        ("/v1/stats", "GET", "/v1/stats?limit=101", "limit_101", U422, "read"),
        ("/v1/stats", "GET", "/v1/stats?limit=abc", "limit_text", U422, "read"),
        ("/v1/live", "GET", "/v1/live?since=-1", "since_negative", U422, "read"),
        ("/v1/live", "GET", "/v1/live?since=1e3", "since_float", U422, "read"),
        ("/v1/live", "GET", "/v1/live?key=tm_in_the_url", "unknown_param", U422, "read"),
        ("/v1/sessions/{id}/replay", "POST", S + "/replay", "post", U405, "read"),
        ("/v1/sessions/{id}/contact-sheet", "PUT", S + "/contact-sheet", "put", U405, "read"),
        ("/sessions", "POST", "/sessions", "post", U405, None),
        ("/sessions/{id}", "DELETE", S.replace("/v1", ""), "delete", U405, None),
        ("/trends", "PUT", "/trends", "put", U405, None),
        ("/pages/{name}", "GET", "/pages/..%2F..%2Fserve_app%2Fingress.py", "static_traversal", U404, None),
        ("/healthz", "POST", "/healthz", "post", U405, None),
        ("/readyz", "DELETE", "/readyz", "delete", U405, None),
        ("/metrics", "PUT", "/metrics", "put", U405, None),
        ("/openapi.json", "POST", "/openapi.json", "post", U405, None),
        ("/dashboard", "POST", "/dashboard", "post", U405, None),
        ("/dashboard/dashboard.js", "PUT", "/dashboard/dashboard.js", "put", U405, None),
        ("/dashboard/dashboard.css", "DELETE", "/dashboard/dashboard.css", "delete", U405, None),
        ("/docs", "POST", "/docs", "post", U405, None),
        ("/v1/sessions", "DELETE", "/v1/sessions", "delete", U405, "ingest"),
        ("/v1/sessions/{id}", "PATCH", S, "patch", U405, "ingest"),
        ("/v1/datasets", "PUT", "/v1/datasets", "put", U405, "admin"),
        ("(unknown)", "GET", "/v1/nothing-here", "unknown_path", U404, "read"),
        ("(unknown)", "GET", "/v2/sessions", "unknown_version", U404, "read"),
        ("(unknown)", "GET", "/dashboard/..%2F..%2Fserve_app%2Fingress.py", "static_traversal", U404, None),
    ]
    return [BadCase("method_path", r, m, p, n, e, k) for r, m, p, n, e, k in rows]  # type: ignore[arg-type]


def slow_cases() -> list[BadCase]:
    """Bodies that stop arriving: the server must answer on its own (408) well inside the bound."""
    parts = (b'{"events": [', b" ", b" ")
    shot = (png()[:40], png()[40:60])
    return [
        BadCase("slow_upload", _EV, "POST", S + "/events", "stall_after_prefix", U408, "ingest", JSON,
                slow=SlowUpload(5000, parts)),
        BadCase("slow_upload", "/v1/sessions", "POST", "/v1/sessions", "stall_after_prefix", U408, "ingest", JSON,
                slow=SlowUpload(2000, (b'{"type": ',))),
        BadCase("slow_upload", _SHOT, "PUT", S + "/screenshots/slow", "stall_mid_image", U408, "ingest",
                (("Content-Type", "image/png"),), slow=SlowUpload(50_000, shot)),
        BadCase("slow_upload", _SHOT, "PUT", S + "/screenshots/slow-big", "declares_over_limit", U413, "ingest",
                (("Content-Type", "image/png"),), slow=SlowUpload(50 * 1024 * 1024, shot, bound_s=4.0)),
        BadCase("slow_upload", "/v1/datasets", "POST", "/v1/datasets", "stall_empty_body", U408, "admin", JSON,
                slow=SlowUpload(100, ())),
    ]

