"""The `openai-chat` example format of a web-agent dataset: pure functions, no Ray, no database.

One example per *action step* of a session, as OpenAI's chat fine-tuning JSONL line
`{"messages": [system, user, assistant]}`:

* system     a fixed prompt: act as a web agent, answer with one JSON action
* user       the task, the current URL and title, a compact list of candidate elements with
             their best selector, the last k actions, and up to N screenshots (image parts)
* assistant  the recorded action as compact JSON text; never an image

Action steps are `click`, `dblclick`, `input`/`change`/`select`, `submit`, `keypress` of
Enter/Escape/Tab and `navigation` typed by the user (`transition == "typed"`). Scrolls are left
out on purpose: they are frequent, rarely decisive and their offsets do not transfer between
viewports, so they would teach the model noise. Consecutive `input`/`change` events on the same
element (a burst of typing) are one step whose value is the last one recorded: the agent should
fill a field once, not learn to type key by key. Masked or redacted values stay as recorded
(e.g. `[EMAIL]`); a masked event with no value becomes `[MASKED]`.

Each step is described by the state *before* it: the page it was taken on, the latest
`dom_snapshot` since the last navigation, the targets recently used on that page, and the
latest screenshot(s) at or before the step (the caller gives images already prepared as
data URLs or object-store URLs, keyed by the screenshot event's seq).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from array import array
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from actors.context import ordered, target_key, target_of
from configs.dataset import (
    DEFAULT_SYSTEM_PROMPT,
    OPENAI_MAX_IMAGES,
    DatasetFormatSettings,
)
from configs.pipeline import SelectorRanks

__all__ = [
    "DEFAULT_SYSTEM_PROMPT", "OPENAI_MAX_IMAGES", "DatasetFormatSettings", "Step", "action_steps",
    "best_selector", "build_examples", "element_text", "dataset_stats", "dedupe", "estimate_text_tokens", "estimate_tokens",
    "StatsAccumulator", "example_key", "example_problems", "example_summary", "split_by_session",
    "validate_examples",
]

OPENAI_MIN_EXAMPLES = 10
OPENAI_MAX_IMAGE_BYTES = 10 * 1024 * 1024

_KEYS = frozenset({"Enter", "Escape", "Tab"})
_FIELDS = frozenset({"input", "change"})
_ACTIONS = {"click": "click", "dblclick": "dblclick", "input": "input", "change": "input",
            "select": "select", "submit": "submit", "keypress": "keypress",
            "navigation": "navigate"}
_CSS_ID = re.compile(r"^[a-zA-Z]*#[A-Za-z_][\w-]*$")  # as in actors.context.scoring
_UNIQUE_ORDER = {True: 2, None: 1, False: 0}
_RECENT_TARGETS = 5
_TEXT_CHARS = 60
_DATA_URL = re.compile(r"^data:image/(png|jpeg|webp);base64,([A-Za-z0-9+/=\s]*)$")


# ----------------------------------------------------------------------------- selectors

def best_selector(el: Mapping[str, Any] | None, ranks: SelectorRanks | None = None) -> str | None:
    """`kind=value` of the element's best selector: Playwright's ranking first (testid, role,
    label, placeholder, text, CSS id, CSS path, xpath), then uniqueness at capture, then order."""
    ranks = ranks or SelectorRanks()
    best, key = None, None
    for i, sel in enumerate((el or {}).get("selectors") or []):
        if not isinstance(sel, Mapping) or not str(sel.get("value") or "").strip():
            continue
        kind, value = str(sel.get("kind", "")), str(sel["value"]).strip()
        rank_kind = kind if kind != "css" else ("css_id" if _CSS_ID.match(value) else "css_path")
        k = (ranks.for_kind(rank_kind), _UNIQUE_ORDER.get(sel.get("unique"), 1), -i)
        if key is None or k > key:
            best, key = f"{kind}={value}", k
    return best


def _text(el: Mapping[str, Any] | None) -> str:
    """Visible text, or for fields without it their label-like attributes; trimmed."""
    if not el:
        return ""
    attrs = el.get("attributes") if isinstance(el.get("attributes"), Mapping) else {}
    raw = el.get("text") or next((attrs[k] for k in ("aria-label", "placeholder", "name", "title")
                                  if attrs.get(k)), "")
    text = " ".join(str(raw).split())
    return text if len(text) <= _TEXT_CHARS else text[:_TEXT_CHARS - 1] + "…"


element_text = _text  # the same words in the `ranking` format's candidate descriptions


# ----------------------------------------------------------------------------- steps

def _is_step(ev: Mapping[str, Any]) -> bool:
    kind = ev.get("type")
    return (ev.get("key") in _KEYS if kind == "keypress" else
            ev.get("transition") == "typed" if kind == "navigation" else kind in _ACTIONS)


def _action(ev: Mapping[str, Any], ranks: SelectorRanks) -> dict[str, Any]:
    kind = str(ev.get("type"))
    out: dict[str, Any] = {"action": _ACTIONS[kind]}
    if kind == "navigation":
        out["url"] = ev.get("url")
        return out
    el = target_of(ev)
    out.update({k: v for k, v in (("selector", best_selector(el, ranks)),
                                  ("element_text", _text(el))) if v})
    if kind == "keypress":
        out["key"] = ev.get("key")
    elif kind in _FIELDS or kind == "select":
        value = ev.get("value")
        out["value"] = str(value) if value is not None else "[MASKED]" if ev.get("masked") else ""
    return out


def _compact(action: Mapping[str, Any]) -> str:
    return json.dumps(action, ensure_ascii=False, separators=(",", ":"))


def _canonical(example: Any) -> str:
    return json.dumps(example, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _slot(session_id: str, seq: Any, n: int) -> int:
    """A deterministic, position-bias-free index in [0, n) for the true target."""
    digest = hashlib.sha256(f"{session_id}:{seq}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % max(n, 1)


def _candidates(snapshot: Sequence[Any], recent: Sequence[Mapping[str, Any]],
                target: Mapping[str, Any] | None, slot_key: tuple[str, Any],
                settings: DatasetFormatSettings) -> list[Mapping[str, Any]]:
    """Snapshot elements then recent targets, one per element; the step's own target is always
    kept (placed at a hash-chosen slot when the page lists did not contain it)."""
    seen: set[str | None] = set()
    out: list[Mapping[str, Any]] = []
    for el in [*snapshot, *reversed(recent)]:
        if isinstance(el, Mapping) and el and (k := target_key(el)) not in seen:
            seen.add(k)
            out.append(el)
    cap = settings.max_candidates
    if target is None:
        return out[:cap]
    idx = next((i for i, el in enumerate(out) if target_key(el) == target_key(target)), None)
    if idx is not None and idx < cap:
        return out[:cap]
    out = [el for i, el in enumerate(out) if i != idx][:cap - 1]
    out.insert(_slot(*slot_key, len(out) + 1), target)
    return out


def _user_text(task: str, url: str, title: str, cands: Sequence[Mapping[str, Any]],
               history: Sequence[str], ranks: SelectorRanks) -> str:
    lines = [f"Task: {task or '(no task given)'}", f"URL: {url or '(unknown)'}",
             f"Title: {title or '(none)'}", "Candidate elements:"]
    for i, el in enumerate(cands, 1):
        sel = best_selector(el, ranks) or "(no selector)"
        text = json.dumps(_text(el), ensure_ascii=False) + " " if _text(el) else ""
        lines.append(f"{i}. <{el.get('tag') or '?'}> {text}{sel}")
    lines += ([] if cands else ["(none recorded)"]) + ["Previous actions:", *(history or ["(none)"])]
    return "\n".join(lines)


@dataclass
class Step:
    """One action step and the page as it was before it: what every example format is made of
    (the `openai-chat` examples here, the `ranking` rows of actors.training.dataset.ranking)."""

    seq: Any
    action: dict[str, Any]  # as the assistant turn holds it; a typing burst keeps its last value
    target: Mapping[str, Any] | None
    field: str | None  # target_key of an input/change target, to merge a burst of typing
    url: str
    title: str
    candidates: list[Mapping[str, Any]]  # the step's own target always among them
    history: list[str]  # the last k actions before it, compact JSON


def action_steps(session: Mapping[str, Any], events: Sequence[dict],
                 settings: DatasetFormatSettings | None = None) -> list[Step]:
    """The session's action steps in seq order, each with the page state before it."""
    s = settings or DatasetFormatSettings()
    ranks, sid, k = s.selector_ranks, str(session.get("session_id") or ""), s.last_k_actions
    url, title = "", ""
    snapshot: list[Any] = []
    recent: list[Mapping[str, Any]] = []
    steps: list[Step] = []
    for ev in ordered(events):
        kind = ev.get("type")
        if _is_step(ev):
            action, target = _action(ev, ranks), target_of(ev)
            field = target_key(target) if kind in _FIELDS else None
            if field is not None and steps and steps[-1].field == field:
                steps[-1].action = action  # the same field typed on: keep the last value
            else:
                history = [_compact(st.action) for st in steps[max(len(steps) - k, 0):]]
                cands = _candidates(snapshot, recent, target, (sid, ev.get("seq")), s)
                steps.append(Step(ev.get("seq"), action, target, field, url, title, cands, history))
            if target is not None:
                recent = [*recent, target][-_RECENT_TARGETS:]
        elif kind == "dom_snapshot":
            snapshot = list(ev.get("elements") or [])
        if kind == "navigation":
            snapshot, recent = [], []
        if ev.get("url"):
            url = str(ev["url"])
        if ev.get("title") or kind == "navigation":
            title = str(ev.get("title") or "")
    # Steps a reviewer flagged (the dataset build's skip_seqs) make no example; they stay in
    # the history of the steps after them, since they happened.
    skip = session.get("skip_seqs") or ()
    return [st for st in steps if st.seq not in skip] if skip else steps


