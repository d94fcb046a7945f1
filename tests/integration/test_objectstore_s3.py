"""S3ObjectStore against real HTTP: moto's server for S3 itself, and tiny stub servers
on 127.0.0.1 for the failures moto cannot produce (5xx, throttling, silence).

The shared contract (`ObjectStoreContract`) is the one the local store passes.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest

from actors.errors import DependencyUnavailable, NotFound, TracemillError
from actors.storage.objectstore import make_object_store
from actors.storage.s3store import S3ObjectStore
from configs.settings import ObjectStoreSettings
from cluster.doubles.moto_server import (
    DUMMY_ACCESS_KEY_ID,
    DUMMY_REGION,
    DUMMY_SECRET_ACCESS_KEY,
    create_bucket,
    dummy_aws_env,
    empty_bucket,
    moto_s3_server,
    s3_client,
)
from tests.unit.test_objectstore_local import LONGEST_KEY, ObjectStoreContract

pytestmark = pytest.mark.anyio

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_s3_server() as url:
        yield url


@pytest.fixture(scope="module")
def s3(endpoint: str) -> Iterator[Any]:
    """A plain boto3 client for set-up and for checking what really reached S3."""
    client = s3_client(endpoint)
    yield client
    client.close()


@pytest.fixture
def bucket(endpoint: str, s3: Any) -> str:
    return create_bucket(endpoint, client=s3)


def _settings(endpoint_url: str, bucket: str, **extra: Any) -> ObjectStoreSettings:
    return ObjectStoreSettings(
        kind="s3", bucket=bucket, region=DUMMY_REGION, endpoint_url=endpoint_url, **extra
    )


def _assert_no_credentials(exc: BaseException) -> None:
    for text in (str(exc), repr(exc), repr(exc.args)):
        assert DUMMY_SECRET_ACCESS_KEY not in text
        assert DUMMY_ACCESS_KEY_ID not in text


@pytest.fixture(scope="module")
def shared_bucket(endpoint: str, s3: Any) -> str:
    return create_bucket(endpoint, client=s3)


@pytest.fixture(scope="module")
def shared_store(endpoint: str, shared_bucket: str) -> Iterator[S3ObjectStore]:
    # One store and bucket for the whole contract, emptied before each test: building a
    # store (two boto3 clients) costs more than most of the tests themselves.
    store = S3ObjectStore(_settings(endpoint, shared_bucket))
    yield store
    asyncio.run(store.close())


class TestS3ObjectStore(ObjectStoreContract):
    @pytest.fixture
    def store(self, shared_store: S3ObjectStore, shared_bucket: str, s3: Any) -> S3ObjectStore:
        empty_bucket(s3, shared_bucket)
        return shared_store


# ------------------------------------------------------------------------ S3 specifics


async def test_prefix_is_applied_and_hidden(endpoint: str, bucket: str, s3: Any) -> None:
    store = S3ObjectStore(_settings(endpoint, bucket, prefix="/tenant-a/"))
    await store.put("raw/o/s/a.png", b"a", "image/png")
    listed = s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert [o["Key"] for o in listed] == ["tenant-a/raw/o/s/a.png"]
    assert await store.list("") == ["raw/o/s/a.png"]
    assert await store.list("raw/o/") == ["raw/o/s/a.png"]
    assert store.describe() == f"s3://{bucket}/tenant-a"
    unprefixed = S3ObjectStore(_settings(endpoint, bucket))
    assert await unprefixed.list("") == ["tenant-a/raw/o/s/a.png"]
    assert unprefixed.describe() == f"s3://{bucket}"
    # The 1024-byte limit is S3's and applies to the key as stored, prefix included.
    with pytest.raises(ValueError):
        await store.put(LONGEST_KEY, b"x")
    await unprefixed.put(LONGEST_KEY, b"x")
    await store.close()
    await unprefixed.close()


async def test_presigned_url_serves_the_object_to_a_third_party(endpoint: str, bucket: str) -> None:
    """What a dataset's `image_mode: object_url` hands a fine-tuning provider: a plain GET works,
    with no credentials."""
    import httpx

    store = S3ObjectStore(_settings(endpoint, bucket, prefix="p/"))
    await store.put("webp/o/s/1.webp", b"RIFF....WEBP", "image/webp")
    url = await store.presigned_url("webp/o/s/1.webp", 600)
    assert "X-Amz-Signature" in url and "/p/webp/o/s/1.webp" in url
    async with httpx.AsyncClient() as http:
        assert (await http.get(url)).content == b"RIFF....WEBP"
        # S3 refuses the altered signature (403); moto, which does not check it, finds no object
        assert (await http.get(url.replace("1.webp", "2.webp"))).status_code in (403, 404)
    await store.close()


async def test_content_type_is_stored(endpoint: str, bucket: str, s3: Any) -> None:
    store = S3ObjectStore(_settings(endpoint, bucket))
    await store.put("raw/o/s/a.png", b"\x89PNG", "image/png")
    assert s3.head_object(Bucket=bucket, Key="raw/o/s/a.png")["ContentType"] == "image/png"
    await store.close()


async def test_put_file_above_threshold_goes_multipart(
    endpoint: str, bucket: str, s3: Any, tmp_path: Path
) -> None:
    store = S3ObjectStore(
        _settings(endpoint, bucket),
        multipart_threshold_bytes=5 * MiB,
        multipart_chunk_bytes=5 * MiB,
    )
    source = tmp_path / "export.jsonl"
    data = os.urandom(11 * MiB + 123)
    source.write_bytes(data)
    await store.put_file("exports/o/big.jsonl", source, "application/jsonl")
    assert await store.get("exports/o/big.jsonl") == data
    assert await store.size("exports/o/big.jsonl") == len(data)
    head = s3.head_object(Bucket=bucket, Key="exports/o/big.jsonl")
    # A multipart object's ETag is "<md5 of part md5s>-<number of parts>": 5 + 5 + 1 MiB.
    assert head["ETag"].strip('"').endswith("-3")
    assert head["ContentType"] == "application/jsonl"
    await store.close()


async def test_encryption_and_storage_class_are_sent(
    endpoint: str, bucket: str, s3: Any, tmp_path: Path
) -> None:
    settings = _settings(
        endpoint, bucket, server_side_encryption="AES256", storage_class="STANDARD_IA"
    )
    store = S3ObjectStore(settings, multipart_threshold_bytes=5 * MiB, multipart_chunk_bytes=5 * MiB)
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(6 * MiB))
    await store.put("raw/o/s/small.png", b"small", "image/png")
    await store.put_file("raw/o/s/big.bin", source, "application/octet-stream")
    for key in ("raw/o/s/small.png", "raw/o/s/big.bin"):
        head = s3.head_object(Bucket=bucket, Key=key)
        assert head["ServerSideEncryption"] == "AES256"
        assert head["StorageClass"] == "STANDARD_IA"
    assert await store.get("raw/o/s/small.png") == b"small"
    await store.close()


async def test_encryption_is_on_by_default_and_can_be_turned_off(endpoint: str, bucket: str, s3: Any) -> None:
    from configs.settings import TracemillSettings

    store = S3ObjectStore(_settings(endpoint, bucket))
    await store.put("raw/o/s/default.png", b"pixels", "image/png")
    assert s3.head_object(Bucket=bucket, Key="raw/o/s/default.png")["ServerSideEncryption"] == "AES256"
    await store.close()
    env = {"DATABASE_URL": "postgresql://u@h/db", "TRACEMILL_S3_BUCKET": bucket}
    assert TracemillSettings.from_env(env).object_store.server_side_encryption == "AES256"
    off = TracemillSettings.from_env({**env, "TRACEMILL_S3_SSE": "none"}).object_store
    assert off.server_side_encryption is None
    plain = S3ObjectStore(_settings(endpoint, bucket, server_side_encryption=None))
    await plain.put("raw/o/s/plain.png", b"pixels", "image/png")
    assert "ServerSideEncryption" not in s3.head_object(Bucket=bucket, Key="raw/o/s/plain.png")
    await plain.close()


async def test_invalid_storage_class_is_rejected_not_unavailable(endpoint: str, bucket: str) -> None:
    store = S3ObjectStore(_settings(endpoint, bucket, storage_class="NO_SUCH_CLASS"))
    with pytest.raises(TracemillError) as info:
        await store.put("raw/o/s/a.png", b"x")
    assert not isinstance(info.value, DependencyUnavailable)
    assert "InvalidStorageClass" in info.value.message
    _assert_no_credentials(info.value)
    await store.close()


async def test_missing_bucket(endpoint: str) -> None:
    store = S3ObjectStore(_settings(endpoint, "tracemill-no-such-bucket"))
    with pytest.raises(DependencyUnavailable) as ping_info:
        await store.ping()
    assert "does not exist" in ping_info.value.message
    assert "s3://tracemill-no-such-bucket" in ping_info.value.message
    with pytest.raises(DependencyUnavailable):
        await store.get("raw/o/s/a.png")
    with pytest.raises(DependencyUnavailable):
        await store.list("raw/")
    await store.close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_ping_nothing_listening_is_quick(bucket: str) -> None:
    store = S3ObjectStore(_settings(f"http://127.0.0.1:{_closed_port()}", bucket))
    started = time.monotonic()
    with pytest.raises(DependencyUnavailable) as info:
        await store.ping()
    assert time.monotonic() - started < 3.0
    assert info.value.message.startswith(f"object store unavailable: s3://{bucket}")
    assert info.value.retry_after_s > 0
    _assert_no_credentials(info.value)
    await store.close()


async def test_ping_silent_server_times_out_in_about_two_seconds(bucket: str) -> None:
    # Accepts TCP connections (kernel backlog) but never answers a request.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        store = S3ObjectStore(_settings(f"http://127.0.0.1:{port}", bucket))
        started = time.monotonic()
        with pytest.raises(DependencyUnavailable):
            await store.ping()
        elapsed = time.monotonic() - started
        await store.close()
    assert 1.0 < elapsed < 4.0


async def test_operations_when_nothing_listens(bucket: str, tmp_path: Path) -> None:
    store = S3ObjectStore(
        _settings(f"http://127.0.0.1:{_closed_port()}", bucket), max_attempts=2
    )
    source = tmp_path / "f.bin"
    source.write_bytes(b"x")
    started = time.monotonic()
    calls = [
        store.put("raw/o/s/a.png", b"x"),
        store.put_file("raw/o/s/b.png", source, "image/png"),
        store.get("raw/o/s/a.png"),
        store.size("raw/o/s/a.png"),
        store.delete("raw/o/s/a.png"),
        store.list("raw/"),
    ]
    for call in calls:
        with pytest.raises(DependencyUnavailable) as info:
            await call
        assert info.value.code == "dependency_unavailable"
        _assert_no_credentials(info.value)
    assert time.monotonic() - started < 20.0
    await store.close()


@contextmanager
def _stub_s3(
    status: int, code: str, retry_after: str | None, seen: list[str] | None = None
) -> Iterator[str]:
    """An HTTP server answering every request with one S3-style error; request lines are
    appended to `seen`."""

    class Handler(BaseHTTPRequestHandler):
        # HTTP/1.1 so that botocore's "Expect: 100-continue" is answered at once instead of
        # after its one-second wait; the request body is then read and dropped.
        protocol_version = "HTTP/1.1"

        def _reply(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if seen is not None:
                seen.append(f"{self.command} {self.path}")
            body = (
                f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code>"
                f"<Message>stubbed</Message></Error>"
            ).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", "0" if self.command == "HEAD" else str(len(body)))
            if retry_after is not None:
                self.send_header("Retry-After", retry_after)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = _reply

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.parametrize(
    ("status", "code", "retry_after", "expected_retry_after"),
    [
        (503, "SlowDown", "7", 7.0),
        (503, "ServiceUnavailable", None, 2.0),
        (500, "InternalError", None, 1.0),
        (429, "TooManyRequestsException", "3", 3.0),
        (403, "AccessDenied", None, 30.0),
    ],
)
async def test_server_failures_are_dependency_unavailable(
    status: int, code: str, retry_after: str | None, expected_retry_after: float
) -> None:
    with dummy_aws_env(), _stub_s3(status, code, retry_after) as url:
        store = S3ObjectStore(_settings(url, "tracemill-stub"), max_attempts=1)
        for call in (store.get("raw/o/s/a.png"), store.put("raw/o/s/a.png", b"x")):
            with pytest.raises(DependencyUnavailable) as info:
                await call
            assert info.value.retry_after_s == expected_retry_after
            assert code in info.value.message
            _assert_no_credentials(info.value)
        # A HEAD error has no body, so only the status is known; still unavailable.
        with pytest.raises(DependencyUnavailable):
            await store.size("raw/o/s/a.png")
        with pytest.raises(DependencyUnavailable):
            await store.ping()
        await store.close()


async def test_retries_are_bounded_and_ping_does_not_retry(endpoint: str) -> None:
    seen: list[str] = []
    with _stub_s3(503, "SlowDown", "0", seen) as url:
        store = S3ObjectStore(_settings(url, "tracemill-stub"), max_attempts=3)
        with pytest.raises(DependencyUnavailable):
            await store.get("raw/o/s/a.png")
        assert seen == ["GET /tracemill-stub/raw/o/s/a.png"] * 3
        seen.clear()
        with pytest.raises(DependencyUnavailable):
            await store.ping()
        assert seen == ["HEAD /tracemill-stub"]
        await store.close()


async def test_client_errors_are_not_retryable(endpoint: str) -> None:
    with _stub_s3(400, "InvalidArgument", None) as url:
        store = S3ObjectStore(_settings(url, "tracemill-stub"), max_attempts=1)
        with pytest.raises(TracemillError) as info:
            await store.put("raw/o/s/a.png", b"x")
        assert not isinstance(info.value, (DependencyUnavailable, NotFound))
        assert info.value.code == "internal_error"
        await store.close()


def test_make_object_store_s3(endpoint: str, bucket: str) -> None:
    store = make_object_store(_settings(endpoint, bucket, prefix="exports"))
    assert isinstance(store, S3ObjectStore)
    assert store.describe() == f"s3://{bucket}/exports"
