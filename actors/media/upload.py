"""An upload checked once: decoded at the ingress, and, when it is a WebP the client painted
itself, measured there too so that it can be stored as is (issue 15.2).

The client's `X-Painted-Boxes` header lists the boxes (image pixels) it painted over before
encoding. A WebP that qualifies (opaque, one frame, no EXIF or XMP, no wider than stored
screenshots) gets `UploadFacts`: the listed boxes whose pixels are in fact painted (a claim is
checked, never trusted), and the pHash and local vision of its pixels. The compress task then
only compares the boxes the server knows of against those: when every one is covered the bytes
are stored unchanged, else it paints the rest and encodes.
Everything else (PNG, JPEG, old clients) takes the full decode, paint, downscale and encode.
"""

from __future__ import annotations

import io
import json
import math
import warnings
from collections.abc import Iterable, Sequence
from typing import Annotated, Any

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from actors.errors import InvalidInput, PayloadTooLarge, UnsupportedMedia, details_from_validation_error
from actors.media.compress import flatten_to_rgb, perceptual_hash
from actors.media.vision_local import analyze_image
from configs.processing import WEBP_MAX_SIDE

__all__ = [
    "MAX_PAINTED_BOXES",
    "PAINTED_BOXES_HEADER",
    "Rect",
    "UploadFacts",
    "covered",
    "header_value",
    "open_checked",
    "painted_areas",
    "parse_painted_boxes",
    "webp_upload_facts",
]

PAINTED_BOXES_HEADER = "X-Painted-Boxes"
# A page rarely shows more than a few dozen sensitive fields; the header must stay small.
MAX_PAINTED_BOXES = 200
# A listed box counts as painted only if no channel of any pixel in it, VERIFY_MARGIN pixels in
# from its edges, exceeds DARK_MAX. Lossy WebP (q50-95) keeps a painted interior under ~30 and
# bleeds neighbouring colour 1-2 px into its border; #282828 text on black is not legible.
DARK_MAX = 40
VERIFY_MARGIN = 2
# Far outside any image, yet small enough that no arithmetic on it overflows.
_COORD_LIMIT = 1e6

_Coord = Annotated[float, Field(allow_inf_nan=False, ge=-_COORD_LIMIT, le=_COORD_LIMIT)]
_Extent = Annotated[float, Field(allow_inf_nan=False, ge=0, le=_COORD_LIMIT)]
# [x, y, width, height] in the image's own pixels.
Rect = tuple[_Coord, _Coord, _Extent, _Extent]
_BOXES = TypeAdapter(Annotated[list[Rect], Field(max_length=MAX_PAINTED_BOXES)])


class UploadFacts(BaseModel):
    """Stored with the screenshot row (`upload_facts`) for the compress task."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Listed boxes whose pixels were found painted, shrunk by VERIFY_MARGIN: [x, y, w, h].
    painted: list[tuple[int, int, int, int]]
    # Listed boxes that were not painted (or fell off the image): never trusted.
    unverified: int = 0
    phash: str
    local_vision: dict[str, Any]


def parse_painted_boxes(raw: str | None) -> list[Rect] | None:
    """The header's boxes; None when absent (the client claims nothing); InvalidInput if bad."""
    if raw is None:
        return None
    try:
        return _BOXES.validate_json(raw)
    except ValidationError as exc:
        details = details_from_validation_error(exc, PAINTED_BOXES_HEADER)
        raise InvalidInput(
            f"{PAINTED_BOXES_HEADER} must be a JSON list of at most {MAX_PAINTED_BOXES}"
            " [x, y, width, height] boxes in image pixels", details[:20],
        ) from None


def open_checked(data: bytes, fmt: str, max_pixels: int, *, label: str | None = None) -> Image.Image:
    """The fully decoded image of the declared Pillow format, or a clear refusal: too many
    pixels (checked from the header, before any pixel is decoded) or undecodable bytes."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=[fmt]) as img:
                width, height = img.size
                if width * height > max_pixels:
                    raise PayloadTooLarge(
                        f"the image is {width}x{height} pixels; the limit is {max_pixels} pixels"
                    )
                if fmt == "PNG":
                    # Pillow's decoder checks neither the chunk CRCs nor the IEND chunk, so a
                    # corrupt or cut-off PNG would be stored, served, and sent to a fine-tune
                    # provider that refuses it; verify() checks both (and needs a fresh open).
                    img.verify()
            img = Image.open(io.BytesIO(data), formats=[fmt])
            img.load()
            return img
    except PayloadTooLarge:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise PayloadTooLarge("the image declares too many pixels") from None
    except Exception:  # noqa: BLE001 - Pillow raises many types for bad data; all mean the same
        raise UnsupportedMedia(f"the body is not a decodable {label or fmt} image") from None


def _storable_as_is(img: Image.Image, max_width: int) -> bool:
    """What the full path would change anyway: size, frames, alpha, metadata, orientation."""
    if img.format != "WEBP" or getattr(img, "n_frames", 1) != 1:
        return False
    if img.width > max_width or img.height > WEBP_MAX_SIDE:
        return False
    # Stored unchanged, metadata would leave with it. A colour profile is kept: Chrome writes
    # its canvas's (sRGB) into every WebP, and it says nothing of the person or the page.
    if any(img.info.get(k) for k in ("exif", "xmp")):
        return False
    if img.mode == "RGB":
        return True
    # An alpha channel that is opaque everywhere changes nothing when flattened.
    return img.mode == "RGBA" and img.getchannel("A").getextrema() == (255, 255)


def webp_upload_facts(img: Image.Image, painted: Sequence[Rect], max_width: int) -> UploadFacts | None:
    """Facts of a decoded WebP the client painted, or None when it must take the full path."""
    if not _storable_as_is(img, max_width):
        return None
    rgb = flatten_to_rgb(img)
    verified = painted_areas(np.asarray(rgb), painted)
    return UploadFacts(
        painted=verified, unverified=len(painted) - len(verified), phash=f"{perceptual_hash(rgb):016x}",
        local_vision=analyze_image(rgb).model_dump(mode="json"),
    )


def painted_areas(pixels: np.ndarray, painted: Sequence[Rect]) -> list[tuple[int, int, int, int]]:
    """The listed boxes that really are painted, each shrunk to the part that was checked: a
    client that lists a box it did not paint gains nothing (the server paints what it knows)."""
    height, width = pixels.shape[:2]
    found = []
    for x, y, w, h in painted:
        left, top = max(0, math.ceil(x) + VERIFY_MARGIN), max(0, math.ceil(y) + VERIFY_MARGIN)
        right = min(width, math.floor(x + w) - VERIFY_MARGIN)
        bottom = min(height, math.floor(y + h) - VERIFY_MARGIN)
        if right > left and bottom > top and int(pixels[top:bottom, left:right].max()) <= DARK_MAX:
            found.append((left, top, right - left, bottom - top))
    return found


def covered(rect: tuple[int, int, int, int], painted: Iterable[Sequence[float]]) -> bool:
    """True when one painted box holds the whole device rect (left, top, right, bottom)."""
    left, top, right, bottom = rect
    for x, y, w, h in painted:
        if x <= left and y <= top and x + w >= right and y + h >= bottom:
            return True
    return False


def header_value(boxes: Iterable[Sequence[float]]) -> str:
    """The header for a list of [x, y, width, height] boxes (the bench and tests write it)."""
    return json.dumps([list(box) for box in boxes], separators=(",", ":"))
