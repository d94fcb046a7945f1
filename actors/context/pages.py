"""Page structure: one summary per url of forms, fields, landmarks, prices and item grids."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from actors.context.vocabulary import (
    _LANDMARKS,
    _PRICE,
    GRID_MIN_ITEMS,
    GRID_MIN_PRICES,
    Element,
    Event,
    _attrs,
    _ctx,
    _field_kind,
    _Model,
    _tag,
    _url,
    _visits,
    ordered,
    target_key,
    target_of,
)


class PageSummary(_Model):
    url: str
    title: str | None = None
    visits: int
    forms: int
    input_count: int
    input_kinds: list[str]  # password, email, search, payment, address, quantity, choice, text…
    landmarks: list[str]  # ARIA landmark roles: banner, navigation, main, search, contentinfo…
    price_count: int
    item_count: int  # size of the largest group of repeated, similar, item-like elements
    product_grid: bool


# ----------------------------------------------------------------------------- page structure

def _form_key(form: Mapping[str, Any]) -> str:
    """The same form whether seen as a <form> element or as a field's `context.form`."""
    for k in ("id", "name", "action", "data-testid"):
        if form.get(k):
            return f"{k}={str(form[k]).lower()}"
    return repr(sorted((str(k), str(v)) for k, v in form.items()))


def _summarize(url: str, title: str | None, visits: int, elements: list[Element]) -> PageSummary:
    forms, inputs, landmarks, prices = set(), {}, set(), set()
    groups: Counter[tuple[str, ...]] = Counter()
    priced: Counter[tuple[str, ...]] = Counter()
    for key, el in {target_key(el): el for el in elements}.items():
        a, tag, form = _attrs(el), _tag(el), _ctx(el, "form")
        if tag == "form" or isinstance(form, Mapping):
            forms.add(_form_key(a if tag == "form" else form))
        if kind := _field_kind(el):
            inputs[key] = kind
        if (role := a.get("role") or _LANDMARKS.get(tag, "")) in _LANDMARKS.values():
            landmarks.add(role)
        # Digits dropped so product-card-12 and product-card-13 fall in one group, as in a grid.
        sig = tuple(re.sub(r"\d+", "#", x) for x in (tag, a.get("role", ""),
                                                     a.get("data-testid", ""), a.get("class", "")))
        if _PRICE.search(str(el.get("text") or "")):
            prices.add(key)
            priced[sig] += 1
        if any(sig[1:]):  # bare tags (every <a>, every <div>) say nothing about a grid
            groups[sig] += 1
    item_count = max((n for sig, n in groups.items() if n >= GRID_MIN_ITEMS and (
        priced[sig] * 2 >= n or re.search(r"product|item|card|tile|result", " ".join(sig)))),
        default=0)
    return PageSummary(
        url=url, title=title, visits=visits, forms=len(forms), input_count=len(inputs),
        input_kinds=sorted(set(inputs.values())), landmarks=sorted(landmarks),
        price_count=len(prices), item_count=item_count,
        product_grid=item_count >= GRID_MIN_ITEMS or len(prices) >= GRID_MIN_PRICES)


def page_structure(events: Iterable[Event]) -> list[PageSummary]:
    """One summary per url (fragment dropped), in order of first appearance; elements come from
    DOM snapshots and from event targets on that url."""
    evs = ordered(events)
    titles: dict[str, str] = {}
    elements: dict[str, list[Element]] = {}
    for e in evs:
        url = _url(e)
        if not url:
            continue
        if e.get("title"):
            titles.setdefault(url, str(e["title"]))
        found = elements.setdefault(url, [])
        if e.get("type") == "dom_snapshot":
            found.extend(x for x in e.get("elements") or [] if isinstance(x, Mapping))
        if (target := target_of(e)) is not None:
            found.append(target)
    visits = Counter(url for url, *_ in _visits(evs))
    return [_summarize(url, titles.get(url), visits[url], els) for url, els in elements.items()]
