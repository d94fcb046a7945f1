"""Deterministic screenshot analysis with numpy alone: blankness, blur, contrast, overlays.

Every measure is taken on an image no wider than ANALYSIS_MAX_WIDTH, the width screenshots
are stored at, so a raw capture and its compressed WebP give nearly the same readings and the
thresholds below mean the same thing whatever the capture's device pixel ratio.
Luminance is Rec. 601 luma (what Pillow's "L" mode uses) scaled to [0, 1].
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from actors.media.compress import CompressSettings, decode_image, flatten_to_rgb

__all__ = ["DominantColour", "LocalVision", "analyze_image"]

# Screenshots are stored 1280 wide; analysing at that width keeps blur readings comparable.
ANALYSIS_MAX_WIDTH = 1280
# Bounds memory for full-page captures (a float32 plane is then at most ~8 MB).
ANALYSIS_MAX_PIXELS = 1280 * 1600
# 3 bits per channel (512 bins): anti-aliased shades of one colour fall into one bin.
QUANT_SHIFT = 5
# Colour statistics read every 2nd pixel of every 2nd row: shares stay within a fraction of a
# percent (no resampling, so colours stay exact) at a quarter of the cost.
COLOUR_STRIDE = 2
# Lossy codecs move flat colours by a few levels; 8 still tells #fff from #f5f5f5-ish greys.
NEAR_TOLERANCE = 8
# Under half a percent of differing pixels is a spinner, a caret or a lone word.
BLANK_MIN_RATIO = 0.995
# Below ~1% RMS luminance contrast nothing is legible even if pixels differ (faint gradients).
BLANK_MAX_CONTRAST = 0.01
# Laplacian variance (grey 0–255) in content tiles. Crisp UI text scores in the thousands,
# a 1.5 px Gaussian blur drops it under 60, 1 px keeps ~500: OpenCV's usual 100 fits.
BLUR_THRESHOLD = 100.0
# Tiles with less grey spread than this are background and would dilute the blur measure.
TILE = 32
CONTENT_TILE_STD = 4.0
# Luminance step that counts as an edge: above codec ringing and gradient banding (~0.04),
# below the faintest placeholder grey on white (#aaa ≈ 0.33).
EDGE_MIN = 0.1
# Text: several strong horizontal transitions in a short window (glyph stems and gaps).
TEXT_EDGE_MIN = 0.25
TEXT_WINDOW = 16
TEXT_MIN_EDGES = 4  # fewer is a border or an icon edge
TEXT_MAX_EDGES = 12  # more is texture or noise, not 8–16 px glyphs
# RMS contrast of a dark-on-light page is ~0.2–0.35; at 0.2 contrast counts as fully good.
GOOD_CONTRAST = 0.2
# Edge density of a usable page: under 2% it is mostly empty, over 25% it is texture/noise.
COMPLEXITY_LOW = 0.02
COMPLEXITY_HIGH = 0.25
QUALITY_WEIGHTS = (0.4, 0.3, 0.3)  # sharpness, contrast, complexity: blur hurts training most
BLURRY_FACTOR = 0.5
BLANK_FACTOR = 0.1
# Modal overlay: page dimmed to ≤ 0.8 luma (a 20%+ black scrim over white), a box at least
# 0.15 brighter than the dim surround, covering 4–70% of the frame, horizontally centred.
MODAL_BORDER = 0.05
MODAL_SURROUND_MAX = 0.8
MODAL_MIN_STEP = 0.15
MODAL_MIN_AREA, MODAL_MAX_AREA = 0.04, 0.7
MODAL_MAX_OFFSET_X, MODAL_MAX_OFFSET_Y = 0.1, 0.25  # dialogs often sit above the middle
MODAL_MIN_FILL = 0.6  # a dialog's body is mostly its own bright background
MODAL_MAX_STRAY = 0.03  # bright pixels left outside the box: else it is just a light page
# Profiles are averaged over 3% of the frame so a dialog's own text lines do not split it.
MODAL_SMOOTH = 0.03
# A row crosses the box if it is a quarter as bright as the brightest row: a bold heading
# can darken most of a dialog row, while rows of the dimmed page hold no bright pixels at all.
MODAL_PROFILE_MIN = 0.25
_DECIMALS = 6  # results are compared and stored; no float tails


class DominantColour(BaseModel):
    model_config = ConfigDict(frozen=True)

    hex: str  # "#rrggbb", the mean colour of the quantisation bin
    share: float = Field(ge=0, le=1)


class LocalVision(BaseModel):
    model_config = ConfigDict(frozen=True)

    width: int
    height: int
    blank: bool
    near_blank_ratio: float
    blur: float
    blurry: bool
    contrast: float  # RMS contrast: std of luminance in [0, 1], so at most 0.5
    complexity: float
    dominant_colours: list[DominantColour]
    modal_detected: bool
    text_density: float
    quality: float


def analyze_image(data: bytes | Image.Image, *, max_pixels: int | None = None) -> LocalVision:
    """Measure a screenshot given as encoded bytes or as a decoded, already upright image."""
    if isinstance(data, Image.Image):
        img = flatten_to_rgb(data)
    else:
        img = decode_image(bytes(data), max_pixels or CompressSettings().max_pixels)
    width, height = img.size
    work = _working_image(img)
    rgb = np.asarray(work)
    grey = np.asarray(work.convert("L"))
    lum = grey.astype(np.float32) / 255.0
    sample = np.ascontiguousarray(rgb[::COLOUR_STRIDE, ::COLOUR_STRIDE])
    colours, dominant_rgb = _dominant_colours(sample)
    near_blank = _near_ratio(sample, dominant_rgb)
    contrast = float(lum.std())
    blank = near_blank >= BLANK_MIN_RATIO or contrast < BLANK_MAX_CONTRAST
    blur = _laplacian_variance(grey)
    complexity = _edge_density(grey)
    blurry = not blank and blur < BLUR_THRESHOLD
    return LocalVision(
        width=width,
        height=height,
        blank=blank,
        near_blank_ratio=_r(near_blank),
        blur=_r(blur),
        blurry=blurry,
        contrast=_r(contrast),
        complexity=_r(complexity),
        dominant_colours=colours,
        modal_detected=_modal_detected(lum),
        text_density=_r(_text_density(grey)),
        quality=_r(_quality(blur, contrast, complexity, blank=blank, blurry=blurry)),
    )


def _r(value: float) -> float:
    return round(float(value), _DECIMALS)


def _working_image(img: Image.Image) -> Image.Image:
    area_scale = (ANALYSIS_MAX_PIXELS / (img.width * img.height)) ** 0.5
    scale = min(1.0, ANALYSIS_MAX_WIDTH / img.width, area_scale)
    if scale >= 1.0:
        return img
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    return img.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def _dominant_colours(rgb: np.ndarray) -> tuple[list[DominantColour], np.ndarray]:
    """Top 3 coarse bins by pixel count, each reported as its mean colour."""
    q = (rgb >> QUANT_SHIFT).astype(np.uint16)
    bins = ((q[..., 0] << 6) | (q[..., 1] << 3) | q[..., 2]).ravel()
    counts = np.bincount(bins, minlength=512)
    order = np.argsort(-counts, kind="stable")[:3]  # stable: ties go to the lower bin
    flat = rgb.reshape(-1, 3)
    # Per-bin channel sums in one pass each, instead of a masked copy of the pixels per bin.
    sums = np.stack([np.bincount(bins, weights=flat[:, c], minlength=512) for c in range(3)], axis=1)
    colours, means = [], []
    for b in order[counts[order] > 0]:
        mean = np.rint(sums[b] / counts[b])
        means.append(mean)
        colours.append(DominantColour(
            hex="#" + "".join(f"{int(v):02x}" for v in mean), share=_r(counts[b] / bins.size)
        ))
    return colours, means[0]


def _near_ratio(rgb: np.ndarray, colour: np.ndarray) -> float:
    """Share of pixels within NEAR_TOLERANCE (per channel) of `colour`."""
    levels = np.arange(256)
    near = np.ones(rgb.shape[:2], bool)
    for c in range(3):  # a 256-entry table per channel beats widening every pixel to int16
        near &= (np.abs(levels - colour[c]) <= NEAR_TOLERANCE)[rgb[..., c]]
    return float(near.mean())


def _laplacian_variance(grey: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian over tiles that hold content (0 if none do).

    `grey` is the 8-bit luma plane: integer sums give the exact variances at a fraction of the
    cost of float copies of every content tile."""
    g = grey.astype(np.int32)
    padded = np.pad(g, 1, mode="edge")
    lap = padded[:-2, 1:-1] + padded[2:, 1:-1] + padded[1:-1, :-2] + padded[1:-1, 2:] - 4 * g
    th, tw = g.shape[0] // TILE, g.shape[1] // TILE
    if th == 0 or tw == 0:  # smaller than one tile: use it all
        return float(lap.var()) if g.std() > CONTENT_TILE_STD else 0.0
    crop = (slice(0, th * TILE), slice(0, tw * TILE))
    area = TILE * TILE
    s1, s2 = _tile_sums(g[crop], th, tw)
    content = s2 * area - s1 * s1 > (CONTENT_TILE_STD * area) ** 2  # tile std > CONTENT_TILE_STD
    if not content.any():
        return 0.0
    l1, l2 = _tile_sums(lap[crop], th, tw)
    n = int(content.sum()) * area
    total, squares = int(l1[content].sum()), int(l2[content].sum())
    return (squares * n - total * total) / (n * n)


