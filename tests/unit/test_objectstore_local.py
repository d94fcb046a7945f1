"""The object-store contract, and what is specific to the local-directory store.

`ObjectStoreContract` holds the behaviour every back end must share; a subclass only
provides the `store` fixture. tests/integration/test_objectstore_s3.py runs the same
class against S3 (moto's server over HTTP).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Iterator

import pytest

from actors.errors import Conflict, DependencyUnavailable, NotFound
from actors.storage.objectstore import (
    LocalDirObjectStore,
    ObjectStore,
    make_object_store,
    validate_key,
)
from configs.settings import ObjectStoreSettings

pytestmark = pytest.mark.anyio

# Ten parts of 100 characters and nine slashes, plus padding: exactly 1024 characters.
LONGEST_KEY = "/".join(["k" * 100] * 10) + "x" * 15

GOOD_KEYS = [
    "raw/org-1/session-1/0001.png",
    "a",
    "exports/örg/séssion with spaces/ß.jsonl",
    "raw/org/s/x..y.png",  # dots inside a part are fine; only a leading dot is reserved
    LONGEST_KEY,
]

BAD_KEYS = [
    "",
    "/raw/a.png",
    "raw//a.png",
    "raw/a/",
    "..",
    "../etc/passwd",
    "raw/../a.png",
    "raw/./a.png",
    "raw/.hidden",
    "raw\\a.png",
    "raw/a\x00.png",
    "raw/a\n.png",
    LONGEST_KEY + "y",
]

BAD_PREFIXES = ["/raw/", "../", "raw//", "raw\\", "raw/\x00", "raw/../"]


@pytest.mark.anyio
class ObjectStoreContract:
    """Behaviour shared by every ObjectStore; subclasses define the `store` fixture."""

    async def test_put_get_size_roundtrip(self, store: ObjectStore) -> None:
        data = bytes(range(256)) * 17
        await store.put("raw/org-1/s-1/0001.png", data, "image/png")
        assert await store.get("raw/org-1/s-1/0001.png") == data
        assert await store.size("raw/org-1/s-1/0001.png") == len(data)

    async def test_put_replaces_previous_object(self, store: ObjectStore) -> None:
        await store.put("raw/o/s/a.png", b"first, longer version")
        await store.put("raw/o/s/a.png", b"second")
        assert await store.get("raw/o/s/a.png") == b"second"
        assert await store.size("raw/o/s/a.png") == len(b"second")

    async def test_empty_object(self, store: ObjectStore) -> None:
        await store.put("raw/o/s/empty.bin", b"")
        assert await store.get("raw/o/s/empty.bin") == b""
        assert await store.size("raw/o/s/empty.bin") == 0

    @pytest.mark.parametrize("key", GOOD_KEYS, ids=range(len(GOOD_KEYS)))
    async def test_valid_keys_roundtrip(self, store: ObjectStore, key: str) -> None:
        await store.put(key, key.encode())
        assert await store.get(key) == key.encode()
        assert await store.list("") == [key]

    async def test_absent_key(self, store: ObjectStore) -> None:
        with pytest.raises(NotFound) as info:
            await store.get("raw/o/s/missing.png")
        assert info.value.code == "not_found"
        assert "raw/o/s/missing.png" in info.value.message
        assert await store.size("raw/o/s/missing.png") is None
        await store.delete("raw/o/s/missing.png")  # absent is fine

    async def test_delete(self, store: ObjectStore) -> None:
        await store.put("raw/o/s/a.png", b"a")
        await store.put("raw/o/s/b.png", b"b")
        await store.delete("raw/o/s/a.png")
        with pytest.raises(NotFound):
            await store.get("raw/o/s/a.png")
        assert await store.size("raw/o/s/a.png") is None
        assert await store.list("raw/") == ["raw/o/s/b.png"]
        await store.delete("raw/o/s/a.png")  # twice is fine too

    async def test_list_is_a_sorted_string_prefix_match(self, store: ObjectStore) -> None:
        keys = [
            "raw/org1/s2/a.png",
            "raw/org1/s1/b.png",
            "raw/org1/s1/a.png",
            "raw/org10/s1/a.png",
            "raw/org2/s1/a.png",
            "exports/org1/e.jsonl",
        ]
        for key in keys:
            await store.put(key, b"x")
        assert await store.list("") == sorted(keys)
        assert await store.list("raw/org1/") == [
            "raw/org1/s1/a.png", "raw/org1/s1/b.png", "raw/org1/s2/a.png",
        ]
        # Without a trailing slash the prefix also matches longer names, as in S3.
        assert await store.list("raw/org1") == sorted(k for k in keys if k.startswith("raw/org1"))
        assert await store.list("raw/org1/s1/a") == ["raw/org1/s1/a.png"]
        assert await store.list("raw/org1/s1/a.png") == ["raw/org1/s1/a.png"]
        assert await store.list("nothing/") == []
        assert await store.list("raw/org3") == []

    async def test_put_file(self, store: ObjectStore, tmp_path: Path) -> None:
        source = tmp_path / "upload.bin"
        data = os.urandom(300_000)
        source.write_bytes(data)
        await store.put_file("exports/o/batch.bin", source, "application/octet-stream")
        assert await store.get("exports/o/batch.bin") == data
        assert await store.size("exports/o/batch.bin") == len(data)

    async def test_put_file_missing_source(self, store: ObjectStore, tmp_path: Path) -> None:
        with pytest.raises(FileNotFoundError):
            await store.put_file("exports/o/x.bin", tmp_path / "nope.bin", "text/plain")
        assert await store.list("") == []

    @pytest.mark.parametrize("key", BAD_KEYS, ids=range(len(BAD_KEYS)))
    async def test_bad_keys_rejected(self, store: ObjectStore, key: str, tmp_path: Path) -> None:
        source = tmp_path / "f.bin"
        source.write_bytes(b"x")
        with pytest.raises(ValueError):
            await store.put(key, b"x")
        with pytest.raises(ValueError):
            await store.put_file(key, source, "text/plain")
        with pytest.raises(ValueError):
            await store.get(key)
        with pytest.raises(ValueError):
            await store.size(key)
        with pytest.raises(ValueError):
            await store.delete(key)
        assert await store.list("") == []

    @pytest.mark.parametrize("prefix", BAD_PREFIXES, ids=range(len(BAD_PREFIXES)))
    async def test_bad_list_prefixes_rejected(self, store: ObjectStore, prefix: str) -> None:
        with pytest.raises(ValueError):
            await store.list(prefix)

    async def test_concurrent_puts(self, store: ObjectStore) -> None:
        keys = [f"raw/o/s/{i:04d}.png" for i in range(24)]
        await asyncio.gather(*(store.put(k, k.encode() * 100) for k in keys))
        assert await store.list("raw/o/s/") == keys
        for key in keys:
            assert await store.get(key) == key.encode() * 100

    async def test_ping_succeeds(self, store: ObjectStore) -> None:
        await store.ping()

    async def test_describe(self, store: ObjectStore) -> None:
        assert store.describe()
        assert "secret" not in store.describe().lower()


class TestLocalDirObjectStore(ObjectStoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[LocalDirObjectStore]:
        yield LocalDirObjectStore(tmp_path / "objects")


# --------------------------------------------------------------- local-store specifics


def _all_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


@pytest.fixture
def local(tmp_path: Path) -> LocalDirObjectStore:
    return LocalDirObjectStore(tmp_path / "objects")


async def test_files_land_under_root_and_no_temp_files_remain(
    local: LocalDirObjectStore, tmp_path: Path
) -> None:
    source = tmp_path / "src.bin"
    source.write_bytes(b"s" * 5000)
    for i in range(5):
        await local.put("raw/o/s/a.png", f"v{i}".encode())
    await local.put_file("raw/o/s/b.png", source, "image/png")
    root = tmp_path / "objects"
    assert _all_files(root) == ["raw/o/s/a.png", "raw/o/s/b.png"]
    assert (root / "raw/o/s/a.png").read_bytes() == b"v4"
    assert local.describe() == root.as_uri()


async def test_failed_write_keeps_old_object_and_leaves_no_temp_file(
    local: LocalDirObjectStore, tmp_path: Path
) -> None:
    await local.put("raw/o/s/a.png", b"old")
    with pytest.raises(TypeError):
        # Fails inside the write, after the temporary file was created.
        await local.put("raw/o/s/a.png", "not bytes")  # type: ignore[arg-type]
    assert await local.get("raw/o/s/a.png") == b"old"
    assert _all_files(tmp_path / "objects") == ["raw/o/s/a.png"]


async def test_reader_never_sees_a_partial_object(local: LocalDirObjectStore) -> None:
    size = 1024 * 1024
    key = "raw/o/s/big.png"
    await local.put(key, b"@" * size)
    done = asyncio.Event()
    seen: set[int] = set()

    async def writer() -> None:
        try:
            for i in range(30):
                await local.put(key, bytes([65 + i % 26]) * size)
        finally:
            done.set()

    async def reader() -> None:
        while not done.is_set():
            data = await local.get(key)
            # A torn read would be short or mix two fill bytes.
            assert len(data) == size and data == data[:1] * size
            seen.add(data[0])
            assert await local.list("raw/") == [key]

    await asyncio.gather(writer(), reader(), reader())
    assert await local.get(key) == bytes([65 + 29 % 26]) * size
    assert len(seen) > 1  # the readers really did overlap with the writer


async def test_key_and_prefix_collisions_are_conflicts(local: LocalDirObjectStore) -> None:
    await local.put("raw/o/s", b"a file where a directory would go")
    with pytest.raises(Conflict):
        await local.put("raw/o/s/a.png", b"x")
    await local.put("exports/o/e/1.jsonl", b"x")
    with pytest.raises(Conflict):
        await local.put("exports/o/e", b"x")
    # A directory is a prefix, not an object.
    with pytest.raises(NotFound):
        await local.get("exports/o/e")
    assert await local.size("exports/o/e") is None
    await local.delete("exports/o/e")
    assert await local.list("") == ["exports/o/e/1.jsonl", "raw/o/s"]


async def test_part_too_long_for_the_file_system(local: LocalDirObjectStore) -> None:
    with pytest.raises(ValueError):
        await local.put("raw/" + "p" * 300, b"x")


async def test_ping_fails_when_root_is_unusable(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_bytes(b"")
    store = LocalDirObjectStore(blocker / "objects")
    with pytest.raises(DependencyUnavailable) as info:
        await store.ping()
    assert store.describe() in info.value.message
    assert info.value.message.startswith("object store unavailable")
    assert info.value.retry_after_s > 0


async def test_ping_creates_a_missing_root(tmp_path: Path) -> None:
    store = LocalDirObjectStore(tmp_path / "a" / "b")
    await store.ping()
    assert (tmp_path / "a" / "b").is_dir()


def test_make_object_store_local_applies_prefix(tmp_path: Path) -> None:
    settings = ObjectStoreSettings(kind="local", local_dir=tmp_path, prefix="/dev/tm/")
    store = make_object_store(settings)
    assert isinstance(store, LocalDirObjectStore)
    assert store.describe() == (tmp_path / "dev" / "tm").as_uri()


@pytest.mark.parametrize("key", GOOD_KEYS, ids=range(len(GOOD_KEYS)))
def test_validate_key_accepts(key: str) -> None:
    assert validate_key(key) == key


@pytest.mark.parametrize("key", BAD_KEYS + [None, 7], ids=range(len(BAD_KEYS) + 2))
def test_validate_key_rejects(key: object) -> None:
    with pytest.raises(ValueError):
        validate_key(key)  # type: ignore[arg-type]


async def test_a_local_directory_cannot_hand_out_urls(tmp_path: Path) -> None:
    from actors.errors import ConfigError

    store = LocalDirObjectStore(tmp_path)
    with pytest.raises(ConfigError, match="data_url"):
        await store.presigned_url("webp/a.webp", 60)


async def test_objects_are_private_to_the_service_user(local: LocalDirObjectStore, tmp_path: Path) -> None:
    old = os.umask(0o022)  # the usual umask, which alone would leave files 0644 and dirs 0755
    try:
        await local.put("raw/o/s/a.png", b"unredacted pixels")
        source = tmp_path / "src.bin"
        source.write_bytes(b"s")
        await local.put_file("exports/o/b.bin", source, "application/octet-stream")
        await local.ping()
    finally:
        os.umask(old)
    root = tmp_path / "objects"
    for key in ("raw/o/s/a.png", "exports/o/b.bin"):
        assert (root / key).stat().st_mode & 0o777 == 0o600, key
    for directory in ("", "raw", "raw/o", "raw/o/s", "exports", "exports/o"):
        assert (root / directory).stat().st_mode & 0o777 == 0o700, directory or "the root"
