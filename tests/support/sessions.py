"""Crafted recorded sessions for integration tests: a good shop session with screenshots made
with Pillow, and a poor one. Events follow PROTOCOL.md v1."""

from __future__ import annotations

import io
import random
import time
from typing import Any

from PIL import Image, ImageDraw

from tests.support.client import Api, new_id, send_frame

__all__ = ["CHECKOUT_FIELDS", "TERMINAL", "page_png", "poor_session", "record", "record_ready",
           "shop_session", "wait_terminal"]

T0 = 1732262400000
VIEWPORT = {"width": 1280, "height": 800}
# Boxes of the checkout form's sensitive inputs (CSS px): the test checks they are painted.
CHECKOUT_FIELDS = {
    "email": {"x": 100, "y": 200, "width": 400, "height": 40},
    "card": {"x": 100, "y": 300, "width": 400, "height": 40},
}


def page_png(index: int, width: int = 1280, height: int = 800) -> bytes:
    """A page picture that differs from its neighbours (so pHash keeps them apart), with the
    checkout inputs drawn in red where CHECKOUT_FIELDS says."""
    rng = random.Random(index)
    img = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    draw.rectangle([0, 0, width, 60], fill=(20 + index * 5 % 200, 30, 90))
    for _ in range(30):
        x, y = rng.randrange(0, width - 200), rng.randrange(80, height - 60)
        w, h = rng.randrange(40, 200), rng.randrange(10, 60)
        draw.rectangle([x, y, x + w, y + h], fill=tuple(rng.randrange(0, 255) for _ in range(3)))
    for box in CHECKOUT_FIELDS.values():
        draw.rectangle([box["x"], box["y"], box["x"] + box["width"], box["y"] + box["height"]], fill=(255, 0, 0))
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def _element(tag: str, text: str, testid: str, y: int, **attrs: str) -> dict[str, Any]:
    return {"tag": tag, "text": text, "attributes": {"data-testid": testid, **attrs},
            "selectors": [{"kind": "testid", "value": testid, "unique": True},
                          {"kind": "role", "value": f'{tag}[name="{text}"]', "unique": True},
                          {"kind": "css", "value": f"[data-testid={testid}]", "unique": True}],
            "bbox": {"x": 600, "y": y, "width": 120, "height": 32}}


def _checkout_snapshot(seq: int, ts: int, email: str) -> dict[str, Any]:
    return {"seq": seq, "type": "dom_snapshot", "ts": ts, "url": "https://shop.example/checkout",
            "elements": [
                {"tag": "input", "attributes": {"type": "email", "name": "email", "value": email},
                 "bbox": CHECKOUT_FIELDS["email"]},
                {"tag": "input", "attributes": {"autocomplete": "cc-number", "name": "cardnumber"},
                 "bbox": CHECKOUT_FIELDS["card"]},
                _element("button", "Pay", "pay", 400)]}


