"""Detectors of personal data and secrets in free text.

A detector is a compiled regex plus a check (Luhn, mod-97, a real address, a JWT header that
decodes, a plausible digit count) that validates each match and returns the span to replace, so
regexes may be generous while checks stay strict. Precision matters as much as recall: the
output is training data, and a year, price, id or timestamp eaten by a detector is lost signal.
Formats that plain numbers share without context (US numbers split by spaces only, nine bare
digits) are redacted only after a keyword such as "phone" or "SSN". Every quantifier that meets
a run of hostile input (spaces after a keyword, digits, letters after "passw") is possessive or
bounded, and keyword patterns start only at a word's start, so each regex is linear in its input:
one event must not hold a shard. A case-insensitive keyword pattern opens with a lookahead for its
first letters, which re tests an order of magnitude faster than the alternatives themselves.
`tracemill bench redaction` measures the worst case.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import math
import re
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from actors.errors import ConfigError

__all__ = ["BUILTIN", "BUILTIN_NAMES", "PLACEHOLDERS", "Detector", "Scanner", "compile_extra",
           "iban_ok", "looks_random", "luhn_ok", "may_match"]

Span = tuple[int, int]
Counts = tuple[tuple[str, int], ...]  # (type, values found) pairs
Check = Callable[[re.Match[str]], "Span | None"]

_TYPES = ("EMAIL", "PHONE", "CARD", "IBAN", "SSN", "IP", "JWT", "SECRET", "PASSWORD")
PLACEHOLDERS: dict[str, str] = {name: f"[{name}]" for name in _TYPES}
BUILTIN_NAMES = frozenset(PLACEHOLDERS)
_NON_DIGIT = re.compile(r"\D")
_PLACEHOLDER = re.compile(r"\[[A-Z][A-Z0-9_]*\]")


def _value_span(m: re.Match[str]) -> Span:
    # Context detectors ("phone: ...", "token=...") name the part to replace `v`.
    return m.span("v") if "v" in m.re.groupindex else m.span()


@dataclass(frozen=True, slots=True)
class Detector:
    name: str
    placeholder: str
    regex: re.Pattern[str]
    check: Check | None = None
    gate: re.Pattern[str] | None = None  # cheap pre-test: most strings never reach `regex`

    def spans(self, text: str) -> Iterator[Span]:
        if self.gate is not None and self.gate.search(text) is None:
            return
        for m in self.regex.finditer(text):
            span = self.check(m) if self.check is not None else _value_span(m)
            if span is not None and span[0] < span[1]:  # zero-width hits would redact nothing
                yield span



def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        total += (d * 2 - 9 if d > 4 else d * 2) if i % 2 else d
    return total % 10 == 0


def _card(m: re.Match[str]) -> Span | None:
    raw, digits = m.group(), _NON_DIGIT.sub("", m.group())
    groups = re.split(r"[ -]", raw)
    # One separator kind between card-like groups: "10 20 30 40 ..." is a list, not a card.
    # A bare 13-digit run is an EAN-13 barcode far more often than an old 13-digit Visa.
    if len(groups) > 1 and ((" " in raw and "-" in raw) or any(not 3 <= len(g) <= 6 for g in groups)):
        return None
    ok = 13 + (len(groups) == 1) <= len(digits) <= 19 and luhn_ok(digits)
    return m.span() if ok else None


# Country code -> IBAN length (SWIFT registry); an unknown country is not an IBAN.
_IBAN_LENGTHS = {c[:2]: int(c[2:]) for c in re.findall(r"[A-Z]{2}\d\d", (
    "AD24 AE23 AL28 AT20 AZ28 BA20 BE16 BG22 BH22 BR29 BY28 CH21 CR22 CY28 CZ24 DE22 DK18 DO28 "
    "EE20 EG29 ES24 FI18 FO18 FR27 GB22 GE22 GI23 GL18 GR27 GT28 HR21 HU28 IE22 IL23 IQ23 IS26 "
    "IT27 JO30 KW30 KZ20 LB28 LC32 LI21 LT20 LU20 LV21 MC27 MD24 ME22 MK19 MR27 MT31 MU30 NL18 "
    "NO15 PK24 PL28 PS29 PT25 QA29 RO24 RS22 SA24 SC31 SE24 SI19 SK24 SM27 ST25 SV28 TL23 TN24 "
    "TR26 UA29 VA22 VG24 XK20"))}


def iban_ok(compact: str) -> bool:
    s = compact.upper()
    if _IBAN_LENGTHS.get(s[:2]) != len(s) or not s[2:4].isdigit() or not s.isalnum():
        return False
    return int("".join(str(int(ch, 36)) for ch in s[4:] + s[:4])) % 97 == 1


def _iban(m: re.Match[str]) -> Span | None:
    # The regex runs on into the following words; cut at the country's length.
    length = _IBAN_LENGTHS.get(m.group()[:2].upper(), 0)
    cut = re.match(rf"(?: ?[A-Za-z0-9]){{{length}}}(?![A-Za-z0-9])", m.group()) if length else None
    ok = cut is not None and iban_ok(cut.group().replace(" ", ""))
    return (m.start(), m.start() + cut.end()) if ok else None


def _digit_count(lo: int, hi: int) -> Check:
    def check(m: re.Match[str]) -> Span | None:
        start, end = _value_span(m)
        value = m.string[start:end].rstrip(" ().-")
        n = len(_NON_DIGIT.sub("", value))
        return (start, start + len(value)) if lo <= n <= hi else None

    return check


def _ipv4(m: re.Match[str]) -> Span | None:  # "Section 2.1.1.4" and "1.2.3.4" are not hosts
    return m.span() if any(len(octet) > 1 for octet in m.group().split(".")) else None


def _ipv6(m: re.Match[str]) -> Span | None:
    candidate = m.group().split("%", 1)[0]
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return None
    # "::1" and "fe80::1" say nothing about a person and are common in docs and code.
    return m.span() if len([g for g in re.split(r"[:.]", candidate) if g]) >= 3 else None


def _jwt(m: re.Match[str]) -> Span | None:
    head = m.group("h")
    try:
        header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (ValueError, binascii.Error):
        return None
    return m.span() if isinstance(header, dict) and "alg" in header else None


def looks_random(s: str, min_len: int = 16) -> bool:
    """Long, letters and digits mixed, ~3+ bits of entropy per char: a token, not a word."""
    if len(s) < min_len or s.isalpha() or s.isdigit() or not any(c.isdigit() for c in s):
        return False
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in Counter(s).values()) >= 3.0


def _prefixed(m: re.Match[str]) -> Span | None:
    s = m.group()
    if s.startswith("sk-"):  # "sk-" also starts CSS class names such as sk-fading-circle
        classes = (str.isupper, str.islower, str.isdigit)
        return m.span() if all(any(f(c) for c in s[3:]) for f in classes) else None
    return m.span() if not s.startswith("xox") or any(c.isdigit() for c in s) else None


_PASSWORD_KEY = re.compile(r"(?i)passw(?:or)?d|pwd")


def _key_value(m: re.Match[str]) -> Span | None:
    group = next(g for g in ("dq", "sq", "bare") if m.group(g) is not None)
    value = m.group(group)
    if _PLACEHOLDER.fullmatch(value):
        return None  # already redacted: redaction is idempotent
    if _PASSWORD_KEY.match(m.group("k")):
        # "password=x" or "password": "x" is a password; "Password: Forgot?" is a label.
        ok = m.group("sep") == "=" or group != "bare" or not value.rstrip("?!.,:;)").isalpha()
    else:
        ok = looks_random(value)
    return m.span(group) if ok else None


def _bearer(m: re.Match[str]) -> Span | None:  # "Bearer authentication" is prose
    return m.span("v") if m.group("scheme") or not m.group("v").isalpha() else None


_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = rf"{_OCTET}(?:\.{_OCTET}){{3}}"
_TOKEN_CHARS = r"[A-Za-z0-9_-]"


def _d(name: str, pattern: str, check: Check | None, gate: str) -> Detector:
    return Detector(name, PLACEHOLDERS[name], re.compile(pattern), check, re.compile(gate))


BUILTIN: tuple[Detector, ...] = (
    _d("JWT", rf"(?<![\w-])(?P<h>ey{_TOKEN_CHARS}{{8,}}+)\.{_TOKEN_CHARS}{{4,}}+\.{_TOKEN_CHARS}*+", _jwt,
       r"ey[\w-]{8}"),
    # Body as base64 plus PEM header lines; no lazy scan for an END that may never come.
    _d("SECRET", r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----(?:[\w+/=\s:,.]|-(?!----))*+"
       r"(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----)?", None, "PRIVATE KEY"),
    _d("SECRET", r"(?<![\w-])(?:sk-[A-Za-z0-9_-]{20,}+|[sr]k_(?:live|test)_[A-Za-z0-9]{16,}+"
       r"|gh[pousr]_[A-Za-z0-9]{36,}+|github_pat_\w{22,}+|xox[abprs]-[A-Za-z0-9-]{10,}+"
       r"|(?:AKIA|ASIA)[A-Z0-9]{16}|AIza[\w-]{35}|glpat-[\w-]{20,}+|npm_[A-Za-z0-9]{36})(?![\w-])",
       _prefixed, r"sk-|[sr]k_|gh[pousr]_|github_pat_|xox|AKIA|ASIA|AIza|glpat-|npm_"),
    _d("SECRET", r"(?i)(?=[ba])(?<![a-z])(?:bearer|auth(?:orization)?[\"']?\s*+[:=]\s*+[\"']?(?P<scheme>basic|digest))"
       r"\s++(?P<v>[A-Za-z0-9._~+/-]{12,}+=*+)", _bearer, r"(?i:(?=[bd])(?:bearer|basic|digest))"),
    _d("SECRET", r"(?i)(?=[pastcj])(?<![a-z0-9])(?P<k>passw(?:or)?d(?:[_-]?[a-z]++)?|pwd|api[_-]?key|apikey|"
       r"access[_-]?key|secret(?:[_-]?key)?|token|auth|credentials?|session[_-]?id|sid|jwt)"
       r"[\"']?[ \t]*+(?P<sep>[:=])[ \t]*+(?:\"(?P<dq>[^\"\n]{1,256})\"|'(?P<sq>[^'\n]{1,256})'"
       r"|(?P<bare>[^\s\"'&,;<>]{1,256}+))", _key_value,
       # The gate's password key as the detector's own (a scan from every "pass" to the end of
       # "passpasspass..." was quadratic); the other keys all end in one of the gate's words.
       r"(?i:(?=[pkstacij])(?:(?<![a-z0-9])passw(?:or)?d(?:[_-]?[a-z]++)?|pwd|key|secret|token|auth|credentials?"
       r"|id|jwt)[\"']?[ \t]*+[:=])"),
    _d("EMAIL", r"(?<![\w.%+-])\w[\w.%+-]{0,63}+@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
       r"(?!(?:png|jpe?g|gif|svg|webp|avif|ico|css|js|json|map)(?![\w-]))[A-Za-z]{2,24}(?![\w-])",
       None, "@"),
    _d("IBAN", r"(?<![A-Za-z0-9])[A-Za-z]{2}\d\d(?: ?[A-Za-z0-9]){11,30}+", _iban, r"[A-Za-z]{2}\d\d"),
    # Issuer digit 2-6 (Mastercard, Amex/Diners/JCB, Visa, Discover/UnionPay/Maestro) keeps
    # millisecond timestamps (1...) and most ids out before Luhn even runs.
    _d("CARD", r"(?<![\w+.-])[2-6](?:[ -]?\d){12,18}(?![\w-])", _card, r"\d(?:[ -]?\d){12}"),
    _d("SSN", r"(?<![\w-])(?!000|666|9)\d{3}-(?!00)\d\d-(?!0000)\d{4}(?![\w-])", None, r"\d-\d\d-\d"),
    # Possessive spaces: `\s*[:#=]?\s*` split a run of spaces every possible way (quadratic).
    _d("SSN", r"(?i)(?=s)(?<![a-z])(?:ssn|social\s++security(?:\s++(?:number|no\.?))?)\s*+[:#=]?\s*+"
       r"(?P<v>(?!000|666|9)\d{3}(?P<s>[- ]?)(?!00)\d\d(?P=s)(?!0000)\d{4})(?!\d)", None, r"(?i:(?=s)(?:ssn|social))"),
    # Not after "Chrome/" or a word character: "Chrome/120.0.0.0" is a version, not an address.
    _d("IP", rf"(?<![\w.])(?<![A-Za-z]/){_IPV4}(?!\w|\.\d)", _ipv4, r"\d\.\d{1,3}\.\d{1,3}\.\d"),
    _d("IP", rf"(?<![\w:.])(?:[0-9A-Fa-f]{{0,4}}+:){{2,7}}+(?:{_IPV4}|[0-9A-Fa-f]{{1,4}}+)?"
       r"(?:%[\w.]+)?(?![\w:])", _ipv6, r":[0-9A-Fa-f]{0,4}:"),
    _d("PHONE", r"(?<![\w+])\+[1-9]\d{0,3}+(?:[ .-]?+(?:\(\d{1,4}+\)|\d{1,6}+)){1,6}+(?!\w|[.-]\d)",
       _digit_count(8, 15), r"\+[1-9]"),
    # North American: 3-3-4 with "-" or "." (the same one twice) or a bracketed area code.
    _d("PHONE", r"(?<![\w+.-])(?:1[ .-]?)?(?:\([2-9]\d\d\) ?|[2-9]\d\d(?P<s>[.-]))[2-9]\d\d"
       r"(?(s)(?P=s)|[ .-])\d{4}(?![\w-]|\.\d)", None, r"\d{3}(?:\) ?|[.-])\d{3}[ .-]\d"),
    # National with a trunk 0 (UK, FR, DE, NL, IT ...): one separator kind, 10-12 digits,
    # which leaves dates such as 05.11.2026 (8 digits) alone.
    _d("PHONE", r"(?<![\w+.,/:-])(?:0\d{1,4}+|\(0\d{1,4}+\))(?P<s>[ .-])\d{2,8}+(?:(?P=s)\d{2,8}+){0,4}+"
       r"(?![\w]|[.,:/-]\d)", _digit_count(10, 12), r"0\d{1,4}+\)?[ .-]\d\d"),
    _d("PHONE", r"(?i)(?=[tpmcfws])(?<![a-z])(?:tel(?:ephone)?|phone|mobile|cell|fax|whatsapp|sms|call(?:\s++(?:me|us))?"
       r"(?:\s++at)?)(?:\s*+(?:no\.?|number|#))?\s*+[:=]?\s*+(?P<v>\+?\(?\d[\d ().-]{5,20}+)",
       _digit_count(7, 15), r"(?i:(?=[tpmcfws])(?:tel|phone|mobile|cell|fax|whatsapp|sms|call))"),
)

# The pre-filter: what every built-in detector's regex needs in a string before it can match
# at all, one alternative per need. A string with none of them skips every regex (and the
# scanner's memo). Derived from BUILTIN above; keep the two in step (a unit test generates
# strings and checks that a skipped one matches no built-in regex):
#   a digit          IBAN, CARD, SSN (both), IPv4, PHONE (all four)
#   "@"              EMAIL
#   ":" or "="       SECRET.key_value, the auth branch of SECRET.bearer, IPv6 (two colons)
#   "ey" at a start  JWT (its own lookbehind)
#   "bearer" (i)     the bearer branch of SECRET.bearer
#   "-----BEGIN"     SECRET.pem
#   the prefixes     SECRET.prefixed, its own alternatives ("github_pat_" starts with no "gh?_")
_TRIGGERS = re.compile(
    r"[\d@:=]|(?<![\w-])ey|(?i:bearer)|-----BEGIN |sk-|[sr]k_|gh[pousr]_|github_pat_|xox[abprs]-"
    r"|AKIA|ASIA|AIza|glpat-|npm_"
)
# A single run of letters (no space, digit or mark) can only be an AKIA/ASIA key (20 chars)
# or a Google key (39): shorter ones skip even the regex above, at the cost of str.isalpha.
_LETTERS_ONLY_MIN = 20


def may_match(text: str) -> bool:
    """False when no built-in detector's regex can match `text` (the pre-filter); True means
    "look", not "found"."""
    if len(text) < _LETTERS_ONLY_MIN and text.isalpha():
        return False
    return _TRIGGERS.search(text) is not None


_NAME = re.compile(r"[A-Z][A-Z0-9_]{0,31}")
_PROBE = "a A 0 _-.@:/\n\t[]"  # a zero-width regex matches somewhere in here


def compile_extra(name: str, pattern: str, placeholder: str) -> Detector:
    """A configured extra detector; ConfigError when it could never redact sensibly."""
    if not _NAME.fullmatch(name):
        raise ConfigError(f"extra pattern name {name!r} must be UPPER_SNAKE_CASE, at most 32 chars")
    if name in BUILTIN_NAMES:
        raise ConfigError(f"extra pattern name {name!r} is a built-in type; choose another name")
    if not placeholder.strip():
        raise ConfigError(f"extra pattern {name}: the placeholder must not be blank")
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"extra pattern {name}: the regex does not compile: {exc}") from None
    if regex.search("") is not None or any(m.start() == m.end() for m in regex.finditer(_PROBE)):
        raise ConfigError(f"extra pattern {name}: the regex matches the empty string, so it "
                          "would redact nothing; make it require at least one character")
    return Detector(name, placeholder, regex)


_UNION_MAX_CHARS = 4096
# Memo bounds: strings longer than this are rarely repeated; the table is cleared when full.
_MEMO_MAX_CHARS = 512
_MEMO_ENTRIES = 20_000


class Scanner:
    """Detectors in priority order (on overlap the earlier wins: a JWT after "token=" counts as
    JWT, a card number is not also a phone). One union of their gates rules most strings (class
    names, prices, labels) out with a single search instead of one per detector."""

    def __init__(self, detectors: Iterable[Detector]) -> None:
        self.detectors = tuple(detectors)
        gated = [d.gate.pattern for d in self.detectors if d.gate is not None]
        self._gate = re.compile("|".join(f"(?:{g})" for g in gated)) if gated else None
        self._ungated = tuple(d for d in self.detectors if d.gate is None)
        # The pre-filter knows the built-ins only: a configured extra pattern turns it off.
        builtin = {id(d) for d in BUILTIN}
        self._prefilter = all(id(d) in builtin for d in self.detectors)
        self._memo: dict[str, tuple[str, Counts]] = {}

    def scan(self, text: str) -> list[tuple[int, int, Detector]]:
        """Non-overlapping hits sorted by position; on overlap the earlier detector wins."""
        if self._prefilter and not may_match(text):
            return []
        detectors = self.detectors
        # The union saves a search per detector on short strings; on long ones it costs what
        # the detectors' own gates cost together (all its branches at every position).
        if self._gate is not None and len(text) <= _UNION_MAX_CHARS and self._gate.search(text) is None:
            detectors = self._ungated
        starts: list[int] = []
        hits: list[tuple[int, int, Detector]] = []
        for det in detectors:
            for start, end in det.spans(text):
                i = bisect_left(starts, start)
                if (i and hits[i - 1][1] > start) or (i < len(hits) and hits[i][0] < end):
                    continue
                starts.insert(i, start)
                hits.insert(i, (start, end, det))
        return hits

    def redact(self, text: str) -> tuple[str, Counts]:
        """`text` with every hit replaced by its placeholder, and the hits counted by type
        ((type, n) pairs, empty when nothing was found: the common case costs no Counter).

        Short strings repeat a lot within and across sessions (selectors, labels, URLs), so
        their answers are remembered; the cache holds redacted text only beside its input."""
        if len(text) > _MEMO_MAX_CHARS:
            return self._redact(text)
        found = self._memo.get(text)
        if found is None:
            found = self._redact(text)
            if len(self._memo) >= _MEMO_ENTRIES:
                self._memo.clear()  # cheaper than LRU bookkeeping; refills within a batch
            self._memo[text] = found
        return found

    def _redact(self, text: str) -> tuple[str, Counts]:
        hits = self.scan(text)
        if not hits:
            return text, ()
        parts: list[str] = []
        counts: Counter[str] = Counter()
        pos = 0
        for start, end, det in hits:
            parts += (text[pos:start], det.placeholder)
            counts[det.name] += 1
            pos = end
        return "".join(parts) + text[pos:], tuple(counts.items())
