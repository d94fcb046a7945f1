"""Step intents: what each event of a session was for."""

from __future__ import annotations

from collections.abc import Iterable

from actors.context.vocabulary import (
    _ADD_TO_CART,
    _CHECKOUT,
    _CLICKS,
    _COMPARE,
    _FIELDS,
    _LOGIN,
    PASSIVE,
    Element,
    Event,
    Intent,
    _attrs,
    _ctx,
    _describe,
    _field_kind,
    _is,
    _is_search,
    _search_query,
    _url,
    ordered,
    target_of,
)

# ----------------------------------------------------------------------------- intents

def _target_intent(kind: str, el: Element | None) -> Intent | None:
    if not el:
        return None
    words, acts, field = _describe(el), kind in _CLICKS, _field_kind(el)
    if (acts or kind == "keypress") and _ADD_TO_CART.search(words):
        return "add_to_cart"
    if field in ("password", "payment", "search"):
        return {"password": "login", "payment": "checkout", "search": "search"}[field]
    if _is_search(el):
        return "search"
    for rx, intent in ((_CHECKOUT, "checkout"), (_LOGIN, "login"), (_COMPARE, "compare")):
        if acts and rx.search(words):
            return intent  # type: ignore[return-value]
    return None


def _page_intent(kind: str, url: str, products: list[str]) -> Intent | None:
    for page in ("checkout", "login"):  # anything done on these pages serves that purpose
        if _is(page, url):
            return page  # type: ignore[return-value]
    if kind != "navigation":
        return None
    if _is("search", url) or _search_query(url):
        return "search"
    if _is("compare", url):
        return "compare"
    if _is("product", url):  # back to a product after another one: weighing them up
        return "compare" if url in products and products[-1] != url else "browse"
    return "browse" if _is("listing", url) else "navigate"


def _fallback_intent(kind: str, el: Element | None) -> Intent:
    if kind in _FIELDS or kind == "submit":
        return "form_fill"
    if el is None:
        return "browse"
    href = _attrs(el).get("href", "")
    if _is("product", href) or _is("listing", href):
        return "browse"
    if _ctx(el, "form") or _field_kind(el):
        return "form_fill"
    return "navigate" if href else "browse"


def step_intents(events: Iterable[Event]) -> list[Intent]:
    """One intent per event of `ordered(events)`; passive events inherit the previous step's."""
    out: list[Intent] = []
    products: list[str] = []
    for e in ordered(events):
        kind, url, el = str(e.get("type", "")), _url(e), target_of(e)
        if kind in PASSIVE or (kind == "keypress" and el is None):
            out.append(out[-1] if out else "navigate")
            continue
        out.append(_target_intent(kind, el) or _page_intent(kind, url, products)
                   or _fallback_intent(kind, el))
        if kind == "navigation" and _is("product", url):
            products.append(url)
    return out
