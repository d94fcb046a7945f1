"""What a recorded session was about: page structure, step intents, navigation pattern,
shopping style and frustration signals. Pure functions over event dicts (PROTOCOL.md v1).

Every function first orders events by `seq` and drops replayed copies (`ordered`), so results do
not depend on arrival order, and `step_intents` gives one intent per event of that order. The
heuristics read what a client sends anyway (target text and attributes, urls, event types,
timestamps); they are simple on purpose, so a surprising label can be explained by reading a
rule. Each threshold is a constant in `events` with the reason for its value.

Layout: `events` (types, thresholds, patterns, event helpers), `pages` (`page_structure`),
`intents` (`step_intents`), `patterns` (`navigation_pattern`, `shopping_style`), `frustration`
(`frustration_signals`); `analyze_context` below runs them all.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from actors.context.vocabulary import (
    BACK_GAP_MS,
    BACK_RUN,
    DEAD_CLICK_MS,
    DEAL_HITS,
    DECISIVE_ACTIONS,
    DECISIVE_PRODUCTS,
    GRID_MIN_ITEMS,
    GRID_MIN_PRICES,
    INTERACTIONS,
    PASSIVE,
    RAGE_BUCKET_PX,
    RAGE_CLICKS,
    RAGE_WINDOW_MS,
    Element,
    Event,
    Intent,
    NavigationPattern,
    ShoppingStyle,
    SignalKind,
    _Model,
    ordered,
    target_key,
    target_of,
    ts_ms,
)
from actors.context.frustration import Signal, frustration_signals
from actors.context.intents import step_intents
from actors.context.pages import PageSummary, page_structure
from actors.context.navigation import (
    _navigation_pattern,
    _shopping_style,
    navigation_pattern,
    shopping_style,
)

# The former module's `__all__`, plus the public names it had outside that list: the `Event` and
# `Element` aliases (actors.context.scoring imports `Event`) and the thresholds.
__all__ = [
    "BACK_GAP_MS", "BACK_RUN", "DEAD_CLICK_MS", "DEAL_HITS", "DECISIVE_ACTIONS",
    "DECISIVE_PRODUCTS", "GRID_MIN_ITEMS", "GRID_MIN_PRICES", "INTERACTIONS", "PASSIVE",
    "RAGE_BUCKET_PX", "RAGE_CLICKS", "RAGE_WINDOW_MS", "ContextAnalysis", "Element", "Event",
    "Intent", "NavigationPattern", "PageSummary", "ShoppingStyle", "Signal", "SignalKind",
    "analyze_context", "frustration_signals", "navigation_pattern", "ordered", "page_structure",
    "shopping_style", "step_intents", "target_key", "target_of", "ts_ms",
]


class ContextAnalysis(_Model):
    pages: list[PageSummary]
    intents: list[Intent]  # one per event of `ordered(events)`
    intent_counts: dict[str, int]
    navigation_pattern: NavigationPattern
    shopping_style: ShoppingStyle
    frustration: list[Signal]


def analyze_context(events: Iterable[Event]) -> ContextAnalysis:
    evs = ordered(events)
    intents = step_intents(evs)
    return ContextAnalysis(
        pages=page_structure(evs), intents=intents,
        intent_counts=dict(sorted(Counter(intents).items())),
        navigation_pattern=_navigation_pattern(evs, intents),
        shopping_style=_shopping_style(evs, intents), frustration=frustration_signals(evs))
