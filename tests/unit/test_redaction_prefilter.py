"""The redaction pre-filter (patterns.may_match): a string it skips matches no built-in regex.

The pre-filter lets most strings of an event (tags, labels, class names, words) skip every
detector; if it ever skipped a string that a pattern matches, personal data would be stored.
So the property is checked on generated strings: random token strings built from what the
patterns look for (and near misses), arbitrary text, and strings generated from each
detector's own regex (every one of those must be looked at).
"""

from __future__ import annotations

import random
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.privacy import patterns
from actors.privacy.redact import ExtraPattern, RedactionSettings, Redactor

_TOKENS = (
    # what the triggers name, whole and in pieces
    "0", "7", "42", "4111", "\u0663", "@", ":", "=", "ey", "eyJhbGciOiJIUzI1NiJ9", ".", "-", "_",
    "bearer", "BeArEr", "bear", "er", "-----BEGIN ", "PRIVATE KEY-----", "sk-", "sk_", "rk_", "ghp_",
    "github_pat_", "xoxb-", "xox", "AKIA", "ASIA", "AIza", "glpat-", "npm_", "AK", "IA",
    # letters, words, spaces and punctuation that no pattern needs
    "a", "Z", "x", "button", "Add to cart", "ABCDEFGHIJKLMNOP", "QRSTUVWXYZabcdefghijklmnopqrstuv",
    " ", "  ", "\t", "\n", "(", ")", "[", "]", "'", '"', ",", ";", "!", "?", "/", "+", "#", "%",
    "&", "~", "\u00e9", "\u017f", "\u212a", "\u0130", "\u00df", "\u4e2d", "\u2014",
)


def _strings(seed: int, count: int, most: int = 10) -> list[str]:
    rnd = random.Random(seed)
    return ["".join(rnd.choice(_TOKENS) for _ in range(rnd.randint(0, most))) for _ in range(count)]


def _matching(s: str) -> list[str]:
    return [d.name for d in patterns.BUILTIN if d.regex.search(s) is not None]


def test_a_skipped_string_matches_no_builtin_regex() -> None:
    skipped = looked = 0
    for s in _strings(15, 40_000):
        if patterns.may_match(s):
            looked += bool(_matching(s))
        else:
            skipped += 1
            assert _matching(s) == [], s
    # The strings exercise both sides, so a pre-filter that skipped too much would show.
    assert skipped > 2_000 and looked > 300, (skipped, looked)


def test_long_letter_runs_are_looked_at_when_a_key_could_hide_in_them() -> None:
    assert patterns.may_match("AKIA" + "ABCDEFGHIJKLMNOP")  # an AWS key id in letters only
    assert patterns.may_match("AIza" + "x" * 35)
    assert not patterns.may_match("checkbox") and not patterns.may_match("Add to cart")
    assert not patterns.may_match("")


@settings(database=None, max_examples=1_500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=60))
def test_arbitrary_text_skipped_matches_nothing(s: str) -> None:
    if not patterns.may_match(s):
        assert _matching(s) == [], s


@settings(database=None, max_examples=1_500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(_TOKENS), max_size=14).map("".join))
def test_token_text_skipped_matches_nothing(s: str) -> None:
    if not patterns.may_match(s):
        assert _matching(s) == [], s


def _from_regex(det: patterns.Detector) -> st.SearchStrategy[str]:
    # Hypothesis's regex strategy does not know possessive quantifiers or conditionals; the
    # same language without them (`*+` as `*`, `(?(s)A|B)` as `(?:A|B)`) is a superset.
    pattern = re.sub(r"([*+?}])\+", r"\1", det.regex.pattern)
    pattern = re.sub(r"\(\?\(\w+\)", "(?:", pattern).replace("(?P=s)", "[ .-]")
    return st.from_regex(re.compile(pattern, det.regex.flags), fullmatch=True)


_SUPERSETS = st.sampled_from(patterns.BUILTIN).flatmap(_from_regex)


@settings(database=None, max_examples=600, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(_SUPERSETS)
def test_strings_a_pattern_could_match_are_looked_at(s: str) -> None:
    if _matching(s):
        assert patterns.may_match(s), s


def test_planted_values_are_all_looked_at_and_still_redacted() -> None:
    planted = ["jane.doe@example.com", "4111 1111 1111 1111", "+44 20 7946 0958", "123-45-6789",
               "DE89370400440532013000", "10.20.30.40", "2001:db8::8a2e:370:7334",
               "password=hunter2", "Bearer abc123def456ghi789", "AKIAIOSFODNN7EXAMPLE",
               "ghp_" + "a" * 36, "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig"]
    redactor = Redactor()
    for value in planted:
        assert patterns.may_match(value), value
        out, report = redactor.text(f"see {value} here")
        assert value not in out and report.total >= 1, value


def test_an_extra_pattern_turns_the_prefilter_off() -> None:
    extra = ExtraPattern(name="CODEWORD", pattern=r"swordfish", placeholder="[CODEWORD]")
    redactor = Redactor(RedactionSettings(extra_patterns=[extra]))
    assert not patterns.may_match("swordfish")  # letters only: the built-ins would skip it
    out, report = redactor.text("swordfish")
    assert out == "[CODEWORD]" and report.counts == {"CODEWORD": 1}