def build_examples(session: Mapping[str, Any], events: Sequence[dict],
                   images: Mapping[int, str] | None,
                   settings: DatasetFormatSettings | None = None) -> list[dict]:
    """One `{"messages": [system, user, assistant]}` per action step of the session, in seq
    order. `events` are PROTOCOL event dicts (as `actors.ingest.rows.as_event` returns
    them); `images` maps a screenshot event's seq to a prepared URL (ignored when image_mode is
    "none")."""
    s = settings or DatasetFormatSettings()
    shots = sorted(images.items()) if images and s.image_mode != "none" else []
    task = str(session.get("task") or "")
    examples = []
    for st in action_steps(session, events, s):
        user = _user_text(task, st.url, st.title, st.candidates, st.history, s.selector_ranks)
        seq = st.seq if isinstance(st.seq, int) else -1
        urls = [u for at, u in shots if at <= seq][-n:] if (n := s.max_images_per_example) else []
        detail = {} if s.image_detail == "auto" else {"detail": s.image_detail}
        content: Any = [{"type": "text", "text": user}, *(
            {"type": "image_url", "image_url": {"url": u, **detail}} for u in urls)] if urls \
            else user
        examples.append({"messages": [
            {"role": "system", "content": s.system_prompt},
            {"role": "user", "content": content},
            {"role": "assistant", "content": _compact(st.action)}]})
    return examples


