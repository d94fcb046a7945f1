"""Session cards without a model or a cluster: key moments, the local card, the model reply
check, the prompt's stability and the contact sheet's frames and boxes."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from PIL import Image

from actors.cards.moments import key_moments, local_card
from actors.cards.sheet import SheetFrame, pick_frames, render_sheet
from actors.cards.step import card_prompt, check_card
from actors.context import analyze_context
from configs.cards import CardSettings


def _click(seq: int, text: str, url: str, x: int = 100) -> dict[str, Any]:
    return {"seq": seq, "type": "click", "ts": 1_700_000_000_000 + seq * 100, "url": url,
            "target": {"tag": "button", "text": text, "bbox": {"x": x, "y": 50, "width": 40, "height": 20}}}


def _session() -> tuple[list[dict[str, Any]], dict[str, Any]]:
    url = "https://shop.example/p/42"
    events = [{"seq": 0, "type": "navigation", "ts": 1_700_000_000_000, "url": url, "title": "Kettle"},
              {"seq": 1, "type": "input", "ts": 1_700_000_000_500, "url": url, "value": "kettle",
               "target": {"tag": "input", "attributes": {"type": "search", "placeholder": "Search"}}}]
    events += [_click(2 + i, "Add to cart", url) for i in range(4)]  # four quick clicks: rage
    analysis = {"rejected": False, "quality": {"overall": 0.81, "reasons": []},
                "context": analyze_context(events).model_dump(mode="json")}
    return events, analysis


def test_moments_name_first_intents_frustration_and_the_last_step() -> None:
    events, analysis = _session()
    assert analysis["context"]["frustration"], "the fixture must contain a rage click"
    moments = key_moments(events, analysis, limit=10)
    whys = {m["seq"]: m["why"] for m in moments}
    assert "first search" in whys[1]
    assert any(w.startswith("frustration: rage_click") for w in whys[2])
    assert "last step" in whys[5]
    assert moments[0]["target"] == "Search" and moments[-1]["page"] == "shop.example/p/42"
    assert [m["seq"] for m in key_moments(events, analysis, limit=2)] == [1, 5]


def test_local_card_is_deterministic_and_says_what_went_wrong() -> None:
    events, analysis = _session()
    moments = key_moments(events, analysis, limit=10)
    card = local_card(events, analysis, moments, "buy a kettle")
    assert card == local_card(list(reversed(events)), analysis, moments, "buy a kettle")
    assert card["title"] == "Added to cart on shop.example"
    assert "searched" in card["caption"] and "rage clicks" in card["caption"]
    assert "“Add to cart”" in card["caption"] and "quality 0.81" in card["caption"]
    assert card["caption"].count(". ") + card["caption"].count("; ") >= 1
    quiet = local_card([], {"context": {}}, [], None)
    assert quiet["title"] == "Session on an unknown site" and "No frustration signals" in quiet["caption"]
    assert quiet["caption"].startswith("The person looked around in 0 steps.")


def test_model_replies_are_checked() -> None:
    assert check_card({"title": "  Bought  a kettle ", "caption": "Did it. Fine."}) == {
        "title": "Bought a kettle", "caption": "Did it. Fine."}
    for bad in ({"title": "", "caption": "x"}, {"title": "x" * 121, "caption": "x"},
                {"title": 3, "caption": "x"}, {"page_type": "cart"}):
        with pytest.raises(ValueError):
            check_card(bad)


def test_the_prompt_is_stable_for_the_same_session() -> None:
    events, analysis = _session()
    moments = key_moments(events, analysis, limit=10)
    one = card_prompt(events, analysis, moments, "t", {"label": "neutral"})
    assert one == card_prompt(list(reversed(events)), analysis, moments, "t", {"label": "neutral"})
    assert json.loads(one)["key_moments"] == moments
    assert one != card_prompt(events, analysis, moments, "other task", {"label": "neutral"})


def _webp(color: tuple[int, int, int], size: tuple[int, int] = (640, 400)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "WEBP", lossless=True)
    return out.getvalue()


def test_frames_are_those_in_effect_each_once_and_duplicates_as_their_original() -> None:
    shots = [{"screenshot_id": "a", "seq": 0, "status": "compressed", "webp_key": "k/a", "near_duplicate_of": None},
             {"screenshot_id": "b", "seq": 3, "status": "compressed", "webp_key": "k/b", "near_duplicate_of": "a"},
             {"screenshot_id": "c", "seq": 4, "status": "compressed", "webp_key": "k/c", "near_duplicate_of": None},
             {"screenshot_id": "d", "seq": 5, "status": "failed", "webp_key": None, "near_duplicate_of": None}]
    events, _ = _session()
    by_seq = {e["seq"]: e for e in events}
    moments = [{"seq": 1}, {"seq": 3}, {"seq": 5}]
    frames = pick_frames(moments, by_seq, shots, limit=6)
    assert [(f.screenshot_id, f.seq) for f in frames] == [("a", 1), ("c", 5)]
    assert frames[0].box is None and frames[1].box == (100.0, 50.0, 40.0, 20.0)
    assert len(pick_frames(moments, by_seq, shots, limit=1)) == 1


def test_sheet_is_a_webp_grid_with_the_element_boxed() -> None:
    settings = CardSettings(sheet_columns=2, sheet_tile_width=320)
    frames = [(SheetFrame("a", "k/a", 1, (100, 100, 200, 100)), _webp((0, 0, 255))),
              (SheetFrame("b", "k/b", 2, None), _webp((0, 255, 0))),
              (SheetFrame("c", "k/c", 3, None), _webp((255, 255, 255)))]
    data = render_sheet(frames, viewport_width=1280, settings=settings)
    with Image.open(io.BytesIO(data)) as img:
        assert img.format == "WEBP"
        sheet = img.convert("RGB")
    assert sheet.width == 2 * 320 + 3 * 4
    # Frame 640 px wide for a 1280 px viewport, tile 320 px: the box's left edge at x=100
    # viewport px lands at 4 + 100 * 0.5 * 0.5 = 29, below the 18 px label strip.
    # The 3 px red line is blurred by lossy WebP: the reddest pixel across it must be red.
    edge = [sheet.getpixel((x, 4 + 18 + 25 + 12)) for x in range(25, 35)]
    assert max(r - b for r, _, b in edge) > 100, edge
    r, g, b = sheet.getpixel((4 + 150, 4 + 18 + 60))  # inside the frame, outside the box
    assert b > 180 and r < 80
