"""Screenshot → redacted, downscaled WebP, with a perceptual hash for near-duplicate detection.

Order matters: orientation first (box coordinates describe the picture as displayed), then
redaction at full resolution (painting after downscaling would let a blurred remnant of the
sensitive text survive at the box edges), then downscaling, then encoding. The WebP carries
no EXIF, XMP or ICC data: Pillow writes metadata only when asked to.
"""

from __future__ import annotations

import hashlib
import io
import math
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field

from actors.errors import InvalidInput, PayloadTooLarge, UnsupportedMedia
from configs.processing import WEBP_MAX_SIDE, CompressSettings

__all__ = [
    "ACCEPTED_FORMATS",
    "CompressSettings",
    "CompressedImage",
    "compress_screenshot",
    "decode_image",
    "device_rects",
    "flatten_to_rgb",
    "hamming",
    "is_near_duplicate",
    "paint_boxes_over",
    "perceptual_hash",
]

# Browsers capture PNG, JPEG or WebP. Naming the decoders keeps Pillow from trying the
# others on untrusted bytes (EPS, for one, would hand them to Ghostscript).
ACCEPTED_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "WEBP")
# Solid black: no texture for a model to learn from, and plainly a redaction to a human.
PAINT_COLOUR = (0, 0, 0)
# A transparent page background renders as white in every browser.
BACKGROUND = (255, 255, 255)
# pHash: 32x32 grey thumbnail, keep the 8x8 lowest DCT frequencies → 64 bits.
_PHASH_SIZE = 32
_PHASH_KEEP = 8
# Rounding the DCT before taking the median keeps flat images' hashes free of float noise.
_PHASH_DECIMALS = 6


class CompressedImage(BaseModel):
    model_config = ConfigDict(frozen=True)

    webp: bytes = Field(repr=False)
    content_type: Literal["image/webp"] = "image/webp"
    source_format: str
    original_width: int
    original_height: int
    width: int
    height: int
    original_bytes: int
    compressed_bytes: int
    boxes_painted: int
    phash: str  # 16 lowercase hex digits
    sha256: str  # of `webp`


def decode_image(data: bytes, max_pixels: int) -> Image.Image:
    """Untrusted bytes → upright RGB image; UnsupportedMedia or PayloadTooLarge otherwise."""
    return _decode(data, max_pixels)[0]


