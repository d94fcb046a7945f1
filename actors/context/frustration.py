"""Frustration signals: rage clicks, dead clicks and repeated back navigation."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from actors.context.vocabulary import (
    _RESPONSES,
    BACK_GAP_MS,
    BACK_RUN,
    DEAD_CLICK_MS,
    RAGE_BUCKET_PX,
    RAGE_CLICKS,
    RAGE_WINDOW_MS,
    Event,
    SignalKind,
    _attrs,
    _field_kind,
    _Model,
    _tag,
    _url,
    _visits,
    ordered,
    target_key,
    target_of,
    ts_ms,
)


class Signal(_Model):
    kind: SignalKind
    seqs: list[int]  # the events that make up the signal
    ts: int | None
    target: str | None
    message: str


# ----------------------------------------------------------------------------- frustration

def _label(e: Event) -> str | None:
    if not (el := target_of(e)):
        return None
    a = _attrs(el)
    return str(el.get("text") or "").strip()[:60] or a.get("aria-label") or a.get("data-testid") \
        or _tag(el) or "element"


def _spot(e: Event) -> str:
    x, y = e.get("x"), e.get("y")
    if isinstance(x, (int, float)) and isinstance(y, (int, float)):
        return target_key(target_of(e)) or f"@{int(x) // RAGE_BUCKET_PX},{int(y) // RAGE_BUCKET_PX}"
    return target_key(target_of(e)) or "@?"


def _runs(items: list[tuple[Event, int]], same: Any, gap_ms: int) -> list[list[tuple[Event, int]]]:
    """Consecutive items that `same` joins and that follow each other within `gap_ms`."""
    runs: list[list[tuple[Event, int]]] = []
    for e, t in items:
        if runs and same(runs[-1][-1][0], e) and t - runs[-1][-1][1] <= gap_ms:
            runs[-1].append((e, t))
        else:
            runs.append([(e, t)])
    return runs


def _seqs(run: Sequence[tuple[Event, int]]) -> list[int]:
    return [int(e.get("seq", -1)) for e, _ in run]


def _rage_clicks(evs: Sequence[Event]) -> list[Signal]:
    clicks = [(e, t) for e in evs if e.get("type") in ("click", "dblclick")
              if (t := ts_ms(e)) is not None]
    n, out = RAGE_CLICKS, []
    for run in _runs(clicks, lambda a, b: _spot(a) == _spot(b), RAGE_WINDOW_MS):
        if any(run[i + n - 1][1] - run[i][1] <= RAGE_WINDOW_MS for i in range(len(run) - n + 1)):
            out.append(Signal(kind="rage_click", seqs=_seqs(run), ts=run[0][1],
                              target=_label(run[0][0]), message=f"{len(run)} clicks on the same "
                              f"element within {run[-1][1] - run[0][1]} ms"))
    return out


def _answered(evs: Sequence[Event], i: int, t: int) -> bool | None:
    """Did anything answer the click at evs[i] within DEAD_CLICK_MS? None: session ended."""
    for f in evs[i + 1:]:
        if (u := ts_ms(f)) is not None and u > t + DEAD_CLICK_MS:
            return False
        if f.get("type") in _RESPONSES or (_url(f) and _url(f) != _url(evs[i])):
            return True
    return None


def _dead_clicks(evs: Sequence[Event], skip: set[int]) -> list[Signal]:
    out = []
    for i, e in enumerate(evs):
        t, el = ts_ms(e), target_of(e)
        if e.get("type") != "click" or t is None or e.get("seq") in skip:
            continue
        if el and (_field_kind(el) or _tag(el) == "label"):
            continue  # focusing a field is answered by typing, whenever the user gets to it
        if _answered(evs, i, t) is False:
            out.append(Signal(kind="dead_click", seqs=[int(e.get("seq", -1))], ts=t,
                              target=_label(e), message=f"no response within {DEAD_CLICK_MS} ms"))
    return out


def _repeated_back(evs: Sequence[Event]) -> list[Signal]:
    backs = [(evs[idx[0]], t) for _, idx, back in _visits(evs)
             if back and (t := ts_ms(evs[idx[0]])) is not None]
    return [Signal(kind="repeated_back", seqs=_seqs(run), ts=run[0][1], target=None,
                   message=f"{len(run)} back navigations, each within {BACK_GAP_MS // 1000} s")
            for run in _runs(backs, lambda a, b: True, BACK_GAP_MS) if len(run) >= BACK_RUN]


def frustration_signals(events: Iterable[Event]) -> list[Signal]:
    """Rage clicks, dead clicks (not counting rage clicks again), repeated back navigation."""
    evs = ordered(events)
    rage = _rage_clicks(evs)
    dead = _dead_clicks(evs, {s for sig in rage for s in sig.seqs})
    return sorted(rage + dead + _repeated_back(evs), key=lambda s: (s.seqs[0], s.kind))
