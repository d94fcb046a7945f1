"""Typed events of the ingest contract (PROTOCOL.md, v1) and the batch parser.

Where PROTOCOL.md is silent, these are the rules (the OpenAPI page shows the same types):

* Unknown fields are ignored: dropped during validation and never stored, so clients may send
  fields the server does not know yet without breaking, and nothing unvalidated reaches the
  database. An unknown event ``type`` is a problem, because its meaning cannot be guessed.
* Types are strict: ``"3"`` is not 3, ``true`` is not 1, and ``1.5`` or ``1.0`` is not an
  integer. Integers are accepted where a number is expected (coordinates, bbox).
* ``ts`` is integer epoch milliseconds or an RFC 3339 string with an offset; it is stored as
  an aware UTC datetime and must fall in [2000-01-01, 2100-01-01), which catches seconds sent
  as milliseconds.
* Every string -- keys and strings inside free-form JSON (``context``, ``data``) included -- is
  at most ``IngestLimits.max_string_chars`` characters (``html``: ``max_html_chars``) and holds
  no NUL character (PostgreSQL cannot store one). Numbers must be finite. Oversize input is a
  problem, never silently truncated.
* An event's size is its compact UTF-8 JSON as received (unknown fields included), at most
  ``IngestLimits.max_event_bytes``.
* Explicit ``null`` means "absent" for every declared field; such fields are not stored. Nulls
  inside free-form JSON and attribute values (``{"disabled": null}``) are data and are kept.
* Error texts never echo input values: they may be personal data.

The shapes are TypedDicts rather than BaseModels on purpose: validation then yields the stored
dicts directly, which halves the cost per event compared with building models and dumping them.
"""

from __future__ import annotations

import copy
import functools
import re
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any, Literal, Union, get_args, get_type_hints

from pydantic import BeforeValidator, ConfigDict, Discriminator, Field, GetPydanticSchema
from pydantic import TypeAdapter, ValidationError, with_config
from pydantic_core import CoreSchema, PydanticCustomError, PydanticSerializationError
from pydantic_core import SchemaValidator, core_schema, to_json
from typing_extensions import NotRequired, TypedDict

from actors.errors import InvalidInput, PayloadTooLarge
from actors.ingest.rows import StoredEvent, stored_event
from configs.settings import IngestLimits

__all__ = [
    "Text", "Html", "JsonValue", "Timestamp", "parse_timestamp", "MAX_SEQ", "Selector", "BBox",
    "Element", "NavigationEvent", "ClickEvent", "InputEvent", "SubmitEvent", "KeypressEvent",
    "ScrollEvent", "ModalEvent", "DomSnapshotEvent", "ScreenshotEvent", "CustomEvent", "Event",
    "EVENT_TYPES", "batch_schema", "parse_events",
]

_DEFAULTS = IngestLimits()
# An error answer stays small even for a batch of 1000 broken events.
MAX_DETAILS = 100
MAX_SEQ = 2**53  # the largest integer a JavaScript client counts to exactly

# --------------------------------------------------------------------------- scalar types

_BOUND_KEY = "tracemill_bound"  # core-schema metadata that `_variant` rewrites per limits


def _bounded_str(kind: Literal["text", "html"]) -> CoreSchema:
    limit = _DEFAULTS.max_html_chars if kind == "html" else _DEFAULTS.max_string_chars
    return core_schema.str_schema(
        max_length=limit, pattern=r"^[^\x00]*$", strict=True, metadata={_BOUND_KEY: kind}
    )


