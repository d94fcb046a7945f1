"""Where a CSS selector spells out an input's value (`input[value="..."]`), in linear time.

A password or card field's selector may carry its value; the redactor replaces just that part
(actors/privacy/redact.py).
"""

from __future__ import annotations

import re

__all__ = ["css_values"]

_CSS_VALUE_AT = re.compile(r"\[value\s*+[~|^$*]?=\s*+")
_CSS_CLOSERS = {'"': re.compile(r'"\s*+\]'), "'": re.compile(r"'\s*+\]"), "": re.compile(r"\]")}


class _FirstAfter:
    """The first match of a regex at or after a position, for positions that only grow: each
    search starts where the last one's answer no longer holds, so all of them scan the text
    about once (a search per position from each of many starts was quadratic)."""

    def __init__(self, regex: re.Pattern[str], text: str) -> None:
        self._regex, self._text = regex, text
        self._from: int | None = None
        self._hit = -1

    def __call__(self, pos: int) -> int:
        """The match's start, or -1 when nothing matches at or after `pos`."""
        if self._from is None or pos < self._from or -1 < self._hit < pos:
            m = self._regex.search(self._text, pos)
            self._from, self._hit = pos, (m.start() if m else -1)
        return self._hit


def css_values(sel: str) -> list[tuple[int, int, int, str]]:
    """(start, value start, value end, quote) of each `[value="..."]` in a CSS selector.

    The same spans as re.finditer with `(\\[value\\s*[~|^$*]?=\\s*)(["']?)(.*?)\\2(?=\\s*\\])`
    (the match ends after the closing quote, or at the value's end unquoted), found in linear
    time: that regex was cubic in a run of spaces and quadratic in repeated "[value=".
    A quoted value ends at the first quote followed by `\\s*]` on its line; otherwise the value,
    opening quote included, runs to the spaces before the first "]" and may not cross a line.
    """
    closer = {q: _FirstAfter(rx, sel) for q, rx in _CSS_CLOSERS.items()}
    newline = _FirstAfter(re.compile("\n"), sel)
    out: list[tuple[int, int, int, str]] = []
    space_start: dict[int, int] = {}  # "]" position -> start of the spaces before it
    pos = 0
    while (m := _CSS_VALUE_AT.search(sel, pos)) is not None:
        v, quote = m.end(), sel[m.end():m.end() + 1]
        nl = newline(v)
        if quote in ('"', "'") and (c := closer[quote](v + 1)) != -1 and (nl == -1 or nl > c):
            out.append((m.start(), v + 1, c, quote))
            pos = c + 1
            continue
        if (b := closer[""](v)) != -1:
            if b not in space_start:
                end = b
                while end > 0 and sel[end - 1].isspace():
                    end -= 1
                space_start[b] = end
            end = max(space_start[b], v)
            if nl == -1 or nl >= end:
                out.append((m.start(), v, end, ""))
                pos = end
                continue
        pos = m.start() + 1
    return out
