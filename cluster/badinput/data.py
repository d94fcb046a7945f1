"""Raw material of the bad-input corpus (cluster.badinput.corpus): minimal valid bodies built from
the request models' own JSON schemas, one wrong-typed variant per field, and hostile images.

Generating from the schemas rather than listing literals means a field added to a model gets
its wrong-type cases without anyone remembering to write them.
"""

from __future__ import annotations

import copy
import io
import json
import struct
import zlib
from collections.abc import Iterator
from typing import Any

from PIL import Image

from cluster.badinput.case import JSON, S, U409, U422, BadCase
from cluster.bench.redaction import KNOWN_WORST, hostile_one

__all__ = [
    "TS", "valid_instance", "wrong_type_variants", "png", "png_chunks", "png_bomb", "png_bad_crc",
    "hostile_images", "hostile_text_cases",
]

TS = 1732262400000  # a timestamp inside the accepted [2000, 2100) window

# Wrong values by the JSON type they have. No booleans: a lax pydantic model takes True as 1,
# so a boolean would be a wrong type only for strict models. Each is invalid for any field
# whose schema does not allow its JSON type, in strict and lax models alike.
_WRONG: list[tuple[str, Any]] = [
    ("object", {"wrong": ["type"]}),
    ("string", "wrong-type \u202e"),
    ("array", [["nested"]]),
    ("number", 1.5),
    ("integer", 123456789),
]
# Values a valid instance takes, by field name, where the schema alone is not enough
# (ts must fall in a window; names follow patterns).
_OVERRIDES: dict[str, Any] = {"ts": TS, "seq": 0, "name": "corpus-name",
                              "dataset_id": "00000000-0000-4000-8000-000000000000"}


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = root.get("$defs", root.get("components", {}).get("schemas", {}))[name]
    return schema


def _types(schema: dict[str, Any], root: dict[str, Any]) -> set[str]:
    """The JSON types a (sub)schema allows; empty when it allows anything."""
    schema = _resolve(schema, root)
    if "anyOf" in schema or "oneOf" in schema:
        kinds: set[str] = set()
        for sub in schema.get("anyOf", schema.get("oneOf", [])):
            sub_kinds = _types(sub, root)
            if not sub_kinds:
                return set()
            kinds |= sub_kinds
        return kinds
    if "enum" in schema and "type" not in schema:
        return {"string"} if all(isinstance(v, str) for v in schema["enum"]) else set()
    if "const" in schema:
        return {"string"} if isinstance(schema["const"], str) else set()
    kind = schema.get("type")
    if kind is None:
        return {"object"} if "properties" in schema else set()
    kinds = set(kind) if isinstance(kind, list) else {kind}
    if "number" in kinds:
        kinds.add("integer")
    return kinds


def valid_instance(schema: dict[str, Any], root: dict[str, Any] | None = None, name: str = "") -> Any:
    """The smallest instance of `schema`: required properties only, lowest allowed values."""
    root = root or schema
    if name in _OVERRIDES:
        return _OVERRIDES[name]
    schema = _resolve(schema, root)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [s for s in schema[key] if _resolve(s, root).get("type") != "null"]
            return valid_instance(options[0], root, name)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    if "default" in schema and schema.get("type") not in ("object", None):
        return schema["default"]
    kind = schema.get("type", "object")
    if kind == "object":
        return {p: valid_instance(sub, root, p) for p, sub in schema.get("properties", {}).items()
                if p in schema.get("required", [])}
    if kind == "array":
        return []
    if kind in ("integer", "number"):
        return schema.get("minimum", schema.get("exclusiveMinimum", 0) + 1)
    if kind == "boolean":
        return False
    if schema.get("format") == "uuid":
        return _OVERRIDES["dataset_id"]
    return "x" * max(1, schema.get("minLength", 1))


def wrong_type_variants(
    schema: dict[str, Any], base: Any, root: dict[str, Any] | None = None, path: tuple[str, ...] = (),
    depth: int = 2,
) -> Iterator[tuple[str, str, Any]]:
    """(dotted field, wrong JSON type, a copy of `base` with that field given a value of that
    type, which the field refuses), for
    every property (nested objects down to `depth`), with up to two wrong types per field."""
    root = root or schema
    schema = _resolve(schema, root)
    for prop, sub in schema.get("properties", {}).items():
        allowed = _types(sub, root)
        if not allowed:
            continue  # free-form JSON: no value has the wrong type
        wrong = [(kind, value) for kind, value in _WRONG if kind not in allowed][:2]
        for kind, value in wrong:
            yield ".".join(path + (prop,)), kind, _with(base, path + (prop,), value)
        nested = _resolve(sub, root)
        if depth > 0 and "properties" in nested:
            inner = base
            for step in path:
                inner = inner[step]
            child = inner.get(prop) if isinstance(inner, dict) else None
            start = copy.deepcopy(base)
            if not isinstance(child, dict):
                _set(start, path + (prop,), valid_instance(nested, root, prop))
            yield from wrong_type_variants(nested, start, root, path + (prop,), depth - 1)


def _with(base: Any, path: tuple[str, ...], value: Any) -> Any:
    out = copy.deepcopy(base)
    _set(out, path, value)
    return out


def _set(target: Any, path: tuple[str, ...], value: Any) -> None:
    for step in path[:-1]:
        target = target.setdefault(step, {})
    target[path[-1]] = value


# ----------------------------------------------------------------------------- images

