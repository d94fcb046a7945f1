"""The bad-input corpus: hundreds of crafted bad requests across every route, as data.

Each `BadCase` names the statuses (or WebSocket close codes) it may be answered with; every
one must be a 4xx in the one error shape, nothing it sends may be stored, and the server must
be ready afterwards (`cluster.badinput.judge` checks all of that). The cases are generated from
compact tables: routes x auth faults, JSON routes x malformed bodies, the request models' JSON
schemas x wrong types (`cluster.badinput.data`), hostile images, injections, unicode, huge
and deep values, WebSocket frames and slow partial uploads.

Paths and bodies may hold placeholders the runner fills in after its setup: `@session@` (a
recording session), `@finish@` (another, for finish cases), `@closed@` (a finished one),
`@dataset@` (a dataset that is not built) and `@uuid@` (an id nothing has).
"""

from __future__ import annotations

import json

from serve_app.bodies import EventsBatch, FinishRequest, SessionCreate
from cluster.badinput.case import (
    JSON, S, U400, U401, U403, U413, U415, U422, BadCase, Method, SlowUpload,
)
from cluster.badinput.data import TS, hostile_images, hostile_text_cases, png, valid_instance, wrong_type_variants
from configs.dataset import DatasetBuildConfig

__all__ = ["BadCase", "SlowUpload", "corpus", "JSON_ROUTES"]

# (route, method, path, the key it needs, a valid-looking body for auth faults)
ROUTES: list[tuple[str, Method, str, str, bytes | None]] = [
    ("/v1/sessions", "POST", "/v1/sessions", "ingest", b'{"type": "human"}'),
    ("/v1/sessions/{id}", "GET", S, "read", None),
    ("/v1/sessions/{id}/finish", "POST", "/v1/sessions/@finish@/finish", "ingest", b"{}"),
    ("/v1/sessions/{id}/events", "POST", S + "/events", "ingest", b'{"events": []}'),
    ("/v1/sessions/{id}/events", "GET", S + "/events", "read", None),
    ("/v1/sessions/{id}/screenshots/{sid}", "PUT", S + "/screenshots/shot-a", "ingest", png()),
    ("/v1/sessions/{id}/screenshots/{sid}", "GET", S + "/screenshots/shot-a", "read", None),
    ("/v1/sessions/{id}/archive", "GET", S + "/archive", "read", None),
    ("/v1/datasets", "POST", "/v1/datasets", "admin", b'{"name": "corpus"}'),
    ("/v1/datasets", "GET", "/v1/datasets", "read", None),
    ("/v1/datasets/{id}", "GET", "/v1/datasets/@dataset@", "read", None),
    ("/v1/datasets/{id}/files/{name}", "GET", "/v1/datasets/@dataset@/files/train.jsonl", "read", None),
    ("/v1/finetunes", "POST", "/v1/finetunes", "admin", b'{"dataset_id": "@uuid@"}'),
    ("/v1/finetunes/{id}", "GET", "/v1/finetunes/@uuid@", "read", None),
    ("/v1/finetunes/{id}/cancel", "POST", "/v1/finetunes/@uuid@/cancel", "admin", None),
    ("/v1/stats", "GET", "/v1/stats", "read", None),
    ("/v1/live", "GET", "/v1/live", "read", None),
    ("/v1/sessions/{id}/replay", "GET", S + "/replay", "read", None),
    ("/v1/sessions/{id}/contact-sheet", "GET", S + "/contact-sheet", "read", None),
    ("/v1/models/{id}/predict", "POST", "/v1/models/@uuid@/predict", "read",
     b'{"task": "t", "candidates": [{"id": "a", "text": "b"}]}'),
]
# A key with none of a route's scope: ingest routes get the read key, the others the ingest key.
_WRONG_SCOPE = {"ingest": "read", "read": "ingest", "admin": "read"}
_AUTH_FAULTS: list[tuple[str, str | None, tuple[tuple[str, str], ...], frozenset[int]]] = [
    ("no_key", None, (), U401),
    ("unknown_key", None, (("Authorization", "Bearer tm_not_a_real_key_0123456789"),), U401),
    ("basic_scheme", None, (("Authorization", "Basic dXNlcjpwYXNz"),), U401),
    ("bearer_without_key", None, (("Authorization", "Bearer"),), U401),
    ("sql_in_key", None, (("Authorization", "Bearer ' OR '1'='1' --"),), U401),
    ("huge_key", None, (("Authorization", "Bearer " + "k" * 6000),), frozenset({401, 431})),
    ("wrong_scope", "@wrong@", (), U403),
]