def _json_value() -> CoreSchema:
    """Free-form JSON whose strings are bounded like `Text` and whose numbers are finite.

    One union with a custom error, so that a bad value deep inside reports one problem at the
    field holding it instead of one per union member at every nesting level.
    """
    ref = "tracemill.JsonValue"
    value = core_schema.definition_reference_schema(ref)
    return core_schema.union_schema(
        [
            _bounded_str("text"),
            core_schema.int_schema(strict=True),
            core_schema.float_schema(strict=True, allow_inf_nan=False),
            core_schema.bool_schema(strict=True),
            core_schema.none_schema(),
            core_schema.list_schema(value, strict=True),
            core_schema.dict_schema(_bounded_str("text"), value, strict=True),
        ],
        custom_error_type="json_value",
        custom_error_message="holds a string that is too long, has NUL or invalid Unicode, "
        "or a number that is not finite",
        ref=ref,
        metadata={_BOUND_KEY: "json"},
    )


Text = Annotated[str, GetPydanticSchema(lambda _type, _handler: _bounded_str("text"))]
Html = Annotated[str, GetPydanticSchema(lambda _type, _handler: _bounded_str("html"))]
JsonValue = Annotated[Any, GetPydanticSchema(lambda _type, _handler: _json_value())]

# --------------------------------------------------------------------------- timestamps

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_TS_MIN_MS = 946_684_800_000  # 2000-01-01T00:00:00Z
_TS_MAX_MS = 4_102_444_800_000  # 2100-01-01T00:00:00Z
_TS_MIN = _EPOCH + timedelta(milliseconds=_TS_MIN_MS)
_TS_MAX = _EPOCH + timedelta(milliseconds=_TS_MAX_MS)
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})", re.ASCII
)
_TS_RANGE = "must lie between 2000-01-01 and 2100-01-01 (epoch milliseconds, not seconds)"


def parse_timestamp(value: object) -> datetime:
    """Epoch milliseconds (int) or an RFC 3339 string -> aware UTC datetime.

    The one timestamp rule of the contract (events, sessions, finish). Raises
    PydanticCustomError -- a ValueError -- whose message does not repeat the input.
    """
    if type(value) is int:  # `type is`, not isinstance: True is not a timestamp
        if not _TS_MIN_MS <= value < _TS_MAX_MS:
            raise PydanticCustomError("timestamp_range", _TS_RANGE)
        return _EPOCH + timedelta(milliseconds=value)
    if isinstance(value, str):
        if _RFC3339.fullmatch(value) is None:
            raise PydanticCustomError("timestamp_format", "must be RFC 3339 with an offset")
        try:
            parsed = datetime.fromisoformat(value.upper()).astimezone(timezone.utc)
        except (ValueError, OverflowError):
            raise PydanticCustomError("timestamp_format", "is not a real date and time") from None
    elif isinstance(value, datetime) and value.tzinfo is not None:  # built in Python, not JSON
        parsed = value.astimezone(timezone.utc)
    else:
        raise PydanticCustomError("timestamp_type", "must be epoch milliseconds or RFC 3339")
    if not _TS_MIN <= parsed < _TS_MAX:
        raise PydanticCustomError("timestamp_range", _TS_RANGE)
    return parsed


# BeforeValidator, not PlainValidator: the datetime schema after it keeps serialisation plain.
Timestamp = Annotated[
    datetime, BeforeValidator(parse_timestamp, json_schema_input_type=Union[int, str])
]
Seq = Annotated[int, Field(ge=0, le=MAX_SEQ, strict=True)]
Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]
Size = Annotated[float, Field(ge=0, strict=True, allow_inf_nan=False)]

# --------------------------------------------------------------------------- elements

_CONFIG = ConfigDict(strict=True, extra="ignore", allow_inf_nan=False)


@with_config(_CONFIG)
class Selector(TypedDict):
    """One way to find the element again; `unique` is the client's check at record time."""

    kind: Literal["testid", "role", "label", "placeholder", "text", "css", "xpath"]
    value: Text
    unique: NotRequired[bool | None]


@with_config(_CONFIG)
class BBox(TypedDict):
    """Viewport CSS pixels; x/y may be negative for elements scrolled out of view."""

    x: Number
    y: Number
    width: Size
    height: Size


