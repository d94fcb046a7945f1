"""A ZIP written entry by entry to a file, each entry's size and sha256 taken as it is written,
so an export holds one entry (one picture, one page of events) in memory at a time."""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import json
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

__all__ = ["ZipSink", "file_sha256", "to_json"]

_CHUNK = 1 << 20


def _default(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def to_json(value: Any, *, compact: bool = False) -> bytes:
    """JSON (UTF-8; indented unless `compact`) of rows holding ids, dates and the like."""
    if compact:
        return json.dumps(value, default=_default, ensure_ascii=False, separators=(",", ":")).encode()
    return json.dumps(value, default=_default, ensure_ascii=False, indent=1).encode()


class _Entry:
    def __init__(self, raw: IO[bytes]) -> None:
        self._raw, self._hash, self.size = raw, hashlib.sha256(), 0

    def write(self, data: bytes) -> None:
        self._raw.write(data)
        self._hash.update(data)
        self.size += len(data)

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()


class ZipSink:
    """Entries go to the ZIP at `path` as they come; `files` lists each with its size and the
    sha256 of its content (what an unzip gives back), for the manifest."""

    def __init__(self, path: Path) -> None:
        self._zip = zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True)
        self.files: list[dict[str, Any]] = []

    @contextmanager
    def entry(self, name: str, *, compress: bool = True) -> Iterator[_Entry]:
        info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
        with self._zip.open(info, "w", force_zip64=True) as raw:
            entry = _Entry(raw)
            yield entry
        self.files.append({"name": name, "bytes": entry.size, "sha256": entry.sha256})

    def add(self, name: str, data: bytes, *, compress: bool = True) -> None:
        with self.entry(name, compress=compress) as entry:
            entry.write(data)

    def add_json(self, name: str, value: Any) -> None:
        self.add(name, to_json(value))

    def close(self) -> None:
        self._zip.close()


def file_sha256(path: Path) -> tuple[int, str]:
    """(size, sha256) of a file, read in chunks."""
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()
