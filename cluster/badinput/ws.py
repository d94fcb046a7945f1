"""Corpus table of cluster.badinput.corpus for the WebSocket stream.

Two kinds of case. Refusals: the connection must end with a close code that tells the client
what to fix (4401 key, 4403 scope, 4404 session, 4409 closed session), after an error frame
in the one shape. Bad frames after a good auth: each must be answered by its own error frame
and the connection must stay open (the runner then closes it itself, code 1000).
The frame "@auth@" stands for `{"type": "auth", "api_key": <the case's key>}`.
"""

from __future__ import annotations

import json

from cluster.badinput.case import S, BadCase
from cluster.badinput.data import TS

__all__ = ["websocket_cases"]

_ROUTE = "/v1/sessions/{id}/stream"
_MALFORMED, _INVALID, _TOO_LARGE = "malformed_json", "invalid_input", "payload_too_large"


def _events(*events: object) -> str:
    return json.dumps({"type": "events", "events": list(events)})


def websocket_cases() -> list[BadCase]:
    cases: list[BadCase] = []
    refusals: list[tuple[str, str, tuple[str | bytes, ...], frozenset[int], str | None, float]] = [
        # The auth deadline: nothing sent, the server must close by itself (5 s by default).
        ("auth_deadline_silent_client", S, (), frozenset({4401}), None, 8.0),
        ("first_frame_not_json", S, ("{",), frozenset({4401}), None, 0),
        ("first_frame_events", S, (_events(),), frozenset({4401}), None, 0),
        ("first_frame_array", S, ('["auth"]',), frozenset({4401}), None, 0),
        ("first_frame_key_number", S, ('{"type": "auth", "api_key": 123}',), frozenset({4401}), None, 0),
        ("first_frame_unknown_key", S, ('{"type": "auth", "api_key": "tm_nope"}',), frozenset({4401}), None, 0),
        ("first_frame_sql_key", S, ('{"type": "auth", "api_key": "\' OR 1=1 --"}',), frozenset({4401}), None, 0),
        ("first_frame_surrogate_key", S, ('{"type": "auth", "api_key": "\\ud800"}',), frozenset({4401}), None, 0),
        ("first_frame_nul_key", S, ('{"type": "auth", "api_key": "tm_\\u0000"}',), frozenset({4401}), None, 0),
        ("first_frame_binary_garbage", S, (b"\xff\x00\xfe\x80",), frozenset({4401}), None, 0),
        # 20 KB: over the auth frame's limit, so the receive limit may refuse it first (1009).
        ("first_frame_depth_10k", S, ("[" * 10_000 + "]" * 10_000,), frozenset({4401, 1009}), None, 0),
        ("first_frame_5mb", S, ('{"type": "auth", "api_key": "' + "k" * (5 * 1024 * 1024) + '"}',),
         frozenset({4401, 1009}), None, 0),
        ("read_scope_key", S, ("@auth@",), frozenset({4403}), "read", 0),
        ("session_not_uuid", "/v1/sessions/not-a-uuid", ("@auth@",), frozenset({4404}), "ingest", 0),
        ("session_sql", "/v1/sessions/1'%20OR%20'1'='1", ("@auth@",), frozenset({4404}), "ingest", 0),
        ("session_unknown", "/v1/sessions/@uuid@", ("@auth@",), frozenset({4404}), "ingest", 0),
        ("session_closed", "/v1/sessions/@closed@", ("@auth@",), frozenset({4409}), "ingest", 0),
    ]
    for name, base, frames, expect, key, wait in refusals:
        cases.append(BadCase("websocket", _ROUTE, "WS", base + "/stream", name, expect, key,
                             ws_frames=frames, ws_wait_s=wait))
    cases.append(BadCase("websocket", _ROUTE, "WS", S + "/stream", "header_unknown_key", frozenset({4401}), None,
                         headers=(("Authorization", "Bearer tm_nope"),)))

    ok_event = {"seq": 0, "type": "scroll", "ts": TS, "x": 0, "y": 0}
    bad_frames: list[tuple[str, tuple[str | bytes, ...], frozenset[str]]] = [
        ("malformed_json", ("{",), frozenset({_MALFORMED})),
        ("nan", ('{"type": "events", "events": [NaN]}',), frozenset({_MALFORMED})),
        ("binary_not_utf8", (b"\xff\xfe\xfd",), frozenset({_MALFORMED})),
        ("depth_10k", ("[" * 10_000 + "]" * 10_000,), frozenset({_MALFORMED})),
        ("array_frame", ("[1, 2]",), frozenset({_INVALID})),
        ("unknown_frame_type", ('{"type": "subscribe"}',), frozenset({_INVALID})),
        ("events_missing", ('{"type": "events"}',), frozenset({_INVALID})),
        ("events_not_a_list", ('{"type": "events", "events": "x"}',), frozenset({_INVALID})),
        ("negative_seq", (_events({**ok_event, "seq": -1}),), frozenset({_INVALID})),
        ("seq_as_string", (_events({**ok_event, "seq": "0"}),), frozenset({_INVALID})),
        ("surrogate_url", (_events({**ok_event, "type": "navigation", "url": "\ud800"}),), frozenset({_INVALID})),
        ("nul_in_key", (_events({**ok_event, "type": "keypress", "key": "\x00"}),), frozenset({_INVALID})),
        ("one_bad_in_batch", (_events(ok_event, {**ok_event, "seq": 1, "x": "far"}),), frozenset({_INVALID})),
        ("too_many_events", (_events(*({**ok_event, "seq": i} for i in range(1001))),), frozenset({_TOO_LARGE})),
        ("oversized_frame", ('{"type": "events", "events": [' + " " * (4 * 1024 * 1024 + 16) + "]}",),
         frozenset({_TOO_LARGE})),
        ("five_bad_in_a_row", ("{", "[1]", '{"type": "x"}', _events({"seq": -5}), b"\x00"),
         frozenset({_MALFORMED, _INVALID})),
    ]
    for name, frames, errors in bad_frames:
        cases.append(BadCase("websocket", _ROUTE, "WS", S + "/stream", name, frozenset({1000}), "ingest",
                             ws_frames=("@auth@", *frames), ws_errors=errors))
    return cases