@with_config(_CONFIG)
class Element(TypedDict):
    """The element an event acted on, as the client described it."""

    tag: Text
    text: NotRequired[Text | None]
    attributes: NotRequired[Annotated[dict[Text, Text | None], Field(max_length=64)] | None]
    selectors: NotRequired[Annotated[list[Selector], Field(max_length=32)] | None]
    bbox: NotRequired[BBox | None]
    context: NotRequired[dict[Text, JsonValue] | None]  # free-form: ancestors, nearby, form
    sensitive: NotRequired[bool | None]  # paint over this element in screenshots
    masked: NotRequired[bool | None]  # the client masked the element's text


# --------------------------------------------------------------------------- events


@with_config(_CONFIG)
class _EventBase(TypedDict):
    seq: Seq
    ts: Timestamp
    title: NotRequired[Text | None]


@with_config(_CONFIG)
class _PageEvent(_EventBase):
    url: NotRequired[Text | None]


@with_config(_CONFIG)
class NavigationEvent(_EventBase):
    type: Literal["navigation"]
    url: Text
    referrer: NotRequired[Text | None]
    transition: NotRequired[
        Literal["link", "typed", "reload", "back_forward", "form_submit", "other"] | None
    ]


_BUTTON_NAMES = {"left": 0, "middle": 1, "right": 2, "back": 3, "forward": 4}

# PROTOCOL.md leaves the form open: MouseEvent.button's number, or its name (stored as the number).
MouseButton = Annotated[
    int,
    BeforeValidator(lambda v: _BUTTON_NAMES.get(v, v) if isinstance(v, str) else v),
    Field(ge=0, le=4),
]


@with_config(_CONFIG)
class ClickEvent(_PageEvent):
    type: Literal["click", "dblclick", "contextmenu"]
    target: Element
    x: NotRequired[Number | None]
    y: NotRequired[Number | None]
    button: NotRequired[MouseButton | None]


@with_config(_CONFIG)
class InputEvent(_PageEvent):
    type: Literal["input", "change", "select"]
    target: Element
    value: NotRequired[Text | None]
    masked: NotRequired[bool | None]  # true when the client masked the value


@with_config(_CONFIG)
class SubmitEvent(_PageEvent):
    type: Literal["submit"]
    target: Element  # the form


@with_config(_CONFIG)
class KeypressEvent(_PageEvent):
    type: Literal["keypress"]
    key: Text
    modifiers: NotRequired[Annotated[list[Text], Field(max_length=8)] | None]
    target: NotRequired[Element | None]


@with_config(_CONFIG)
class ScrollEvent(_PageEvent):
    type: Literal["scroll"]
    x: Number
    y: Number
    target: NotRequired[Element | None]


@with_config(_CONFIG)
class ModalEvent(_PageEvent):
    type: Literal["modal"]
    state: Literal["opened", "closed"]
    target: NotRequired[Element | None]


@with_config(_CONFIG)
class DomSnapshotEvent(_PageEvent):
    type: Literal["dom_snapshot"]
    elements: list[Element]
    html: NotRequired[Html | None]  # cleaned by the client, at most max_html_chars


@with_config(_CONFIG)
class ScreenshotEvent(_PageEvent):
    type: Literal["screenshot"]
    screenshot_id: Text
    trigger: NotRequired[
        Literal["navigation", "click", "input", "modal", "interval", "other"] | None
    ]


@with_config(_CONFIG)
class CustomEvent(_PageEvent):
    type: Literal["custom"]
    name: Text
    data: JsonValue


Event = Annotated[
    Union[
        NavigationEvent, ClickEvent, InputEvent, SubmitEvent, KeypressEvent, ScrollEvent,
        ModalEvent, DomSnapshotEvent, ScreenshotEvent, CustomEvent,
    ],
    Discriminator("type"),
]
EVENT_TYPES: tuple[str, ...] = tuple(  # derived, so that it cannot drift from the union
    tag for kind in get_args(get_args(Event)[0]) for tag in get_args(get_type_hints(kind)["type"])
)


