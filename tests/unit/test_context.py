"""Context inference on crafted sessions: each intent, pattern, style and frustration signal."""

from __future__ import annotations

import random
from typing import Any

import pytest

from actors.context import (
    analyze_context,
    frustration_signals,
    navigation_pattern,
    page_structure,
    shopping_style,
    step_intents,
)

SHOP = "https://shop.example"


def el(tag: str, text: str | None = None, testid: str | None = None,
       **attrs: Any) -> dict[str, Any]:
    """An Element as PROTOCOL.md describes it; attribute names use _ for -."""
    attributes = {k.replace("_", "-"): v for k, v in attrs.items() if k != "context"}
    if testid:
        attributes["data-testid"] = testid
    selectors = [{"kind": "testid", "value": testid, "unique": True}] if testid else []
    selectors.append({"kind": "css", "value": f"{tag}.x", "unique": False})
    out: dict[str, Any] = {"tag": tag, "attributes": attributes, "selectors": selectors}
    if text is not None:
        out["text"] = text
    if "context" in attrs:
        out["context"] = attrs["context"]
    return out


class Session:
    """Builds events with dense seqs and a clock that moves `dt` ms per event."""

    def __init__(self, url: str = SHOP + "/") -> None:
        self.events: list[dict[str, Any]] = []
        self.ts, self.url = 1_732_262_400_000, url

    def add(self, type_: str, dt: int = 800, **fields: Any) -> Session:
        self.ts += dt
        self.events.append({"seq": len(self.events), "type": type_, "ts": self.ts,
                            "url": self.url, **fields})
        return self

    def nav(self, path: str, dt: int = 1000, transition: str = "link") -> Session:
        self.url = path if path.startswith("http") else SHOP + path
        return self.add("navigation", dt, transition=transition, title=path)

    def click(self, target: dict[str, Any] | None, dt: int = 800) -> Session:
        return self.add("click", dt, **({"target": target} if target else {}), x=100, y=200)

    def type(self, target: dict[str, Any], value: str, dt: int = 300) -> Session:
        return self.add("input", dt, target=target, value=value)

    def shot(self) -> Session:
        return self.add("screenshot", 50, screenshot_id=f"s{len(self.events)}", trigger="click")


SEARCH_BOX = el("input", testid="search", type="search", name="q", placeholder="Search products")
ADD = el("button", "Add to cart", testid="add-to-cart")
CHECKOUT = el("button", "Proceed to checkout", testid="checkout")
CARD = el("input", name="cardnumber", autocomplete="cc-number", placeholder="Card number")
PASSWORD = el("input", type="password", name="password")
EMAIL = el("input", type="email", name="email", context={"form": {"id": "contact"}})
NAME = el("input", type="text", name="full-name", context={"form": {"id": "contact"}})
SEND = el("button", "Send", type="submit", context={"form": {"id": "contact"}})


def decisive_buyer() -> Session:
    s = Session().nav("/")
    s.nav("/p/blue-kettle").click(ADD).shot().add("modal", 200, state="opened")
    s.nav("/cart").click(CHECKOUT).nav("/checkout").type(CARD, "4242 4242 4242 4242")
    return s.add("submit", target=el("form", testid="pay-form"))


def search_refiner() -> Session:
    s = Session().nav("/").click(SEARCH_BOX).type(SEARCH_BOX, "k").type(SEARCH_BOX, "kettle")
    s.add("keypress", key="Enter", target=SEARCH_BOX).nav("/search?q=kettle")
    s.add("scroll", x=0, y=600).click(el("a", "Blue kettle", href="/p/blue-kettle"))
    s.nav("/p/blue-kettle").click(SEARCH_BOX).type(SEARCH_BOX, "electric kettle")
    return s.add("keypress", key="Enter", target=SEARCH_BOX).nav("/search?q=electric+kettle")


def back_and_forth_browser() -> Session:
    s = Session().nav("/category/kettles")
    for name in ("a", "b", "c"):
        s.nav(f"/p/kettle-{name}", dt=20_000).add("scroll", x=0, y=400)
        s.nav("/category/kettles", dt=20_000, transition="back_forward")
    return s


