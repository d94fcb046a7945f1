"""Object storage for screenshots and exported artefacts: a local directory or S3.

Keys are relative, slash-separated paths such as ``raw/<org>/<session>/<shot>.png``; both
back ends accept exactly the same keys (`validate_key`), so code and tests written against
one work against the other. Every method is async and keeps blocking I/O off the event
loop, because the callers are Serve replicas and actors that also serve requests.

Stores are built inside the process that uses them (`make_object_store(settings)`), never
pickled: a boto3 client does not survive a trip across Ray process boundaries.
"""

from __future__ import annotations

import abc
import asyncio
import errno
import os
import re
import secrets
import shutil
import stat
from pathlib import Path
from typing import BinaryIO, Callable, TypeVar


from actors.errors import ConfigError, Conflict, DependencyUnavailable, NotFound
from configs.settings import ObjectStoreSettings

__all__ = [
    "MAX_KEY_CHARS",
    "ObjectStore",
    "LocalDirObjectStore",
    "make_object_store",
    "validate_key",
    "validate_prefix",
]

T = TypeVar("T")

MAX_KEY_CHARS = 1024
MiB = 1024 * 1024
DEFAULT_PING_TIMEOUT_S = 2.0
OCTET_STREAM = "application/octet-stream"

# Objects are raw screenshots and training data: readable by the service's user only.
FILE_MODE = 0o600
DIR_MODE = 0o700

# C0 controls and DEL: NUL breaks C paths, the rest break S3's XML listings and log lines.
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


def validate_key(key: str) -> str:
    """Return `key` unchanged if it is a valid object key, else raise ValueError.

    No part may start with ".": that rules out "." and ".." (aliasing and traversal) and
    reserves dot-names for the local store's temporary files, which therefore can never be
    read or listed as objects.
    """
    if not isinstance(key, str):
        raise ValueError(f"object key must be a str, not {type(key).__name__}")
    shown = repr(key[:80])
    if not key:
        raise ValueError("object key is empty")
    if len(key) > MAX_KEY_CHARS:
        raise ValueError(f"object key longer than {MAX_KEY_CHARS} characters: {shown}...")
    if key.startswith("/"):
        raise ValueError(f"object key must be relative (no leading '/'): {shown}")
    if "\\" in key:
        raise ValueError(f"object key contains a backslash: {shown}")
    if _CONTROL_CHARS.search(key):
        raise ValueError(f"object key contains a NUL or control character: {shown}")
    for part in key.split("/"):
        if not part:
            raise ValueError(f"object key has an empty path part: {shown}")
        if part.startswith("."):
            raise ValueError(f"object key part may not start with '.': {shown}")
    return key


def validate_prefix(prefix: str) -> str:
    """A listing prefix: "" (everything) or a valid key, optionally ending in "/"."""
    if prefix:
        validate_key(prefix[:-1] if prefix.endswith("/") else prefix)
    return prefix


def make_private_dirs(path: Path) -> None:
    """`mkdir -p` giving every directory it creates DIR_MODE (Path.mkdir(parents=True) gives the
    parents it creates the default mode, usually world-readable)."""
    missing: list[Path] = []
    here = path
    while not os.path.lexists(here):
        missing.append(here)
        here = here.parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, DIR_MODE)
        except FileExistsError:  # a concurrent put made it
            if not directory.is_dir():
                raise


