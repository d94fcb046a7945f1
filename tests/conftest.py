"""Shared test configuration, and the one stack every integration and e2e test uses: one Ray
cluster, one embedded PostgreSQL and one Serve deployment for the whole run, started by the
same code as `tracemill up` (cluster.local.LocalStack). They live here, at the root, because a
fixture defined in two conftests would be two fixtures, and a second stack cannot start."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.client import Api
from tests.support.cors_pages import ALLOWED_ORIGIN
from cluster.doubles.net import free_port
from tests.support.stack import make_key, run_db

# Ray and pgserver look here for runtime files; keep them off the user's XDG dirs.
os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from cluster.local import LocalStack

    env = {k: v for k, v in os.environ.items() if k not in ("TRACEMILL_S3_BUCKET",)}
    env.setdefault("TRACEMILL_CORS_ORIGINS", ALLOWED_ORIGIN)  # the one browser origin CORS tests may use
    # Encryption at rest (issue 18.5) is configured, but only for workspaces given a data key
    # ("keyed"): test_encryption gives its own workspace one; every other workspace stays plain.
    env.setdefault("TRACEMILL_ENCRYPTION_KEK", "dHJhY2VtaWxsLXRlc3Qtc3RhY2sta2VrLTMyLWJ5dGU=")
    env.setdefault("TRACEMILL_ENCRYPTION_SCOPE", "keyed")
    state = Path(tmp_path_factory.mktemp("tracemill-state"))
    # Short, because Ray's socket paths live under it; private, so that clusters other tests
    # start meanwhile (ray.cluster_utils, `ray start`) never become our Ray Jobs' cluster.
    ray_temp = Path(tempfile.mkdtemp(prefix="tm-ray-", dir="/tmp"))
    stack = LocalStack(state_dir=state, port=free_port(), num_cpus=2, env=env, ray_temp_dir=ray_temp)
    stack.start()
    yield stack
    stack.stop()
    shutil.rmtree(ray_temp, ignore_errors=True)


@pytest.fixture(scope="session")
def api(stack: Any) -> Api:
    return Api(stack.endpoint, make_key(stack, ["ingest", "read"]))


@pytest.fixture(scope="session")
def other_org_api(stack: Any) -> Api:
    """A client of a second organisation: it must never see the first one's sessions."""
    import uuid

    org = uuid.uuid4()
    run_db(stack, "INSERT INTO organizations (org_id, name) VALUES ($1, $2)", org, f"other-{org}")
    return Api(stack.endpoint, make_key(stack, ["ingest", "read"], org_id=org))
