"""Moderation thresholds of the caller's workspace (issue 19.3): anyone who reads flags may see
them; only admins (workspaces.manage) change them. Above `warn` a step is flagged for review;
above `block` it never enters a dataset. Changes are audited."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from actors.accounts.audit import actor_of, audit
from actors.storage import moderation_repo
from serve_app.http_io import read_json
from serve_app.review_api import _actor, _body
from serve_app.services import Services

__all__ = ["Thresholds", "ThresholdsView", "get_thresholds", "put_thresholds"]

MAX_BODY_BYTES = 4 * 1024


class Thresholds(BaseModel):
    model_config = ConfigDict(extra="forbid")
    warn: float = Field(ge=0, le=1, description="a step scoring this or more is flagged for review")
    block: float = Field(ge=0, le=1, description="a step scoring this or more never enters a dataset")

    @model_validator(mode="after")
    def _ordered(self) -> "Thresholds":
        if self.warn > self.block:
            raise ValueError("warn must not exceed block")
        return self


class ThresholdsView(BaseModel):
    workspace_id: str
    warn: float
    block: float
    default: bool = Field(description="true: the deployment's defaults, never set for this workspace")
    updated_by: str | None
    updated_at: str | None


def _defaults(services: Services) -> tuple[float, float]:
    s = services.settings.moderation
    return s.default_warn, s.default_block


async def get_thresholds(services: Services, request: Request) -> dict[str, Any]:
    principal = await services.authorize(request)
    pool = await services.db()
    return await moderation_repo.get_thresholds(pool, principal.org_id, principal.workspace_id, _defaults(services))


async def put_thresholds(services: Services, request: Request) -> dict[str, Any]:
    principal = await services.authorize(request)
    body: Thresholds = _body(await read_json(request, MAX_BODY_BYTES), Thresholds, "thresholds")
    actor = _actor(principal)
    pool = await services.db()
    async with pool.acquire() as conn, conn.transaction():
        await moderation_repo.set_thresholds(conn, principal.org_id, principal.workspace_id, warn=body.warn,
                                             block=body.block, actor=actor)
        await audit(conn, "moderation.thresholds", actor_of(principal), target=str(principal.workspace_id),
                    address=services.guard.address(), details={"warn": body.warn, "block": body.block})
    return await moderation_repo.get_thresholds(pool, principal.org_id, principal.workspace_id, _defaults(services))
