"""A WebP the client painted is checked once and stored as is only when every box the server
knows of is covered by a box the client really painted (issue 15.2, actors/media/upload.py)."""

from __future__ import annotations

import hashlib
import io
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageDraw

from actors.errors import InvalidInput, UnsupportedMedia
from actors.media.upload import (
    MAX_PAINTED_BOXES,
    UploadFacts,
    covered,
    header_value,
    painted_areas,
    parse_painted_boxes,
)
from actors.processing.screenshots import as_uploaded
from configs.processing import CompressSettings
from serve_app.screenshots_api import check_upload

MAX_PIXELS = 40_000_000
FIELD = {"x": 100, "y": 200, "width": 400, "height": 40}  # CSS px, DPR 1 in these tests
OTHER = {"x": 100, "y": 400, "width": 300, "height": 40}
# What the extension lists for FIELD: two pixels of margin on every side.
FIELD_PAINTED = [98, 198, 404, 44]


def page(paint: list[list[float]] = (), *, fmt: str = "WEBP", size: tuple[int, int] = (1280, 800),
         mode: str = "RGB", **save: Any) -> bytes:
    img = Image.new(mode, size, (255, 255, 255) if mode == "RGB" else (255, 255, 255, 255))
    draw = ImageDraw.Draw(img)
    for box in (FIELD, OTHER):  # red fields: what painting must hide
        draw.rectangle([box["x"], box["y"], box["x"] + box["width"], box["y"] + box["height"]], fill="red")
    for y in range(20, size[1] - 20, 24):  # some text-like stripes
        draw.rectangle([600, y, 1200, y + 8], fill=(40, 40, 40))
    for x, y, w, h in paint:
        draw.rectangle([x, y, x + w - 1, y + h - 1], fill=(0, 0, 0))
    out = io.BytesIO()
    img.save(out, format=fmt, **({"quality": 80} if fmt == "WEBP" else {}), **save)
    return out.getvalue()


def facts_of(data: bytes, painted: list[list[float]] | None) -> UploadFacts | None:
    media = {b"RIFF": "image/webp", b"\x89PNG": "image/png"}[data[:4]]
    return check_upload(data, media, MAX_PIXELS, CompressSettings().max_width, painted)[2]


def stored(data: bytes, painted: list[list[float]], boxes: list[dict[str, Any]]) -> tuple[bytes, int]:
    facts = facts_of(data, painted)
    assert facts is not None
    row = {"width": 1280, "height": 800, "sha256": hashlib.sha256(data).hexdigest()}
    image, vision = as_uploaded(data, row, facts, boxes, 1.0, CompressSettings())
    assert vision.width == image.width
    return image.webp, image.boxes_painted


def dark(webp: bytes, box: dict[str, int]) -> bool:
    pixels = np.asarray(Image.open(io.BytesIO(webp)).convert("RGB"))
    inner = pixels[box["y"] + 2:box["y"] + box["height"] - 2, box["x"] + 2:box["x"] + box["width"] - 2]
    return int(inner.max()) < 48


# -- the header ------------------------------------------------------------------------------

def test_the_header_is_optional_and_read_as_boxes() -> None:
    assert parse_painted_boxes(None) is None
    assert parse_painted_boxes("[]") == []
    assert parse_painted_boxes(header_value([FIELD_PAINTED, [0.5, -2, 10, 3.25]])) == [
        (98, 198, 404, 44), (0.5, -2, 10, 3.25)]


@pytest.mark.parametrize("raw", [
    "not json", "{}", "[[1, 2, 3]]", "[[1, 2, 3, 4, 5]]", '[["a", 2, 3, 4]]', "[[1, 2, -3, 4]]",
    "[[NaN, 2, 3, 4]]", "[[1e309, 2, 3, 4]]", "[[1, 2, 3, 1e12]]",
    header_value([[0, 0, 1, 1]] * (MAX_PAINTED_BOXES + 1)),
])
def test_a_malformed_header_is_refused_naming_it(raw: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_painted_boxes(raw)
    assert caught.value.details and all(d["field"].startswith("X-Painted-Boxes") for d in caught.value.details)


# -- which uploads may be stored as is -------------------------------------------------------

def test_only_a_plain_webp_with_the_header_gets_facts() -> None:
    webp = page([FIELD_PAINTED])
    facts = facts_of(webp, [FIELD_PAINTED])
    assert facts is not None and facts.painted == [(100, 200, 400, 40)] and facts.unverified == 0
    assert len(facts.phash) == 16 and facts.local_vision["width"] == 1280
    assert facts_of(webp, None) is None  # an old client: the full path
    assert facts_of(page([FIELD_PAINTED], fmt="PNG"), [FIELD_PAINTED]) is None
    assert facts_of(page(size=(1400, 800)), []) is None  # wider than stored screenshots
    assert facts_of(page(mode="RGBA"), []) is not None  # an opaque alpha channel changes nothing
    see_through = Image.new("RGBA", (64, 64), (255, 0, 0, 0))
    out = io.BytesIO()
    see_through.save(out, format="WEBP", lossless=True)
    assert facts_of(out.getvalue(), []) is None
    exif = Image.Exif()
    exif[0x010E] = "a description"
    assert facts_of(page(exif=exif.tobytes()), []) is None  # metadata would leave with the bytes
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    assert facts_of(page(icc_profile=srgb), []) is not None  # Chrome writes one into every WebP


def test_a_corrupt_webp_is_refused_whatever_the_header() -> None:
    webp = page()
    with pytest.raises(UnsupportedMedia):
        facts_of(webp[: len(webp) // 2], [])


def test_a_listed_box_counts_only_where_its_pixels_are_painted() -> None:
    pixels = np.asarray(Image.open(io.BytesIO(page([FIELD_PAINTED]))).convert("RGB"))
    unpainted = [98, 398, 304, 44]  # OTHER, listed but red
    assert painted_areas(pixels, [FIELD_PAINTED, unpainted, [5000, 0, 10, 10], [0, 0, 3, 3]]) == [
        (100, 200, 400, 40)]
    assert covered((100, 200, 500, 240), [(100, 200, 400, 40)])
    assert not covered((99, 200, 500, 240), [(100, 200, 400, 40)])


# -- what is stored ----------------------------------------------------------------------------

def test_an_upload_covering_every_server_box_is_stored_unchanged() -> None:
    webp = page([FIELD_PAINTED])
    bytes_out, hidden = stored(webp, [FIELD_PAINTED], [FIELD])
    assert bytes_out == webp and hidden == 1


def test_a_box_listed_but_not_painted_is_painted_by_the_server() -> None:
    webp = page()  # nothing painted, yet the client lists FIELD
    bytes_out, hidden = stored(webp, [FIELD_PAINTED], [FIELD])
    assert bytes_out != webp and hidden == 1
    assert dark(bytes_out, FIELD)


def test_server_boxes_the_client_missed_are_painted_and_its_own_kept() -> None:
    webp = page([FIELD_PAINTED])
    bytes_out, hidden = stored(webp, [FIELD_PAINTED], [FIELD, OTHER])
    assert bytes_out != webp and hidden == 2
    assert dark(bytes_out, FIELD) and dark(bytes_out, OTHER)


def test_bytes_other_than_the_measured_ones_are_not_stored() -> None:
    webp = page([FIELD_PAINTED])
    facts = facts_of(webp, [FIELD_PAINTED])
    assert facts is not None
    row = {"width": 1280, "height": 800, "sha256": hashlib.sha256(b"other").hexdigest()}
    with pytest.raises(UnsupportedMedia):
        as_uploaded(webp, row, facts, [FIELD], 1.0, CompressSettings())