def _tile_sums(plane: np.ndarray, th: int, tw: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-tile sum and sum of squares (int64, exact) of an integer plane cut into TILE squares."""
    tiles = plane.reshape(th, TILE, tw, TILE)
    return tiles.sum(axis=(1, 3), dtype=np.int64), (tiles * tiles).sum(axis=(1, 3), dtype=np.int64)


def _levels(step: float) -> int:
    """A luminance step in [0, 1] as the least whole number of 8-bit levels that reaches it."""
    return math.ceil(step * 255 - 1e-9)


def _edge_density(grey: np.ndarray) -> float:
    """Share of pixels with a luminance step ≥ EDGE_MIN to the right or below."""
    if grey.shape[0] < 2 or grey.shape[1] < 2:
        return 0.0
    g = grey.astype(np.int16)  # whole levels: the same test as on luminance, at half the bytes
    dx = np.abs(np.diff(g, axis=1))[:-1, :]
    dy = np.abs(np.diff(g, axis=0))[:, :-1]
    return float((np.maximum(dx, dy) >= _levels(EDGE_MIN)).mean())


def _text_density(grey: np.ndarray) -> float:
    """Share of row positions whose next TEXT_WINDOW pixels hold a glyph-like edge count."""
    if grey.shape[1] <= TEXT_WINDOW:
        return 0.0
    steps = np.abs(np.diff(grey.astype(np.int16), axis=1))
    edges = (steps >= _levels(TEXT_EDGE_MIN)).view(np.uint8)
    # Window sums as TEXT_WINDOW shifted byte adds: a third of a cumulative sum's time.
    n = edges.shape[1] - TEXT_WINDOW + 1
    counts = edges[:, :n].copy()
    for k in range(1, TEXT_WINDOW):
        counts += edges[:, k:k + n]
    return float(((counts >= TEXT_MIN_EDGES) & (counts <= TEXT_MAX_EDGES)).mean())


def _band_score(value: float, low: float, high: float) -> float:
    """1 inside [low, high], falling linearly to 0 at 0 and at 1."""
    if value < low:
        return value / low
    if value > high:
        return max(0.0, 1.0 - (value - high) / (1.0 - high))
    return 1.0


def _quality(
    blur: float, contrast: float, complexity: float, *, blank: bool, blurry: bool
) -> float:
    sharpness = blur / (blur + BLUR_THRESHOLD)  # 0.5 exactly at the blurry line
    scores = (sharpness, min(1.0, contrast / GOOD_CONTRAST),
              _band_score(complexity, COMPLEXITY_LOW, COMPLEXITY_HIGH))
    quality = sum(w * s for w, s in zip(QUALITY_WEIGHTS, scores))
    if blurry:
        quality *= BLURRY_FACTOR
    if blank:
        quality *= BLANK_FACTOR
    return min(1.0, max(0.0, quality))


def _longest_run(mask: np.ndarray) -> tuple[int, int] | None:
    """[start, end) of the longest run of True, None when there is none."""
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    if starts.size == 0:
        return None
    i = int(np.argmax(ends - starts))
    return int(starts[i]), int(ends[i])


def _smooth(profile: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average, same length; edges average over what exists."""
    kernel = np.ones(width)
    return np.convolve(profile, kernel, "same") / np.convolve(np.ones_like(profile), kernel, "same")


def _modal_detected(lum: np.ndarray) -> bool:
    """A centred bright box over a dimmed surround: the usual shape of a dialog's scrim."""
    h, w = lum.shape
    band = max(1, round(min(h, w) * MODAL_BORDER))
    border = np.concatenate([lum[:band].ravel(), lum[-band:].ravel(),
                             lum[:, :band].ravel(), lum[:, -band:].ravel()])
    surround = float(np.median(border))
    if surround > MODAL_SURROUND_MAX:
        return False
    bright = lum >= surround + MODAL_MIN_STEP
    row_share = _smooth(bright.mean(axis=1), max(1, round(h * MODAL_SMOOTH)))
    col_share = _smooth(bright.mean(axis=0), max(1, round(w * MODAL_SMOOTH)))
    if row_share.max() == 0:
        return False
    rows = _longest_run(row_share >= MODAL_PROFILE_MIN * row_share.max())
    cols = _longest_run(col_share >= MODAL_PROFILE_MIN * col_share.max())
    if rows is None or cols is None:
        return False
    (top, bottom), (left, right) = rows, cols
    area = (bottom - top) * (right - left)
    inside = int(bright[top:bottom, left:right].sum())
    stray = (int(bright.sum()) - inside) / (h * w - area) if h * w > area else 0.0
    return (
        MODAL_MIN_AREA <= area / (h * w) <= MODAL_MAX_AREA
        and abs((left + right) / 2 - w / 2) <= MODAL_MAX_OFFSET_X * w
        and abs((top + bottom) / 2 - h / 2) <= MODAL_MAX_OFFSET_Y * h
        and inside / area >= MODAL_MIN_FILL
        and stray <= MODAL_MAX_STRAY
    )
