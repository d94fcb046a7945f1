"""A private stack for one benchmark run: `tracemill up`'s start-up in a temporary state
directory on a free port, optionally with the no-op Serve app beside it as the baseline."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from cluster.doubles.net import free_port

if TYPE_CHECKING:
    from cluster.local import LocalStack

__all__ = ["private_stack"]


@contextmanager
def private_stack(*, noop: bool = False) -> Iterator[tuple[LocalStack, str]]:
    """The started stack and its bootstrap key; stopped and its state removed on the way out.
    With `noop`, `serve_app.noop` answers under /noop (the baseline the ratios divide by)."""
    from cluster.local import LocalStack  # Ray: once a benchmark runs, not for its --help

    with tempfile.TemporaryDirectory(prefix="tracemill-bench-") as state:
        stack = LocalStack(Path(state), port=free_port())
        try:
            key = stack.start()
            if noop:
                from ray import serve

                from serve_app.noop import build_noop_app

                serve.run(build_noop_app(), name="noop", route_prefix="/noop")
            yield stack, key
        finally:
            stack.stop()
