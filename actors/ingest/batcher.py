"""Taking the next batch off a queue of waiting work.

Both ends of ingest coalesce: an ingress replica sends the frames bound for one shard in one
actor call (serve_app.shard_client), and the shard stores many clients' batches in one
transaction (actors.ingest.group_commit). Both take whatever queued, oldest first, up to a
number of events.
"""

from __future__ import annotations

from collections import deque
from typing import Callable, TypeVar

__all__ = ["take_batch"]

T = TypeVar("T")


def take_batch(queue: deque[T], size: Callable[[T], int], limit: int) -> tuple[list[T], int]:
    """Pop items off the front of `queue` while their sizes add up to at most `limit`; the
    first always goes, so an item larger than `limit` travels alone. Returns (items, total size)."""
    batch: list[T] = []
    total = 0
    while queue and (not batch or total + size(queue[0]) <= limit):
        item = queue.popleft()
        total += size(item)
        batch.append(item)
    return batch, total
