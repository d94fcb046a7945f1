"""Unit tests of actors.media: compression, redaction, perceptual hashes and local vision.

Every image is drawn here with Pillow; all but the downscaling test stay under 1 MP.
"""

from __future__ import annotations

import hashlib
import io
import random

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter
from pydantic import ValidationError

from actors.errors import InvalidInput, PayloadTooLarge, UnsupportedMedia
from actors.media.compress import (
    CompressSettings, compress_screenshot, hamming, is_near_duplicate, perceptual_hash,
)
from actors.media.vision_local import LocalVision, analyze_image

WHITE, INK, NAVY = (255, 255, 255), (30, 30, 30), (30, 40, 60)


def encode(img: Image.Image, fmt: str = "PNG", **params: object) -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt, **params)
    return out.getvalue()


def decode(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def page(width: int = 640, height: int = 400, seed: int = 1) -> Image.Image:
    """A web page: dark header, a blue button and lines of word-like glyph stripes."""
    rng = random.Random(seed)
    img = Image.new("RGB", (width, height), WHITE)
    draw = ImageDraw.Draw(img)
    draw.rectangle([0, 0, width, 36], fill=NAVY)
    draw.text((16, 12), "Example Shop - Checkout", fill=WHITE)
    for y in range(56, height - 24, 20):
        x = 24
        while x < width - 90:
            word = rng.randint(14, 56)
            for gx in range(x, x + word, 5):  # stems and counters, like 8 px glyphs
                draw.rectangle([gx, y, gx + 1, y + 9], fill=INK)
            draw.line([x, y + 9, x + word, y + 9], fill=INK)
            x += word + 10
    draw.rectangle([width - 140, height - 60, width - 30, height - 30], fill=(20, 110, 220))
    return img


def photo_page(width: int = 800, height: int = 500) -> Image.Image:
    """A page with a gradient banner and a photo: what makes real captures heavy as PNG.

    (Flat synthetic UIs are the opposite case: PNG packs them tighter than lossy WebP.)
    """
    img = page(width, height)
    banner = Image.linear_gradient("L").resize((width, 30)).convert("RGB")
    img.paste(banner, (0, 36))
    photo = noise(width // 3, height // 3, seed=3).filter(ImageFilter.GaussianBlur(2))
    img.paste(photo, (width // 2, height // 3))
    return img


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def with_modal(img: Image.Image) -> Image.Image:
    """The page under a 50% black scrim, with a white dialog in the middle."""
    dimmed = Image.blend(img, Image.new("RGB", img.size, (0, 0, 0)), 0.5)
    w, h = img.size
    draw = ImageDraw.Draw(dimmed)
    box = (w // 4, h // 4, 3 * w // 4, 3 * h // 4)
    draw.rectangle(box, fill=WHITE)
    draw.rectangle([box[0] + 20, box[1] + 20, box[2] - 60, box[1] + 30], fill=INK)  # title
    draw.rectangle([box[2] - 90, box[3] - 40, box[2] - 20, box[3] - 16], fill=(20, 110, 220))
    return dimmed


# --- compression ------------------------------------------------------------------------


def test_compression_shrinks_a_png_into_valid_webp_of_the_same_size() -> None:
    png = encode(photo_page(800, 500))
    result = compress_screenshot(png)
    out = decode(result.webp)
    assert result.webp[:4] == b"RIFF" and result.webp[8:12] == b"WEBP"
    assert out.format == "WEBP" and out.size == (800, 500)  # narrower than max: no upscaling
    assert (result.width, result.height) == (result.original_width, result.original_height)
    assert result.compressed_bytes == len(result.webp) < result.original_bytes == len(png)
    assert result.sha256 == hashlib.sha256(result.webp).hexdigest()
    assert result.source_format == "PNG" and result.content_type == "image/webp"
    assert len(result.phash) == 16 and int(result.phash, 16) >= 0


def test_a_3000x2000_capture_is_downscaled_to_1280_wide_keeping_its_aspect() -> None:
    img = Image.new("RGB", (3000, 2000), WHITE)
    ImageDraw.Draw(img).rectangle([300, 200, 2700, 1800], outline=INK, width=12)
    result = compress_screenshot(encode(img, compress_level=1))
    assert (result.original_width, result.original_height) == (3000, 2000)
    assert (result.width, result.height) == (1280, 853)
    assert decode(result.webp).size == (1280, 853)
    assert result.width / result.height == pytest.approx(1.5, rel=0.002)


def test_max_width_is_a_setting_and_tall_captures_fit_webps_side_limit() -> None:
    narrow = compress_screenshot(encode(page(640, 400)), CompressSettings(max_width=320))
    assert (narrow.width, narrow.height) == (320, 200)
    tall = compress_screenshot(encode(Image.new("RGB", (200, 20000), WHITE)))
    assert tall.height == 16383 and tall.width == round(200 * 16383 / 20000)


def test_painted_boxes_are_solid_in_the_output_and_scaled_by_device_pixel_ratio() -> None:
    img = noise(800, 500)  # 2x capture of a 400x250 CSS viewport
    boxes = [
        {"x": 50, "y": 40, "width": 100, "height": 60},  # → device (100,80)-(300,200)
        {"x": -30, "y": 200, "width": 80, "height": 100},  # hangs off the bottom-left corner
        {"x": 1000, "y": 10, "width": 50, "height": 50},  # wholly off-image: nothing to do
    ]
    settings = CompressSettings(max_width=400)  # output is at CSS scale again
    result = compress_screenshot(encode(img), settings, boxes, device_pixel_ratio=2)
    out = np.asarray(decode(result.webp).convert("RGB")).astype(int)
    assert result.boxes_painted == 2 and out.shape == (250, 400, 3)
    # Interiors, inset 4 px: lossy WebP bleeds the noise a few pixels across a box's edge.
    first, second = out[44:96, 54:146], out[204:250, 0:46]  # box 2 clamped to the image
    assert first.max() <= 12 and first.mean() < 1
    assert second.max() <= 12 and second.mean() < 1
    assert out[120:180, 200:380].std() > 15  # the rest is noise still (averaged by the 2x shrink)


def test_painting_happens_before_downscaling_so_no_trace_survives() -> None:
    img = Image.new("RGB", (1280, 200), WHITE)
    ImageDraw.Draw(img).rectangle([400, 80, 880, 120], fill=(255, 0, 0))  # the "password"
    box = [{"x": 399.5, "y": 79.5, "width": 481.2, "height": 41.1}]  # fractional: round out
    result = compress_screenshot(encode(img), CompressSettings(max_width=320), box)
    out = np.asarray(decode(result.webp).convert("RGB")).astype(int)
    reddish = (out[..., 0] - out[..., 1] > 40) & (out[..., 0] - out[..., 2] > 40)
    assert not reddish.any()


@pytest.mark.parametrize(
    "box, field",
    [
        ({"x": 1, "y": 1, "width": 5}, "paint_boxes[0].height"),
        ({"x": 1, "y": 1, "width": -5, "height": 5}, "paint_boxes[0].width"),
        ({"x": float("nan"), "y": 1, "width": 5, "height": 5}, "paint_boxes[0].x"),
        ({"x": True, "y": 1, "width": 5, "height": 5}, "paint_boxes[0].x"),
        ({"x": "10", "y": 1, "width": 5, "height": 5}, "paint_boxes[0].x"),
    ],
)
def test_malformed_boxes_are_refused_not_skipped(box: dict, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        compress_screenshot(encode(page(100, 80)), paint_boxes=[box])
    assert caught.value.details[0]["field"] == field


def test_device_pixel_ratio_must_be_positive() -> None:
    with pytest.raises(InvalidInput):
        compress_screenshot(encode(page(100, 80)), device_pixel_ratio=0)


def test_exif_orientation_is_applied() -> None:
    stored = Image.new("RGB", (120, 60), (0, 0, 255))
    ImageDraw.Draw(stored).rectangle([0, 0, 59, 59], fill=(255, 0, 0))  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    result = compress_screenshot(encode(stored, "JPEG", quality=95, exif=exif.tobytes()))
    out = decode(result.webp).convert("RGB")
    assert out.size == (60, 120) and (result.original_width, result.original_height) == (60, 120)
    top, bottom = out.getpixel((30, 20)), out.getpixel((30, 100))
    assert top[0] > 200 and top[2] < 60  # the stored left half is now on top
    assert bottom[2] > 200 and bottom[0] < 60


def test_transparency_is_flattened_onto_white() -> None:
    img = Image.new("RGBA", (64, 64), (255, 0, 0, 0))  # fully transparent red
    out = decode(compress_screenshot(encode(img)).webp).convert("RGB")
    assert min(out.getpixel((32, 32))) >= 250


@pytest.mark.parametrize(
    "data",
    [
        b"definitely not an image",
        b"",
        encode(page(200, 120))[:400],  # truncated PNG
        encode(page(200, 120), "GIF"),  # an image, but not a format browsers capture
    ],
    ids=["text", "empty", "truncated-png", "gif"],
)
def test_non_images_and_broken_images_are_unsupported_media(data: bytes) -> None:
    with pytest.raises(UnsupportedMedia):
        compress_screenshot(data)


def test_more_pixels_than_allowed_is_payload_too_large() -> None:
    with pytest.raises(PayloadTooLarge):
        compress_screenshot(encode(page(200, 120)), CompressSettings(max_pixels=10_000))


def test_settings_are_strict_and_frozen() -> None:
    settings = CompressSettings()
    assert (settings.max_width, settings.webp_quality, settings.webp_method) == (1280, 80, 4)
    for bad in ({"max_width": 32}, {"webp_quality": 0}, {"webp_method": 7}, {"colour": 1}):
        with pytest.raises(ValidationError):
            CompressSettings(**bad)
    with pytest.raises(ValidationError):
        settings.max_width = 640  # type: ignore[misc]


# --- perceptual hashes ------------------------------------------------------------------


def test_phash_survives_jpeg_reencoding() -> None:
    original = page(640, 400)
    as_jpeg = decode(encode(original, "JPEG", quality=90))
    assert hamming(perceptual_hash(original), perceptual_hash(as_jpeg)) <= 6
    compressed = compress_screenshot(encode(original))
    jpeg_hash = perceptual_hash(encode(original, "JPEG", quality=90))
    assert is_near_duplicate(compressed.phash, jpeg_hash)


def test_phash_is_far_for_different_images() -> None:
    checker = Image.fromarray(
        (np.indices((400, 640)).sum(axis=0) // 80 % 2 * 255).astype(np.uint8)
    ).convert("RGB")
    images = [page(640, 400), with_modal(page(640, 400, seed=2)), noise(640, 400), checker]
    hashes = [perceptual_hash(img) for img in images]
    for i in range(len(hashes)):
        for j in range(i + 1, len(hashes)):
            assert hamming(hashes[i], hashes[j]) > 12, (i, j)
            assert not is_near_duplicate(hashes[i], hashes[j])


def test_hamming_takes_ints_or_hex() -> None:
    assert hamming(0b1011, 0b0001) == 2
    assert hamming("ffffffffffffffff", 0) == 64
    assert is_near_duplicate("00000000000000ff", "000000000000003f")
    assert not is_near_duplicate("00000000000000ff", 0, threshold=7)


# --- local vision -----------------------------------------------------------------------


def test_a_white_image_is_blank_and_worthless() -> None:
    vision = analyze_image(encode(Image.new("RGB", (320, 200), WHITE)))
    assert vision.blank and vision.near_blank_ratio == 1.0 and vision.quality < 0.1
    assert not vision.blurry and not vision.modal_detected
    assert [(c.hex, c.share) for c in vision.dominant_colours] == [("#ffffff", 1.0)]


def test_a_gaussian_blurred_page_is_blurry_and_its_sharp_original_is_not() -> None:
    sharp = page(640, 400)
    crisp = analyze_image(encode(sharp))
    soft = analyze_image(encode(sharp.filter(ImageFilter.GaussianBlur(2))))
    assert not crisp.blurry and soft.blurry
    assert soft.blur < crisp.blur / 10
    assert crisp.quality > 0.8 and soft.quality < 0.5
    assert not crisp.blank and not soft.blank


def test_a_centred_dialog_over_a_dimmed_page_is_a_modal_and_the_page_is_not() -> None:
    plain = page(640, 400)
    assert analyze_image(encode(with_modal(plain))).modal_detected
    assert not analyze_image(encode(plain)).modal_detected
    scrim_only = Image.blend(plain, Image.new("RGB", plain.size, (0, 0, 0)), 0.5)
    assert not analyze_image(encode(scrim_only)).modal_detected
    toast = scrim_only.copy()
    ImageDraw.Draw(toast).rectangle([460, 300, 630, 390], fill=WHITE)  # bright, but in a corner
    assert not analyze_image(encode(toast)).modal_detected


def test_dominant_colours_of_a_two_colour_image() -> None:
    img = Image.new("RGB", (200, 100), (200, 30, 30))
    ImageDraw.Draw(img).rectangle([140, 0, 199, 99], fill=(20, 60, 200))  # right 30%
    colours = analyze_image(encode(img)).dominant_colours
    assert [c.hex for c in colours] == ["#c81e1e", "#143cc8"]
    assert [c.share for c in colours] == pytest.approx([0.7, 0.3], abs=0.01)


def test_text_like_content_and_noise_are_told_apart_from_flat_content() -> None:
    text = analyze_image(page(640, 400))
    gradient = analyze_image(Image.linear_gradient("L").resize((640, 400)).convert("RGB"))
    static = analyze_image(noise(320, 200))
    assert text.text_density > 0.1 and gradient.text_density == 0.0
    assert 0.02 < text.complexity < static.complexity and static.complexity > 0.5
    assert text.quality > static.quality and text.quality > gradient.quality
    assert 0.0 < text.contrast <= 0.5


def test_analysis_is_deterministic_and_bytes_or_image_agree() -> None:
    data = encode(with_modal(page(480, 300, seed=5)))
    first, second = analyze_image(data), analyze_image(data)
    assert first == second and first.model_dump_json() == second.model_dump_json()
    assert analyze_image(decode(data)) == first
    assert isinstance(first, LocalVision) and 0.0 <= first.quality <= 1.0


def test_analysis_refuses_non_images() -> None:
    with pytest.raises(UnsupportedMedia):
        analyze_image(b"<html></html>")