def shop_session(n_events: int = 200, n_screens: int = 40, email: str = "buyer@example.com",
                 card: str = "4111 1111 1111 1111") -> tuple[list[dict[str, Any]], list[tuple[str, int, bytes]]]:
    """Browse products, search, add to cart, check out with an email and a card.
    Returns (events, screenshots as (screenshot_id, seq, png))."""
    events: list[dict[str, Any]] = []
    shots: list[tuple[str, int, bytes]] = []
    pages = ["https://shop.example/", "https://shop.example/search?q=kettle",
             "https://shop.example/p/42", "https://shop.example/cart", "https://shop.example/checkout"]
    shot_every = max(1, n_events // max(1, n_screens))
    for seq in range(n_events):
        ts = T0 + seq * 700
        page = pages[min(len(pages) - 1, seq * len(pages) // n_events)]
        phase = seq % 10
        if phase == 0:
            event = {"type": "navigation", "url": page, "title": "Shop", "transition": "link"}
        elif page.endswith("checkout") and phase == 1:
            event = _checkout_snapshot(seq, ts, email)
        elif page.endswith("checkout") and phase == 2:
            event = {"type": "input", "url": page, "value": email,
                     "target": {"tag": "input", "attributes": {"type": "email", "name": "email"},
                                "bbox": CHECKOUT_FIELDS["email"]}}
        elif page.endswith("checkout") and phase == 3:
            event = {"type": "change", "url": page, "value": card,
                     "target": {"tag": "input", "attributes": {"autocomplete": "cc-number"},
                                "bbox": CHECKOUT_FIELDS["card"]}}
        elif phase in (4, 7):
            event = {"type": "input", "url": page, "value": "kettle",
                     "target": _element("input", "Search", "search", 80, type="search", placeholder="Search")}
        elif phase == 8:
            event = {"type": "submit", "url": page, "target": _element("form", "Search", "search-form", 80)}
        elif phase == 9:
            event = {"type": "scroll", "url": page, "x": 0, "y": seq * 10}
        else:
            event = {"type": "click", "url": page, "x": 612, "y": 380,
                     "target": _element("button", "Add to cart", f"add-{phase}", 370)}
        event.update(seq=seq, ts=ts)
        events.append(event)
        if seq % shot_every == 0 and len(shots) < n_screens:
            shots.append((f"shot-{seq:04d}", seq, page_png(seq)))
    return events, shots


def poor_session(n: int = 6) -> list[dict[str, Any]]:
    """Scrolls and untargeted clicks with a gap in seq: nothing an agent could learn from."""
    events = [{"seq": s, "type": "scroll", "ts": T0 + s * 100, "x": 0, "y": s * 50} for s in range(n)]
    events.append({"seq": n + 5, "type": "click", "ts": T0 + (n + 5) * 100, "x": 1, "y": 1,
                   "target": {"tag": "div", "selectors": [
                       {"kind": "xpath", "value": "/html/body/div[3]/div[2]", "unique": False}]}})
    return events


TERMINAL = ("ready", "rejected", "failed")


def wait_terminal(api: Api, sid: str, timeout: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        view = api.session(sid)
        if view["status"] in TERMINAL or time.monotonic() > deadline:
            return view
        time.sleep(0.25)


def record(api: Api, events: list[dict[str, Any]], shots: list[tuple[str, int, bytes]], **body: Any) -> str:
    """Stream `events` in frames of 50, upload each screenshot once its frame is acked, finish."""
    sid = api.create_session(session_id=new_id(), viewport=VIEWPORT, **body)
    pending = list(shots)
    with api.stream(sid) as ws:
        for start in range(0, len(events), 50):
            ack = send_frame(ws, events[start:start + 50])
            assert ack["type"] == "ack", ack
            while pending and pending[0][1] < start + 50:
                shot_id, seq, png = pending.pop(0)
                put = api.http.put(f"/v1/sessions/{sid}/screenshots/{shot_id}", params={"seq": seq, "trigger": "click"},
                                   content=png, headers={"Content-Type": "image/png"})
                assert put.status_code == 201, put.text
    assert api.http.post(f"/v1/sessions/{sid}/finish", json={"outcome": "success"}).status_code == 202
    return sid


def record_ready(api: Api, n: int, task: str, n_events: int = 40, numbered: bool = False) -> list[str]:
    """`n` shop sessions of varying length with `task`, finalised `ready` (asserted).

    `numbered` appends " #i" to each task, so no example of one session repeats another's: a
    dataset's dedupe then never makes one session's example count depend on the others'."""
    sids = []
    for i in range(n):
        events, shots = shop_session(n_events=n_events + 10 * i, n_screens=3)
        own_task = f"{task} #{i}" if numbered else task
        sids.append(record(api, events, shots, task=own_task, type="human" if i % 2 else "automated"))
    views = [wait_terminal(api, sid) for sid in sids]
    assert all(v["status"] == "ready" for v in views), [(v["status"], v.get("failure")) for v in views]
    return sids