def comparer() -> Session:
    s = Session().nav("/category/kettles").nav("/p/kettle-a").nav("/p/kettle-b")
    s.nav("/p/kettle-a").click(el("button", "Compare", testid="compare-toggle"))
    return s.nav("/compare?ids=a,b")


def deal_seeker() -> Session:
    s = Session().nav("/").click(el("a", "Summer sale", href="/deals")).nav("/deals")
    s.add("select", target=el("select", name="sort", testid="sort"), value="price-low-to-high")
    return s.click(el("a", "Kettle -30% off", href="/p/kettle-a")).nav("/p/kettle-a")


def explorer() -> Session:
    return Session().nav("/").nav("/about").add("scroll", x=0, y=300).nav("/blog").nav("/help")


def test_each_intent_is_recognised() -> None:
    seen = set(step_intents(decisive_buyer().events) + step_intents(search_refiner().events)
               + step_intents(comparer().events) + step_intents(explorer().events))
    login = Session().nav("/").click(el("a", "Sign in", href="/login")).nav("/login")
    login.type(PASSWORD, "hunter2")
    form = Session().nav("/contact").type(NAME, "Ada").type(EMAIL, "ada@example.org")
    form.add("submit", target=el("form", context={"form": {"id": "contact"}}))
    assert step_intents(login.events)[1:] == ["login", "login", "login"]
    assert step_intents(form.events)[1:] == ["form_fill", "form_fill", "form_fill"]
    assert seen >= {"search", "browse", "compare", "add_to_cart", "checkout", "navigate"}


def test_intents_one_per_event_with_expected_steps() -> None:
    s = decisive_buyer()
    intents = step_intents(s.events)
    assert len(intents) == len(s.events)
    assert intents == ["navigate", "browse", "add_to_cart", "add_to_cart", "add_to_cart",
                       "navigate", "checkout", "checkout", "checkout", "checkout"]
    search = step_intents(search_refiner().events)
    assert search[:6] == ["navigate"] + ["search"] * 5  # box click, typing, Enter, results
    assert search[6:8] == ["browse", "browse"]  # scrolling results, clicking a product


def test_compare_intent_from_revisit_and_button() -> None:
    intents = step_intents(comparer().events)
    assert intents == ["browse", "browse", "browse", "compare", "compare", "compare"]


@pytest.mark.parametrize("build, pattern", [
    (decisive_buyer, "linear_funnel"),
    (search_refiner, "search_refine_loop"),
    (back_and_forth_browser, "back_and_forth"),
    (explorer, "exploration"),
])
def test_navigation_patterns(build: Any, pattern: str) -> None:
    assert navigation_pattern(build().events) == pattern


def test_one_search_revisited_is_not_a_refine_loop() -> None:
    s = Session().nav("/").type(SEARCH_BOX, "kettle").nav("/search?q=kettle")
    s.nav("/p/kettle-a").nav("/search?q=kettle", transition="back_forward")
    assert navigation_pattern(s.events) != "search_refine_loop"


@pytest.mark.parametrize("build, style", [
    (decisive_buyer, "decisive"),
    (comparer, "comparer"),
    (back_and_forth_browser, "browser"),
    (deal_seeker, "deal_seeker"),
])
def test_shopping_styles(build: Any, style: str) -> None:
    assert shopping_style(build().events) == style


def test_rage_click() -> None:
    broken = el("button", "Apply coupon", testid="apply")
    s = Session().nav("/cart").click(broken, dt=900).click(broken, dt=250).click(broken, dt=250)
    s.click(broken, dt=300).add("modal", 300, state="opened")
    signals = frustration_signals(s.events)
    assert [x.kind for x in signals] == ["rage_click"]
    assert signals[0].seqs == [1, 2, 3, 4] and signals[0].target == "Apply coupon"


def test_three_slow_clicks_are_not_rage() -> None:
    b = el("button", "Next", testid="next")
    s = Session().nav("/").click(b).add("dom_snapshot", 100, elements=[])
    s.click(b, dt=700).add("dom_snapshot", 100, elements=[]).click(b, dt=700)
    s.add("dom_snapshot", 100, elements=[])
    assert frustration_signals(s.events) == []