# (route, path, key, body media type) of the routes that read a JSON body
JSON_ROUTES: list[tuple[str, str, str]] = [
    ("/v1/sessions", "/v1/sessions", "ingest"),
    ("/v1/sessions/{id}/finish", "/v1/sessions/@finish@/finish", "ingest"),
    ("/v1/sessions/{id}/events", S + "/events", "ingest"),
    ("/v1/datasets", "/v1/datasets", "admin"),
    ("/v1/finetunes", "/v1/finetunes", "admin"),
]
_MALFORMED: list[tuple[str, bytes]] = [
    ("open_brace", b"{"), ("truncated_object", b'{"events": [{"seq": 0, "ty'), ("trailing_garbage", b'{"a": 1}}'),
    ("nan", b'{"a": NaN}'), ("infinity", b'{"a": -Infinity}'), ("single_quotes", b"{'a': 1}"),
    ("not_utf8", b'{"a": "\xff\xfe"}'), ("overlong_utf8_slash", b'{"a": "\xc0\xaf"}'),
    ("utf8_bom", b'\xef\xbb\xbf{"a": 1}'), ("utf16", '{"a": 1}'.encode("utf-16")),
    ("raw_nul", b'{"a": "x\x00y"}'), ("comment", b'{"a": 1 /* hi */}'),
    ("int_over_4300_digits", b'{"a": 1' + b"0" * 5000 + b"}"),
    ("depth_10k_arrays", b"[" * 10_000 + b"]" * 10_000),
    ("depth_10k_objects", b'{"a":' * 10_000 + b"1" + b"}" * 10_000),
    ("lone_high_surrogate_bytes", b'{"a": "\xed\xa0\x80"}'), ("whitespace_only", b"  \n\t "),
]


def _auth_cases() -> list[BadCase]:
    cases = []
    for route, method, path, role, body in ROUTES:
        for name, auth, headers, expect in _AUTH_FAULTS:
            key = _WRONG_SCOPE[role] if auth == "@wrong@" else None
            media = (("Content-Type", "image/png" if method == "PUT" else "application/json"),) if body else ()
            cases.append(BadCase("auth", route, method, path, name, expect, key, headers + media, body))
    return cases


def _json_cases() -> list[BadCase]:
    cases = []
    for route, path, role in JSON_ROUTES:
        for name, body in _MALFORMED:
            if route.endswith("finish") and name == "whitespace_only":
                continue  # an empty finish body is allowed: it means {}
            cases.append(BadCase("malformed_json", route, "POST", path, name, U400, role, JSON, body))
        for name, media in (("text_plain", "text/plain"), ("form", "application/x-www-form-urlencoded"),
                            ("xml", "application/xml"), ("multipart", "multipart/form-data; boundary=x")):
            cases.append(BadCase("media_type", route, "POST", path, name, U415, role,
                                 (("Content-Type", media),), b'{"type": "human"}'))
        for name, body in (("array", b"[1, 2]"), ("string", b'"text"'), ("number", b"42"), ("null", b"null")):
            if route.endswith("finish") and name == "null":
                continue  # a null finish body means "no body", i.e. {}: valid
            cases.append(BadCase("wrong_type", route, "POST", path, f"top_level_{name}", U422, role, JSON, body))
    return cases


def _schema_cases() -> list[BadCase]:
    """Every field of every JSON body, each with values of types it refuses."""
    cases: list[BadCase] = []
    events = EventsBatch.model_json_schema()
    for name, schema in sorted(events["$defs"].items()):
        if not name.endswith("Event"):
            continue
        base = valid_instance(schema, events)
        for fld, kind, event in wrong_type_variants(schema, base, events):
            body = json.dumps({"events": [event]}).encode()
            cases.append(BadCase("wrong_type", "/v1/sessions/{id}/events", "POST", S + "/events",
                                 f"{name}.{fld}:{kind}", U422, "ingest", JSON, body, field=fld.rsplit(".", 1)[-1]))
    from serve_app.training_api import FineTuneCreate  # serve_app imports ray; only when generating

    for route, path, role, model, answer in (
        ("/v1/sessions", "/v1/sessions", "ingest", SessionCreate, U422),
        ("/v1/sessions/{id}/finish", "/v1/sessions/@finish@/finish", "ingest", FinishRequest, U422),
        ("/v1/datasets", "/v1/datasets", "admin", DatasetBuildConfig, U422),
        ("/v1/finetunes", "/v1/finetunes", "admin", FineTuneCreate, U422),
    ):
        schema = model.model_json_schema()
        base = valid_instance(schema)
        for fld, kind, body in wrong_type_variants(schema, base):
            cases.append(BadCase("wrong_type", route, "POST", path, f"{fld}:{kind}", answer, role, JSON,
                                 json.dumps(body).encode(), field=fld.rsplit(".", 1)[-1]))
    return cases