def parse_events(raw: object, limits: IngestLimits) -> list[StoredEvent]:
    """Validate the decoded `events` array; all or nothing.

    Raises InvalidInput (one detail per problem: index, seq, field, error) or PayloadTooLarge.
    """
    if not isinstance(raw, list):
        raise InvalidInput(
            "events must be a JSON array",
            details=[{"index": None, "seq": None, "field": "events", "error": "must be an array"}],
        )
    if len(raw) > limits.max_events_per_batch:
        raise PayloadTooLarge(
            f"a batch holds at most {limits.max_events_per_batch} events; this one has {len(raw)}"
        )
    fast, precise = _validators(limits.max_string_chars, limits.max_html_chars)
    problems, suspects, unencodable = _scan(raw, limits)
    events: list[dict[str, Any]] = []
    try:
        events = fast.validate_python(raw)
    except ValidationError as exc:
        skip = set(suspects)  # their problems come from the precise pass below
        problems += [p for p in _problems(exc, raw, limits) if p["index"] not in skip]
    for index in suspects:  # the rare events the fast pass cannot vouch for
        try:
            precise.validate_python(raw[index])
        except ValidationError as exc:
            problems += _problems(exc, raw, limits, index)
        else:
            if index in unencodable:  # e.g. a lone surrogate in a field that is not stored
                problems.append(_problem(raw, index, None, "is not encodable as UTF-8 JSON"))
    if problems:
        problems.sort(key=lambda p: p["index"])
        bad = len({p["index"] for p in problems})
        shown = "" if len(problems) <= MAX_DETAILS else f" (the first {MAX_DETAILS} problems are listed)"
        raise InvalidInput(
            f"{bad} of {len(raw)} events are invalid; the batch was not stored{shown}",
            details=problems[:MAX_DETAILS],
        )
    return [stored_event(event) for event in events]


# --------------------------------------------------------------------------- validation passes
#
# Two validators per limit pair, both compiled from the declared types above. The fast one
# checks a whole batch in one Rust call but skips what is costly and almost never wrong: the
# NUL check on every string and the element-by-element walk of free-form JSON. `_scan` encodes
# each event once (needed for the size limit anyway) and picks out the few events whose bytes
# could hide such a problem -- longer than max_string_chars, an escaped NUL, a NaN or an
# Infinity -- and only those go through the precise validator, one by one.

_BATCH: TypeAdapter[list[Any]] = TypeAdapter(list[Event])
_ONE: TypeAdapter[Any] = TypeAdapter(Event)


@functools.lru_cache(maxsize=16)
def _validators(max_string: int, max_html: int) -> tuple[SchemaValidator, SchemaValidator]:
    """(fast batch validator, precise single-event validator) for these string limits."""
    bounds = {"text": max_string, "html": max_html}
    return (
        SchemaValidator(batch_schema(bounds, nul_check=False, walk_json=False)),
        SchemaValidator(_variant(_ONE.core_schema, bounds, nul_check=True, walk_json=True)),
    )


def batch_schema(bounds: dict[str, int], *, nul_check: bool, walk_json: bool) -> CoreSchema:
    """The schema of an events array with these string limits ({"text": n, "html": n});
    without `nul_check` strings are not searched for NUL, without `walk_json` free-form JSON
    is taken as it is (actors.ingest.frames validates frames from their bytes with it)."""
    return _variant(_BATCH.core_schema, bounds, nul_check=nul_check, walk_json=walk_json)


def _variant(schema: CoreSchema, bounds: dict[str, int], *, nul_check: bool, walk_json: bool) -> CoreSchema:
    """A copy of a compiled schema with runtime string limits, and without the costly checks
    the caller does not want."""
    schema = copy.deepcopy(schema)
    marked = _rewrite(schema, bounds, nul_check, walk_json)
    if not marked:  # pydantic changed how it keeps metadata: fail loudly, not unbounded
        raise RuntimeError("no bounded strings found in the event schema")
    return schema


