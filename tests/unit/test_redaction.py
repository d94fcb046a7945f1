"""Server-side PII redaction (actors.privacy): recall on a planted corpus, precision on a
benign one, configuration errors, immutability and speed."""

from __future__ import annotations

import copy
import json
import random
import re
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

import pytest

from actors.errors import ConfigError, InvalidInput
from actors.ingest.events import parse_events
from actors.ingest.rows import EncodedEvent
from actors.privacy.patterns import PLACEHOLDERS, iban_ok, luhn_ok
from actors.privacy.redact import (
    RedactionReport,
    RedactionSettings,
    Redactor,
    field_kind,
)
from actors.privacy.write_path import redact_batch, redact_session
from configs.settings import IngestLimits
from tests.support.pii_corpus import TS, Events, Planted, forms, planted_corpus, planted_session

Corpus = tuple[Planted, Events]


@pytest.fixture(scope="module")
def planted() -> Corpus:
    return planted_corpus()


def _redact_all(redactor: Redactor, events: Events) -> tuple[Events, RedactionReport]:
    total = RedactionReport()
    out = []
    for event in events:
        red, report = redactor.event(event)
        out.append(red)
        total.merge(report)
    return out, total


# --------------------------------------------------------------------------- recall


def test_planted_corpus_is_large_and_covers_every_type(planted: Corpus) -> None:
    p, events = planted
    assert len({v for _, v, _ in p.values}) >= 50
    assert set(p.counts) == set(PLACEHOLDERS)
    source = json.dumps(events)
    for _kind, value, check in p.values:  # the test plants what it claims to plant
        if check:
            assert any(f in source for f in forms(value)), value


def test_no_planted_value_survives(planted: Corpus) -> None:
    p, events = planted
    result, _ = _redact_all(Redactor(), events)
    dumped = json.dumps(result)
    leaks = [v for _, v, check in p.values if check and any(f in dumped for f in forms(v))]
    assert leaks == []
    for kind, value, check in p.values:
        digits = re.sub(r"\D", "", value)
        if check and kind in ("CARD", "PHONE") and len(digits) >= 7:
            assert digits not in dumped, value
    for kind in p.counts:
        if kind != "PASSWORD":  # passwords are removed, not replaced (keypresses aside)
            assert PLACEHOLDERS[kind] in dumped, kind


def test_counts_per_type(planted: Corpus) -> None:
    p, events = planted
    _, report = _redact_all(Redactor(), events)
    assert report.counts == dict(p.counts)


def test_passwords_are_removed_not_replaced(planted: Corpus) -> None:
    _, events = planted
    result, _ = _redact_all(Redactor(), events)
    by_seq = {e["seq"]: e for e in result}
    for seq in (2, 4, 5):
        assert "value" not in by_seq[seq]
    assert "value" not in by_seq[2]["target"]["attributes"]
    assert by_seq[2]["target"]["attributes"] == {"type": "password", "name": "password",
                                                  "id": "pw", "required": None}
    assert by_seq[2]["target"]["selectors"][0]["value"] == "input#pw[value='']"
    assert by_seq[3]["key"] == "[PASSWORD]"
    fields = by_seq[9]["target"]["context"]["form"]["fields"]
    assert fields[1] == {"name": "password"}
    assert "password" not in by_seq[11]["data"]["user"]
    snapshot = by_seq[10]["html"]
    assert '<input type="password" name="pw" >' in snapshot
    assert "correct-horse" not in snapshot


def test_redacted_events_still_validate_and_urls_still_parse(planted: Corpus) -> None:
    _, events = planted
    result, _ = _redact_all(Redactor(), events)
    assert len(parse_events(result, IngestLimits())) == len(events)
    nav = result[0]
    url = urlsplit(nav["url"])
    assert (url.scheme, url.netloc, url.path) == ("https", "shop.example", "/account/[EMAIL]/orders")
    assert "q=blue+kettle" in url.query and "ref=mail" in url.query
    assert url.fragment == "access_token=[SECRET]&state=xyz"
    assert urlsplit(nav["referrer"]).query == "phone=[PHONE]&ip=[IP]&utm_source=news"


