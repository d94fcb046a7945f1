"""The ingest deployment: FastAPI routes on a Ray Serve ingress (PROTOCOL.md v1).

Route methods are thin: each hands the request to its handler module with the replica's
Services. The OpenAPI page at /docs documents every route, body and error.
"""

# No `from __future__ import annotations`: FastAPI must see real types on the route methods
# that Serve rewrites into class-based views.
import asyncio
import logging
from typing import Any

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import HTMLResponse, JSONResponse, Response
from ray import serve

from actors.errors import DependencyUnavailable, TracemillError
from serve_app.bodies import (
    AckResult,
    ErrorResponse,
    EventsBatch,
    FinishAccepted,
    FinishRequest,
    ScreenshotStored,
    SessionCreate,
    SessionCreated,
    SessionView,
)
from actors.storage.postgres import ping as ping_db
from configs.settings import TracemillSettings
from configs.dataset import DatasetBuildConfig
from serve_app import dashboard_api, models_api, results_api, screenshots_api, sessions_api, stream_api, training_api
from serve_app.models_api import PredictRequest, PredictResponse
from serve_app.training_api import FineTuneCreate
from serve_app.dashboard_api import StatsResponse
from serve_app.results_api import EventsPage
from serve_app.error_responses import error_response, install_error_handlers, request_id_of
from actors.logs import bound_request, setup_logging
from serve_app.metrics import CONTENT_TYPE_LATEST
from serve_app.openapi import body_of, errors_of, install_docs, install_openapi
from serve_app import cors, http_security
from serve_app import live_api, pages_api
from serve_app.pages_api import ReplayBundle
from serve_app import audit_api, auth_api
from serve_app.rate_limits import bound_peer
from serve_app.services import Services
from serve_app import admin_api
from serve_app.admin_api import KeyCreate, NameBody
from serve_app import analytics_api, deletion_api, review_api, search_api
from serve_app.analytics_api import TrendsQuery, TrendsResponse
from serve_app.review_api import FlagCreate, FlagList, FlagUpdate, FlagView, QueueList
from serve_app import moderation_api
from serve_app.moderation_api import Thresholds, ThresholdsView
from serve_app.deletion_api import RecorderDeleted, SessionDeleted
from serve_app.search_api import SessionList

__all__ = ["Ingress", "api"]

log = logging.getLogger(__name__)

api = FastAPI(
    title="tracemill ingest API",
    version="1",
    docs_url=None,  # FastAPI's pages load from a CDN: serve_app.openapi.install_docs serves /docs
    redoc_url=None,
    description=(
        "Stream recorded browser sessions into tracemill. Authenticate with "
        "`Authorization: Bearer <api_key>` (WebSocket clients that cannot set headers send "
        '`{"type": "auth", "api_key": "..."}` as their first frame). Every error has the shape '
        '`{"error": {"code", "message", "details", "request_id"}}`; every response carries '
        "`X-Request-ID`. Events are acked only after they are committed to the database. "
        "Rate limits (per API key and per client address: requests, stream frames and events, new "
        "sessions, screenshot bytes) answer `429 rate_limited` with `Retry-After`, `RateLimit-Policy` "
        "and `RateLimit`, or a `slow_down` frame on a stream; each ingress replica counts them on its "
        "own, so a deployment of R replicas admits up to R times each configured figure. Quotas per "
        "organisation answer `429 quota_exceeded` naming the quota; nothing is started."
    ),
)
install_error_handlers(api)


@api.middleware("http")
async def bind_request_id(request: Request, call_next: Any) -> Response:
    # Every log line this request causes, here and in the shards and tasks, carries its id;
    # the rate limits under it know its client address.
    with bound_request(request_id_of(request)), bound_peer(request.client, request.headers.get("x-forwarded-for")):
        return await call_next(request)
install_openapi(api, [SessionCreate, FinishRequest, EventsBatch, ErrorResponse, DatasetBuildConfig,
                      FineTuneCreate, PredictRequest, auth_api.SignInRequest, auth_api.PasswordChange,
                      auth_api.InvitationCreate, auth_api.InvitationAccept, NameBody, KeyCreate])
