"""Health, readiness and metrics."""

# No `from __future__ import annotations`: FastAPI must see real types on the route methods
# that Serve rewrites into class-based views.
import asyncio
import logging

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from actors.errors import DependencyUnavailable, TracemillError
from actors.storage.postgres import ping as ping_db
from serve_app import http_security
from serve_app.error_responses import error_response, request_id_of
from serve_app.metrics import CONTENT_TYPE_LATEST
from serve_app.openapi import errors_of
from serve_app.routes.api import RouteBase, api

log = logging.getLogger(__name__)


class OperationRoutes(RouteBase):
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
