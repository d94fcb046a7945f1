"""Synthetic screenshot frames, and the CPU work the compress task does on one: what the
screenshot, load and autoscale benchmarks feed in and measure."""

from __future__ import annotations

import io
import random

from PIL import Image, ImageDraw

from actors.media.compress import compress_screenshot
from actors.media.vision_local import analyze_image

__all__ = ["compress_and_measure", "synthetic_page"]


def synthetic_page(index: int, width: int = 1280, height: int = 800) -> bytes:
    """A PNG page: header, blocks of colour, lines of glyph-like stripes (text-heavy pages are
    the slow case for WebP)."""
    rng = random.Random(index)
    img = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    draw.rectangle([0, 0, width, 56], fill=(20, 30, 90))
    for _ in range(12):
        x, y = rng.randrange(0, width - 240), rng.randrange(70, height - 120)
        draw.rectangle([x, y, x + rng.randrange(80, 240), y + rng.randrange(40, 120)],
                       fill=tuple(rng.randrange(0, 255) for _ in range(3)))
    for y in range(80, height - 20, 22):
        x = 24 + rng.randrange(0, 40)
        while x < width - 120:
            word = rng.randrange(14, 64)
            for gx in range(x, x + word, 5):
                draw.rectangle([gx, y, gx + 1, y + 9], fill=(30, 30, 30))
            x += word + 8
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def compress_and_measure(png: bytes) -> int:
    """The compress task's CPU work, without its I/O: what both sides of the ratio run."""
    image = compress_screenshot(png)
    analyze_image(image.webp)
    return image.compressed_bytes