def test_input_is_never_mutated(planted: Corpus) -> None:
    _, events = planted
    before = copy.deepcopy(events)
    result, _ = _redact_all(Redactor(), events)
    assert events == before
    result[9]["target"]["bbox"]["x"] = -1  # no aliasing between input and output either
    assert events[9]["target"]["bbox"]["x"] == 600


def test_redaction_is_idempotent(planted: Corpus) -> None:
    _, events = planted
    redactor = Redactor()
    once, _ = _redact_all(redactor, events)
    twice, report = _redact_all(redactor, once)
    assert twice == once and report.total == 0


@pytest.mark.parametrize("text, kind", [
    ("4111-1111-1111-1111", "CARD"), ("5555 5555 5555 4444", "CARD"), ("+1-202-555-0173", "PHONE"),
    ("call me at 555 123 4567", "PHONE"), ("0151 23456789", "PHONE"), ("1-800-555-0199", "PHONE"),
    ("fe80::1ff:fe23:4567:890a%eth0", "IP"), ("ssn=536-22-1234", "SSN"),
    ("x-api-key: 9f8e7d6c5b4a39281706f5e4d3c2b1a0", "SECRET"),
    ("Authorization: Basic dXNlcjpwYXNz", "SECRET"),
    ("github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuv", "SECRET"), ("password: hunter2", "SECRET"),
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7Zq\n-----END RSA PRIVATE KEY-----", "SECRET"),
    ('{"client_secret": "Tm9wZSBub3QgYSByZWFs"}', "SECRET"), ("de89 3704 0044 0532 0130 00", "IBAN"),
])
def test_single_detections(text: str, kind: str) -> None:
    out, report = Redactor().text(f"see {text} here")
    assert report.counts == {kind: 1}, out
    assert PLACEHOLDERS[kind] in out


# --------------------------------------------------------------------------- precision

BENIGN = [
    "$1,299.00", "€1.299,00", "1 299,00 €", "Total: USD 49.99 (incl. 8% VAT)", "2026-11-22",
    "22.11.2026", "05.11.2026 14:30", "11/22/2026", "2026-11-22T10:30:00.000Z", "1999", "2026",
    "Order #10023", "Order 10023-4471", "1732262400000", "1732262400", "ts=1732262400123",
    "550e8400-e29b-41d4-a716-446655440000", "div:nth-child(2) > span.price",
    "#main > ul li:nth-of-type(3)", "//div[@id='cart']/span[2]", "button[data-testid='add-to-cart']",
    "42", "3 items", "Qty: 12", "4111111111111112", "v1.2.3", "10.0.19045",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/120.0.0.0 Safari/537.36",
    "ISBN 978-3-16-148410-0", "EAN 5901234123457", "Tracking 1Z999AA10123456784",
    "12:30:45", "a::before", "std::vector<int>", "00:1A:2B:3C:4D:5E", "logo@2x.png", "@jane_doe",
    "Password", "Password: Forgot?", "Forgot your password?", "Enter your phone number",
    "sk-fading-circle-spinner-wrapper", "token_type=bearer", "Bearer authentication",
    "rgba(0,0,0,0.5)", "51.5074, -0.1278", "ZIP 02134-1234", "Mon-Fri 9-17", "1-2 business days",
    "+5 more", "0.25", "3.14159265358979", "iPhone 15 Pro 256 GB", "Sizes 250 500 1000",
    "page=2&per_page=48&sort=price_asc", "1.000.000", "Page 2 of 10", "4.5 out of 5 (1,234 reviews)",
    "Room 101, Floor 3", "width: 1280px; height: 800px", "color: #ff0000", "x=612 y=380",
    "Call of Duty 2", "24/7 support", "Save 20% on 2 or more", "SKU-88231-BLU-XL",
    "Section 2.1.1.4", "viewBox 0 0 24 24", "M12 2C6.48 2 2 6.48 2 12s4.48 10 10 10 10-4.48 10-10",
    "Company No. 01234567", "VAT GB123456789", "UA-12345678-1", "Flight LH 2037 at 14:35, seat 23A",
    "Dimensions: 20 x 30 x 40 cm", "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAAB",
]