def test_dead_click_and_its_negatives() -> None:
    s = Session().nav("/p/kettle-a")
    s.click(el("span", "Free delivery"))  # nothing happens for 3 s
    s.click(el("button", "Details", testid="details"), dt=3000).add("modal", 400, state="opened")
    s.click(el("input", name="qty", type="number"), dt=3000)  # focusing a field is not dead
    s.type(el("input", name="qty", type="number"), "2", dt=3000)
    s.click(el("button", "Last", testid="last"), dt=500)  # ends the session: cannot judge
    signals = frustration_signals(s.events)
    assert [(x.kind, x.seqs) for x in signals] == [("dead_click", [1])]


def test_repeated_back_navigation() -> None:
    s = Session().nav("/").nav("/p/a").nav("/p/b").nav("/p/c")
    s.nav("/p/b", dt=2000, transition="back_forward")
    s.nav("/p/a", dt=2000, transition="back_forward")
    signals = frustration_signals(s.events)
    assert [x.kind for x in signals] == ["repeated_back"] and signals[0].seqs == [4, 5]
    slow = Session().nav("/").nav("/p/a").nav("/", dt=60_000, transition="back_forward")
    slow.nav("/p/b").nav("/", dt=60_000, transition="back_forward")
    assert frustration_signals(slow.events) == []


def card(i: int) -> dict[str, Any]:
    return el("div", f"Kettle {i} €{20 + i}.99", testid=f"product-card-{i}", class_="card")


def test_page_structure_finds_grid_forms_inputs_and_landmarks() -> None:
    s = Session().nav("/category/kettles")
    s.add("dom_snapshot", 100, elements=[
        el("header", role="banner"), el("nav", "Kettles Toasters"), el("main"),
        SEARCH_BOX, el("form", role="search", action="/search"), *[card(i) for i in range(6)]])
    s.nav("/checkout").add("dom_snapshot", 100, elements=[
        el("form", testid="pay-form"), CARD, el("input", type="email", name="email"),
        el("input", name="street-address"), el("footer")])
    s.type(CARD, "4242").add("submit", target=el("form", testid="pay-form"))
    s.nav("/about")
    pages = {p.url: p for p in page_structure(s.events)}
    grid, pay = pages[SHOP + "/category/kettles"], pages[SHOP + "/checkout"]
    about = pages[SHOP + "/about"]
    assert grid.product_grid and grid.item_count == 6 and grid.price_count == 6
    assert {"banner", "navigation", "main", "search"} <= set(grid.landmarks)
    assert grid.input_kinds == ["search"] and grid.visits == 1
    assert pay.forms == 1 and pay.input_kinds == ["address", "email", "payment"]
    assert "contentinfo" in pay.landmarks and not pay.product_grid
    assert not about.product_grid and about.input_count == 0 and about.title == "/about"


def test_repeated_nav_links_are_not_a_product_grid() -> None:
    links = [el("a", f"Link {i}", href=f"/page/{i}") for i in range(8)]
    s = Session().nav("/").add("dom_snapshot", 100, elements=links)
    assert not page_structure(s.events)[0].product_grid


def test_analyze_context_bundles_everything_and_ignores_order_and_replays() -> None:
    events = decisive_buyer().events
    shuffled = random.Random(7).sample(events, len(events)) + [dict(events[3])]
    a, b = analyze_context(events), analyze_context(shuffled)
    assert a == b
    assert a.navigation_pattern == "linear_funnel" and a.shopping_style == "decisive"
    assert a.intent_counts["checkout"] == 4 and len(a.intents) == len(events)
    assert [p.url for p in a.pages][:2] == [SHOP + "/", SHOP + "/p/blue-kettle"]


def test_tolerates_sparse_and_odd_events() -> None:
    odd: list[Any] = [{"seq": 0, "type": "click"}, {"seq": 1, "type": "navigation"},
                      {"seq": 2, "type": "input", "target": "not a dict",
                       "ts": "2024-11-22T08:00:00Z"},
                      "junk", {"type": "scroll"}, {"seq": 3, "type": "keypress", "ts": True}]
    result = analyze_context(odd)
    assert len(result.intents) == 5 and result.navigation_pattern == "exploration"
    assert analyze_context([]).intents == []