install_docs(api)
api.add_middleware(cors.Cors)
api.add_middleware(http_security.SecurityHeaders)  # added last, so outermost: plain request ids first

_SESSION = "/v1/sessions/{session_id}"


# Its options (replicas, autoscaling, CPUs, request limits, shutdown) live in configs/serve.yaml
# only, the one file `tracemill up`, `deploy` and the KubeRay manifest all apply.
@serve.deployment(name="Ingress")
@serve.ingress(api)
class Ingress:
    def __init__(self, settings: dict[str, Any], model_server: Any = None):
        # `settings` holds no secret (Serve keeps bound arguments in its checkpoint): they come
        # from this replica's environment (configs/secrets.py). `model_server`: the handle of
        # the ModelServer deployment (serve_app/model_server.py), which the app builder binds.
        self.model_server = model_server
        resolved = TracemillSettings.with_secrets(settings)
        setup_logging("ingress", resolved.log_level)
        self.services = Services.create(resolved)
        http_security.configure(api, self.services.settings.security)
        self.live = live_api.LiveHub(self.services, self.services.settings.live)

    @api.post(
        "/v1/sessions", status_code=201, response_model=SessionCreated, tags=["sessions"],
        openapi_extra=body_of(SessionCreate), responses=errors_of(400, 401, 403, 408, 409, 413, 415, 422, 503),
        summary="Create a session (idempotent by session_id)",
    )
    async def create_session(self, request: Request) -> JSONResponse:
        return await sessions_api.create_session(self.services, request)

    @api.get(
        "/v1/sessions", response_model=SessionList, tags=["sessions"],
        responses=errors_of(401, 403, 422, 503), openapi_extra={"parameters": search_api.SESSION_LIST_PARAMETERS},
        summary="List and search the organisation's sessions: filters, sorts, keyset pages, total (read scope)",
    )
    async def list_sessions(self, request: Request) -> dict[str, Any]:
        return await search_api.list_sessions(self.services, request)

    @api.get(
        "/v1/analytics/trends", response_model=TrendsResponse, tags=["sessions"],
        responses=errors_of(401, 403, 422, 503),
        openapi_extra={"parameters": search_api.parameters_of(TrendsQuery)},
        summary="One metric of the organisation's sessions by day, site, intent or type (cached a few seconds)",
    )
    async def get_trends(self, request: Request) -> dict[str, Any]:
        return await analytics_api.get_trends(self.services, request)

    @api.post(
        _SESSION + "/flags", status_code=201, response_model=FlagView, tags=["review"],
        openapi_extra=review_api.body_inline(FlagCreate), responses=errors_of(400, 401, 403, 404, 413, 415, 422, 503),
        summary="Flag a session (seq null) or one step with a reason (review scope)",
    )
    async def create_flag(self, session_id: str, request: Request) -> JSONResponse:
        return await review_api.create_flag(self.services, request, session_id)

    @api.get(_SESSION + "/flags", response_model=FlagList, tags=["review"], responses=errors_of(401, 403, 404, 503),
             summary="A session's flags, oldest first (read scope)")
    async def list_flags(self, session_id: str, request: Request) -> dict[str, Any]:
        return await review_api.list_flags(self.services, request, session_id)

    @api.patch(
        "/v1/flags/{flag_id}", response_model=FlagView, tags=["review"], openapi_extra=review_api.body_inline(FlagUpdate),
        responses=errors_of(400, 401, 403, 404, 409, 413, 415, 422, 503),
        summary="Move a flag pending → reviewed → resolved (409 otherwise); who and when are recorded (review scope)",
    )
    async def update_flag(self, flag_id: str, request: Request) -> dict[str, Any]:
        return await review_api.update_flag(self.services, request, flag_id)

    @api.get(
        "/v1/review/queue", response_model=QueueList, tags=["review"], responses=errors_of(401, 403, 422, 503),
        openapi_extra={"parameters": search_api.parameters_of(review_api.QueueQuery)},
        summary="What needs a look first: pending flags (newest), frustration, lowest quality, each with why",
    )
    async def review_queue(self, request: Request) -> dict[str, Any]:
        return await review_api.review_queue(self.services, request)

    @api.get("/v1/moderation/thresholds", response_model=ThresholdsView, tags=["review"],
             responses=errors_of(401, 403, 503),
             summary="The workspace's moderation thresholds: flag above warn, keep out of datasets above block")
    async def get_moderation_thresholds(self, request: Request) -> dict[str, Any]:
        return await moderation_api.get_thresholds(self.services, request)

    @api.put(
        "/v1/moderation/thresholds", response_model=ThresholdsView, tags=["review"],
        openapi_extra=review_api.body_inline(Thresholds), responses=errors_of(400, 401, 403, 413, 415, 422, 503),
        summary="Set the workspace's moderation thresholds (admins; audited)",
    )
    async def put_moderation_thresholds(self, request: Request) -> dict[str, Any]:
        return await moderation_api.put_thresholds(self.services, request)

    @api.get(
        _SESSION, response_model=SessionView, tags=["sessions"],
        responses=errors_of(401, 403, 404, 503), summary="Read a session's state and counters",
    )
    async def get_session(self, session_id: str, request: Request) -> dict[str, Any]:
        return await sessions_api.get_session(self.services, request, session_id)

    @api.delete(
        _SESSION, status_code=202, response_model=SessionDeleted, tags=["deletion"],
        responses=errors_of(401, 403, 404, 503),
        summary="Delete a session: hidden from every read at once, purged after the grace period (data.delete)",
    )
    async def delete_session(self, session_id: str, request: Request) -> JSONResponse:
        return await deletion_api.delete_session(self.services, request, session_id)

    @api.delete(
        "/v1/recorders/{recorder_id}", status_code=202, response_model=RecorderDeleted, tags=["deletion"],
        responses=errors_of(401, 403, 404, 503),
        summary="Delete a recorder and every session it recorded; its keys are revoked (data.delete)",
    )
    async def delete_recorder(self, recorder_id: str, request: Request) -> JSONResponse:
        return await deletion_api.delete_recorder(self.services, request, recorder_id)

    @api.post(
        _SESSION + "/finish", status_code=202, response_model=FinishAccepted, tags=["sessions"],
        openapi_extra=body_of(FinishRequest, required=False),
        responses=errors_of(400, 401, 403, 404, 408, 413, 422, 503), summary="Finish a session (harmless twice)",
    )
    async def finish_session(self, session_id: str, request: Request) -> JSONResponse:
        return await sessions_api.finish_session(self.services, request, session_id)

    @api.post(
        _SESSION + "/events", response_model=AckResult, tags=["events"],
        openapi_extra=body_of(EventsBatch),
        responses=errors_of(400, 401, 403, 404, 408, 409, 413, 415, 422, 429, 503),
        summary="Store a batch of events; answered after commit",
    )
    async def post_events(self, session_id: str, request: Request) -> dict[str, Any]:
        return await sessions_api.post_events(self.services, request, session_id)

    @api.websocket(_SESSION + "/stream")
    async def stream(self, websocket: WebSocket, session_id: str) -> None:
        await stream_api.stream_session(self.services, websocket, session_id)

    @api.put(
        _SESSION + "/screenshots/{screenshot_id}", status_code=201, response_model=ScreenshotStored,
        tags=["screenshots"], responses=errors_of(401, 403, 404, 408, 409, 413, 415, 422, 503),
        openapi_extra={"requestBody": {"required": True, "content": {
            m: {"schema": {"type": "string", "format": "binary"}} for m in screenshots_api.MEDIA_TYPES
        }}, "parameters": [screenshots_api.PAINTED_BOXES_PARAMETER]},
        summary="Upload a screenshot (idempotent; 200 when repeated)",
    )
    async def put_screenshot(self, session_id: str, screenshot_id: str, request: Request) -> JSONResponse:
        return await screenshots_api.put_screenshot(self.services, request, session_id, screenshot_id)

    @api.get(
        _SESSION + "/screenshots/{screenshot_id}", tags=["screenshots"],
        responses={200: {"content": {"image/webp": {}}}, **errors_of(401, 403, 404, 409, 503)},
        response_class=Response, summary="Download a painted screenshot (409 screenshot_not_ready before)",
    )
    async def get_screenshot(self, session_id: str, screenshot_id: str, request: Request) -> Response:
        return await screenshots_api.get_screenshot(self.services, request, session_id, screenshot_id)

    @api.get(
        _SESSION + "/events", response_model=EventsPage, tags=["results"],
        responses=errors_of(401, 403, 404, 422, 503),
        summary="Read the stored (redacted) events, paged by seq",
        openapi_extra={"parameters": [
            {"name": "after_seq", "in": "query", "schema": {"type": "integer", "minimum": -1, "default": -1}},
            {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "default": 500}},
        ]},
    )
    async def get_events(self, session_id: str, request: Request) -> dict[str, Any]:
        return await results_api.get_events(self.services, request, session_id)

    @api.get(
        _SESSION + "/archive", tags=["results"], response_class=Response,
        responses={200: {"content": {"application/zip": {}}}, **errors_of(401, 403, 404, 503)},
        summary="Download the session's archive (ZIP with manifest.json)",
    )
    async def get_archive(self, session_id: str, request: Request) -> Response:
        return await results_api.get_archive(self.services, request, session_id)

    @api.post(
        "/v1/datasets", status_code=202, tags=["training"], openapi_extra=body_of(DatasetBuildConfig),
        responses=errors_of(400, 401, 403, 408, 413, 415, 422, 503),
        summary="Queue a dataset build (a Ray Job running jobs.build_dataset); needs the admin scope",
    )
    async def create_dataset(self, request: Request) -> JSONResponse:
        return await training_api.create_dataset(self.services, request)

    @api.get("/v1/datasets", tags=["training"], responses=errors_of(401, 403, 503),
             summary="The organisation's latest dataset builds")
    async def list_datasets(self, request: Request) -> dict[str, Any]:
        return await training_api.list_datasets(self.services, request)

    @api.get("/v1/datasets/{dataset_id}", tags=["training"], responses=errors_of(401, 403, 404, 503),
             summary="A dataset build: status (queued, running, succeeded, failed), counts, report, files")
    async def get_dataset(self, dataset_id: str, request: Request) -> dict[str, Any]:
        return await training_api.get_dataset(self.services, request, dataset_id)

    @api.get(
        "/v1/datasets/{dataset_id}/files/{name}", tags=["training"], response_class=Response,
        responses={200: {"content": {"application/jsonl": {}, "application/json": {}, "image/png": {}}},
                   **errors_of(401, 403, 404, 503)},
        summary="Download a built dataset's file: the chat JSONL, the ranking JSONL, the Parquet export, report.json or quality.png",
    )
    async def get_dataset_file(self, dataset_id: str, name: str, request: Request) -> Response:
        return await training_api.dataset_file(self.services, request, dataset_id, name)

    @api.post(
        "/v1/finetunes", status_code=202, tags=["training"], openapi_extra=body_of(FineTuneCreate),
        responses=errors_of(400, 401, 403, 404, 408, 409, 413, 415, 422, 503),
        summary="Queue a fine-tune of a built dataset (a Ray Job running jobs.finetune); admin scope",
    )
    async def create_finetune(self, request: Request) -> JSONResponse:
        return await training_api.create_finetune(self.services, request)

    @api.get("/v1/finetunes/{finetune_id}", tags=["training"], responses=errors_of(401, 403, 404, 503),
             summary="A fine-tune: status, attempts, fine_tuned_model, registered model, latest events")
    async def get_finetune(self, finetune_id: str, request: Request) -> dict[str, Any]:
        return await training_api.get_finetune(self.services, request, finetune_id)

    @api.post("/v1/finetunes/{finetune_id}/cancel", status_code=202, tags=["training"],
              responses=errors_of(401, 403, 404, 503), summary="Ask the fine-tune's driver to cancel it")
    async def cancel_finetune(self, finetune_id: str, request: Request) -> JSONResponse:
        return await training_api.cancel_finetune(self.services, request, finetune_id)

    @api.post(
        "/v1/models/{model_id}/predict", response_model=PredictResponse, tags=["models"],
        openapi_extra=body_of(PredictRequest), responses=errors_of(400, 401, 403, 404, 409, 413, 415, 422, 503),
        summary="Rank a page's candidate elements for a task with a registered local model (read scope)",
    )
    async def predict(self, model_id: str, request: Request) -> dict[str, Any]:
        return await models_api.predict(self.services, request, model_id, self.model_server)

    @api.get(
        "/v1/stats", response_model=StatsResponse, tags=["dashboard"],
        responses=errors_of(401, 403, 422, 503),
        summary="The organisation's sessions at a glance: statuses, live sessions, event rate, quality",
        openapi_extra={"parameters": [
            {"name": "limit", "in": "query", "description": "how many live sessions to list",
             "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}},
        ]},
    )
    async def get_stats(self, request: Request) -> dict[str, Any]:
        return await dashboard_api.get_stats(self.services, request)

    @api.get(
        "/dashboard", tags=["dashboard"], response_class=HTMLResponse, openapi_extra={"security": []},
        summary="The operations dashboard page (no key: it holds no data; it asks for one)",
    )
    async def dashboard_page(self) -> Response:
        return dashboard_api.static_file("dashboard.html")

    @api.get(
        "/dashboard/dashboard.js", tags=["dashboard"], response_class=Response,
        openapi_extra={"security": []}, summary="The dashboard's script",
    )
    async def dashboard_script(self) -> Response:
        return dashboard_api.static_file("dashboard.js")

    @api.get(
        "/dashboard/dashboard.css", tags=["dashboard"], response_class=Response,
        openapi_extra={"security": []}, summary="The dashboard's stylesheet",
    )
    async def dashboard_style(self) -> Response:
        return dashboard_api.static_file("dashboard.css")

    @api.get(
        "/v1/live", tags=["live"], response_class=Response,
        responses={200: {"content": {"text/event-stream": {}}}, **errors_of(401, 403, 422, 429, 503)},
        summary="Server-sent events of the organisation: session.created, session.finalized (status, quality)",
        description="Each message has an `id:`; reconnect with `Last-Event-ID` (or `?since=`) to catch up on "
        "what was missed. The stream ends after `live.max_stream_s`; reconnect then. Authenticate with the "
        "Authorization header (read scope): the pages read it with fetch(), never with the key in the URL.",
        openapi_extra={"parameters": [
            {"name": "since", "in": "query", "schema": {"type": "integer", "minimum": 0},
             "description": "catch up from after this event id"},
            {"name": "Last-Event-ID", "in": "header", "schema": {"type": "string"},
             "description": "as `since`; a reconnecting SSE client sends it"},
        ]},
    )
    async def live(self, request: Request) -> Response:
        return await live_api.stream_live(self.services, self.live, request)

    @api.get(
        _SESSION + "/replay", response_model=ReplayBundle, tags=["results"],
        responses=errors_of(401, 403, 404, 503),
        summary="What the replay page needs besides the events: viewport, context analysis, screenshot timeline",
    )
    async def get_replay(self, session_id: str, request: Request) -> dict[str, Any]:
        return await pages_api.replay_bundle(self.services, request, session_id)

    @api.get("/sessions", tags=["pages"], response_class=HTMLResponse, openapi_extra={"security": []},
             summary="The session list page (no key: it holds no data; it asks for one)")
    async def sessions_page(self) -> Response:
        return pages_api.page("sessions")

    @api.get("/sessions/{session_id}", tags=["pages"], response_class=HTMLResponse,
             openapi_extra={"security": []}, summary="The session replay and review page")
    async def session_page(self, session_id: str) -> Response:
        return pages_api.page("session")

    @api.get("/trends", tags=["pages"], response_class=HTMLResponse, openapi_extra={"security": []},
             summary="The trends page")
    async def trends_page(self) -> Response:
        return pages_api.page("trends")

    @api.get("/pages/{name}", tags=["pages"], response_class=Response, openapi_extra={"security": []},
             responses=errors_of(404), summary="The pages' scripts and stylesheet")
    async def page_file(self, name: str) -> Response:
        return pages_api.page_file(name)

    @api.get("/v1/orgs", tags=["admin"], responses=errors_of(401, 403, 503),
             summary="The caller's organisation (owner); the operator's CLI lists them all")
    async def list_orgs(self, request: Request) -> dict[str, Any]:
        return await admin_api.list_orgs(self.services, request)

    @api.post("/v1/orgs", status_code=201, tags=["admin"], openapi_extra=body_of(NameBody),
              responses=errors_of(400, 401, 403, 409, 413, 415, 422, 503),
              summary="Create an organisation with its default workspace and an owner key, shown once (owner)")
    async def create_org(self, request: Request) -> JSONResponse:
        return await admin_api.create_org(self.services, request)

    @api.get("/v1/workspaces", tags=["admin"], responses=errors_of(401, 403, 503),
             summary="The organisation's workspaces (admin)")
    async def list_workspaces(self, request: Request) -> dict[str, Any]:
        return await admin_api.list_workspaces(self.services, request)

    @api.post("/v1/workspaces", status_code=201, tags=["admin"], openapi_extra=body_of(NameBody),
              responses=errors_of(400, 401, 403, 409, 413, 415, 422, 503),
              summary="Create a workspace in the caller's organisation (admin)")
    async def create_workspace(self, request: Request) -> JSONResponse:
        return await admin_api.create_workspace(self.services, request)

    @api.get("/v1/keys", tags=["admin"], responses=errors_of(401, 403, 503),
             summary="The workspace's API keys: ids, roles, states, never secrets (admin)")
    async def list_keys(self, request: Request) -> dict[str, Any]:
        return await admin_api.list_keys(self.services, request)

    @api.post("/v1/keys", status_code=201, tags=["admin"], openapi_extra=body_of(KeyCreate),
              responses=errors_of(400, 401, 403, 404, 413, 415, 422, 503),
              summary="Create a key with a role (no more than the caller's) for a workspace and recorder; shown once")
    async def create_key(self, request: Request) -> JSONResponse:
        return await admin_api.create_key(self.services, request)

    @api.post("/v1/auth/signin", response_model=auth_api.TokenResponse, tags=["accounts"],
              openapi_extra={**body_of(auth_api.SignInRequest), "security": []},
              responses=errors_of(400, 401, 408, 413, 415, 422, 429, 503),
              summary="Sign in with email and password: an access token, and the refresh cookie")
    async def sign_in(self, request: Request) -> JSONResponse:
        return await auth_api.sign_in(self.services, request)

    @api.post(auth_api.REFRESH_PATH, response_model=auth_api.TokenResponse, tags=["accounts"],
              openapi_extra={"security": []}, responses=errors_of(401, 429, 503),
              summary="A new access token for the refresh cookie, which rotates (a replayed one revokes the sign-in)")
    async def refresh(self, request: Request) -> JSONResponse:
        return await auth_api.refresh(self.services, request)

    @api.delete(auth_api.REFRESH_PATH, status_code=204, tags=["accounts"], openapi_extra={"security": []},
                responses=errors_of(429, 503), summary="Sign out: revoke the refresh cookie's sign-in")
    async def sign_out(self, request: Request) -> Response:
        return await auth_api.sign_out(self.services, request)

    @api.post("/v1/auth/password", status_code=204, tags=["accounts"], openapi_extra=body_of(auth_api.PasswordChange),
              responses=errors_of(400, 401, 408, 413, 415, 422, 503),
              summary="Change your password: every sign-in and access token of the account is revoked")
    async def change_password(self, request: Request) -> Response:
        return await auth_api.change_password(self.services, request)

    @api.get("/v1/auth/me", response_model=auth_api.AccountView, tags=["accounts"], responses=errors_of(401, 503),
             summary="The signed-in account: email, workspace, role")
    async def me(self, request: Request) -> dict[str, Any]:
        return await auth_api.me(self.services, request)

    @api.post("/v1/invitations", status_code=201, response_model=auth_api.InvitationCreated, tags=["accounts"],
              openapi_extra=body_of(auth_api.InvitationCreate),
              responses=errors_of(400, 401, 403, 408, 413, 415, 422, 503),
              summary="Invite a person into your workspace with a role (the token is shown once)")
    async def create_invitation(self, request: Request) -> JSONResponse:
        return await auth_api.create_invitation(self.services, request)

    @api.post("/v1/invitations/accept", response_model=auth_api.TokenResponse, tags=["accounts"],
              openapi_extra={**body_of(auth_api.InvitationAccept), "security": []},
              responses=errors_of(400, 401, 404, 408, 409, 413, 415, 422, 429, 503),
              summary="Accept an invitation with a password (a new account, or your existing one): signed in")
    async def accept_invitation(self, request: Request) -> JSONResponse:
        return await auth_api.accept_invitation(self.services, request)

    @api.get("/v1/audit", response_model=audit_api.AuditPage, tags=["accounts"], responses=errors_of(401, 403, 422, 503),
             openapi_extra={"parameters": audit_api.AUDIT_PARAMETERS},
             summary="The organisation's audit trail, newest first (owners and admins)")
    async def list_audit(self, request: Request) -> dict[str, Any]:
        return await audit_api.list_audit(self.services, request)

    @api.get("/healthz", tags=["operations"], summary="Liveness: 200 while the process lives")
    async def healthz(self) -> dict[str, str]:
        return {"status": "ok"}

    @api.get(
        "/readyz", tags=["operations"], responses=errors_of(503),
        summary="Readiness: the database, the object store and the session shards answer",
    )
    async def readyz(self, request: Request) -> JSONResponse:
        failing = await self._failing_dependencies()
        if failing:
            names = ", ".join(d["dependency"] for d in failing)
            err = DependencyUnavailable(f"not ready: {names} unavailable", retry_after_s=2.0, details=failing)
            return error_response(err, request_id_of(request))
        return JSONResponse({"status": "ready"})

    @api.get("/metrics", tags=["operations"], response_class=Response, summary="Prometheus text exposition")
    async def metrics(self, request: Request) -> Response:
        http_security.require_metrics_key(request)
        return Response(self.services.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    async def check_health(self) -> None:
        """Serve's replica health probe: the replica's event loop answers. Dependencies are
        /readyz's business, not this probe's: Serve replaces a replica whose probe fails, and
        a new replica does not bring a database back."""

    async def _failing_dependencies(self) -> list[dict[str, str]]:
        failing: list[dict[str, str]] = []
        try:
            await ping_db(await self.services.db())
        except DependencyUnavailable as exc:  # where it lives goes to the log, not the answer
            log.warning("readyz: %s", exc.message)
            failing.append({"dependency": "database", "error": "not answering"})
        try:
            await self.services.store.ping()
        except DependencyUnavailable as exc:
            log.warning("readyz: %s", exc.message)
            failing.append({"dependency": "object_store", "error": "not answering"})
        checks = [asyncio.wait_for(shard.check_health(), timeout=2.0) for shard in self.services.clients]
        for index, result in enumerate(await asyncio.gather(*checks, return_exceptions=True)):
            if isinstance(result, BaseException):  # starting, down, or stalled: not ready
                reason = result.message if isinstance(result, TracemillError) else f"not answering ({type(result).__name__})"
                failing.append({"dependency": "shards", "error": f"shard {index}: {reason}"})
        return failing
