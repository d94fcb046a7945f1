"""How a predicted web-agent action is scored against the recorded one: pure functions.

An action is the compact JSON the dataset's assistant turn holds (actors/training/dataset/formats.py):
`{"action", "selector", "element_text", "value", "key", "url"}`, only the fields that apply.

Per step three measures, each only where the recorded action has something to measure:

* action type   the `action` names are equal (trimmed, case-insensitive).
* element       when the recorded action names an element (selector or text): the selectors
                are the same string, or, when they differ, the normalised element texts are
                equal and not empty. Selectors of one element vary between capture and model
                (testid vs role), so the visible text is the fallback identity.
* value         the typed/selected `value` (input, select), the `key` (keypress) or the `url`
                (navigate), equal after normalisation: whitespace for values and keys, URL
                normalisation for urls.

A step is correct when all applicable measures are. A reply that does not parse as an action
is wrong on every measure, and counted separately as unanswered.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = [
    "StepResult", "aggregate", "compare_step", "normalise_text", "normalise_url",
    "normalise_value", "parse_action", "value_field",
]

_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class StepResult:
    """One example's verdicts; None where the recorded action has nothing to compare."""

    action: str          # the recorded action type
    answered: bool       # the reply parsed as an action
    action_type: bool
    element: bool | None
    value: bool | None
    step: bool


# ----------------------------------------------------------------------------- parsing

def _as_action(candidate: Any) -> dict[str, Any] | None:
    if isinstance(candidate, dict) and isinstance(candidate.get("action"), str):
        return candidate
    return None


def parse_action(reply: str | None) -> dict[str, Any] | None:
    """The action in a model's reply: the whole reply as JSON, else a fenced ```json block,
    else the first JSON object with an `action` string found in the text; None if none."""
    if not reply or not reply.strip():
        return None
    text = reply.strip()
    for chunk in (text, *(m.group(1).strip() for m in _FENCE.finditer(text))):
        try:
            if (found := _as_action(json.loads(chunk))) is not None:
                return found
        except ValueError:
            pass
    # Models like to say "Here is the action: {...}": decode from each opening brace.
    decoder = json.JSONDecoder()
    for start in (i for i, ch in enumerate(text) if ch == "{"):
        try:
            obj, _ = decoder.raw_decode(text, start)
        except ValueError:
            continue
        if (found := _as_action(obj)) is not None:
            return found
    return None


# ----------------------------------------------------------------------------- normalising

def normalise_value(value: Any) -> str:
    """Whitespace runs collapsed and trimmed; case kept (typed text is case-sensitive)."""
    return " ".join(str(value).split()) if value is not None else ""


def normalise_text(text: Any) -> str:
    """Visible text for identity: whitespace collapsed, case folded, the dataset's
    truncation ellipsis dropped (a model may quote the text in full or cut as we did)."""
    return normalise_value(text).rstrip("…").strip().casefold()


def normalise_url(url: Any) -> str:
    """Scheme and host lower-cased, default port and fragment dropped, an empty path as "/",
    a trailing slash of a non-root path dropped, query parameters sorted."""
    raw = normalise_value(url)
    if not raw:
        return ""
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError:
        return raw
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    netloc = host if port is None or _DEFAULT_PORTS.get(scheme) == port else f"{host}:{port}"
    if parts.username:
        netloc = f"{parts.username}@{netloc}"
    path = parts.path or "/"
    if len(path) > 1:
        path = path.rstrip("/") or "/"
    query = urlencode(sorted(parse_qsl(parts.query, keep_blank_values=True)))
    return urlunsplit((scheme, netloc, path, query, ""))


def value_field(action: Mapping[str, Any]) -> str | None:
    """Which field carries the action's value (url for navigate, key for keypress, else
    value), when the recorded action has it; None when there is nothing to compare."""
    field = {"navigate": "url", "keypress": "key"}.get(_kind(action), "value")
    return field if field in action else None


def _kind(action: Mapping[str, Any]) -> str:
    return str(action.get("action") or "").strip().lower()


# ----------------------------------------------------------------------------- comparing

def _has_element(action: Mapping[str, Any]) -> bool:
    return bool(str(action.get("selector") or "").strip() or normalise_text(action.get("element_text")))


def _same_element(recorded: Mapping[str, Any], predicted: Mapping[str, Any]) -> bool:
    sel_r, sel_p = recorded.get("selector"), predicted.get("selector")
    if isinstance(sel_r, str) and sel_r and sel_r == sel_p:
        return True
    text_r = normalise_text(recorded.get("element_text"))
    return bool(text_r) and text_r == normalise_text(predicted.get("element_text"))


def _same_value(field: str, recorded: Mapping[str, Any], predicted: Mapping[str, Any]) -> bool:
    if field not in predicted:
        return False
    norm = normalise_url if field == "url" else normalise_value
    return norm(recorded.get(field)) == norm(predicted.get(field))


def compare_step(recorded: Mapping[str, Any], predicted: Mapping[str, Any] | None) -> StepResult:
    """Score one predicted action (None: the reply did not parse) against the recorded one."""
    kind = _kind(recorded)
    field = value_field(recorded)
    element_applies = kind != "navigate" and _has_element(recorded)
    if predicted is None:
        return StepResult(kind, False, False, False if element_applies else None,
                          False if field else None, False)
    type_ok = _kind(predicted) == kind
    element_ok = _same_element(recorded, predicted) if element_applies else None
    value_ok = _same_value(field, recorded, predicted) if field else None
    step_ok = type_ok and element_ok is not False and value_ok is not False
    return StepResult(kind, True, type_ok, element_ok, value_ok, step_ok)


# ----------------------------------------------------------------------------- aggregating

def _share(flags: list[bool | None]) -> float | None:
    """Share of True among the applicable (not None) verdicts; None when none applies."""
    applicable = [f for f in flags if f is not None]
    return sum(applicable) / len(applicable) if applicable else None


def _measures(results: list[StepResult]) -> dict[str, Any]:
    return {
        "examples": len(results),
        "answered": sum(r.answered for r in results),
        "step_accuracy": _share([r.step for r in results]),
        "element_accuracy": _share([r.element for r in results]),
        "action_type_accuracy": _share([r.action_type for r in results]),
        "value_accuracy": _share([r.value for r in results]),
    }


def aggregate(results: Iterable[StepResult]) -> dict[str, Any]:
    """The evaluation's metrics: the overall measures (accuracy None when no example has
    that measure), `unanswered`, and the same measures per recorded action type."""
    items = list(results)
    by_type: dict[str, list[StepResult]] = {}
    for r in items:
        by_type.setdefault(r.action, []).append(r)
    out = _measures(items)
    out["unanswered"] = out["examples"] - out["answered"]
    out["per_action"] = {kind: _measures(rs) for kind, rs in sorted(by_type.items())}
    return out