@pytest.mark.parametrize("text", BENIGN)
def test_benign_text_is_unchanged(text: str) -> None:
    assert Redactor().text(text) == (text, RedactionReport())


def test_benign_event_is_unchanged() -> None:
    rows = "".join(f"<tr><td>#100{i}</td><td>$1,2{i}9.00</td><td>2026-11-2{i}</td></tr>" for i in range(10))
    events = [
        {"seq": 0, "type": "navigation", "ts": TS, "title": "Blue kettle - $49.99",
         "url": "https://shop.example/p/42?color=blue&size=2&page=3#reviews"},
        {"seq": 1, "type": "click", "ts": TS, "x": 612, "y": 380,
         "target": {"tag": "button", "text": "Add to cart ($1,299.00)",
                    "attributes": {"id": "add-10023", "type": "submit", "aria-label": "Add to cart",
                                   "href": "/cart/add?sku=4006381333931&qty=1"},
                    "selectors": [{"kind": "css", "value": "div:nth-child(2) > button.primary"},
                                  {"kind": "xpath", "value": "//button[@id='add-10023']"}],
                    "bbox": {"x": 600, "y": 370, "width": 120, "height": 32},
                    "context": {"nearby": [{"tag": "span", "text": "In stock: 12", "relation": "left"}]}}},
        {"seq": 2, "type": "dom_snapshot", "ts": TS, "elements": [],
         "html": f"<div class=\"sk-fading-circle\"><table>{rows}</table><p>Updated 1732262400000 &amp; "
                 f"shipped 22.11.2026</p><img src=\"/img/logo@2x.png\" alt=\"Logo\"></div>"},
        {"seq": 3, "type": "custom", "ts": TS, "name": "cart",
         "data": {"order": "#10023", "total": 1299.0, "id": str(uuid.UUID(int=7)), "card": "Visa",
                  "email_opt_in": True, "phone_verified": False, "ts": 1732262400000}},
    ]
    redactor = Redactor()
    for event in events:
        assert redactor.event(event) == (event, RedactionReport())


