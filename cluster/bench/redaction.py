"""`tracemill bench redaction`: the worst time of every regex that reads client text, on
hostile strings of 256 KiB (the largest string an event may carry: a DOM snapshot).

Hostile strings are long runs (spaces, tabs, digits, separators, quotes), short units repeated
("1 ", "a.", "[value=", "passw") and keywords followed by filler ("phone" + spaces, the input
that made the context phone pattern quadratic), each ending in a near miss. Every pattern runs
to exhaustion (finditer) on each; the figure per pattern is its worst string. The goal is under
50 ms each. Times are the CPU time of the benchmark's thread (time.thread_time), so that other
work on a shared machine does not show up as a slow pattern; the machine's load is recorded.

The baseline, in the same run: the patterns as they were before issue 13's fix (OLD_PATTERNS,
kept here only), on their worst string found at 512 characters, doubled until one run takes a
quarter of a second (so the run stays short), the new pattern timed on that same string, and
the old time extrapolated to 256 KiB by the growth measured over the last doubling.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from actors.context import scoring, vocabulary
from actors.ingest import events as ingest_events
from actors.privacy import fields, patterns, redact, selectors
from actors.privacy.redact import Redactor
from actors.training.dataset import formats
from cluster.results import write_result

__all__ = ["BUILTIN_LABELS", "OLD_PATTERNS", "add_arguments", "current", "hostile", "hostile_one",
           "old_regex", "run"]

SIZE = 256 * 1024
SCOUT = 8 * 1024  # every hostile string is tried at this size first, the slowest at SIZE
GOAL_MS = 50.0

# The built-in detectors in patterns.BUILTIN's order, named for the table.
BUILTIN_LABELS = ("JWT", "SECRET.pem", "SECRET.prefixed", "SECRET.bearer", "SECRET.key_value",
                  "EMAIL", "IBAN", "CARD", "SSN", "SSN.context", "IP.v4", "IP.v6", "PHONE.intl",
                  "PHONE.nanp", "PHONE.national", "PHONE.context")

# PRE-FIX PATTERNS (before issue 13): the baseline only; nothing else may use them.
_OLD_KEY_VALUE_GATE = (r"(?i:(?:pass[\w-]*|pwd|key|secret|token|auth|credentials?|id|jwt)"
                       r"[\"']?[ \t]*[:=])")
OLD_PATTERNS: dict[str, tuple[str, int]] = {
    "privacy.SECRET.bearer": (
        r"(?i)(?<![a-z])(?:bearer|auth(?:orization)?[\"']?\s*[:=]\s*[\"']?(?P<scheme>basic|digest))"
        r"\s++(?P<v>[A-Za-z0-9._~+/-]{12,}+=*+)", 0),
    "privacy.SECRET.key_value": (
        r"(?i)(?<![a-z0-9])(?P<k>passw(?:or)?d(?:[_-]?[a-z]+)?|pwd|api[_-]?key|apikey|"
        r"access[_-]?key|secret(?:[_-]?key)?|token|auth|credentials?|session[_-]?id|sid|jwt)"
        r"[\"']?[ \t]*(?P<sep>[:=])[ \t]*(?:\"(?P<dq>[^\"\n]{1,256})\"|'(?P<sq>[^'\n]{1,256})'"
        r"|(?P<bare>[^\s\"'&,;<>]{1,256}+))", 0),
    "privacy.SECRET.key_value.gate": (_OLD_KEY_VALUE_GATE, 0),
    "privacy.SSN.context": (
        r"(?i)(?<![a-z])(?:ssn|social\s+security(?:\s+(?:number|no\.?))?)\s*[:#=]?\s*"
        r"(?P<v>(?!000|666|9)\d{3}(?P<s>[- ]?)(?!00)\d\d(?P=s)(?!0000)\d{4})(?!\d)", 0),
    "privacy.PHONE.context": (
        r"(?i)(?<![a-z])(?:tel(?:ephone)?|phone|mobile|cell|fax|whatsapp|sms|call(?:\s+(?:me|us))?"
        r"(?:\s+at)?)(?:\s*(?:no\.?|number|#))?\s*[:=]?\s*(?P<v>\+?\(?\d[\d ().-]{5,20}+)", 0),
    "privacy.scanner_gate": ("", 0),  # the union of the gates with the old key/value gate: below
    "privacy.css_value": (r"""(\[value\s*[~|^$*]?=\s*)(["']?)(.*?)\2(?=\s*\])""", 0),
    "context.price": (r"[$€£¥]\s?\d[\d.,]*|\d[\d.,]*\s?(€|£|\$|usd|eur|gbp)\b", re.IGNORECASE),
}


_OLD_GATES = {"SECRET.bearer": r"(?i:bearer|basic|digest)", "SECRET.key_value": _OLD_KEY_VALUE_GATE,
              "SSN.context": r"(?i:ssn|social)", "PHONE.national": r"0\d{1,4}\)?[ .-]\d\d",
              "PHONE.context": r"(?i:tel|phone|mobile|cell|fax|whatsapp|sms|call)"}


def _old_scanner_gate() -> str:
    gates = [_OLD_GATES.get(label, d.gate.pattern) for label, d in zip(BUILTIN_LABELS, patterns.BUILTIN)
             if d.gate is not None]
    return "|".join(f"(?:{g})" for g in gates)


def old_regex(name: str) -> re.Pattern[str]:
    pattern, flags = OLD_PATTERNS[name]
    return re.compile(pattern or _old_scanner_gate(), flags)


Work = Callable[[str], object]


def _exhaust(regex: re.Pattern[str]) -> Work:
    return lambda s: sum(1 for _ in regex.finditer(s))


def current() -> dict[str, Work]:
    """Every regex that reads client text (or a selector, URL or snapshot made of it), each as
    the work of finding all its matches in a string, plus the whole redactor on it."""
    if len(BUILTIN_LABELS) != len(patterns.BUILTIN) or any(
            not label.startswith(d.name) for label, d in zip(BUILTIN_LABELS, patterns.BUILTIN)):
        raise RuntimeError("BUILTIN_LABELS no longer names patterns.BUILTIN in order")
    regexes: dict[str, re.Pattern[str]] = {}
    for label, det in zip(BUILTIN_LABELS, patterns.BUILTIN):
        regexes[f"privacy.{label}"] = det.regex
        if det.gate is not None:
            regexes[f"privacy.{label}.gate"] = det.gate
    gate = patterns.Scanner(patterns.BUILTIN)._gate
    assert gate is not None
    for module, names in ((patterns, ("_NON_DIGIT", "_PLACEHOLDER", "_PASSWORD_KEY", "_TRIGGERS")),
                          (redact, ("_MARKUP", "_ATTR")),
                          (selectors, ("_CSS_VALUE_AT",)),
                          (fields, ("_CAMEL", "_NON_WORD")),
                          (vocabulary, ("_ADD_TO_CART", "_CHECKOUT", "_PAYMENT", "_LOGIN",
                                        "_COMPARE", "_DEAL")),
                          (scoring, ("_CSS_ID", "_GENERATED")),
                          (ingest_events, ("_RFC3339",)),
                          (formats, ("_CSS_ID", "_DATA_URL"))):
        short = module.__name__.rsplit(".", 1)[-1]
        # (the CSS value pattern kept its name when it moved out of redact.py)
        prefix = "context" if module in (vocabulary, scoring) else "redact" if module is selectors else short
        for name in names:
            regexes[f"{prefix}.{name.strip('_').lower()}"] = getattr(module, name)
    regexes["context.price"] = vocabulary._PRICE
    for name, rx in vocabulary._URLS.items():
        regexes[f"context.url_{name}"] = rx
    work: dict[str, Work] = {name: _exhaust(rx) for name, rx in regexes.items()}
    # These three are only ever used to rewrite or split a string: timed as that, in C, rather
    # than as a Python loop over a match at every character.
    work["patterns.non_digit"] = lambda s: patterns._NON_DIGIT.sub("", s)
    work["fields.camel"] = lambda s: fields._CAMEL.sub("_", s)
    work["fields.non_word"] = fields._NON_WORD.split
    # The union of the gates is tried only on strings of up to 4 KiB (patterns.Scanner.scan).
    work["privacy.scanner_gate"] = lambda s: gate.search(s[:patterns._UNION_MAX_CHARS])
    work["privacy.css_value"] = selectors.css_values
    redactor = Redactor()
    work["Redactor.text"] = redactor.text
    work["Redactor.html"] = redactor.html
    work["Redactor.selector(password)"] = lambda s: redactor.element(
        {"tag": "input", "attributes": {"type": "password"}, "selectors": [{"kind": "css", "value": s}]})
    return work


# ----------------------------------------------------------------------------- hostile strings

_RUNS = (" ", "\t", "\n", "1", "0", "9", "a", "A", "f", "-", ".", ",", ":", "=", '"', "'", "[", "]",
         "<", "@", "%", "$", "_", "+", "(", "/", "#")
_UNITS = ("1 ", "1-", "1.", "1,", "12 ", "12-", "0 1", "1 1 ", "a.", "a-", "a:", "a@", "0:", "f:",
          "::", "+1", "+1 ", "(0", "0(", "ey", "eyJ", "aB1", "A1", "AB12 ", "1a", "a1", "1.1.",
          "255.", "<a", "<a ", "<a b=", '<a b="', "<!--", "</a", "[value=", '[value="', "[value='",
          "[value= ", "a=", " =", '="', "passw", "pass", "pass_", "password", "_password",
          "phone ", "call ", "ssn ", "social ", "-----BEGIN ", "BEGIN A ", "@a.", "x@a-", ".a",
          "$1", "1$", "1€", "1 usd", "%", "add ", "check", "price ", "__a", "1@", "a\"", "1 )")
_KEYWORDS = ("phone", "call me at", "fax no.", "ssn", "social security number", "bearer",
             "Authorization: ", "password", "passwd_x", "token", "-----BEGIN RSA PRIVATE KEY-----",
             "[value=", '[value="', "<input a", "<!--", "price", "%", "+1", "(0", "ey", "x@",
             "::", "AB12", "555")
_FILLERS = (" ", "\t", "\n", "1", "-", ".", ":", '"', "a", "1 ")


def _specs() -> Iterator[tuple[str, str, str]]:
    """(description, prefix, unit repeated after it) of each hostile string."""
    for unit in _RUNS + _UNITS:
        yield f"{unit!r} * n", "", unit
    for kw in _KEYWORDS:
        for filler in _FILLERS:
            yield f"{kw!r} + {filler!r} * n", kw, filler
            yield f"{kw + filler * 3!r} * n", "", kw + filler * 3


def _build(prefix: str, unit: str, size: int) -> str:
    room = size - len(prefix) - 1
    return prefix + (unit * (room // len(unit) + 1))[:room] + "x"


def hostile(size: int = SIZE) -> Iterator[tuple[str, str]]:
    """(description, string of `size` characters ending in a near miss "x")."""
    for label, prefix, unit in _specs():
        yield label, _build(prefix, unit, size)


def hostile_one(label: str, size: int) -> str:
    return next(_build(p, u, size) for lb, p, u in _specs() if lb == label)


def _time(work: Work, s: str) -> float:
    # CPU time of this thread: on a shared machine wall time adds the wait for a core, which is
    # not the pattern's doing (a regex holds the CPU, and a shard's loop, for its CPU time).
    start = time.thread_time()
    work(s)
    return time.thread_time() - start


def _best_of(work: Work, s: str, repeats: int) -> float:
    return min(_time(work, s) for _ in range(repeats))


def worst_cases(work: dict[str, Work], size: int = SIZE, scout: int = SCOUT,
                finalists: int = 3, repeats: int = 5) -> dict[str, tuple[float, str]]:
    """Per pattern, its slowest hostile string of `size` characters: (seconds, description).

    Every string is tried at `scout` characters; each pattern's `finalists` slowest are then
    timed at `size`, best of `repeats` (a worst case, not a scheduling hiccup of the machine)."""
    tried: dict[str, list[tuple[float, str]]] = {name: [] for name in work}
    for label, s in hostile(min(scout, size)):
        for name, w in work.items():
            tried[name].append((_time(w, s), label))
    worst: dict[str, tuple[float, str]] = {}
    for name, w in work.items():
        for _, label in sorted(tried[name], reverse=True)[:finalists]:
            t = _best_of(w, hostile_one(label, size), repeats)
            if t >= worst.get(name, (-1.0, ""))[0]:
                worst[name] = (t, label)
    return worst


# The input the audit found worst for each old pattern (at a few hundred characters noise can
# hide a quadratic pattern behind a linear one, so the scout alone may miss it).
KNOWN_WORST = {
    "privacy.SECRET.key_value.gate": "'passw' * n", "privacy.scanner_gate": "'passw' * n",
    "privacy.SSN.context": "'ssn' + ' ' * n", "privacy.PHONE.context": "'phone' + ' ' * n",
    "privacy.css_value": "'[value=' + '\\t' * n", "context.price": "'1' * n",
}


def baseline(name: str, new: Work, scout: int = 512, budget_s: float = 0.25) -> dict[str, Any]:
    """The old pattern on its worst string (the audit's, or the slowest two at `scout`
    characters, whichever is slower at twice that), grown until one run takes `budget_s`; the
    new pattern on the same string; the old one extrapolated to SIZE by its measured growth."""
    old = _exhaust(old_regex(name))
    tried = sorted(((_time(old, s), label) for label, s in hostile(scout)), reverse=True)
    candidates = {label for _, label in tried[:2]} | ({KNOWN_WORST[name]} if name in KNOWN_WORST else set())
    label = max(sorted(candidates), key=lambda lb: _time(old, hostile_one(lb, 2 * scout)))
    size, points = scout, []
    while True:
        s = hostile_one(label, size)
        points.append((size, _best_of(old, s, 2)))  # best of two, as the new figures: no hiccups
        if points[-1][1] >= budget_s or size >= SIZE:
            break
        size *= 2
    (n0, t0), (n1, t1) = points[-2] if len(points) > 1 else points[-1], points[-1]
    exponent = math.log(t1 / t0, n1 / n0) if n1 > n0 and t0 > 0 and t1 > t0 else 1.0
    return {"input": label, "chars": n1, "old_ms": t1 * 1000, "new_ms": _best_of(new, s, 3) * 1000,
            "growth_exponent": round(exponent, 2),
            "old_estimated_s_at_256KiB": t1 * (SIZE / n1) ** exponent}


def _duration(seconds: float) -> str:
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:,.0f} {unit}"
    return f"{seconds * 1000:,.0f} ms" if seconds < 1 else f"{seconds:,.1f} s"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size", type=int, default=SIZE, help="characters per hostile string")
    parser.add_argument("--output", type=Path, help="write the figures as JSON (results/redaction.json)")


def run(args: argparse.Namespace) -> int:
    work = current()
    print(f"worst time per pattern on {sum(1 for _ in hostile(16))} hostile strings of {args.size:,} chars;"
          f" goal < {GOAL_MS:.0f} ms", flush=True)
    worst = worst_cases(work, args.size)
    before = {name: baseline(name, work[name]) for name in OLD_PATTERNS}
    rows: dict[str, Any] = {}
    print(f"{'pattern':34} {'after (worst)':>14}  {'before: old → new on the same string':44} input")
    for name, (seconds, label) in sorted(worst.items(), key=lambda kv: -kv[1][0]):
        b = before.get(name)
        was = (f"{b['old_ms']:9.1f} → {b['new_ms']:.2f} ms at {b['chars']:,} chars "
               f"(old ~{_duration(b['old_estimated_s_at_256KiB'])} at 256 KiB)") if b else "unchanged"
        ok = seconds * 1000 < GOAL_MS or name.startswith("Redactor.")
        print(f"{name:34} {seconds * 1000:11.2f} ms{'' if ok else '!'}  {was:44} {label}", flush=True)
        rows[name] = {"worst_ms": round(seconds * 1000, 3), "worst_input": label, "before": b}
    over = [n for n, r in rows.items() if r["worst_ms"] >= GOAL_MS and not n.startswith("Redactor.")]
    print(f"patterns over {GOAL_MS:.0f} ms: {over or 'none'}")
    # The machine's load beside the figures: on a shared machine a worst time includes waiting.
    write_result(args.output, {"benchmark": "redaction", "chars": args.size, "goal_ms": GOAL_MS,
                               "load_average": os.getloadavg(), "patterns": rows, "over_goal": over})
    return 1 if over else 0
