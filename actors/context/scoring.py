"""Deterministic quality scores for a recorded session: pure functions, no Ray, no database.

Four components in [0, 1], mixed into `overall` with `QualitySettings.weights`:

* completeness          did everything arrive: seq gaps, targets on interactions, screenshot
                        coverage of navigations and clicks, a /finish received
* selector_reliability  can a replay find each interaction's element again: the best selector's
                        kind (Playwright's ranking), its uniqueness at capture, fallbacks
* screenshot_quality    mean of the per-screenshot qualities measured elsewhere
* training_value        is it worth learning from: action diversity, a task, a sensible
                        length, little noise (scroll-only stretches, repeated identical events)

A session is rejected when `overall` is below `reject_below`, and also, whatever it scores,
when it has no action step at all (the dataset build's step extraction finds none, so it
yields no training example; `reject_without_steps`).

Each score below `explain_below` comes with sentences in `reasons` and advice for whoever
records in `suggestions`, so a rejected session says what to do differently next time. Lost
data (seq gaps, targets missing, no /finish, quality not measured) is always reported.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, NamedTuple

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from actors.context import INTERACTIONS, PASSIVE, Event, ordered, target_key, target_of
from actors.errors import ConfigError, InvalidInput, details_from_validation_error
from actors.training.dataset.formats import action_steps
from configs.pipeline import PipelineSettings, QualitySettings
from configs.settings import SettingsError

__all__ = ["NO_STEPS", "QualityScores", "SessionFacts", "load_pipeline_settings", "score_session"]

Score = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
_STEPS = frozenset({"navigation", "click"})  # what a screenshot is expected to follow
_CSS_ID = re.compile(r"^[a-zA-Z]*#[A-Za-z_][\w-]*$")
# Hashes, long numbers, CSS-module suffixes and positional steps change between builds/loads.
_GENERATED = re.compile(r"\b(?=[a-f0-9]*\d)(?=[a-f0-9]*[a-f])[a-f0-9]{6,}\b|\d{5,}"
                        r"|__[a-z0-9]{5}\b|:nth-(child|of-type)|\[\d+\]", re.IGNORECASE)


class SessionFacts(BaseModel):
    """What the store knows about a session besides its events."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    task: str | None = None
    finished: bool = False
    screenshot_count: int = Field(0, ge=0)
    screenshot_qualities: list[Score] | None = None  # None: not measured (yet)


