"""Security headers, request ids, CORS preflights, the docs page and the WebSocket auth frame
limit on the real stack: through Serve's own HTTP server and middleware, not only ours."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.support.client import Api, new_id
from tests.support.cors_pages import ALLOWED_ORIGIN


def test_data_routes_carry_nosniff_and_no_store(api: Api) -> None:
    sid = api.create_session()
    for answer in (api.http.get(f"/v1/sessions/{sid}"), api.http.get(f"/v1/sessions/{new_id()}"),
                   httpx.get(api.base_url + "/readyz"), httpx.get(api.base_url + "/metrics")):
        assert answer.headers["x-content-type-options"] == "nosniff", answer.url
        assert answer.headers.get_list("cache-control") == ["no-store"], answer.url
    assert httpx.get(api.base_url + "/healthz").headers["x-content-type-options"] == "nosniff"
    # Plain HTTP here: no HSTS (it is sent over TLS, or behind a trusted proxy saying so).
    assert "strict-transport-security" not in api.http.get(f"/v1/sessions/{sid}").headers


def test_a_request_id_that_is_not_plain_is_replaced_everywhere(api: Api) -> None:
    for bad in ("x" * 129, "has spaces in it", "semi;colon"):
        answer = api.http.get(f"/v1/sessions/{new_id()}", headers={"X-Request-ID": bad})
        assert answer.status_code == 404
        sent = answer.headers.get_list("x-request-id")
        assert len(sent) == 1 and sent[0] != bad and len(sent[0]) <= 128, sent
        assert answer.json()["error"]["request_id"] == sent[0]
    plain = "a" * 128
    answer = api.http.get(f"/v1/sessions/{new_id()}", headers={"X-Request-ID": plain})
    assert answer.headers.get_list("x-request-id") == [plain] and answer.json()["error"]["request_id"] == plain


def test_cors_preflight_grants_only_the_listed_origin(api: Api) -> None:
    asked = {"Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "authorization, content-type, x-request-id"}
    granted = httpx.options(api.base_url + "/v1/sessions", headers={"Origin": ALLOWED_ORIGIN, **asked})
    assert granted.status_code == 204, granted.text
    assert granted.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "Origin" in granted.headers["vary"]
    denied = httpx.options(api.base_url + "/v1/sessions", headers={"Origin": "http://evil.example", **asked})
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "cors_denied"
    assert "access-control-allow-origin" not in denied.headers


def test_the_docs_page_loads_nothing_from_elsewhere(api: Api) -> None:
    page = httpx.get(api.base_url + "/docs")
    assert page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]
    refs = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert refs and all(r.startswith("/") and not r.startswith("//") for r in refs), refs  # this origin only
    bundle = httpx.get(api.base_url + "/docs/assets/swagger-ui-bundle.js")
    assert bundle.status_code == 200 and len(bundle.content) > 100_000
    assert httpx.get(api.base_url + "/redoc").status_code == 404


def test_an_oversized_auth_frame_is_refused_before_it_is_parsed(api: Api) -> None:
    sid = api.create_session()
    url = api.base_url.replace("http://", "ws://") + f"/v1/sessions/{sid}/stream"
    message: dict[str, Any] | None = None
    with connect(url, open_timeout=10, max_size=None) as ws:
        ws.send(json.dumps({"type": "auth", "api_key": api.key, "padding": "x" * 100_000}))
        try:
            message = json.loads(ws.recv(timeout=15))
            ws.recv(timeout=15)
        except ConnectionClosed:
            pass
        code = ws.close_code
    assert code == 1009 and message is not None and message["error"]["code"] == "payload_too_large"


def test_the_frame_limit_counts_bytes_not_characters(api: Api) -> None:
    """1000 events of 2,100 'é' each: every event within its own limits, the frame fewer
    characters than the 4 MiB frame limit but more bytes of UTF-8."""
    sid = api.create_session()
    url = api.base_url.replace("http://", "ws://") + f"/v1/sessions/{sid}/stream"
    events = [{"seq": seq, "type": "custom", "ts": 1, "name": "x", "data": {"t": "é" * 2100}} for seq in range(1000)]
    frame = json.dumps({"type": "events", "events": events}, ensure_ascii=False)
    assert len(frame) < 4 * 1024 * 1024 < len(frame.encode())
    with connect(url, open_timeout=10, max_size=None, additional_headers={"Authorization": f"Bearer {api.key}"}) as ws:
        ws.send(frame)
        answer = json.loads(ws.recv(timeout=30))
    assert answer["type"] == "error" and answer["error"]["code"] == "payload_too_large", answer["error"]["code"]