class ObjectStore(abc.ABC):
    """What tracemill needs from blob storage. Invalid keys raise ValueError everywhere."""

    @abc.abstractmethod
    async def put(self, key: str, data: bytes, content_type: str = OCTET_STREAM) -> None:
        """Store `data` under `key`, replacing any previous object atomically."""

    @abc.abstractmethod
    async def put_file(self, key: str, path: Path, content_type: str) -> None:
        """Store a local file's contents, streamed rather than loaded whole."""

    @abc.abstractmethod
    async def get(self, key: str) -> bytes:
        """The object's bytes; raises NotFound when there is no such object."""

    @abc.abstractmethod
    async def size(self, key: str) -> int | None:
        """The object's size in bytes, or None when there is no such object."""

    @abc.abstractmethod
    async def delete(self, key: str) -> None:
        """Remove the object; deleting an absent object is not an error."""

    @abc.abstractmethod
    async def list(self, prefix: str) -> list[str]:
        """Keys starting with `prefix` (a plain string match, as in S3), sorted."""

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise DependencyUnavailable unless the store answers within about two seconds."""

    @abc.abstractmethod
    def describe(self) -> str:
        """Where the objects live, for logs and probes; never contains credentials."""

    async def presigned_url(self, key: str, expires_s: int) -> str:
        """An https URL a third party (a fine-tuning provider) can GET the object from, valid
        for `expires_s`. Only stores reachable from outside can give one."""
        raise ConfigError(f"{self.describe()} cannot hand out URLs to third parties; "
                          "use S3 (TRACEMILL_S3_BUCKET) or image_mode data_url")

    async def close(self) -> None:
        """Release connections; the store must not be used afterwards."""

    async def _probe(self, probe: Callable[[], object], timeout_s: float) -> None:
        # wait_for cannot stop the thread, but it bounds how long /readyz waits for it.
        try:
            await asyncio.wait_for(asyncio.to_thread(probe), timeout=timeout_s)
        except asyncio.TimeoutError:
            raise DependencyUnavailable(
                f"object store unavailable: {self.describe()}: no answer within {timeout_s:g}s"
            ) from None


# --------------------------------------------------------------------------- local


class LocalDirObjectStore(ObjectStore):
    """Objects as files under `root`; for development, tests and single-node clusters.

    Writes go to a dot-named temporary file in the target's directory, are fsynced and then
    renamed into place, so readers see the old object or the new one, never a mix.
    `content_type` is not stored. Directories emptied by `delete` stay: pruning them would
    race with a concurrent `put` into the same directory.
    """

    def __init__(self, root: Path, *, ping_timeout_s: float = DEFAULT_PING_TIMEOUT_S) -> None:
        self._root = Path(root).absolute()
        self._ping_timeout_s = ping_timeout_s

    def describe(self) -> str:
        return self._root.as_uri()

    def _path(self, key: str) -> Path:
        return self._root.joinpath(*validate_key(key).split("/"))

    async def put(self, key: str, data: bytes, content_type: str = OCTET_STREAM) -> None:
        path = self._path(key)
        await asyncio.to_thread(self._write_atomic, key, path, lambda f: f.write(data))

    async def put_file(self, key: str, path: Path, content_type: str) -> None:
        target = self._path(key)

        def copy_in() -> None:
            # Opened first, so a bad source path surfaces as itself, not as a store failure.
            with open(path, "rb") as src:
                self._write_atomic(key, target, lambda dst: shutil.copyfileobj(src, dst, MiB))

        await asyncio.to_thread(copy_in)

    def _write_atomic(self, key: str, target: Path, fill: Callable[[BinaryIO], object]) -> None:
        parent = target.parent
        tmp = parent / f".tmp-{secrets.token_hex(8)}"
        try:
            make_private_dirs(parent)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
            try:
                with os.fdopen(fd, "wb") as f:
                    fill(f)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, target)
            except BaseException:
                try:
                    os.unlink(tmp)
                except FileNotFoundError:
                    pass
                raise
            # The rename is only durable once the directory entry itself reaches the disk.
            dir_fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except (FileExistsError, NotADirectoryError):
            raise Conflict(f"object key {key!r} lies below an existing object") from None
        except IsADirectoryError:
            raise Conflict(f"object key {key!r} is a prefix of existing objects") from None
        except OSError as exc:
            if exc.errno == errno.ENAMETOOLONG:
                raise ValueError(f"key too long for this file system: {key[:80]!r}") from None
            raise self._unavailable(exc) from exc

    async def get(self, key: str) -> bytes:
        path = self._path(key)

        def read() -> bytes:
            try:
                return path.read_bytes()
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                raise NotFound(f"object not found: {key}") from None
            except OSError as exc:
                raise self._unavailable(exc) from exc

        return await asyncio.to_thread(read)

    async def size(self, key: str) -> int | None:
        path = self._path(key)

        def stat_size() -> int | None:
            try:
                st = os.stat(path)
            except (FileNotFoundError, NotADirectoryError):
                return None
            return st.st_size if stat.S_ISREG(st.st_mode) else None

        return await asyncio.to_thread(stat_size)

    async def delete(self, key: str) -> None:
        path = self._path(key)

        def unlink() -> None:
            try:
                os.unlink(path)
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                pass  # a directory is a prefix, not an object: nothing to delete
            except OSError as exc:
                raise self._unavailable(exc) from exc

        await asyncio.to_thread(unlink)

    async def list(self, prefix: str) -> list[str]:
        validate_prefix(prefix)
        return await asyncio.to_thread(self._list, prefix)

    def _list(self, prefix: str) -> list[str]:
        # Walk only the directory the prefix points into, pruning subtrees that cannot match.
        dir_part = prefix.rpartition("/")[0]
        base = self._root.joinpath(*dir_part.split("/")) if dir_part else self._root
        keys: list[str] = []
        for dirpath, dirnames, filenames in os.walk(base):
            rel = Path(dirpath).relative_to(self._root).as_posix()
            stem = "" if rel == "." else rel + "/"
            dirnames[:] = [
                d for d in dirnames
                if not d.startswith(".")
                and ((stem + d + "/").startswith(prefix) or prefix.startswith(stem + d + "/"))
            ]
            keys.extend(
                stem + name for name in filenames
                if not name.startswith(".") and (stem + name).startswith(prefix)
            )
        return sorted(keys)

    async def ping(self) -> None:
        def probe() -> None:
            make_private_dirs(self._root)
            if not os.access(self._root, os.W_OK | os.X_OK):
                raise PermissionError(errno.EACCES, "not writable", str(self._root))

        try:
            await self._probe(probe, self._ping_timeout_s)
        except OSError as exc:
            raise self._unavailable(exc) from exc

    def _unavailable(self, exc: OSError) -> DependencyUnavailable:
        reason = exc.strerror or type(exc).__name__
        return DependencyUnavailable(f"object store unavailable: {self.describe()}: {reason}", 5.0)


# --------------------------------------------------------------------------- factory


def settings_prefix(settings: ObjectStoreSettings) -> str:
    prefix = settings.prefix.strip("/")
    try:
        return validate_key(prefix) if prefix else ""
    except ValueError as exc:
        raise ConfigError(f"object_store.prefix is invalid: {exc}") from None


def make_object_store(settings: ObjectStoreSettings) -> ObjectStore:
    """The store `settings` describe; build it in the process that will use it.

    `prefix` applies to both kinds: a sub-directory of `local_dir`, a key prefix in S3.
    """
    if settings.kind == "s3":
        from actors.storage.s3store import S3ObjectStore  # boto3 loads only when S3 is used

        return S3ObjectStore(settings, multipart_threshold_bytes=settings.multipart_threshold_bytes)
    if settings.local_dir is None:
        raise ConfigError("object_store.local_dir is required when kind is 'local'")
    prefix = settings_prefix(settings)
    root = Path(settings.local_dir)
    return LocalDirObjectStore(root.joinpath(*prefix.split("/")) if prefix else root)