def png(width: int = 64, height: int = 48) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (30, 120, 200)).save(buf, "PNG")
    return buf.getvalue()


def png_chunks(ihdr: bytes, idat: bytes, *, crc_ok: bool = True) -> bytes:
    def chunk(kind: bytes, data: bytes, good: bool = True) -> bytes:
        crc = zlib.crc32(kind + data) ^ (0 if good else 0xDEADBEEF)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat, crc_ok)
            + chunk(b"IEND", b""))


def png_bomb(width: int, height: int) -> bytes:
    """A few hundred bytes whose header claims width x height pixels of zeros: a decompression
    bomb for any server that believes the header before checking it."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return png_chunks(ihdr, zlib.compress(b"\x00" * 4096, 9))


def png_bad_crc() -> bytes:
    width, height = 16, 16
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    raw = b"".join(b"\x00" + b"\x80\x10\x10" * width for _ in range(height))
    return png_chunks(ihdr, zlib.compress(raw), crc_ok=False)


def hostile_images() -> list[tuple[str, str, bytes, frozenset[int]]]:
    """(name, Content-Type, body, allowed statuses) of images a server must refuse."""
    good = png()
    jpeg = io.BytesIO()
    Image.new("RGB", (32, 32)).save(jpeg, "JPEG")
    gif = io.BytesIO()
    Image.new("P", (8, 8)).save(gif, "GIF")
    u415, u413 = frozenset({415}), frozenset({413})
    return [
        ("zero_bytes", "image/png", b"", u415),
        ("truncated_png_half", "image/png", good[: len(good) // 2], u415),
        ("truncated_png_header_only", "image/png", good[:16], u415),
        ("truncated_png_no_iend", "image/png", good[:-12], u415),
        ("png_bad_crc", "image/png", png_bad_crc(), u415),
        ("wrong_magic_text", "image/png", b"GIF89a not a png at all", u415),
        ("jpeg_declared_png", "image/png", jpeg.getvalue(), u415),
        ("png_declared_jpeg", "image/jpeg", good, u415),
        ("png_declared_webp", "image/webp", good, u415),
        ("gif_declared_webp", "image/webp", gif.getvalue(), u415),
        ("truncated_jpeg", "image/jpeg", jpeg.getvalue()[:40], u415),
        ("svg_script", "image/png", b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>', u415),
        ("html_declared_png", "image/png", b"<html><body>hi</body></html>", u415),
        ("bomb_100k_square", "image/png", png_bomb(100_000, 100_000), u413),
        ("bomb_just_over_pixel_limit", "image/png", png_bomb(7_000, 7_000), u413),
        ("bomb_wide_strip", "image/png", png_bomb(2**31 - 1, 1), frozenset({413, 415})),
        ("zero_width_png", "image/png", png_bomb(0, 10), u415),
        ("content_type_text_plain", "text/plain", good, u415),
        ("content_type_json", "application/json", good, u415),
        ("content_type_gif", "image/gif", gif.getvalue(), u415),
        ("content_type_svg", "image/svg+xml", good, u415),
        ("content_type_missing", "", good, u415),
        ("content_type_garbage", "image/png/../../x;;=", good, u415),
    ]


def hostile_text_cases() -> list[BadCase]:
    """The redaction benchmark's hostile strings (cluster.bench.redaction: runs of spaces after
    "phone", "passw" repeated, "[value=" repeated ...) where the server reads them and still
    answers a 4xx that stores nothing: a create that conflicts with the runner's session after
    its task, user agent, client and metadata were redacted (409), a DOM snapshot one character
    over the limit, a timestamp of 8,000 characters (422)."""
    labels = sorted(set(KNOWN_WORST.values()) | {"'call me at' + ' ' * n", "'1 ' * n", "'+1' * n"})
    # JSON escapes tabs and newlines, which would make the metadata too large for a 409.
    plain = [label for label in labels if json.dumps(hostile_one(label, 64))[1:-1] == hostile_one(label, 64)]
    cases: list[BadCase] = []
    for i, label in enumerate(plain):
        body = {"session_id": "@session@", "type": "human", "task": hostile_one(label, 4000),
                "user_agent": hostile_one(label, 1024), "client": {"name": hostile_one(label, 128), "version": "1"},
                "metadata": {"note": hostile_one(label, 8000)}}
        cases.append(BadCase("hostile_text", "/v1/sessions", "POST", "/v1/sessions", f"session_conflict_{i}",
                             U409, "ingest", JSON, json.dumps(body).encode()))
    for i, label in enumerate(labels):
        snapshot = {"seq": 0, "type": "dom_snapshot", "ts": TS, "elements": [], "html": hostile_one(label, 256 * 1024 + 1)}
        cases.append(BadCase("hostile_text", "/v1/sessions/{id}/events", "POST", S + "/events",
                             f"snapshot_over_limit_{i}", frozenset({413, 422}), "ingest", JSON,
                             json.dumps({"events": [snapshot]}).encode()))
    for name, ts in (("ts_8000_digits", "1" * 8000), ("ts_rfc3339_then_digits", "2024-01-01T00:00:00." + "1" * 8000)):
        event = {"seq": 0, "type": "click", "ts": ts, "target": {"tag": "a"}}
        cases.append(BadCase("hostile_text", "/v1/sessions/{id}/events", "POST", S + "/events", name, U422,
                             "ingest", JSON, json.dumps({"events": [event]}).encode(), field="ts"))
    return cases
