"""Redaction of text, URLs, Elements, events and DOM snapshots (PROTOCOL.md v1 shapes).

* Form fields, JSON keys and query parameters are classified by ``actors.privacy.fields``. A
  PASSWORD value is removed, never replaced; a field whose type says CARD, EMAIL or PHONE is
  replaced whole (people type "555 123 4567" into forms, which the text detectors leave alone
  elsewhere on purpose); a field only named so goes whole when its value has the shape.
* URLs keep scheme, host (it names the site, not the person), port and the shape of path, query
  and fragment; detectors see percent-decoded parts, and only changed parts are re-encoded.
* Keypresses stay (they are the action learned), except single characters typed into PASSWORD,
  CARD or SECRET fields, which would spell the value out one event at a time.
* Nothing mutates its input: every method returns a redacted copy and a RedactionReport.
"""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, quote_plus, unquote, unquote_plus, urlsplit, urlunsplit

from pydantic import ValidationError
from pydantic_core import to_json

from actors.errors import ConfigError, details_from_validation_error
from actors.privacy.fields import FieldKind, field_kind, has_shape, name_kind
from actors.privacy.patterns import BUILTIN, PLACEHOLDERS, Scanner, compile_extra
from actors.privacy.selectors import css_values as _css_values
from configs.processing import ExtraPattern, RedactionSettings

__all__ = ["ExtraPattern", "FieldKind", "RedactionReport", "RedactionSettings", "Redactor",
           "field_kind", "name_kind"]

@dataclass
class RedactionReport:
    """How many values of each type were redacted; never the values themselves."""

    counts: dict[str, int] = field(default_factory=dict)  # type -> number of values

    def add(self, kind: str, n: int = 1) -> None:
        if n:
            self.counts[kind] = self.counts.get(kind, 0) + n

    def merge(self, other: RedactionReport) -> RedactionReport:
        """Add `other`'s counts into this report and return it (so merges chain)."""
        for kind, n in other.counts.items():
            self.add(kind, n)
        return self

    @property
    def total(self) -> int:
        return sum(self.counts.values())


# Exact types first: isinstance against the Mapping ABC costs more than the copy of a number.
_SCALARS = frozenset({str, int, float, bool, type(None)})