def _event(**extra: object) -> dict[str, object]:
    return {"seq": 0, "type": "click", "ts": TS, "target": {"tag": "a"}, **extra}


def _j(obj: object) -> bytes:
    return json.dumps(obj).encode()


def _events_body(*events: object) -> bytes:
    return json.dumps({"events": list(events)}).encode()


def _huge_cases() -> list[BadCase]:
    five_mb = b'{"events": [' + b"0," * (5 * 1024 * 1024 // 2) + b"0]}"
    deep = {"a": 1}
    for _ in range(400):
        deep = {"a": deep}
    E, SC = ("/v1/sessions/{id}/events", S + "/events", "ingest"), ("/v1/sessions", "/v1/sessions", "ingest")
    DS, FT = ("/v1/datasets", "/v1/datasets", "admin"), ("/v1/finetunes", "/v1/finetunes", "admin")
    rows: list[tuple[str, str, str, str, bytes, frozenset[int]]] = [
        (*E, "5mb_array", five_mb, U413),
        (*E, "too_many_events", _events_body(*[_event(seq=i) for i in range(1001)]), U413),
        (*E, "string_over_limit", _events_body(_event(url="u" * 9000)), U422),
        (*E, "html_over_limit",
         _events_body({"seq": 0, "type": "dom_snapshot", "ts": TS, "elements": [], "html": "h" * 300_000}),
         frozenset({413, 422})),
        (*E, "context_depth_400", _events_body(_event(target={"tag": "a", "context": deep})), U422),
        (*E, "custom_data_depth_400",
         _events_body({"seq": 0, "type": "custom", "ts": TS, "name": "n", "data": deep}), U422),
        (*E, "seq_1e400", b'{"events": [{"seq": 1e400, "type": "click", "ts": 1, "target": {}}]}', U422),
        (*E, "custom_data_1e400",
         b'{"events": [{"seq": 0, "type": "custom", "ts": %d, "name": "n", "data": 1e400}]}' % TS, U422),
        (*E, "seq_2_pow_64", _events_body(_event(seq=2**64)), U422),
        (*E, "event_over_512kb",
         _events_body(_event(junk=["j" * 8000] * 70)), frozenset({413, 422})),
        (*SC, "metadata_20kb",
         _j({"type": "human", "metadata": {"k": ["m" * 8000, "m" * 8000, "m" * 5000]}}), U422),
        (*SC, "metadata_depth_400", _j({"type": "human", "metadata": deep}), U422),
        (*SC, "metadata_1e400", b'{"type": "human", "metadata": {"x": 1e400}}', U422),
        (*SC, "task_over_4000", _j({"type": "human", "task": "t" * 4001}), U422),
        (*SC, "viewport_2_pow_70",
         _j({"type": "human", "viewport": {"width": 2**70, "height": 1}}), U422),
        (*DS, "name_over_100", _j({"name": "n" * 5000}), U422),
        (*DS, "max_sessions_2_pow_80",
         _j({"name": "n", "selection": {"max_sessions": 2**80}}), U422),
        (*FT, "suffix_1mb",
         _j({"dataset_id": "@uuid@", "suffix": "s" * 1_000_000}), frozenset({404, 422})),
        (*FT, "poll_interval_1e308",
         _j({"dataset_id": "@uuid@", "poll_interval_s": 1e308}), U422),
    ]
    return [BadCase("huge_nested", r, "POST", p, n, e, k, JSON, b) for r, p, k, n, b, e in rows]


def corpus() -> list[BadCase]:
    from cluster.badinput.more import injection_cases, misc_cases, screenshot_cases, slow_cases, unicode_cases
    from cluster.badinput.consent import consent_cases
    from cluster.badinput.retention import retention_cases
    from cluster.badinput.team import team_cases
    from cluster.badinput.ws import websocket_cases

    cases = (_auth_cases() + _json_cases() + _schema_cases() + _huge_cases() + unicode_cases()
             + injection_cases() + screenshot_cases(hostile_images()) + misc_cases() + websocket_cases()
             + slow_cases() + hostile_text_cases() + team_cases() + consent_cases() + retention_cases())
    labels = [c.label for c in cases]
    assert len(labels) == len(set(labels)), "two cases share a label"
    return cases