class QualityScores(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    completeness: Score
    selector_reliability: Score
    screenshot_quality: Score
    training_value: Score
    overall: Score
    rejected: bool
    parts: dict[str, Score]  # the sub-scores behind the components, for dashboards and tuning
    reasons: list[str]
    suggestions: list[str]


_ALWAYS = -1.0  # a note with this score is shown whatever the scores: lost data is news
NO_STEPS = ("No action steps (click, typing, select, submit, Enter/Escape/Tab, typed "
             "navigation): the session yields no training example.")


class _Note(NamedTuple):
    score: float  # the (part) score it explains; or _ALWAYS
    reason: str
    tips: tuple[str, ...] = ()


class _Component(NamedTuple):
    score: float
    parts: dict[str, float]
    notes: list[_Note]


def load_pipeline_settings(path: Path | str | None = None) -> PipelineSettings:
    """`PipelineSettings.from_file` with its error turned into our ConfigError for actors."""
    try:
        return PipelineSettings.from_file(path) if path else PipelineSettings.from_file()
    except SettingsError as exc:
        raise ConfigError(str(exc)) from None


def _mix(parts: Mapping[str, float], weights: BaseModel) -> float:
    w = weights.model_dump()
    return float(np.clip(np.dot([parts[k] for k in w], list(w.values())), 0.0, 1.0))


def _pct(share: float) -> str:
    return f"{round(share * 100)}%"


# ----------------------------------------------------------------------------- completeness

def _gaps(seqs: np.ndarray) -> list[tuple[int, int]]:
    """Missing seq ranges below the highest one received, as inclusive (first, last) pairs."""
    present = np.concatenate(([-1], seqs))
    holes = np.nonzero(np.diff(present) > 1)[0]
    return [(int(present[i] + 1), int(present[i + 1] - 1)) for i in holes]


def _completeness(evs: Sequence[Event], facts: SessionFacts, q: QualitySettings) -> _Component:
    seqs = np.unique(np.array([e["seq"] for e in evs
                               if type(e.get("seq")) is int and e["seq"] >= 0], np.int64))
    expected = int(seqs[-1]) + 1 if seqs.size else 0
    actions = [e for e in evs if e.get("type") in INTERACTIONS]
    steps = sum(1 for e in evs if e.get("type") in _STEPS)
    parts = {
        "sequence": seqs.size / expected if expected else 0.0,
        "targets": sum(1 for e in actions if target_of(e)) / len(actions) if actions else 1.0,
        "screenshots": min(1.0, facts.screenshot_count / (steps * q.screenshots_per_step))
        if steps else 1.0,
        "finished": 1.0 if facts.finished else 0.0,
    }
    notes: list[_Note] = []
    if not expected:
        notes.append(_Note(_ALWAYS, "No events were recorded."))
    elif parts["sequence"] < 1.0:
        gaps = _gaps(seqs)
        shown = ", ".join(f"{a}–{b}" if a != b else str(a) for a, b in gaps[:3])
        more = f" and {len(gaps) - 3} more" if len(gaps) > 3 else ""
        notes.append(_Note(_ALWAYS, f"{expected - seqs.size} of {expected} events are missing "
                                    f"(seq gap{'s' if len(gaps) > 1 else ''} {shown}{more}).",
                           ("keep the recorder connected until every event is acknowledged",)))
    if parts["targets"] < 1.0:
        missing = sum(1 for e in actions if not target_of(e))
        notes.append(_Note(_ALWAYS, f"{missing} of {len(actions)} interactions have no target "
                                    f"element.",
                           ("make sure the recorder captures the element of every interaction",)))
    notes.append(_Note(parts["screenshots"], f"Only {facts.screenshot_count} screenshots for "
                                             f"{steps} navigations and clicks.",
                       ("capture a screenshot after each navigation and click",)))
    if not facts.finished:
        notes.append(_Note(_ALWAYS, "The session was never finished.",
                           ("finish the session so it is known to be complete",)))
    return _Component(_mix(parts, q.completeness_parts), parts, notes)


# ----------------------------------------------------------------------------- selectors

def _kind(sel: Mapping[str, Any]) -> str:
    """The rank a selector gets: CSS splits into a bare id and any other (path-like) selector."""
    kind, value = str(sel.get("kind", "")), str(sel.get("value", "")).strip()
    if kind != "css":
        return kind
    return "css_id" if _CSS_ID.match(value) else "css_path"


def _selector_credit(sel: Mapping[str, Any], q: QualitySettings) -> float:
    unique = sel.get("unique")
    factor = (1.0 if unique is True else q.not_unique_factor if unique is False
              else q.unknown_unique_factor)
    if _GENERATED.search(str(sel.get("value", ""))):
        factor *= q.generated_value_factor
    return q.selector_ranks.for_kind(_kind(sel)) * factor


def _target_reliability(el: Mapping[str, Any] | None, q: QualitySettings) -> tuple[float, Any]:
    """(score, best selector or None): best credit, topped up by fallbacks."""
    sels = [s for s in (el or {}).get("selectors") or [] if isinstance(s, Mapping)]
    if not sels:
        return 0.0, None
    credits = np.array([_selector_credit(s, q) for s in sels])
    best = int(np.argmax(credits))  # first of equals: deterministic
    fallback = min(1.0, (len(sels) - 1) / q.alternatives_for_full_credit)
    w = q.alternatives_weight
    return float(credits[best] * (1.0 - w + w * fallback)), sels[best]


def _selectors(evs: Sequence[Event], q: QualitySettings) -> _Component:
    actions = [e for e in evs if e.get("type") in INTERACTIONS]
    if not actions:
        return _Component(q.neutral, {"targets_scored": 0.0}, [_Note(
            q.neutral, "There are no interactions whose elements a replay would need to find.")])
    scored = [_target_reliability(target_of(e), q) for e in actions]
    scores = np.array([s for s, _ in scored])
    best = [b for _, b in scored]
    n = len(best)
    weak = sum(1 for b in best if b is not None and _kind(b) in ("css_path", "xpath"))
    not_unique = sum(1 for b in best if b is not None and b.get("unique") is False)
    bare = sum(1 for b in best if b is None)
    single = sum(1 for e in actions if len((target_of(e) or {}).get("selectors") or []) == 1)
    parts = {"mean": float(scores.mean()), "p10": float(np.percentile(scores, 10)),
             "weak_share": weak / n, "not_unique_share": not_unique / n}
    mean = parts["mean"]
    notes: list[_Note] = []
    if weak:
        notes.append(_Note(mean, f"{_pct(weak / n)} of interaction targets are best located by "
                                 f"XPath or a CSS path, which break when the layout changes.",
                           ("add data-testid attributes to the elements people interact with",
                            "give controls accessible roles and labels (aria-label, <label for>)")))
    if not_unique:
        notes.append(_Note(mean, f"For {_pct(not_unique / n)} of interaction targets even the best "
                                 f"selector matched more than one element when captured.",
                           ("give repeated elements distinguishing test ids or labels",)))
    if bare:
        notes.append(_Note(_ALWAYS, f"{bare} of {n} interactions have no selectors at all.",
                           ("update the recorder so it captures selectors for every target",)))
    if single * 2 > n:
        tip = "capture several selector kinds per element (test id, role, label, CSS)"
        notes.append(_Note(mean, "Most targets have a single selector, so a replay has no "
                                 "fallback.", (tip,)))
    return _Component(mean, parts, notes)


# ----------------------------------------------------------------------------- screenshots

def _screenshots(facts: SessionFacts, q: QualitySettings) -> _Component:
    if facts.screenshot_count == 0 and not facts.screenshot_qualities:
        return _Component(0.0, {"measured": 0.0}, [_Note(
            0.0, "No screenshots were captured.", ("enable screenshot capture in the recorder",))])
    if not facts.screenshot_qualities:
        return _Component(q.neutral, {"measured": 0.0}, [_Note(
            _ALWAYS, f"Screenshot quality was not measured; counted as neutral "
                     f"({q.neutral:.2f}).")])
    values = np.clip(np.array(facts.screenshot_qualities, dtype=float), 0.0, 1.0)
    mean, poor = float(values.mean()), int((values < 0.5).sum())
    note = _Note(mean, f"{poor} of {values.size} screenshots are poor (blank, blurred or cut off); "
                       f"mean quality {mean:.2f}.",
                 ("keep the tab in front and let pages finish loading before capturing",))
    parts = {"measured": 1.0, "poor_share": poor / values.size}
    return _Component(mean, parts, [note] if poor else [])


# ----------------------------------------------------------------------------- training value

def _identity(e: Event) -> tuple[Any, ...]:
    return (e.get("type"), e.get("url"), target_key(target_of(e)), e.get("value"), e.get("key"))


def _noise(actions: Sequence[Event], q: QualitySettings) -> tuple[int, int]:
    """(events in scroll-only stretches beyond their first scroll, repeated identical events)."""
    scroll_noise, repeats, run = 0, 0, 0
    for i, e in enumerate([*actions, {}]):  # a sentinel closes the last scroll run
        if e.get("type") == "scroll":
            run += 1
            continue
        scroll_noise += run - 1 if run >= q.scroll_run else 0
        run = 0
        if i and e and _identity(e) == _identity(actions[i - 1]):
            repeats += 1
    return scroll_noise, repeats


def _training(evs: Sequence[Event], facts: SessionFacts, q: QualitySettings) -> _Component:
    actions = [e for e in evs if e.get("type") not in PASSIVE]
    n = len(actions)
    counts = np.array(sorted(Counter(str(e.get("type")) for e in actions).values()), float)
    p = counts / counts.sum() if n else counts
    entropy = float(-(p * np.log(p)).sum()) if n else 0.0
    scrolls, repeats = _noise(actions, q)
    noise_share = (scrolls + repeats) / n if n else 0.0
    length = 1.0 if q.min_actions <= n <= q.max_actions else (
        n / q.min_actions if n < q.min_actions else q.max_actions / n)
    parts = {"diversity": min(1.0, entropy / math.log(q.diversity_types)),
             "task": 1.0 if facts.task and facts.task.strip() else 0.0,
             "length": length, "noise": max(0.0, 1.0 - noise_share / q.noise_tolerance)}
    notes = [
        _Note(parts["diversity"], f"Little variety: {n} actions of {counts.size} kind(s)."),
        _Note(parts["task"], "There is no task description to learn the goal from.",
              ("record a task description (what the session set out to do)",)),
        _Note(parts["noise"], f"{_pct(noise_share)} of actions are noise ({scrolls} in "
                              f"scroll-only stretches, {repeats} repeated identical events).",
              ("avoid idle scrolling and repeated clicks while recording",))]
    if n < q.min_actions:
        notes.append(_Note(length, f"Too short: {n} actions, at least {q.min_actions} expected.",
                           ("record a complete task from start to end",)))
    elif n > q.max_actions:
        notes.append(_Note(length, f"Too long: {n} actions, at most {q.max_actions} expected.",
                           ("record one task per session",)))
    return _Component(_mix(parts, q.training_parts), parts, notes)


# ----------------------------------------------------------------------------- the score

def _facts(facts: SessionFacts | Mapping[str, Any]) -> SessionFacts:
    if isinstance(facts, SessionFacts):
        return facts
    try:
        return SessionFacts.model_validate(facts)
    except ValidationError as exc:  # wrapped: pydantic errors do not cross actor boundaries
        raise InvalidInput("invalid session facts", details_from_validation_error(exc)) from None


def score_session(events: Iterable[Event], facts: SessionFacts | Mapping[str, Any],
                  settings: PipelineSettings | None = None) -> QualityScores:
    """Score one session; the same events and facts always give the same scores."""
    q = (settings or PipelineSettings()).quality
    f, evs = _facts(facts), ordered(events)
    comps = {"completeness": _completeness(evs, f, q), "selector_reliability": _selectors(evs, q),
             "screenshot_quality": _screenshots(f, q), "training_value": _training(evs, f, q)}
    scores = {k: round(float(np.clip(c.score, 0.0, 1.0)), 4) for k, c in comps.items()}
    overall = round(_mix(scores, q.weights), 4)
    reasons: list[str] = []
    tips: list[str] = []
    for name, comp in comps.items():
        shown = [n for n in comp.notes if n.score < q.explain_below]
        if scores[name] < q.explain_below and not shown:
            shown = [_Note(_ALWAYS, f"{name.replace('_', ' ').capitalize()} is low "
                                   f"({scores[name]:.2f}).")]
        reasons += [n.reason for n in shown]
        tips += [t for n in shown for t in n.tips]
    rejected = overall < q.reject_below
    if rejected:
        reasons.insert(0, f"Overall quality {overall:.2f} is below the rejection threshold "
                          f"{q.reject_below:.2f}.")
    # The dataset build's own step extraction decides, so "no step" means "no example".
    if q.reject_without_steps and not action_steps({}, evs):
        rejected = True
        reasons.insert(0, NO_STEPS)
        tips.insert(0, "record the task itself: the clicks, typing and submits that complete it")
    parts = {f"{name}.{k}": round(float(np.clip(v, 0.0, 1.0)), 4)
             for name, comp in comps.items() for k, v in comp.parts.items()}
    return QualityScores(**scores, overall=overall, rejected=rejected, parts=parts,
                         reasons=list(dict.fromkeys(reasons)),
                         suggestions=list(dict.fromkeys(tips)))