def _decode(data: bytes, max_pixels: int) -> tuple[Image.Image, str]:
    try:
        img = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except Image.DecompressionBombError as exc:
        raise PayloadTooLarge(f"image too large to decode: {exc}") from None
    except UnidentifiedImageError:
        # Pillow's message names our BytesIO object: useless to whoever sent the bytes.
        raise UnsupportedMedia("not a PNG, JPEG or WebP image") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise UnsupportedMedia(f"unreadable image header: {exc}") from None
    source_format = str(img.format)
    width, height = img.size
    # Header sizes are checked before load(): that is the point of the guard.
    if width * height > max_pixels:
        raise PayloadTooLarge(f"image is {width}x{height}, more than {max_pixels} pixels")
    try:
        img.load()
        img = ImageOps.exif_transpose(img)
    except Image.DecompressionBombError as exc:
        raise PayloadTooLarge(f"image too large to decode: {exc}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # Truncated or corrupt data surfaces only here, once the pixels are read.
        raise UnsupportedMedia(f"image data is corrupt or truncated: {exc}") from None
    return flatten_to_rgb(img), source_format


def flatten_to_rgb(img: Image.Image) -> Image.Image:
    """RGB copy of `img`, transparency composited onto white."""
    has_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info
    if not has_alpha:
        return img.convert("RGB")
    # Dropping alpha would expose whatever colour sits under transparent pixels.
    rgba = img.convert("RGBA")
    flat = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
    return Image.alpha_composite(flat, rgba).convert("RGB")


def _box_number(box: Mapping[str, Any], key: str, index: int) -> float:
    value = box.get(key) if isinstance(box, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidInput(
            "invalid paint box",
            [{"field": f"paint_boxes[{index}].{key}", "error": "must be a finite number"}],
        )
    return float(value)


def _device_box(
    box: Mapping[str, Any], index: int, dpr: float, size: tuple[int, int]
) -> tuple[int, int, int, int] | None:
    """CSS box → clamped device-pixel box (left, top, right, bottom), None when off-image."""
    x, y, w, h = (_box_number(box, key, index) for key in ("x", "y", "width", "height"))
    if w < 0 or h < 0:
        field = f"paint_boxes[{index}].{'width' if w < 0 else 'height'}"
        raise InvalidInput("invalid paint box", [{"field": field, "error": "must be >= 0"}])
    # Clamp as floats first: a huge box scaled by the DPR overflows to inf, which int() refuses.
    def clamp(value: float, limit: int) -> float:
        return min(max(value, 0.0), float(limit))

    # Round outwards: a fractional CSS edge must not leave a sliver of the field visible.
    left, right = math.floor(clamp(x * dpr, size[0])), math.ceil(clamp((x + w) * dpr, size[0]))
    top, bottom = math.floor(clamp(y * dpr, size[1])), math.ceil(clamp((y + h) * dpr, size[1]))
    if right <= left or bottom <= top:
        return None
    return left, top, right, bottom


def paint_boxes_over(
    img: Image.Image, boxes: Iterable[Mapping[str, Any]], device_pixel_ratio: float = 1.0
) -> int:
    """Fill each box solid, in place; returns how many boxes touched the image.

    A malformed box raises InvalidInput rather than being skipped: skipping it would
    silently publish the field it was meant to hide.
    """
    device_boxes = device_rects(boxes, device_pixel_ratio, img.size)
    for rect in device_boxes:  # all validated before any is painted
        if rect is not None:
            img.paste(PAINT_COLOUR, rect)
    return sum(rect is not None for rect in device_boxes)


def device_rects(
    boxes: Iterable[Mapping[str, Any]], device_pixel_ratio: float, size: tuple[int, int]
) -> list[tuple[int, int, int, int] | None]:
    """Each CSS box as the device-pixel rect (left, top, right, bottom) that painting fills,
    None where it misses an image of `size`; InvalidInput for a malformed box or ratio."""
    if isinstance(device_pixel_ratio, bool) or not (
        isinstance(device_pixel_ratio, (int, float))
        and math.isfinite(device_pixel_ratio) and device_pixel_ratio > 0
    ):
        raise InvalidInput(
            "invalid device pixel ratio",
            [{"field": "device_pixel_ratio", "error": "must be a finite number > 0"}],
        )
    return [_device_box(b, i, device_pixel_ratio, size) for i, b in enumerate(boxes)]


def _target_size(width: int, height: int, max_width: int) -> tuple[int, int]:
    scale = min(1.0, max_width / width, WEBP_MAX_SIDE / height)
    if scale >= 1.0:
        return width, height
    return max(1, round(width * scale)), max(1, round(height * scale))


def compress_screenshot(
    data: bytes,
    settings: CompressSettings | None = None,
    paint_boxes: Iterable[Mapping[str, Any]] = (),
    *,
    device_pixel_ratio: float = 1.0,
) -> CompressedImage:
    """Decode, orient, redact `paint_boxes` (CSS px), downscale to max_width, encode WebP."""
    settings = settings or CompressSettings()
    img, source_format = _decode(data, settings.max_pixels)
    original_size = img.size
    painted = paint_boxes_over(img, paint_boxes, device_pixel_ratio)
    size = _target_size(*img.size, settings.max_width)
    if size != img.size:
        # Lanczos keeps small text legible; Pillow's resampling is area-aware, so no aliasing.
        # reducing_gap pre-shrinks by whole factors first, which matters only for huge inputs.
        img = img.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    out = io.BytesIO()
    img.save(out, format="WEBP", quality=settings.webp_quality, method=settings.webp_method)
    webp = out.getvalue()
    return CompressedImage(
        webp=webp,
        source_format=source_format,
        original_width=original_size[0],
        original_height=original_size[1],
        width=img.width,
        height=img.height,
        original_bytes=len(data),
        compressed_bytes=len(webp),
        boxes_painted=painted,
        phash=f"{perceptual_hash(img):016x}",
        sha256=hashlib.sha256(webp).hexdigest(),
    )


def _dct_matrix(n: int) -> np.ndarray:
    """Unnormalised DCT-II basis (as scipy.fft.dct's default): row k, column i."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    return 2.0 * np.cos(np.pi * (2 * i + 1) * k / (2 * n))


_DCT = _dct_matrix(_PHASH_SIZE)


def perceptual_hash(img: Image.Image | bytes) -> int:
    """64-bit DCT pHash: bit set where a low-frequency coefficient exceeds their median."""
    if isinstance(img, (bytes, bytearray, memoryview)):
        img = decode_image(bytes(img), CompressSettings().max_pixels)
    grey = img.convert("L").resize(
        (_PHASH_SIZE, _PHASH_SIZE), Image.Resampling.LANCZOS, reducing_gap=2.0
    )
    pixels = np.asarray(grey, dtype=np.float64)
    coeffs = (_DCT @ pixels @ _DCT.T)[:_PHASH_KEEP, :_PHASH_KEEP]
    coeffs = np.round(coeffs, _PHASH_DECIMALS)
    bits = (coeffs > np.median(coeffs)).ravel()
    value = 0
    for bit in bits:  # first coefficient becomes the most significant bit
        value = (value << 1) | int(bit)
    return value


def _as_hash(value: int | str) -> int:
    return int(value, 16) if isinstance(value, str) else int(value)


def hamming(a: int | str, b: int | str) -> int:
    """Bits that differ between two hashes, given as ints or as the hex of CompressedImage.phash."""
    return (_as_hash(a) ^ _as_hash(b)).bit_count()


def is_near_duplicate(a: int | str, b: int | str, threshold: int = 6) -> bool:
    """Same screen, give or take a caret or a clock.

    Re-encoding and small repaints flip ≤ 6 of the 64 bits; a different page flips far more.
    """
    return hamming(a, b) <= threshold