# ----------------------------------------------------------------------------- split, dedupe

def split_by_session(session_ids: Sequence[str], validation_share: float,
                     seed: int) -> tuple[list[str], list[str]]:
    """(train_ids, validation_ids): sessions ordered by sha256(seed:id), the first
    round(n * share) go to validation, clamped to [1, n-1] when there are ≥ 2 sessions. The
    same ids and seed give the same split whatever the input order; a session is never split."""
    if not 0.0 < validation_share < 1.0:
        raise ValueError("validation_share must be between 0 and 1 (exclusive)")
    ids = list(dict.fromkeys(str(i) for i in session_ids))
    if len(ids) < 2:
        return ids, []
    n_val = min(max(round(len(ids) * validation_share), 1), len(ids) - 1)
    by_hash = sorted(ids, key=lambda i: hashlib.sha256(f"{seed}:{i}".encode()).hexdigest())
    val = set(by_hash[:n_val])
    return [i for i in ids if i not in val], [i for i in ids if i in val]


def example_key(example: Any) -> str:
    """sha256 of the example's canonical JSON: equal examples, equal keys."""
    return hashlib.sha256(_canonical(example).encode()).hexdigest()


def dedupe(examples: Sequence[dict], seen: set[str] | None = None) -> tuple[list[dict], int]:
    """Exact duplicates dropped, the first copy kept; examples whose key is in `seen` (e.g. the
    train split's, when deduping validation) are dropped too. Returns (kept, dropped)."""
    seen = set() if seen is None else seen
    kept = []
    for ex in examples:
        if (key := example_key(ex)) not in seen:
            seen.add(key)
            kept.append(ex)
    return kept, len(examples) - len(kept)


