"""The ingest deployment: a Ray Serve ingress over the FastAPI routes of serve_app/routes
(PROTOCOL.md v1), one base class per route family. The OpenAPI page at /docs documents every
route, body and error.
"""

# No `from __future__ import annotations`: FastAPI must see real types on the route methods
# that Serve rewrites into class-based views.
import importlib
from typing import Any

from ray import serve

from actors.logs import setup_logging
from configs.dataset import DatasetBuildConfig
from configs.settings import TracemillSettings
from serve_app import admin_api, auth_api, http_security, live_api
from serve_app.export_api import ExportRoutes
from serve_app.bodies import ErrorResponse, EventsBatch, FinishRequest, SessionCreate
from serve_app.models_api import PredictRequest
from serve_app.retention_api import RetentionRoutes
from serve_app.openapi import install_openapi
from serve_app.routes.accounts import AccountRoutes
from serve_app.routes.admin import AdminRoutes
from serve_app.routes.consent import ConsentRoutes
from serve_app.routes.cards import CardRoutes
from serve_app.routes.api import api
from serve_app.routes.insights import InsightRoutes
from serve_app.routes.operations import OperationRoutes
from serve_app.routes.ui import PageRoutes
from serve_app.routes.review import ReviewRoutes
from serve_app.routes.rights import RightsRoutes
from serve_app.routes.sessions import SessionRoutes
from serve_app.routes.training import TrainingRoutes
from serve_app.services import Services
from serve_app.training_api import FineTuneCreate

__all__ = ["Ingress", "api"]

install_openapi(api, [SessionCreate, FinishRequest, EventsBatch, ErrorResponse, DatasetBuildConfig,
                      FineTuneCreate, PredictRequest, auth_api.SignInRequest, auth_api.PasswordChange,
                      auth_api.InvitationCreate, auth_api.InvitationAccept, admin_api.NameBody, admin_api.KeyCreate])


# Its options (replicas, autoscaling, CPUs, request limits, shutdown) live in configs/serve.yaml
# only, the one file `tracemill up`, `deploy` and the KubeRay manifest all apply.
@serve.deployment(name="Ingress")
@serve.ingress(api)
class Ingress(ConsentRoutes, SessionRoutes, ReviewRoutes, InsightRoutes, RightsRoutes, ExportRoutes, TrainingRoutes,
              PageRoutes, AdminRoutes, AccountRoutes, OperationRoutes, RetentionRoutes, CardRoutes):
    def __init__(self, settings: dict[str, Any], model_server: Any = None):
        # Serve pickles this class by value (the module's `Ingress` is the Deployment), so a replica
        # never imports this module, and the route methods, pickled by reference from
        # serve_app/routes/*, would keep `self` as a query parameter ("query.self: Field required"
        # on every route). Importing it runs serve.ingress's rewrite of their signatures here too.
        importlib.import_module("serve_app.ingress")
        # `settings` holds no secret (Serve keeps bound arguments in its checkpoint): they come
        # from this replica's environment (configs/secrets.py). `model_server`: the handle of
        # the ModelServer deployment (serve_app/model_server.py), which the app builder binds.
        self.model_server = model_server
        resolved = TracemillSettings.with_secrets(settings)
        setup_logging("ingress", resolved.log_level)
        self.services = Services.create(resolved)
        http_security.configure(api, self.services.settings.security)
        self.live = live_api.LiveHub(self.services, self.services.settings.live)
