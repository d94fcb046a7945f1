"""Shared vocabulary of context inference: type aliases, thresholds, patterns, event helpers.

Every threshold is a constant here with the reason for its value; the helpers read what a
client sends (target text and attributes, urls, event types, timestamps).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

from pydantic import BaseModel, ConfigDict

Event = Mapping[str, Any]
Element = Mapping[str, Any]
Intent = Literal["search", "browse", "compare", "add_to_cart", "checkout", "login", "form_fill",
                 "navigate"]
NavigationPattern = Literal["linear_funnel", "search_refine_loop", "back_and_forth", "exploration"]
ShoppingStyle = Literal["decisive", "comparer", "browser", "deal_seeker"]
SignalKind = Literal["rage_click", "dead_click", "repeated_back"]

INTERACTIONS = frozenset({"click", "input", "change", "select", "submit", "dblclick"})
# Recorded by the client or the page, not done by the user: they inherit the step they follow.
PASSIVE = frozenset({"screenshot", "dom_snapshot", "custom", "modal"})
_CLICKS = frozenset({"click", "dblclick", "contextmenu", "submit"})
_FIELDS = frozenset({"input", "change", "select"})
# Evidence that a click did something: the page answered, or the user could type after it.
_RESPONSES = _FIELDS | {"navigation", "submit", "modal", "dom_snapshot", "keypress"}

RAGE_CLICKS, RAGE_WINDOW_MS = 3, 1000  # the usual analytics definition: 3 clicks within 1 s
RAGE_BUCKET_PX = 30  # clicks without a target this close together hit "the same element"
DEAD_CLICK_MS = 1500  # beyond typical SPA response times, well short of giving up
BACK_RUN, BACK_GAP_MS = 2, 10_000  # two backs within 10 s of each other: retracing, not reading
GRID_MIN_ITEMS = 3  # fewer repeated cards are teasers, not a listing
GRID_MIN_PRICES = 4
DEAL_HITS = 2  # one promo click is chance; two deal-driven steps are a habit
DECISIVE_ACTIONS, DECISIVE_PRODUCTS = 25, 2  # to the cart within 25 actions, 2 products at most

_SEARCH_PARAMS = frozenset({"q", "query", "search", "s", "k", "keyword", "keywords", "term"})
_ADD_TO_CART = re.compile(r"add[\s_-]*to[\s_-]*(cart|bag|basket|trolley)|\bbuy[\s_-]*now\b")
_CHECKOUT = re.compile(r"check[\s_-]?out|place[\s_-]*order|pay[\s_-]*now"
                       r"|proceed[\s_-]*to[\s_-]*pay")
_PAYMENT = re.compile(r"card[\s_-]*(number|holder|name)|\bcc-|cvv|cvc|expir|iban"
                      r"|security[\s_-]*code")
_LOGIN = re.compile(r"\b(sign|log)[\s_-]*in\b|\blogin\b")
_COMPARE = re.compile(r"\bcompar(e|ison)\b")
_DEAL = re.compile(r"\b(sale|deals?|discount|coupon|promo|clearance|offers?|bargain)\b|%\s*off"
                   r"|price[\s_:-]*(low|asc)|lowest[\s_-]*price")
# An amount is tried from the start of its run of digits and separators only, and taken whole:
# trying "\d[\d.,]*" from every digit of a long number was quadratic in its length.
_PRICE = re.compile(r"[$€£¥]\s?\d|(?<![\d.,])[.,]*+\d[\d.,]*+\s?(?:€|£|\$|usd|eur|gbp)\b",
                    re.IGNORECASE)
_URLS = {name: re.compile(rx) for name, rx in {
    "checkout": r"/(checkout|payment|billing|shipping)(/|$)",
    "login": r"/(login|log-in|signin|sign-in|auth)(/|$)",
    "search": r"/search(/|$)", "compare": r"/compare(/|$)",
    "product": r"/(p|pd|dp|product|products|item|items)/[^/]+",
    "listing": r"/(c|category|categories|collections?|shop|catalog|browse|deals?)(/|$)",
    "cart": r"/(cart|basket|bag)(/|$)"}.items()}
_LANDMARKS = {"header": "banner", "nav": "navigation", "main": "main", "footer": "contentinfo",
              "aside": "complementary", "search": "search", "form": "form", "section": "region"}
_DESCRIBING = ("id", "name", "aria-label", "data-testid", "placeholder", "type", "role", "href",
               "value", "autocomplete", "title", "alt")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ----------------------------------------------------------------------------- event helpers

def ordered(events: Iterable[Event]) -> list[Event]:
    """Events by seq; the first copy of a replayed seq wins, so a resend never counts twice."""
    rows = sorted((e for e in events if isinstance(e, Mapping)),
                  key=lambda e: (0, e["seq"]) if type(e.get("seq")) is int else (1, 0))
    seen: set[int] = set()
    out: list[Event] = []
    for e in rows:
        seq = e.get("seq")
        if type(seq) is int:
            if seq in seen:
                continue
            seen.add(seq)
        out.append(e)
    return out


def ts_ms(event: Event) -> int | None:
    """Epoch milliseconds from the wire form (int ms, RFC 3339) or the stored one (datetime)."""
    ts = event.get("ts")
    if isinstance(ts, str):
        try:
            ts = datetime.fromisoformat(ts)
        except ValueError:
            return None
    if isinstance(ts, datetime):
        return int(ts.timestamp() * 1000)
    return int(ts) if isinstance(ts, (int, float)) and not isinstance(ts, bool) else None


def target_of(event: Event) -> Element | None:
    target = event.get("target")
    return target if isinstance(target, Mapping) and target else None


def _attrs(el: Element) -> dict[str, str]:
    raw = el.get("attributes")
    items = raw.items() if isinstance(raw, Mapping) else ()
    return {str(k).lower(): str(v).lower() for k, v in items if v is not None}


def _tag(el: Element) -> str:
    return str(el.get("tag") or "").lower()


def _ctx(el: Element, key: str) -> Any:
    ctx = el.get("context")
    return ctx.get(key) if isinstance(ctx, Mapping) else None


def target_key(el: Element | None) -> str | None:
    """A stable identity for 'the same element' across the events of one session."""
    if not el:
        return None
    a, sels = _attrs(el), el.get("selectors") or [{}]
    first = sels[0].get("value", "") if isinstance(sels[0], Mapping) else ""
    return "|".join([_tag(el), str(first), a.get("id", ""), a.get("data-testid", ""),
                     a.get("name", ""), str(el.get("text") or "").strip().lower()[:60]])


def _describe(el: Element | None) -> str:
    """Lower-cased words that say what an element is for: text, labels, ids, href."""
    if not el:
        return ""
    a = _attrs(el)
    words = [_tag(el), str(el.get("text") or "").lower()] + [a[k] for k in _DESCRIBING if k in a]
    words += [str(s.get("value", "")).lower() for s in el.get("selectors") or []
              if isinstance(s, Mapping) and s.get("kind") in ("testid", "role", "label", "text")]
    return " ".join(words)


def _url(event: Event) -> str:
    return str(event.get("url") or "").split("#", 1)[0]


def _is(kind: str, url: str) -> bool:
    return bool(_URLS[kind].search(urlsplit(url).path.lower()))


def _search_query(url: str) -> str | None:
    for key, value in parse_qsl(urlsplit(url).query):
        if key.lower() in _SEARCH_PARAMS and value.strip():
            return " ".join(value.lower().split())
    return None


def _is_search(el: Element | None) -> bool:
    if not el:
        return False
    a, form, ancestors = _attrs(el), _ctx(el, "form"), _ctx(el, "ancestors")
    if a.get("type") == "search" or a.get("role") in ("searchbox", "search"):
        return True
    if isinstance(form, Mapping) and any("search" in str(form.get(k, "")).lower()
                                         for k in ("role", "action", "id", "name")):
        return True
    if isinstance(ancestors, list) and any(isinstance(x, Mapping) and "search" in (
            str(x.get("role", "")).lower(), str(x.get("tag", "")).lower()) for x in ancestors):
        return True
    if _tag(el) in ("input", "textarea") or a.get("role") in ("textbox", "combobox"):
        label = " ".join(a.get(k, "") for k in ("placeholder", "aria-label", "id", "data-testid",
                                                 "name"))
        return a.get("name") in _SEARCH_PARAMS or "search" in label
    return (str(el.get("text") or "").strip().lower() or a.get("aria-label")) == "search"


def _field_kind(el: Element) -> str | None:
    """What a form field is for, or None when the element is not a form field."""
    a, tag = _attrs(el), _tag(el)
    if tag not in ("input", "textarea", "select") and a.get("role") not in (
            "textbox", "searchbox", "combobox", "checkbox", "radio", "spinbutton"):
        return None
    kind, words = a.get("type", ""), _describe(el)
    if kind == "password":
        return "password"
    if _is_search(el):
        return "search"
    if _PAYMENT.search(words):
        return "payment"
    typed = {"email": "email", "tel": "phone", "number": "quantity", "checkbox": "checkbox",
             "radio": "radio"}.get(kind)
    if typed or "email" in words:
        return typed or "email"
    if re.search(r"address|street|city|postal|zip", words):
        return "address"
    return "choice" if tag == "select" else "text"


def _visits(evs: Sequence[Event]) -> list[tuple[str, list[int], bool]]:
    """Page visits as (url, event indexes, came back); a new visit at each change of url."""
    out: list[tuple[str, list[int], bool]] = []
    for i, e in enumerate(evs):
        url = _url(e)
        if out and (not url or out[-1][0] == url):
            out[-1][1].append(i)
        elif url:
            back = e.get("transition") == "back_forward" or (len(out) >= 2 and out[-2][0] == url)
            out.append((url, [i], back))
    return out
