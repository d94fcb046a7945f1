"""The key moments of a session and the card written from them without a model.

Pure functions over the stored (redacted) events and the session's analysis (the JSON the
analysis stage recorded). A moment is a step that mattered: where a new intent began (the
first search, the first add to cart…), a submit, each frustration signal, and the last step.
The local card is built from the same moments, so it says the same things a model is told,
in fixed sentences: it cannot paraphrase, guess why someone hesitated or read the screenshots.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from actors.context import INTERACTIONS, ordered

__all__ = ["FUNNEL", "key_moments", "local_card", "outcome_of", "site_of"]

# Furthest stage first: the card names how far the person got.
FUNNEL = ("checkout", "add_to_cart", "login", "compare", "form_fill", "search", "browse")
_PHRASES = {"checkout": "Checkout", "add_to_cart": "Added to cart", "login": "Sign-in",
            "compare": "Comparing products", "form_fill": "Filling a form", "search": "Search",
            "browse": "Browsing"}
_VERBS = {"search": "searched", "browse": "browsed", "compare": "compared products",
          "add_to_cart": "added to the cart", "checkout": "went to checkout", "login": "signed in",
          "form_fill": "filled in a form"}
_KINDS = {"rage_click": "rage clicks", "dead_click": "a click with no response",
          "repeated_back": "repeated back navigation"}


def _label(target: Any) -> str | None:
    if not isinstance(target, Mapping):
        return None
    attrs = target.get("attributes") if isinstance(target.get("attributes"), Mapping) else {}
    text = str(target.get("text") or "").strip() or str(attrs.get("aria-label") or "") \
        or str(attrs.get("placeholder") or "") or str(attrs.get("name") or "")
    return " ".join(text.split())[:60] or None


def _page(url: Any) -> str | None:
    if not isinstance(url, str) or not url:
        return None
    parts = urlsplit(url)
    return (parts.netloc + parts.path)[:80] or None


def site_of(events: Sequence[Mapping[str, Any]]) -> str | None:
    for e in events:
        if isinstance(e.get("url"), str) and (host := urlsplit(e["url"]).hostname):
            return host
    return None


def key_moments(events: Sequence[Mapping[str, Any]], analysis: Mapping[str, Any],
                limit: int) -> list[dict[str, Any]]:
    evs = ordered(events)
    context = analysis.get("context") or {}
    intents = list(context.get("intents") or [])
    why: dict[int, list[str]] = {}
    seen_intents: set[str] = set()
    last_interaction: int | None = None
    for i, e in enumerate(evs):
        if e.get("type") not in INTERACTIONS:
            continue
        seq, intent = e["seq"], intents[i] if i < len(intents) else None
        last_interaction = i
        if intent and intent != "navigate" and intent not in seen_intents:
            seen_intents.add(intent)
            why.setdefault(seq, []).append(f"first {intent}")
        if e.get("type") == "submit":
            why.setdefault(seq, []).append("submit")
    for signal in context.get("frustration") or []:
        if signal.get("seqs"):
            why.setdefault(signal["seqs"][0], []).append(f"frustration: {signal.get('kind')}")
    if last_interaction is not None:
        why.setdefault(evs[last_interaction]["seq"], []).append("last step")
    by_seq = {e["seq"]: (i, e) for i, e in enumerate(evs)}
    chosen = sorted(s for s in why if s in by_seq)
    if len(chosen) > limit:  # keep the last step: it says where the session ended
        chosen = chosen[: limit - 1] + chosen[-1:]
    moments = []
    for seq in chosen:
        i, e = by_seq[seq]
        moments.append({"seq": seq, "type": e.get("type"),
                        "intent": intents[i] if i < len(intents) else None,
                        "target": _label(e.get("target")), "page": _page(e.get("url")),
                        "why": why[seq]})
    return moments


def outcome_of(analysis: Mapping[str, Any]) -> str:
    quality = (analysis.get("quality") or {}).get("overall")
    if analysis.get("rejected"):
        return "rejected for training" + (f" (quality {quality:.2f})" if quality is not None else "")
    return f"kept for training with quality {quality:.2f}" if quality is not None else "kept"


def local_card(events: Sequence[Mapping[str, Any]], analysis: Mapping[str, Any],
               moments: Sequence[Mapping[str, Any]], task: str | None) -> dict[str, str]:
    """A title and two fixed sentences from the analysis: what was done, what went wrong or
    right and how it ended. Same input, same words."""
    context = analysis.get("context") or {}
    counts = context.get("intent_counts") or {}
    reached = [i for i in FUNNEL if counts.get(i)]
    site = site_of(ordered(events)) or "an unknown site"
    head = _PHRASES[reached[0]] if reached else "Session"
    title = f"{head} on {site}"[:120]
    pages = len(context.get("pages") or [])
    steps = sum(1 for e in events if e.get("type") in INTERACTIONS)
    done = [_VERBS[i] for i in reversed(FUNNEL) if counts.get(i)] or ["looked around"]
    verbs = done[0] if len(done) == 1 else ", ".join(done[:-1]) + " and " + done[-1]
    where = f" over {pages} page{'s' * (pages != 1)}" if pages else ""
    first = f"The person {verbs}{where} in {steps} step{'s' * (steps != 1)}"
    first += f" (task: {' '.join(task.split())[:80]})." if task else "."
    signals = context.get("frustration") or []
    if signals:
        s = signals[0]
        target = f" on “{s['target']}”" if s.get("target") else ""
        more = f", and {len(signals) - 1} more signal{'s' * (len(signals) > 2)}" if len(signals) > 1 else ""
        second = f"It went wrong at step {s['seqs'][0]}: {_KINDS.get(s.get('kind'), s.get('kind'))}{target}{more};"
    else:
        second = "No frustration signals;"
    second += f" the session was {outcome_of(analysis)}."
    return {"title": title, "caption": f"{first} {second}"}