# ----------------------------------------------------------------------------- tokens

_MESSAGE_OVERHEAD = 4  # <|start|>role ... <|end|> per message
_REPLY_PRIMING = 3  # every conversation is primed with <|start|>assistant<|message|>
_LOW_DETAIL = 85
_VIEWPORT = (1280, 800)  # assumed size of a screenshot whose dimensions are unknown


def estimate_text_tokens(text: str) -> int:
    """ceil(UTF-8 bytes / 4): about 4 characters per token for English with o200k/cl100k."""
    return math.ceil(len(text.encode("utf-8")) / 4)


def _tile_tokens(width: int, height: int) -> int:
    """OpenAI's published high-detail rule: fit in 2048x2048, shortest side to 768, then
    170 tokens per 512 px tile plus 85."""
    scale = min(1.0, 2048 / max(width, height))
    w, h = width * scale, height * scale
    scale = min(1.0, 768 / min(w, h))
    w, h = w * scale, h * scale
    return 170 * math.ceil(w / 512) * math.ceil(h / 512) + _LOW_DETAIL


def estimate_tokens(example: Mapping[str, Any]) -> int:
    """Estimated prompt+completion tokens of one example, without tokenizer files.

    Text: ceil(UTF-8 bytes / 4) per string (English prose runs ~4 characters per token, so the
    estimate is within about ±35 %; JSON, URLs and selectors tokenize denser, ~3 characters per
    token, so it may be up to ~30 % low there, non-Latin scripts are counted high). Each message
    adds 4 tokens, the example 3 for reply priming. Images: 85 tokens for `detail: "low"`,
    otherwise the high-detail tile rule for a 1280x800 screenshot (1105 tokens), dimensions being
    unknown here. The default `max_example_tokens` keeps a margin for this error.
    """
    total = _REPLY_PRIMING
    for msg in example.get("messages") or []:
        if not isinstance(msg, Mapping):
            continue
        total += _MESSAGE_OVERHEAD + estimate_text_tokens(str(msg.get("role") or ""))
        content = msg.get("content")
        parts = content if isinstance(content, list) else [content]
        for part in parts:
            if isinstance(part, str):
                total += estimate_text_tokens(part)
            elif isinstance(part, Mapping) and part.get("type") == "image_url":
                img = part.get("image_url") if isinstance(part.get("image_url"), Mapping) else {}
                total += _LOW_DETAIL if img.get("detail") == "low" else _tile_tokens(*_VIEWPORT)
            elif isinstance(part, Mapping):
                total += estimate_text_tokens(str(part.get("text") or ""))
    return total


# ----------------------------------------------------------------------------- validation

def _images(content: Any) -> list[Any]:
    parts = content if isinstance(content, list) else []
    return [p for p in parts if isinstance(p, Mapping) and p.get("type") == "image_url"]


def _image_problem(part: Mapping[str, Any]) -> str | None:
    img = part.get("image_url")
    url = img.get("url") if isinstance(img, Mapping) else None
    if not isinstance(url, str) or not url:
        return "image part without a url"
    if url.startswith(("http://", "https://")):
        return None
    if not (m := _DATA_URL.match(url)):
        return "image url must be http(s) or a base64 data URL of image/png, jpeg or webp"
    return "image larger than 10 MB" if len(m.group(2)) * 3 // 4 > OPENAI_MAX_IMAGE_BYTES else None


