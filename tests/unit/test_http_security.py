"""Security headers, request ids, the /metrics key and CORS, through the real middlewares on
a small FastAPI app (the same classes the ingress registers), over httpx's ASGI transport."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from configs.base import SettingsError
from configs.security import SecuritySettings, security_from_env
from configs.settings import TracemillSettings
from serve_app import cors, http_security
from serve_app.error_responses import install_error_handlers, request_id_of

EXT = "chrome-extension://" + "abcdefghijklmnopabcdefghijklmnop"
ALLOWED = "https://dash.example.com"
METRICS_KEY = "m" * 40


def make_app(**settings: Any) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/v1/thing")
    async def thing(request: Request) -> Response:
        return JSONResponse({"request_id": request_id_of(request)}, headers={"Cache-Control": "private, max-age=60"})

    @app.get("/dashboard")
    async def page() -> Response:
        return Response("<p>hi</p>", media_type="text/html", headers={"Cache-Control": "no-cache"})

    @app.get("/docs-like")
    async def plain() -> dict[str, str]:
        return {"ok": "yes"}

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        http_security.require_metrics_key(request)
        return Response("m 1\n", media_type="text/plain")

    app.add_middleware(cors.Cors)
    app.add_middleware(http_security.SecurityHeaders)
    http_security.configure(app, SecuritySettings(**settings))
    return app


def call(app: FastAPI, method: str, path: str, *, base: str = "http://api.test", **kwargs: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base) as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(go())


def test_the_ingress_registers_both_middlewares_outermost_first() -> None:
    from serve_app.ingress import api

    classes = [m.cls for m in api.user_middleware]
    assert http_security.SecurityHeaders in classes and cors.Cors in classes
    assert classes.index(http_security.SecurityHeaders) < classes.index(cors.Cors)


def test_nosniff_everywhere_and_no_store_on_data_routes() -> None:
    app = make_app()
    data = call(app, "GET", "/v1/thing")
    assert data.headers["x-content-type-options"] == "nosniff"
    assert data.headers.get_list("cache-control") == ["no-store"]  # the route's own is replaced
    page = call(app, "GET", "/dashboard")
    assert page.headers["x-content-type-options"] == "nosniff" and page.headers["cache-control"] == "no-cache"
    assert call(app, "GET", "/docs-like").headers["cache-control"] == "no-store"
    missing = call(app, "GET", "/v1/nothing-here")
    assert missing.status_code == 404 and missing.headers["cache-control"] == "no-store"


def test_hsts_only_over_tls_or_a_trusted_proxy_saying_so() -> None:
    assert "strict-transport-security" not in call(make_app(), "GET", "/docs-like").headers
    tls = call(make_app(), "GET", "/docs-like", base="https://api.test")
    assert tls.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"
    forwarded = {"X-Forwarded-Proto": "https"}
    assert "strict-transport-security" not in call(make_app(), "GET", "/docs-like", headers=forwarded).headers
    trusted = call(make_app(trust_forwarded_proto=True), "GET", "/docs-like", headers=forwarded)
    assert trusted.headers["strict-transport-security"].startswith("max-age=")
    plain = call(make_app(trust_forwarded_proto=True), "GET", "/docs-like", headers={"X-Forwarded-Proto": "http"})
    assert "strict-transport-security" not in plain.headers


@pytest.mark.parametrize("given", ["a" * 129, "has space", "semi;colon", "ünï", "new\\nline", ""])
def test_a_request_id_that_is_not_short_and_plain_is_replaced(given: str) -> None:
    answer = call(make_app(), "GET", "/v1/thing", headers={"X-Request-ID": given.encode("utf-8")})
    seen = answer.json()["request_id"]
    assert seen != given and len(seen) == 32 and seen.isalnum()


@pytest.mark.parametrize("given", ["trace-me-123", "a" * 128, "svc:01.02_x-y"])
def test_a_plain_request_id_is_kept(given: str) -> None:
    assert call(make_app(), "GET", "/v1/thing", headers={"X-Request-ID": given}).json()["request_id"] == given


def test_metrics_can_need_a_key() -> None:
    assert call(make_app(), "GET", "/metrics").status_code == 200
    app = make_app(metrics_key_sha256=hashlib.sha256(METRICS_KEY.encode()).hexdigest())
    refused = call(app, "GET", "/metrics")
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthenticated"
    wrong = call(app, "GET", "/metrics", headers={"Authorization": "Bearer " + "x" * 40})
    assert wrong.status_code == 401
    good = call(app, "GET", "/metrics", headers={"Authorization": f"Bearer {METRICS_KEY}"})
    assert good.status_code == 200 and good.text == "m 1\n"


def preflight(app: FastAPI, origin: str, method: str = "POST",
              headers: str = "authorization, content-type, x-request-id, x-painted-boxes") -> httpx.Response:
    return call(app, "OPTIONS", "/v1/thing", headers={
        "Origin": origin, "Access-Control-Request-Method": method, "Access-Control-Request-Headers": headers})


def test_preflight_from_a_listed_origin_is_granted() -> None:
    app = make_app(cors_origins=[ALLOWED, EXT])
    for origin in (ALLOWED, EXT):
        answer = preflight(app, origin)
        assert answer.status_code == 204, answer.text
        assert answer.headers["access-control-allow-origin"] == origin
        assert "PUT" in answer.headers["access-control-allow-methods"]
        granted = {h.strip() for h in answer.headers["access-control-allow-headers"].split(",")}
        assert {"authorization", "x-request-id", "x-painted-boxes", "content-type"} <= granted
        assert "Origin" in answer.headers["vary"]
        assert "access-control-allow-credentials" not in answer.headers


@pytest.mark.parametrize("origin,method,headers", [
    ("https://evil.example", "POST", "authorization"),  # not listed
    ("https://dash.example.com.evil.example", "GET", "authorization"),  # a prefix is not a match
    ("null", "GET", "authorization"),  # sandboxed frames and file:// pages
    (ALLOWED, "DELETE", "authorization"),  # a method the API does not take
    (ALLOWED, "POST", "authorization, x-admin"),  # a header the API does not read
])
def test_any_other_preflight_is_denied_in_the_error_shape(origin: str, method: str, headers: str) -> None:
    answer = preflight(make_app(cors_origins=[ALLOWED]), origin, method, headers)
    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "cors_denied"
    assert "access-control-allow-origin" not in answer.headers and "Origin" in answer.headers["vary"]


def test_default_is_deny() -> None:
    assert preflight(make_app(), ALLOWED).status_code == 403
    answer = call(make_app(), "GET", "/v1/thing", headers={"Origin": ALLOWED})
    assert "access-control-allow-origin" not in answer.headers


def test_actual_requests_get_the_grant_only_for_listed_origins() -> None:
    app = make_app(cors_origins=[ALLOWED])
    granted = call(app, "GET", "/v1/thing", headers={"Origin": ALLOWED})
    assert granted.headers["access-control-allow-origin"] == ALLOWED
    assert "X-Request-ID" in granted.headers["access-control-expose-headers"]
    assert "Origin" in granted.headers["vary"]
    other = call(app, "GET", "/v1/thing", headers={"Origin": "https://evil.example"})
    assert other.status_code == 200 and "access-control-allow-origin" not in other.headers
    assert "Origin" in other.headers["vary"]
    assert "access-control-allow-origin" not in call(app, "GET", "/v1/thing").headers


@pytest.mark.parametrize("origin", ["*", "https://dash.example.com/", "https://dash.example.com/path",
                                    "dash.example.com", "chrome-extension://short", "ftp://x.example"])
def test_origins_that_are_not_origins_are_refused(origin: str) -> None:
    with pytest.raises(ValueError):
        SecuritySettings(cors_origins=[origin])


def test_security_settings_from_the_environment() -> None:
    env = {"TRACEMILL_CORS_ORIGINS": f"{ALLOWED}, {EXT}", "TRACEMILL_TRUST_FORWARDED_PROTO": "true",
           "TRACEMILL_METRICS_KEY": METRICS_KEY}
    data = security_from_env(env)
    settings = SecuritySettings(**data)
    assert settings.cors_origins == (ALLOWED, EXT) and settings.trust_forwarded_proto
    assert settings.metrics_key_sha256 == hashlib.sha256(METRICS_KEY.encode()).hexdigest()
    assert METRICS_KEY not in str(data)  # only its hash travels
    with pytest.raises(SettingsError):
        security_from_env({"TRACEMILL_METRICS_KEY": "short"})
    full = TracemillSettings.from_env({"DATABASE_URL": "postgresql://u@h/db", **env},
                                      {"object_store": {"kind": "local", "local_dir": "/tmp/x"}})
    assert full.security.cors_origins == (ALLOWED, EXT)
    assert METRICS_KEY not in str(full.to_args())


def test_the_docs_page_comes_from_the_package_under_a_csp() -> None:
    from serve_app.ingress import api

    page = call(api, "GET", "/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self';" in csp and "frame-ancestors 'none'" in csp
    assert "http" not in page.text.replace("http-equiv", "")  # no CDN, nothing off this origin
    assert "<script>" not in page.text  # no inline script: the CSP would block it
    for src in ("/docs/assets/swagger-ui-bundle.js", "/docs/assets/docs-init.js"):
        asset = call(api, "GET", src)
        assert asset.status_code == 200 and asset.headers["content-type"].startswith("text/javascript"), src
    assert "SwaggerUIBundle" in call(api, "GET", "/docs/assets/swagger-ui-bundle.js").text[:200_000]
    assert call(api, "GET", "/docs/assets/swagger-ui.css").headers["content-type"].startswith("text/css")
    assert call(api, "GET", "/docs/assets/..%2Fdocs.html").status_code == 404
    assert call(api, "GET", "/docs/assets/index.html").status_code == 404
    assert call(api, "GET", "/redoc").status_code == 404


def test_readyz_names_the_failing_dependency_without_where_it_lives(tmp_path: Any) -> None:
    """A real object store that cannot work (its root lies under a file) and a database on a
    closed port: /readyz's answer names both, but no path, bucket or host."""
    from types import SimpleNamespace

    from actors.storage.objectstore import make_object_store
    from cluster.doubles.net import free_port
    from serve_app.ingress import Ingress
    from serve_app.services import Services

    (tmp_path / "a-file").write_text("")
    secret_dir = tmp_path / "a-file" / "objects-here"
    settings = TracemillSettings.build({
        "database": {"url": f"postgresql://u:pw@127.0.0.1:{free_port()}/db", "connect_timeout_s": 1},
        "object_store": {"kind": "local", "local_dir": str(secret_dir)},
    })
    # No shards and no keys: the probe asks neither of them.
    services = Services(settings=settings, router=None, store=make_object_store(settings.object_store),  # type: ignore[arg-type]
                        keys=None, clients=[])  # type: ignore[arg-type]
    failing = asyncio.run(Ingress.func_or_class._failing_dependencies(SimpleNamespace(services=services)))
    assert [f["dependency"] for f in failing] == ["database", "object_store"]
    text = repr(failing)
    assert "a-file" not in text and str(tmp_path) not in text and "127.0.0.1" not in text