def _copy_json(value: Any) -> Any:
    """A deep copy of decoded JSON; copy.deepcopy's memo bookkeeping cost more than redaction."""
    if type(value) in _SCALARS:
        return value
    if isinstance(value, dict):
        return {k: _copy_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_copy_json(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _copy_json(v) for k, v in value.items()}
    return value  # str, numbers, booleans, None: immutable


# The memos of elements (Redactor.element_json) and URLs: entries up to this size, this many.
_ELEMENT_MEMO_BYTES = 4096
_ELEMENT_MEMO_ENTRIES = 4096
_URL_MEMO_CHARS = 2048
_MEMO_ENTRIES = 4096

_MARKUP = re.compile(
    r"<!--(?P<comment>.*?)(?:-->|\Z)|<![^>]*+>?|</[A-Za-z][^>]*+>?"
    r"|<(?P<tag>[A-Za-z][A-Za-z0-9:-]*)(?P<attrs>(?:\s+[^\s\"'<>/=]+(?:\s*=\s*(?:\"[^\"]*\"|'[^']*'"
    r"|[^\s\"'=<>`]+))?)*+)\s*/?>",
    re.DOTALL,
)
_ATTR = re.compile(
    r"(?P<name>[^\s\"'<>/=]+)(?:\s*=\s*(?:\"(?P<dq>[^\"]*)\"|'(?P<sq>[^']*)'|(?P<uq>[^\s\"'=<>`]+)))?"
)
_URL_ATTRS = frozenset({"href", "src", "action", "formaction", "cite", "poster", "ping",
                        "background", "longdesc", "data-href", "data-src", "data-url"})
_URL_KEYS = frozenset({"url", "href", "src", "referrer", "action", "link"})
_VERBATIM_EVENT = frozenset({"seq", "type", "ts", "x", "y", "button", "state", "transition",
                             "trigger", "screenshot_id", "masked", "modifiers"})
_SAFE = "[]@:!$'()*,;="  # kept literal when re-encoding: placeholders stay readable
_PLACEHOLDER = re.compile(r"\[[A-Z][A-Z0-9_]*\]")


def _attr_raw(m: re.Match[str]) -> str | None:
    return next((m.group(g) for g in ("dq", "sq", "uq") if m.group(g) is not None), None)


def _settings(settings: RedactionSettings | Mapping[str, Any] | None) -> RedactionSettings:
    if settings is None or isinstance(settings, RedactionSettings):
        return settings or RedactionSettings()
    try:
        return RedactionSettings.model_validate(settings)
    except ValidationError as exc:
        details = details_from_validation_error(exc, "redaction")
        problems = "; ".join(f"{d['field']}: {d['error']}" for d in details)
        raise ConfigError(f"invalid redaction settings: {problems}", details) from None


class Redactor:
    """Redacts personal data and secrets; see the module docstring for the rules."""

    def __init__(self, settings: RedactionSettings | Mapping[str, Any] | None = None) -> None:
        self.settings = _settings(settings)
        names = [p.name for p in self.settings.extra_patterns]
        if len(set(names)) != len(names):
            raise ConfigError("extra pattern names must be unique")
        extras = tuple(compile_extra(p.name, p.pattern, p.placeholder)
                       for p in self.settings.extra_patterns)
        self._scanner = Scanner(BUILTIN + extras)  # built-ins first: they win overlaps
        self._elements: dict[bytes, tuple[str, tuple[tuple[str, int], ...]]] = {}
        self._urls: dict[str, tuple[str, tuple[tuple[str, int], ...]]] = {}

    def text(self, s: str) -> tuple[str, RedactionReport]:
        return self._run(self._text, s)

    def url(self, u: str) -> tuple[str, RedactionReport]:
        return self._run(self._url, u)

    def html(self, doc: str) -> tuple[str, RedactionReport]:
        return self._run(self._html, doc)

    def element(self, d: Mapping[str, Any]) -> tuple[dict[str, Any], RedactionReport]:
        return self._run(self._element, d)

    def event(self, d: Mapping[str, Any]) -> tuple[dict[str, Any], RedactionReport]:
        return self._run(self._event, d)

    def event_without_target(self, ev: Mapping[str, Any], target: Mapping[str, Any]) -> tuple[dict[str, Any], RedactionReport]:
        """`event` for an event whose target is kept apart (and redacted by `element_json`): the
        target still decides how the event's value and keys are judged."""
        report = RedactionReport()
        return self._event(ev, report, target), report

    def element_json(self, el: Mapping[str, Any]) -> tuple[str, RedactionReport]:
        """An Element redacted (as `element`) and encoded as JSON text. Elements repeat (every
        input event into a field carries the field), so the answers for small ones are
        remembered by their own JSON text, beside which only the redacted text is kept."""
        raw = to_json(el)
        if len(raw) > _ELEMENT_MEMO_BYTES:
            red, report = self.element(el)
            return to_json(red).decode(), report
        found = self._elements.get(raw)
        if found is None:
            red, report = self.element(el)
            found = (to_json(red).decode(), tuple(report.counts.items()))
            if len(self._elements) >= _ELEMENT_MEMO_ENTRIES:
                self._elements.clear()  # as the scanner's memo: cheaper than LRU bookkeeping
            self._elements[raw] = found
        return found[0], RedactionReport(dict(found[1]))

    def json(self, value: Any) -> tuple[Any, RedactionReport]:
        """Any decoded JSON (session metadata, client info): keys classify values as in events."""
        return self._run(self._json, value)

    def sensitive_boxes(self, event: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Boxes (viewport CSS px) of the event's elements to paint over in screenshots."""
        boxes: list[dict[str, Any]] = []
        for el in [event.get("target"), *(event.get("elements") or ())]:
            bbox = el.get("bbox") if isinstance(el, Mapping) else None
            if isinstance(bbox, Mapping) and self._is_sensitive(el):
                box = {k: bbox[k] for k in ("x", "y", "width", "height") if k in bbox}
                boxes += [box] if box not in boxes else []
        return boxes

    @staticmethod
    def _run(method: Callable[[Any, RedactionReport], Any], value: Any) -> tuple[Any, RedactionReport]:
        report = RedactionReport()
        return method(value, report), report

    def _text(self, s: str, r: RedactionReport) -> str:
        if not s or s.isspace():
            return s
        out, counts = self._scanner.redact(s)
        for kind, n in counts:
            r.add(kind, n)
        return out

    def _field_value(self, kind: FieldKind | None, value: str, r: RedactionReport) -> str | None:
        """A form value: None when it must be removed (passwords), else the redacted value."""
        if kind is not None and kind[0] == "PASSWORD":
            r.add("PASSWORD", int(bool(value)))
            return None
        red = self._text(value, r)  # a specific detector names it best (a JWT in "token")
        if kind is None or red != value or _PLACEHOLDER.fullmatch(value) or not has_shape(kind, value):
            return red
        r.add(kind[0])
        return PLACEHOLDERS[kind[0]]

    def _url(self, u: str, r: RedactionReport) -> str:
        """Every event of a page carries its URL: the answers for short ones are remembered."""
        if len(u) > _URL_MEMO_CHARS:
            return self._url_parts(u, r)
        found = self._urls.get(u)
        if found is None:
            inner = RedactionReport()
            found = (self._url_parts(u, inner), tuple(inner.counts.items()))
            if len(self._urls) >= _MEMO_ENTRIES:
                self._urls.clear()
            self._urls[u] = found
        for kind, n in found[1]:
            r.add(kind, n)
        return found[0]

    def _url_parts(self, u: str, r: RedactionReport) -> str:
        try:
            parts = urlsplit(u)
        except ValueError:
            parts = None
        if not self.settings.redact_urls or parts is None or parts.scheme.lower() == "data":
            return self._text(u, r)
        netloc, path = self._netloc(parts.netloc, r), self._path(parts.path, r)
        query, fragment = self._query(parts.query, r), self._fragment(parts.fragment, r)
        if (netloc, path, query, fragment) == parts[1:]:
            return u  # untouched, byte for byte (urlunsplit normalises)
        return urlunsplit((parts.scheme, netloc, path, query, fragment))

    def _part(self, raw: str, r: RedactionReport, plus: bool = False, safe: str = _SAFE) -> str:
        decoded = unquote_plus(raw) if plus else unquote(raw)
        red = self._text(decoded, r)
        if red == decoded:
            return raw
        return quote_plus(red, safe=safe) if plus else quote(red, safe=safe)

    def _netloc(self, netloc: str, r: RedactionReport) -> str:
        userinfo, at, host = netloc.rpartition("@")
        if not at:
            return netloc
        user, colon, password = userinfo.partition(":")
        if password:
            r.add("SECRET")
            password = quote(PLACEHOLDERS["SECRET"], safe="")
        # Percent-encoded here: a bracket in the netloc makes the URL unparseable.
        return f"{self._part(user, r, safe='')}{colon}{password}@{host}"

    def _path(self, path: str, r: RedactionReport) -> str:
        return "/".join(self._part(segment, r) for segment in path.split("/"))

    def _query(self, query: str, r: RedactionReport) -> str:
        return "&".join(self._param(p, r) for p in query.split("&")) if query else query

    def _param(self, param: str, r: RedactionReport) -> str:
        key, eq, value = param.partition("=")
        if not eq:
            key, value = "", param  # a bare "?jane@example.com"
        kind = name_kind(unquote_plus(key)) if key else None
        if kind is None:
            return key + eq + self._part(value, r, plus=True)
        decoded = unquote_plus(value)
        red = self._field_value((kind, False), decoded, r)
        if red is None or red == decoded:  # a password goes, its key stays
            return key + eq if red is None else param
        return f"{key}={quote_plus(red, safe=_SAFE)}"

    def _fragment(self, fragment: str, r: RedactionReport) -> str:
        head, q, tail = fragment.partition("?")
        if not q and "=" in head and "/" not in head:  # "#access_token=...&state=..."
            return self._query(head, r)
        return self._path(head, r) + q + self._query(tail, r)

    def _json(self, value: Any, r: RedactionReport, key: str | None = None) -> Any:
        if isinstance(value, str):
            handler = self._url if key in _URL_KEYS else self._html if key == "html" else self._text
            return handler(value, r)
        if type(value) in _SCALARS:  # numbers and booleans: prices, timestamps, coordinates
            return value
        if isinstance(value, (list, tuple)):
            return [self._json(v, r, key) for v in value]
        if isinstance(value, Mapping):
            is_element = isinstance(value.get("tag"), str)  # target, elements, ancestors ...
            return self._element(value, r) if is_element else self._mapping(value, r)
        return _copy_json(value)  # numbers and booleans: prices, timestamps, coordinates

    def _mapping(self, d: Mapping[str, Any], r: RedactionReport) -> dict[str, Any]:
        as_field = field_kind(d) if "value" in d else None  # {"name": "cvc", "value": "123"}
        out: dict[str, Any] = {}
        for k, v in d.items():
            named = name_kind(k) if isinstance(k, str) else None
            kind = as_field if k == "value" and as_field else (named, False) if named else None
            if kind is None or isinstance(v, bool) or not isinstance(v, (str, int, float)):
                out[k] = self._json(v, r, k.lower() if isinstance(k, str) else None)
            elif (red := self._field_value(kind, str(v), r)) is not None:
                out[k] = v if red == str(v) else red
        return out

    def _element(self, el: Mapping[str, Any], r: RedactionReport) -> dict[str, Any]:
        attrs = el.get("attributes") if isinstance(el.get("attributes"), Mapping) else {}
        kind = field_kind(attrs, el.get("tag") if isinstance(el.get("tag"), str) else None)
        out: dict[str, Any] = {}
        for key, value in el.items():
            if key == "attributes" and value is attrs:
                out[key] = {name: red for name, v in attrs.items()  # None values are data
                            if (red := self._attr_value(str(name).lower(), v, kind, r)) is not None
                            or v is None}
            elif key == "selectors" and isinstance(value, list):
                out[key] = [self._selector(s, kind, r) for s in value]
            elif key in ("tag", "bbox", "sensitive", "masked"):
                out[key] = _copy_json(value)
            else:  # text, context (ancestors, nearby, form) and anything unknown
                out[key] = self._json(value, r, key)
        return out

    def _attr_value(self, name: str, value: Any, kind: FieldKind | None, r: RedactionReport) -> Any:
        """One attribute value (names stay intact); None when the attribute must go."""
        if not isinstance(value, str):
            return _copy_json(value)
        if name in _URL_ATTRS:
            return self._url(value, r)
        named = kind if name == "value" else (n, False) if (n := name_kind(name)) else None
        return self._field_value(named, value, r)

    def _selector(self, sel: Any, kind: FieldKind | None, r: RedactionReport) -> Any:
        if not isinstance(sel, Mapping) or not isinstance(sel.get("value"), str):
            return self._json(sel, r)
        value = sel["value"]
        if kind is not None:  # input[value="..."] of a password or card field
            parts, pos = [], 0
            for _, v_start, v_end, quote in _css_values(value):
                red = self._field_value(kind, value[v_start:v_end], r) or ""
                parts += (value[pos:v_start], red, quote)
                pos = v_end + len(quote)
            value = "".join(parts) + value[pos:]
        return {**_copy_json(dict(sel)), "value": self._text(value, r)}

    def _event(self, ev: Mapping[str, Any], r: RedactionReport, target: Any = None) -> dict[str, Any]:
        """`target`: the event's target when `ev` comes without it (see `event_without_target`)."""
        target = ev.get("target", target)
        attrs = target.get("attributes") if isinstance(target, Mapping) else None
        kind = field_kind(attrs, target.get("tag")) if isinstance(attrs, Mapping) else None
        out: dict[str, Any] = {}
        for key, value in ev.items():
            if key == "value" and isinstance(value, str):
                if (red := self._field_value(kind, value, r)) is not None:
                    out[key] = red
            elif key == "key" and isinstance(value, str):
                out[key] = self._key(value, kind, r)
            elif key in _VERBATIM_EVENT:
                out[key] = _copy_json(value)
            else:  # url, referrer, title, target, elements, html, name, data, unknown fields
                out[key] = self._json(value, r, key)
        return out

    def _key(self, key: str, kind: FieldKind | None, r: RedactionReport) -> str:
        if kind is None or kind[0] not in ("PASSWORD", "CARD", "SECRET") or len(key) != 1:
            return key
        r.add(kind[0])
        return PLACEHOLDERS[kind[0]]

    def _is_sensitive(self, el: Mapping[str, Any]) -> bool:
        if el.get("sensitive") is True or el.get("masked") is True:
            return True
        attrs = el.get("attributes") if isinstance(el.get("attributes"), Mapping) else {}
        if field_kind(attrs, el.get("tag") if isinstance(el.get("tag"), str) else None):
            return True
        shown = (el.get("text"), attrs.get("value"))
        return any(isinstance(s, str) and self._scanner.scan(s) for s in shown)

    def _html(self, doc: str, r: RedactionReport) -> str:
        out: list[str] = []
        pos = 0
        for m in _MARKUP.finditer(doc):
            out += (self._html_text(doc[pos:m.start()], r), self._markup(m, r))
            pos = m.end()
        out.append(self._html_text(doc[pos:], r))
        return "".join(out)

    def _html_text(self, seg: str, r: RedactionReport) -> str:
        red = self._text(seg, r)
        if "&" not in red or (plain := html_lib.unescape(red)) == red:
            return red
        # Character references can hide a value ("jane&#64;example.com"): look again decoded,
        # and re-escape only when that found something, so other text stays byte for byte.
        inner = RedactionReport()
        if (again := self._text(plain, inner)) == plain:
            return red
        r.merge(inner)
        return html_lib.escape(again, quote=False)

    def _markup(self, m: re.Match[str], r: RedactionReport) -> str:
        if m["comment"] is not None:
            return m[0][:4] + self._html_text(m["comment"], r) + m[0][4 + len(m["comment"]):]
        if m["tag"] is None or not m["attrs"].strip():
            return m[0]
        attrs = list(_ATTR.finditer(m["attrs"]))
        kind = field_kind({a["name"]: html_lib.unescape(_attr_raw(a) or "") for a in attrs}, m["tag"])
        new_attrs = _ATTR.sub(lambda a: self._html_attr(a, kind, r), m["attrs"])
        return m[0][: m.start("attrs") - m.start()] + new_attrs + m[0][m.end("attrs") - m.start():]

    def _html_attr(self, a: re.Match[str], kind: FieldKind | None, r: RedactionReport) -> str:
        if (raw := _attr_raw(a)) is None:
            return a[0]  # a boolean attribute such as `disabled`
        plain = html_lib.unescape(raw)
        red = self._attr_value(a["name"].lower(), plain, kind, r)
        if red is None:
            return ""  # the value of a password input: the attribute goes
        return a[0] if red == plain else f'{a["name"]}="{html_lib.escape(red)}"'
