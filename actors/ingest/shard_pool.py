"""Routing sessions to their shard actors, and creating those actors on first use.

Shards are named, detached actors in the tracemill namespace: any ingress replica (or job)
reaches the same shard for a session, and a shard outlives the replica that created it.
"""

from __future__ import annotations

import uuid

import ray
from ray.actor import ActorHandle

from actors.ingest.shard import SessionShard, shard_index
from configs.settings import TracemillSettings

__all__ = ["ShardRouter", "shard_index", "shard_name"]


def shard_name(index: int) -> str:
    return f"session-shard-{index}"


class ShardRouter:
    def __init__(self, settings: TracemillSettings):
        shards = settings.shards
        actor_cls = ray.remote(SessionShard)
        self._handles: list[ActorHandle] = [
            actor_cls.options(
                name=shard_name(i),
                namespace=shards.namespace,
                lifetime="detached",
                get_if_exists=True,
                num_cpus=shards.num_cpus,
                max_restarts=-1,
                # Every shard method is idempotent, so a call caught by a restart is replayed.
                max_task_retries=3,
                max_concurrency=10_000,
            ).remote(i, settings)
            for i in range(shards.count)
        ]

    def for_session(self, session_id: uuid.UUID) -> ActorHandle:
        return self._handles[shard_index(session_id, len(self._handles))]

    @property
    def handles(self) -> list[ActorHandle]:
        return list(self._handles)
