"""The export's ZIP writer (actors/export/zipsink.py): each entry's recorded size and sha256
are those of what an unzip gives back; images are stored, JSON compressed; rows with ids and
dates serialise."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
import zipfile
from pathlib import Path

import pytest

from actors.export.zipsink import ZipSink, file_sha256, to_json


def test_entries_record_what_an_unzip_gives_back(tmp_path: Path) -> None:
    path = tmp_path / "x.zip"
    sink = ZipSink(path)
    sink.add_json("a/row.json", {"id": uuid.UUID(int=7), "at": dt.datetime(2026, 1, 2, tzinfo=dt.UTC), "n": 1})
    picture = bytes(range(256)) * 400
    sink.add("a/shot.webp", picture, compress=False)
    with sink.entry("a/events.json") as out:
        for chunk in (b"[", b'{"seq":0}', b"]"):
            out.write(chunk)
    sink.close()
    with zipfile.ZipFile(path) as zf:
        assert zf.testzip() is None
        for f in sink.files:
            data = zf.read(f["name"])
            assert (len(data), hashlib.sha256(data).hexdigest()) == (f["bytes"], f["sha256"])
        assert zf.getinfo("a/shot.webp").compress_type == zipfile.ZIP_STORED
        assert zf.getinfo("a/row.json").compress_type == zipfile.ZIP_DEFLATED
        assert json.loads(zf.read("a/row.json")) == {"id": str(uuid.UUID(int=7)), "at": "2026-01-02T00:00:00+00:00",
                                                     "n": 1}
        assert json.loads(zf.read("a/events.json")) == [{"seq": 0}]
    assert [f["name"] for f in sink.files] == ["a/row.json", "a/shot.webp", "a/events.json"]
    assert file_sha256(path) == (path.stat().st_size, hashlib.sha256(path.read_bytes()).hexdigest())


def test_compact_json_is_one_line_and_unknown_types_fail() -> None:
    assert to_json({"v": "a\nb", "b": b"\x01"}, compact=True) == b'{"v":"a\\nb","b":"01"}'
    with pytest.raises(TypeError):
        to_json({"x": object()})