def test_generated_benign_numbers_have_no_false_positives() -> None:
    rng = random.Random(7)
    samples: list[str] = []
    for _ in range(400):
        ms = rng.randrange(946_684_800_000, 4_102_444_800_000)
        samples += [
            str(ms), str(ms // 1000), f"{rng.randrange(1, 99999):,}.{rng.randrange(100):02d}",
            f"{rng.randrange(2000, 2100)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}",
            f"#{rng.randrange(10_000, 10_000_000)}", str(uuid.UUID(int=rng.getrandbits(128))),
            f"{rng.randrange(1, 10)}.{rng.randrange(100)}.{rng.randrange(1000)}",
            f"{rng.randrange(10 ** 12, 10 ** 13)}",  # EAN-13 sized
        ]
    redactor = Redactor()
    false_positives = [s for s in samples if redactor.text(s)[0] != s]
    assert false_positives == [], f"{len(false_positives)}/{len(samples)}: {false_positives[:5]}"


# --------------------------------------------------------------------------- other API


def test_url_keeps_structure() -> None:
    redactor = Redactor()
    out, report = redactor.url("https://bob:s3cret@example.com:8443/u/jane%40example.com?x=1#/orders")
    assert out == "https://bob:%5BSECRET%5D@example.com:8443/u/[EMAIL]?x=1#/orders"
    assert report.counts == {"SECRET": 1, "EMAIL": 1}
    assert urlsplit(out).port == 8443
    same = "https://shop.example/p/42?color=blue&q=a+b%2Fc#top"
    assert redactor.url(same) == (same, RedactionReport())
    raw, _ = Redactor({"redact_urls": False}).url("https://x.example/?e=jane@example.com")
    assert raw == "https://x.example/?e=[EMAIL]"


def test_extra_patterns_add_detectors() -> None:
    redactor = Redactor({"extra_patterns": [
        {"name": "EMPLOYEE_ID", "pattern": r"\bEMP-\d{6}\b", "placeholder": "[EMPLOYEE_ID]"}]})
    out, report = redactor.text("badge EMP-004211 for jane@example.com")
    assert out == "badge [EMPLOYEE_ID] for [EMAIL]"
    assert report.counts == {"EMPLOYEE_ID": 1, "EMAIL": 1}


@pytest.mark.parametrize("extra, message", [
    ({"name": "BAD", "pattern": "(unclosed", "placeholder": "[BAD]"}, "does not compile"),
    ({"name": "STAR", "pattern": "a*", "placeholder": "[STAR]"}, "empty string"),
    ({"name": "EDGE", "pattern": r"\b", "placeholder": "[EDGE]"}, "empty string"),
    ({"name": "OPT", "pattern": r"x?", "placeholder": "[OPT]"}, "empty string"),
    ({"name": "lower", "pattern": "x", "placeholder": "[X]"}, "UPPER_SNAKE_CASE"),
    ({"name": "EMAIL", "pattern": "x", "placeholder": "[X]"}, "built-in"),
    ({"name": "X", "pattern": "x", "placeholder": "  "}, "placeholder"),
    ({"name": "X", "pattern": "", "placeholder": "[X]"}, "pattern"),
    ({"name": "X", "pattern": "x"}, "placeholder"),
])
def test_bad_extra_patterns_raise_config_error(extra: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Redactor({"extra_patterns": [extra]})


def test_config_error_for_settings_objects_and_duplicates() -> None:
    with pytest.raises(ConfigError, match="does not compile"):
        Redactor(RedactionSettings(extra_patterns=[{"name": "B", "pattern": "[", "placeholder": "[B]"}]))
    twice = {"name": "DUP", "pattern": "x", "placeholder": "[DUP]"}
    with pytest.raises(ConfigError, match="unique"):
        Redactor({"extra_patterns": [twice, twice]})
    with pytest.raises(ConfigError, match="disable_email"):
        Redactor({"disable_email": True})  # nothing can switch a built-in off


def test_sensitive_boxes() -> None:
    def el(tag: str, y: int, **extra: Any) -> dict[str, Any]:
        return {"tag": tag, "bbox": {"x": 0, "y": y, "width": 100, "height": 20}, **extra}

    event = {"seq": 1, "type": "dom_snapshot", "ts": TS, "elements": [
        el("input", 0, attributes={"type": "password"}),
        el("input", 20, attributes={"autocomplete": "cc-exp"}),
        el("input", 40, attributes={"name": "cvc"}),
        el("input", 60, attributes={"type": "email"}),
        el("input", 80, attributes={"type": "tel"}),
        el("div", 100, sensitive=True),
        el("span", 120, masked=True),
        el("span", 140, text="Signed in as jane@example.com"),
        el("div", 160, text="Add to cart", attributes={"id": "card"}),  # a product card
        el("button", 180, text="Pay $1,299.00"),
        {"tag": "input", "attributes": {"type": "password"}},  # no box to paint
    ]}
    boxes = Redactor().sensitive_boxes(event)
    assert [b["y"] for b in boxes] == [0, 20, 40, 60, 80, 100, 120, 140]
    click = {"seq": 2, "type": "click", "ts": TS, "target": el("input", 7, attributes={"type": "password"})}
    assert Redactor().sensitive_boxes(click) == [{"x": 0, "y": 7, "width": 100, "height": 20}]


def test_field_kind_and_validators() -> None:
    assert field_kind({"type": "password"}) == ("PASSWORD", True)
    assert field_kind({"autocomplete": "section-pay cc-number"}) == ("CARD", True)
    assert field_kind({"name": "newPassword"}, "input") == ("PASSWORD", False)
    assert field_kind({"name": "password_hint"}, "input") is None
    assert field_kind({"id": "card"}, "div") is None
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert iban_ok("GB82WEST12345698765432") and not iban_ok("GB82WEST12345698765433")


def test_report_merge() -> None:
    a = RedactionReport({"EMAIL": 1})
    assert a.merge(RedactionReport({"EMAIL": 2, "IP": 1})) is a
    assert a.counts == {"EMAIL": 3, "IP": 1} and a.total == 4


# --------------------------------------------------------------------------- speed


def test_large_dom_snapshot_is_fast() -> None:
    row = (
        '<div class="product-card" data-sku="SKU-88231"><a href="/p/{i}?ref=grid&amp;pos={i}">'
        '<img src="/img/p{i}@2x.png" alt="Kettle {i}"></a><h3 class="title">Blue kettle {i}</h3>'
        '<span class="price">$1,2{d}9.00</span><time datetime="2026-11-2{d}">22 Nov</time>'
        '<button data-testid="add-{i}" aria-label="Add to cart">Add</button></div>\n'
    )
    pii = '<p class="account">Signed in as user{i}@example.com, tel +44 20 7946 0{d}58</p>\n'
    parts: list[str] = []
    i = 0
    while sum(map(len, parts)) < 200_000:
        parts.append(row.format(i=i, d=i % 10))
        if i % 20 == 0:
            parts.append(pii.format(i=i, d=i % 10))
        i += 1
    doc = "<html><body>" + "".join(parts) + "</body></html>"
    event = {"seq": 0, "type": "dom_snapshot", "ts": TS, "elements": [], "html": doc}
    redactor = Redactor()
    started = time.perf_counter()
    result, report = redactor.event(event)
    elapsed = time.perf_counter() - started
    print(f"\n200 KB DOM snapshot ({len(doc):,} chars) redacted in {elapsed * 1000:.0f} ms")
    planted = sum(1 for _ in re.finditer("Signed in as", doc))
    assert report.counts == {"EMAIL": planted, "PHONE": planted}
    assert "@example.com" not in result["html"] and "7946" not in result["html"]
    assert elapsed < 1.0


# ----------------------------------------------------------------------------- session fields

def _session_fields(p: Planted) -> dict[str, Any]:
    from datetime import datetime, timezone
    return {"type": "human", "viewport": {"width": 1280, "height": 800},
            "started_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc), **planted_session(p)}


def test_session_fields_are_redacted_like_event_fields() -> None:
    p = Planted()
    fields = _session_fields(p)
    redacted = redact_session(Redactor(), fields)
    dumped = json.dumps(redacted.fields, default=str)
    assert [v for _, v, _ in p.values if any(f in dumped for f in forms(v))] == []
    assert redacted.counts == dict(p.counts)
    assert redacted.fields["metadata"]["plan"] == "pro" and redacted.fields["metadata"]["seats"] == 3
    assert redacted.fields["client"]["version"] == "1.2.3"
    assert redacted.fields["viewport"] == fields["viewport"] and fields["task"].startswith("Email grace")


def test_session_hash_is_of_the_redacted_form() -> None:
    first = redact_session(Redactor(), _session_fields(Planted()))
    again = redact_session(Redactor(), _session_fields(Planted()))
    assert first.request_hash == again.request_hash  # the same body again: the same hash
    other = _session_fields(Planted())
    other["metadata"]["plan"] = "free"
    assert redact_session(Redactor(), other).request_hash != first.request_hash
    # A body that differs only in a redacted value stores the same row, so it is the same body.
    swapped = _session_fields(Planted())
    swapped["task"] = swapped["task"].replace("grace.h@example.com", "ada.l@example.com")
    assert redact_session(Redactor(), swapped).request_hash == first.request_hash


def test_a_batch_that_cannot_be_redacted_is_refused_whole() -> None:
    from datetime import datetime, timezone
    at = datetime(2026, 1, 2, tzinfo=timezone.utc)
    good = EncodedEvent(0, "custom", at, None, None, '{"name": "n", "data": {"email": "a@b.example"}}')
    deep = EncodedEvent(1, "custom", at, None, None, '{"name": "n", "data": ' + '{"a": ' * 5000 + "1" + "}" * 5001)
    assert redact_batch(Redactor(), [good]).counts == {0: {"EMAIL": 1}}
    with pytest.raises(InvalidInput, match="seq 1 could not be redacted"):
        redact_batch(Redactor(), [good, deep])
