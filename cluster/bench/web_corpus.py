"""A synthetic corpus of recorded shopping sessions, for `tracemill bench dataset-value`.

Modelled on the test shop ("Kettle & Co", tests/support/shop/: the same header, search form,
product list, product page with its "Added to cart" dialog, cart and checkout form, the same
data-testid names) with a catalogue of 64 products, so that the element a step acts on has to
be told from look-alikes (Blue Kettle, Blue Teapot, Steel Kettle …). Sessions vary the task
template, the query, the order and number of products listed, Enter or the Search button,
scrolls between steps, and the path (search, or browse a category).

Degraded recordings go wrong the way real ones do, one or two faults each:

* misclick      a wrong product opened first, then Back and the right one: the wrong click is
                recorded as a step like any other (a wrong label)
* abandoned     the recording stops after a few steps and is never finished
* selectors     the recorder caught no reliable selector: only positional XPath / CSS, no
                data-testid
* screenshots   no screenshot arrived

Events follow PROTOCOL.md v1. Everything is generated from a seed: the same arguments give the
same corpus. The corpus is synthetic; what it measures is said with the results.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DEGRADATIONS", "RecordedSession", "corpus"]

_COLOURS = ("Blue", "Steel", "Red", "Black", "White", "Green", "Copper", "Glass")
_ITEMS = ("Kettle", "French Press", "Pour-Over Dripper", "Tea Tin", "Teapot", "Milk Frother", "Mug", "Grinder")
_CATEGORIES = {"Kettles": ("Kettle", "Teapot"), "Coffee": ("French Press", "Pour-Over Dripper", "Grinder"),
               "Tea": ("Tea Tin", "Mug", "Milk Frother")}
_NAMES = ("Ada Lovelace", "Grace Hopper", "Alan Turing", "Edsger Dijkstra", "Barbara Liskov", "Ken Thompson")
DEGRADATIONS = ("misclick", "abandoned", "selectors", "screenshots")
_BASE = "https://shop.example"
T0 = 1_764_547_200_000


@dataclass
class RecordedSession:
    session_id: str
    task: str
    events: list[dict[str, Any]]
    finished: bool = True
    screenshot_count: int = 0
    screenshot_qualities: list[float] = field(default_factory=list)
    degradations: tuple[str, ...] = ()

    @property
    def session(self) -> dict[str, Any]:
        return {"session_id": self.session_id, "task": self.task}

    @property
    def facts(self) -> dict[str, Any]:
        return {"task": self.task, "finished": self.finished, "screenshot_count": self.screenshot_count,
                "screenshot_qualities": self.screenshot_qualities or None}


def _slug(text: str) -> str:
    return text.lower().replace(" ", "-").replace("&", "and")


def _el(tag: str, text: str, testid: str | None, y: int, **attrs: str) -> dict[str, Any]:
    attributes = {**attrs, **({"data-testid": testid} if testid else {})}
    selectors = []
    if testid:
        selectors.append({"kind": "testid", "value": testid, "unique": True})
    role = {"a": "link", "button": "button", "input": "textbox", "select": "combobox"}.get(tag, tag)
    if text:
        selectors.append({"kind": "role", "value": f'{role}[name="{text}"]', "unique": True})
    selectors.append({"kind": "css", "value": f"main > :nth-child({y // 40 + 1}) {tag}", "unique": False})
    return {"tag": tag, "text": text, "attributes": attributes, "selectors": selectors,
            "bbox": {"x": 40 + (y * 7) % 900, "y": y, "width": 160, "height": 32}}


def _header() -> list[dict[str, Any]]:
    return [_el("a", "Kettle & Co", "home-link", 10, href="/"),
            _el("input", "", "search-input", 12, type="search", name="q", placeholder="Search products",
                **{"aria-label": "Search products"}),
            _el("button", "Search", "search-button", 12, type="submit"),
            _el("a", "All products", "all-products", 14, href="/products.html"),
            _el("a", "Cart", "cart-link", 14, href="/cart.html", **{"aria-label": "Cart"})]


def _chrome() -> list[dict[str, Any]]:
    """The category bar under the header and the footer links every page has."""
    return [*(_el("a", c, f"nav-{_slug(c)}", 60, href=f"/products.html?category={_slug(c)}") for c in _CATEGORIES),
            *(_el("a", t, f"footer-{_slug(t)}", 760, href=f"/{_slug(t)}.html")
              for t in ("About us", "Shipping", "Returns", "Contact"))]


def _card(name: str, y: int) -> dict[str, Any]:
    return _el("a", name, f"product-{_slug(name)}", y, href=f"/product.html?id={_slug(name)}")


class _Recorder:
    """Appends events with seq and ts; knows the current URL."""

    def __init__(self, rng: random.Random, unreliable: bool) -> None:
        self.rng, self.unreliable, self.events, self.url = rng, unreliable, [], _BASE + "/"
        self.shots = 0

    def _strip(self, el: dict[str, Any]) -> dict[str, Any]:
        if not self.unreliable:
            return el
        depth = self.rng.randrange(2, 6)
        attrs = {k: v for k, v in el["attributes"].items() if k != "data-testid"}
        return {**el, "attributes": attrs, "selectors": [
            {"kind": "xpath", "value": f"/html/body/div[{depth}]/main/div[{el['bbox']['y'] // 40 + 1}]/{el['tag']}",
             "unique": False}]}

    def add(self, event: dict[str, Any]) -> None:
        if "target" in event:
            event["target"] = self._strip(event["target"])
        if "elements" in event:
            event["elements"] = [self._strip(e) for e in event["elements"]]
        seq = len(self.events)
        self.events.append({"seq": seq, "ts": T0 + seq * self.rng.randrange(400, 2500), "url": self.url, **event})

    def page(self, path: str, title: str, elements: list[dict[str, Any]], transition: str = "link") -> None:
        self.url = _BASE + path
        self.add({"type": "navigation", "title": title, "transition": transition})
        self.shots += 1
        chrome = _chrome()  # in DOM order: header, category bar, the page's own elements, footer
        self.add({"type": "dom_snapshot", "elements": [*elements[:5], *chrome[:3], *elements[5:], *chrome[3:]]})
        if self.rng.random() < 0.3:
            self.add({"type": "scroll", "x": 0, "y": self.rng.randrange(100, 900)})

    def act(self, kind: str, target: dict[str, Any], **extra: Any) -> None:
        self.add({"type": kind, "target": target, **extra})
        self.shots += kind == "click"


def _listing(rng: random.Random, product: str, catalogue: list[str], query_words: str) -> list[str]:
    """The products a result page lists: the wanted one among look-alikes, shuffled."""
    alike = [p for p in catalogue if p != product and any(w in p for w in query_words.split())]
    others = [p for p in catalogue if p != product and p not in alike]
    shown = rng.sample(alike, min(len(alike), rng.randrange(3, 7)))
    shown += rng.sample(others, rng.randrange(1, 4))
    shown.insert(rng.randrange(len(shown) + 1), product)
    return shown


def _session(rng: random.Random, catalogue: list[str], degradations: tuple[str, ...]) -> RecordedSession:
    product = rng.choice(catalogue)
    colour, item = product.split(" ", 1)
    query = rng.choice((item.lower(), product.lower(), f"{colour.lower()} {item.lower()}"))
    name = rng.choice(_NAMES)
    quantity = str(rng.randrange(2, 5))
    template = rng.randrange(4)
    task = (f'Search for "{query}" and add the {product} to the cart',
            f'Buy the {product}: search "{query}", then check out as "{name}"',
            f'Find the {product} in {next(c for c, items in _CATEGORIES.items() if item in items)} '
            f'and add "{quantity}" of them to the cart',
            f'Search for "{query}", open the {product} and add it to the cart')[template]
    rec = _Recorder(rng, "selectors" in degradations)
    header = _header()
    rec.page("/", "Kettle & Co", header + [_card(p, 200 + 40 * i) for i, p in enumerate(rng.sample(catalogue, 4))],
             transition="typed")
    if template == 2:  # browse a category
        category = next(c for c, items in _CATEGORIES.items() if item in items)
        rec.act("click", header[3])
        filters = [_el("button", c, f"filter-{_slug(c)}", 120 + 30 * i) for i, c in enumerate(_CATEGORIES)]
        rec.page("/products.html", "Products – Kettle & Co", header + filters +
                 [_card(p, 240 + 40 * i) for i, p in enumerate(rng.sample(catalogue, 8))])
        rec.act("click", filters[list(_CATEGORIES).index(category)])
        listed = _listing(rng, product, [p for p in catalogue if p.split(" ", 1)[1] in _CATEGORIES[category]], item)
        rec.add({"type": "dom_snapshot", "elements": header + filters +
                 [_card(p, 240 + 40 * i) for i, p in enumerate(listed)]})
        results = "/products.html"
    else:
        rec.act("input", header[1], value=query)
        if rng.random() < 0.5:
            rec.act("keypress", header[1], key="Enter")
        else:
            rec.act("click", header[2])
        listed = _listing(rng, product, catalogue, query)
        results = f"/products.html?q={query.replace(' ', '+')}"
        rec.page(results, "Products – Kettle & Co", header + [_card(p, 200 + 40 * i) for i, p in enumerate(listed)])
    cards = [_card(p, 200 + 40 * i) for i, p in enumerate(listed)]
    if "misclick" in degradations:
        wrong = rng.choice([c for c in cards if c["text"] != product])
        rec.act("click", wrong)
        rec.page(f"/product.html?id={_slug(wrong['text'])}", f"{wrong['text']} – Kettle & Co", header)
        rec.page(results, "Products – Kettle & Co", header + cards, transition="back_forward")
    rec.act("click", next(c for c in cards if c["text"] == product))
    related = [_card(p, 520 + 40 * i) for i, p in enumerate(rng.sample(catalogue, 3))]
    controls = [_el("select", "Quantity", "quantity", 300, name="quantity"),
                _el("button", "Add to cart", "add-to-cart", 340, type="button"),
                _el("button", "Add to wishlist", "add-to-wishlist", 340, type="button"),
                _el("button", "Reviews", "reviews-tab", 420, role="tab")]
    rng.shuffle(controls)
    rec.page(f"/product.html?id={_slug(product)}", f"{product} – Kettle & Co", header + controls + related)
    if template == 2:
        rec.act("select", next(c for c in controls if c["text"] == "Quantity"), value=quantity)
    rec.act("click", next(c for c in controls if c["text"] == "Add to cart"))
    dialog = [_el("a", "View cart", "view-cart", 300, href="/cart.html"),
              _el("button", "Continue shopping", "continue-shopping", 340)]
    rec.add({"type": "dom_snapshot", "elements": header + dialog + controls})
    rec.act("click", dialog[0])
    lines = [_el("button", "Remove", f"remove-{_slug(product)}", 200, **{"aria-label": f"Remove {product}"})]
    checkout = _el("a", "Proceed to checkout", "checkout-link", 400, href="/checkout.html", role="button")
    rec.page("/cart.html", "Your cart – Kettle & Co", header + lines + [checkout])
    if template == 1:
        rec.act("click", checkout)
        fields = [_el("input", "", None, 200 + 40 * i, type=t, name=n, autocomplete=a, **{"aria-label": label})
                  for i, (t, n, a, label) in enumerate((("text", "name", "name", "Full name"),
                                                        ("email", "email", "email", "Email"),
                                                        ("tel", "phone", "tel", "Phone"),
                                                        ("text", "cardnumber", "cc-number", "Card number")))]
        place = _el("button", "Place order", "place-order", 500, type="submit")
        rec.page("/checkout.html", "Checkout – Kettle & Co", header + fields + [place])
        rec.act("input", fields[0], value=name)
        rec.act("submit", _el("form", "", "checkout-form", 180))
    events, finished = rec.events, True
    if "abandoned" in degradations:
        steps = [i for i, e in enumerate(events) if e["type"] in ("click", "input", "keypress", "submit", "select")]
        cut = steps[min(len(steps) - 1, rng.randrange(1, 4))]
        events, finished = events[:cut], False
    shots = 0 if "screenshots" in degradations else rec.shots
    shots = min(shots, sum(1 for e in events if e["type"] in ("navigation", "click")))
    return RecordedSession(str(uuid.UUID(int=rng.getrandbits(128))), task, events, finished, shots,
                           [round(rng.uniform(0.7, 0.95), 3) for _ in range(shots)], degradations)


def corpus(clean: int, degraded: int, seed: int = 0) -> list[RecordedSession]:
    """`clean` sessions recorded as intended and `degraded` ones with one or two faults each."""
    rng = random.Random(seed)
    catalogue = [f"{c} {i}" for c in _COLOURS for i in _ITEMS]
    out = [_session(rng, catalogue, ()) for _ in range(clean)]
    for n in range(degraded):
        first = DEGRADATIONS[n % len(DEGRADATIONS)]
        extra = (rng.choice([d for d in DEGRADATIONS if d != first]),) if rng.random() < 0.3 else ()
        out.append(_session(rng, catalogue, (first, *extra)))
    rng.shuffle(out)
    return out