def example_problems(ex: Any, settings: DatasetFormatSettings) -> list[tuple[str, str]]:
    """(code, message) of each way one example breaks OpenAI's chat fine-tuning rules."""
    msgs = ex.get("messages") if isinstance(ex, Mapping) else None
    if not isinstance(msgs, list) or not msgs:
        return [("no_messages", "example needs a non-empty messages list")]
    out: list[tuple[str, str]] = []
    n_images = 0
    for j, msg in enumerate(msgs):
        role = msg.get("role") if isinstance(msg, Mapping) else None
        if role not in ("system", "user", "assistant"):
            out.append(("bad_role", f"message {j}: role {role!r} is not system/user/assistant"))
            continue
        content, imgs = msg.get("content"), _images(msg.get("content"))
        n_images += len(imgs)
        if role == "assistant" and imgs:
            out.append(("image_in_assistant", f"message {j}: assistant turns cannot hold images"))
        elif role == "assistant" and not (isinstance(content, str) and content.strip()):
            out.append(("bad_assistant_content", f"message {j}: assistant content must be text"))
        elif not isinstance(content, (str, list)):
            out.append(("bad_content", f"message {j}: content must be a string or parts"))
        out.extend(("bad_image", f"message {j}: {p}") for p in map(_image_problem, imgs) if p)
    last = msgs[-1]
    if not (isinstance(last, Mapping) and last.get("role") == "assistant"):
        out.append(("last_not_assistant", "the last message must be the assistant's"))
    if n_images > OPENAI_MAX_IMAGES:
        out.append(("too_many_images", f"{n_images} images, at most {OPENAI_MAX_IMAGES}"))
    if (tokens := estimate_tokens(ex)) > settings.max_example_tokens:
        out.append(("too_many_tokens", f"~{tokens} tokens > {settings.max_example_tokens}"))
    return out


def validate_examples(examples: Sequence[Any], settings: DatasetFormatSettings | None = None,
                      min_examples: int = OPENAI_MIN_EXAMPLES) -> list[dict[str, Any]]:
    """Problems by OpenAI's published chat fine-tuning rules, as
    `{"index": i | None, "code": ..., "message": ...}` (index None: the whole dataset).
    An empty list means the dataset passes."""
    s = settings or DatasetFormatSettings()
    problems = [{"index": i, "code": code, "message": msg}
                for i, ex in enumerate(examples) for code, msg in example_problems(ex, s)]
    if (n := len(examples)) < min_examples:
        problems.append({"index": None, "code": "too_few_examples",
                         "message": f"{n} examples, at least {min_examples}"})
    return problems


# ----------------------------------------------------------------------------- stats

def example_summary(ex: Mapping[str, Any]) -> tuple[int, int, str]:
    """(estimated tokens, images, action) of one example: all `dataset_stats` counts of it, so a
    build can summarise examples where they are made and never hold them together."""
    msgs = ex.get("messages") or []
    images = sum(len(_images(m.get("content"))) for m in msgs if isinstance(m, Mapping))
    try:
        action = str(json.loads(msgs[-1]["content"]).get("action"))
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        action = "unparsed"
    return estimate_tokens(ex), images, action


class StatsAccumulator:
    """`dataset_stats` fed one `example_summary` at a time (tokens kept as 4-byte ints for p95)."""

    def __init__(self) -> None:
        self.actions: Counter[str] = Counter()
        self.tokens = array("l")
        self.images_total = self.with_images = self.images_max = 0

    def add(self, summary: tuple[int, int, str]) -> None:
        tokens, images, action = summary
        self.tokens.append(tokens)
        self.actions[action] += 1
        self.images_total += images
        self.with_images += bool(images)
        self.images_max = max(self.images_max, images)

    def result(self) -> dict[str, Any]:
        ordered_tokens = sorted(self.tokens)
        n = len(ordered_tokens)
        token_stats = {"min": 0, "mean": 0.0, "max": 0, "p95": 0, "total": 0} if not n else {
            "min": ordered_tokens[0], "mean": sum(ordered_tokens) / n, "max": ordered_tokens[-1],
            "p95": ordered_tokens[max(math.ceil(0.95 * n) - 1, 0)], "total": sum(ordered_tokens)}
        return {"examples": n, "action_types": dict(sorted(self.actions.items())), "tokens": token_stats,
                "images": {"total": self.images_total, "examples_with_images": self.with_images,
                           "max_per_example": self.images_max}}


def dataset_stats(examples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Counts, action-type distribution, token stats (min/mean/max/p95 nearest rank, total)
    and image counts of a list of examples."""
    acc = StatsAccumulator()
    for ex in examples:
        acc.add(example_summary(ex))
    return acc.result()
