"""Datasets, fine-tunes and the local models."""

# No `from __future__ import annotations`: FastAPI must see real types on the route methods
# that Serve rewrites into class-based views.
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from configs.dataset import DatasetBuildConfig
from serve_app import models_api, training_api
from serve_app.models_api import PredictRequest, PredictResponse
from serve_app.openapi import body_of, errors_of
from serve_app.routes.api import RouteBase, api
from serve_app.training_api import FineTuneCreate


class TrainingRoutes(RouteBase):
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
