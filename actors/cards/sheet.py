"""The contact sheet: a WebP grid of a session's key frames, the acted-on element boxed.

Each key moment is shown on the screenshot in effect at its step (the last one taken at or
before it, as the replay page does), near-duplicates counted as the frame they repeat, each
frame once. The element's bbox is in viewport pixels; it is scaled by the frame's width over
the viewport's, as on the replay page. The frames are the stored, redacted WebPs.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageDraw

from configs.cards import CardSettings

__all__ = ["SheetFrame", "pick_frames", "render_sheet"]

_BOX = (255, 64, 32)
_LABEL_H = 18


@dataclass(frozen=True)
class SheetFrame:
    screenshot_id: str
    webp_key: str
    seq: int  # the moment's step
    box: tuple[float, float, float, float] | None  # x, y, width, height in viewport pixels


def _bbox(event: Mapping[str, Any] | None) -> tuple[float, float, float, float] | None:
    target = event.get("target") if event else None
    box = target.get("bbox") if isinstance(target, Mapping) else None
    if not isinstance(box, Mapping):
        return None
    try:
        values = tuple(float(box[k]) for k in ("x", "y", "width", "height"))
    except (KeyError, TypeError, ValueError):
        return None
    return values if values[2] > 0 and values[3] > 0 else None  # type: ignore[return-value]


def pick_frames(moments: Sequence[Mapping[str, Any]], events_by_seq: Mapping[int, Mapping[str, Any]],
                shots: Sequence[Mapping[str, Any]], limit: int) -> list[SheetFrame]:
    frames = sorted((s for s in shots if s["status"] == "compressed" and s["webp_key"] and s["seq"] is not None),
                    key=lambda s: (s["seq"], s["screenshot_id"]))
    by_id = {s["screenshot_id"]: s for s in frames}
    picked: list[SheetFrame] = []
    used: set[str] = set()
    for moment in moments:
        shot = None
        for s in frames:
            if s["seq"] <= moment["seq"]:
                shot = s
        if shot is None:
            continue
        shot = by_id.get(shot["near_duplicate_of"] or "", shot)
        if shot["screenshot_id"] in used:
            continue
        used.add(shot["screenshot_id"])
        picked.append(SheetFrame(shot["screenshot_id"], shot["webp_key"], moment["seq"],
                                 _bbox(events_by_seq.get(moment["seq"]))))
        if len(picked) == limit:
            break
    return picked


def render_sheet(frames: Sequence[tuple[SheetFrame, bytes]], viewport_width: float | None,
                 settings: CardSettings) -> bytes:
    """A grid, `sheet_columns` wide, of tiles `sheet_tile_width` pixels wide; each tile's
    frame keeps its aspect ratio, under a strip naming the step."""
    tile_w = settings.sheet_tile_width
    tiles: list[Image.Image] = []
    for frame, data in frames:
        with Image.open(io.BytesIO(data)) as img:
            rgb = img.convert("RGB")
        scale_view = rgb.width / viewport_width if viewport_width else 1.0
        scale = tile_w / rgb.width
        tile = rgb.resize((tile_w, max(1, round(rgb.height * scale))), Image.Resampling.BILINEAR)
        draw = ImageDraw.Draw(tile)
        if frame.box is not None:
            x, y, w, h = (v * scale_view * scale for v in frame.box)
            draw.rectangle((x, y, x + w, y + h), outline=_BOX, width=3)
        framed = Image.new("RGB", (tile_w, tile.height + _LABEL_H), (24, 24, 24))
        framed.paste(tile, (0, _LABEL_H))
        ImageDraw.Draw(framed).text((4, 3), f"step {frame.seq}", fill=(240, 240, 240))
        tiles.append(framed)
    cols = min(settings.sheet_columns, len(tiles))
    rows = (len(tiles) + cols - 1) // cols
    row_h = [max(t.height for t in tiles[r * cols:(r + 1) * cols]) for r in range(rows)]
    gap = 4
    sheet = Image.new("RGB", (cols * tile_w + (cols + 1) * gap, sum(row_h) + (rows + 1) * gap), (255, 255, 255))
    y = gap
    for r in range(rows):
        for c, tile in enumerate(tiles[r * cols:(r + 1) * cols]):
            sheet.paste(tile, (gap + c * (tile_w + gap), y))
        y += row_h[r] + gap
    out = io.BytesIO()
    sheet.save(out, "WEBP", quality=settings.sheet_quality, method=4)
    return out.getvalue()