def _rewrite(node: object, bounds: dict[str, int], nul_check: bool, walk_json: bool) -> int:
    marked = 0
    if isinstance(node, dict):
        metadata = node.get("metadata")
        kind = metadata.get(_BOUND_KEY) if isinstance(metadata, dict) else None
        if kind == "json" and not walk_json:
            ref = node.get("ref")
            node.clear()
            node.update(core_schema.any_schema(ref=ref) if ref else core_schema.any_schema())
            return 1
        if kind in bounds:
            node["max_length"] = bounds[kind]
            if not nul_check:
                node.pop("pattern", None)
            marked = 1
        for child in node.values():
            marked += _rewrite(child, bounds, nul_check, walk_json)
    elif isinstance(node, list):
        for child in node:
            marked += _rewrite(child, bounds, nul_check, walk_json)
    return marked


def _scan(
    raw: list[Any], limits: IngestLimits
) -> tuple[list[dict[str, Any]], list[int], set[int]]:
    """(size problems, events the fast validator cannot vouch for, those of them not encodable)."""
    problems: list[dict[str, Any]] = []
    suspects: list[int] = []
    unencodable: set[int] = set()
    for index, event in enumerate(raw):
        try:
            encoded = to_json(event, inf_nan_mode="constants")
        except PydanticSerializationError:  # a lone surrogate: the precise pass says where
            suspects.append(index)
            unencodable.add(index)
            continue
        if len(encoded) > limits.max_event_bytes:
            error = f"is {len(encoded)} bytes of JSON; the limit is {limits.max_event_bytes}"
            problems.append(_problem(raw, index, None, error))
        elif (
            len(encoded) > limits.max_string_chars
            or (b"\\" in encoded and b"\\u0000" in encoded)  # memchr first: NUL is rare
            or b"NaN" in encoded
            or b"Infinity" in encoded
        ):
            suspects.append(index)
    return problems, suspects, unencodable


def _problem(raw: list[Any], index: int, field: str | None, error: str) -> dict[str, Any]:
    event = raw[index]
    seq = event.get("seq") if isinstance(event, dict) else None
    seq = seq if type(seq) is int else None  # not bool, not 1.5, not "3": those are the problem
    return {"index": index, "seq": seq, "field": field, "error": error}


def _problems(
    exc: ValidationError, raw: list[Any], limits: IngestLimits, index: int | None = None
) -> list[dict[str, Any]]:
    """One detail per pydantic error; `index` is given when `exc` is about one event alone."""
    problems = []
    for err in exc.errors(include_url=False, include_input=False, include_context=False):
        loc = list(err["loc"])
        at = index if index is not None else loc.pop(0)
        assert isinstance(at, int)
        field, error = _describe(err["type"], loc, err["msg"], limits)
        problems.append(_problem(raw, at, field, error))
    return problems


_TYPE_CHOICES = ", ".join(EVENT_TYPES)


def _describe(
    kind: str, path: list[int | str], msg: str, limits: IngestLimits
) -> tuple[str | None, str]:
    """(dotted field, message) for one pydantic error, minus the union tag and any input."""
    if kind == "union_tag_invalid":  # pydantic's text quotes the input tag
        return "type", f"unknown event type; expected one of: {_TYPE_CHOICES}"
    if kind == "union_tag_not_found":
        return "type", "is required"
    if kind == "model_attributes_type" and not path:
        return None, "must be a JSON object"
    if path and path[0] in EVENT_TYPES:
        path = path[1:]
    if path and path[-1] == "[key]":  # a dict key failed: name the dict, never the key
        path = path[:-2]
        msg = f"has a key longer than {limits.max_string_chars} characters or containing NUL"
    elif kind == "string_pattern_mismatch":
        msg = "must not contain NUL characters"
    return ".".join(str(part) for part in path) or None, msg
