"""Navigation pattern and shopping style of a whole session, read from its step intents."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import pairwise

from actors.context.vocabulary import (
    _DEAL,
    _FIELDS,
    DEAL_HITS,
    DECISIVE_ACTIONS,
    DECISIVE_PRODUCTS,
    PASSIVE,
    Event,
    Intent,
    NavigationPattern,
    ShoppingStyle,
    _describe,
    _is,
    _search_query,
    _url,
    _visits,
    ordered,
    target_of,
)
from actors.context.intents import step_intents

# ----------------------------------------------------------------------------- patterns, styles

def _search_queries(evs: Sequence[Event], intents: Sequence[Intent]) -> list[str]:
    """The last known query of each search episode (a run of search steps)."""
    queries: list[str] = []
    current: str | None = None
    for e, intent in zip(evs, intents):
        if intent == "search":
            value = e.get("value") if e.get("type") in _FIELDS and not e.get("masked") else None
            typed = " ".join(value.lower().split()) if isinstance(value, str) else ""
            current = typed or _search_query(_url(e)) or current
        elif current is not None:
            queries.append(current)
            current = None
    return queries + ([current] if current is not None else [])


def _stages(evs: Sequence[Event], intents: Sequence[Intent]) -> list[int]:
    """Funnel stage per page visit: 0 browsing, 1 product, 2 cart, 3 checkout. Login and form
    pages keep the stage before them: signing in mid-checkout is no detour."""
    stages: list[int] = []
    for url, idx, _ in _visits(evs):
        seen = {intents[i] for i in idx}
        stage = (3 if "checkout" in seen else 2 if "add_to_cart" in seen or _is("cart", url)
                 else 1 if _is("product", url) else None if seen <= {"login", "form_fill"} else 0)
        stages.append(stage if stage is not None else (stages[-1] if stages else 0))
    return stages


def _navigation_pattern(evs: Sequence[Event], intents: Sequence[Intent]) -> NavigationPattern:
    # Order matters: refining a search usually goes back to the results, and a funnel is only
    # linear when it is neither of the two.
    if len(set(_search_queries(evs, intents))) >= 2:
        return "search_refine_loop"
    visits = _visits(evs)
    backs = sum(1 for *_, back in visits if back)
    if backs >= 2 and backs * 4 >= len(visits) - 1:  # a quarter of all moves are returns
        return "back_and_forth"
    stages = _stages(evs, intents)
    drops = sum(1 for a, b in pairwise(stages) if b < a)
    revisits = len(visits) - len({url for url, *_ in visits})
    if stages and max(stages) >= 2 and drops <= 1 and revisits <= 1:
        return "linear_funnel"
    return "exploration"


def _shopping_style(evs: Sequence[Event], intents: Sequence[Intent]) -> ShoppingStyle:
    deals = sum(1 for e in evs if e.get("type") not in PASSIVE and _DEAL.search(
        _url(e).lower() if e.get("type") == "navigation"
        else f"{_describe(target_of(e))} {str(e.get('value') or '').lower()}"))
    if deals >= DEAL_HITS:
        return "deal_seeker"
    if "compare" in intents:
        return "comparer"
    products = {url for url, *_ in _visits(evs) if _is("product", url)}
    bought = next((i for i, x in enumerate(intents) if x in ("add_to_cart", "checkout")), None)
    if bought is not None and len(products) <= DECISIVE_PRODUCTS and sum(
            1 for e in evs[:bought] if e.get("type") not in PASSIVE) <= DECISIVE_ACTIONS:
        return "decisive"
    return "browser"


def navigation_pattern(events: Iterable[Event]) -> NavigationPattern:
    evs = ordered(events)
    return _navigation_pattern(evs, step_intents(evs))


def shopping_style(events: Iterable[Event]) -> ShoppingStyle:
    evs = ordered(events)
    return _shopping_style(evs, step_intents(evs))
