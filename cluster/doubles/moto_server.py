"""A real S3 endpoint for tests: moto's server on 127.0.0.1, reached over HTTP.

Unlike `moto.mock_aws`, nothing is patched in-process, so the code under test goes
through botocore's full HTTP stack: timeouts, retries, multipart uploads, error parsing.

    with moto_s3_server() as endpoint_url:
        bucket = create_bucket(endpoint_url)
        ...

moto keeps its state per process, not per server: give every test its own bucket
(`create_bucket()` picks a unique name) rather than relying on a fresh server.
"""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import boto3

from cluster.extras import require

__all__ = [
    "DUMMY_ACCESS_KEY_ID",
    "DUMMY_SECRET_ACCESS_KEY",
    "DUMMY_REGION",
    "dummy_aws_env",
    "start_moto_server",
    "moto_s3_server",
    "s3_client",
    "create_bucket",
    "empty_bucket",
]

DUMMY_ACCESS_KEY_ID = "AKIATRACEMILLTESTING"
# Distinctive, so tests can assert it never leaks into an error message.
DUMMY_SECRET_ACCESS_KEY = "tracemill-dummy-secret-do-not-leak"
DUMMY_REGION = "us-east-1"

# Whatever else could steer boto3's credential chain away from the dummy values: profiles,
# the developer's ~/.aws, a global endpoint override, or a slow probe of EC2 metadata.
_AWS_ENV: dict[str, str | None] = {
    "AWS_ACCESS_KEY_ID": DUMMY_ACCESS_KEY_ID,
    "AWS_SECRET_ACCESS_KEY": DUMMY_SECRET_ACCESS_KEY,
    "AWS_DEFAULT_REGION": DUMMY_REGION,
    "AWS_REGION": DUMMY_REGION,
    "AWS_SESSION_TOKEN": None,
    "AWS_SECURITY_TOKEN": None,
    "AWS_PROFILE": None,
    "AWS_DEFAULT_PROFILE": None,
    "AWS_ENDPOINT_URL": None,
    "AWS_ENDPOINT_URL_S3": None,
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}


@contextmanager
def dummy_aws_env() -> Iterator[None]:
    """Point boto3's default credential chain at dummy values; restore the env afterwards."""
    saved = {name: os.environ.get(name) for name in _AWS_ENV}
    try:
        _apply(_AWS_ENV)
        yield
    finally:
        _apply(saved)


def _apply(values: dict[str, str | None]) -> None:
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def start_moto_server() -> tuple[str, Callable[[], None]]:
    """Start moto's S3-capable server on a free port; return (endpoint URL, stop)."""
    # Port 0 lets the OS pick a free port at bind time: no window for another process to
    # take a port we probed, and we read the real one back from the bound socket.
    moto_server = require("moto.server", extra="bench", needed_by="the S3 test server (moto)")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return f"http://{host}:{port}", server.stop


@contextmanager
def moto_s3_server() -> Iterator[str]:
    """A running moto server, with dummy AWS credentials in the env while it runs."""
    with dummy_aws_env():
        endpoint_url, stop = start_moto_server()
        try:
            yield endpoint_url
        finally:
            stop()


def s3_client(endpoint_url: str) -> Any:
    """A boto3 S3 client for test set-up and inspection, with explicit dummy credentials."""
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=DUMMY_REGION,
        aws_access_key_id=DUMMY_ACCESS_KEY_ID,
        aws_secret_access_key=DUMMY_SECRET_ACCESS_KEY,
    )


def create_bucket(endpoint_url: str, name: str | None = None, client: Any = None) -> str:
    """Create a bucket (a unique name unless given) and return its name.

    Pass a `client` from `s3_client()` to reuse it: building one costs ~0.1 s.
    """
    bucket = name or f"tracemill-test-{uuid.uuid4().hex[:12]}"
    own = client is None
    client = s3_client(endpoint_url) if own else client
    try:
        client.create_bucket(Bucket=bucket)
    finally:
        if own:
            client.close()
    return bucket


def empty_bucket(client: Any, bucket: str) -> None:
    """Delete every object in `bucket`, so a shared bucket starts each test empty."""
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys = [{"Key": obj["Key"]} for obj in page.get("Contents", ())]
        if keys:
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
