"""Server-side PII redaction (actors.privacy): recall on a planted corpus, precision on a
benign one, configuration errors, immutability and speed."""

from __future__ import annotations

import base64
import copy
import html
import json
import random
import re
import time
import uuid
from collections import Counter
from typing import Any
from urllib.parse import quote, quote_plus, urlsplit

import pytest

from actors.errors import ConfigError
from actors.events import parse_events
from actors.privacy.patterns import PLACEHOLDERS, iban_ok, luhn_ok
from actors.privacy.redact import (
    RedactionReport,
    RedactionSettings,
    Redactor,
    field_kind,
)
from configs.settings import IngestLimits

TS = 1732262400123
Events = list[dict[str, Any]]


def _jwt(header: dict[str, Any], payload: dict[str, Any]) -> str:
    def seg(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{seg(header)}.{seg(payload)}.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"


class Planted:
    """Records every planted occurrence: the expected count is one per occurrence."""

    def __init__(self) -> None:
        self.values: list[tuple[str, str, bool]] = []
        self.counts: Counter[str] = Counter()

    def __call__(self, kind: str, value: str, check: bool = True) -> str:
        self.values.append((kind, value, check))
        self.counts[kind] += 1
        return value


Corpus = tuple[Planted, Events]


def _planted_events(p: Planted) -> Events:
    jwt_hs = _jwt({"alg": "HS256", "typ": "JWT"}, {"sub": "1234567890", "name": "Jane Doe"})
    jwt_rs = _jwt({"alg": "RS256", "kid": "k1"}, {"email": "x", "exp": 1732262400})

    def password_target() -> dict[str, Any]:
        return {"tag": "input", "attributes": {"type": "password", "name": "password", "id": "pw",
                "value": p("PASSWORD", "hunter2!Secret"), "required": None},
                "selectors": [{"kind": "css", "value": "input#pw[value='"
                               f"{p('PASSWORD', 'hunter2!Secret')}']", "unique": True}],
                "bbox": {"x": 10, "y": 200, "width": 300, "height": 32}}

    return [
        {"seq": 0, "type": "navigation", "ts": TS,
         "url": f"https://shop.example/account/{quote(p('EMAIL', 'jane.doe@example.com'), safe='@')}"
                f"/orders?ref=mail&contact={quote_plus(p('EMAIL', 'j.smith+orders@mail.example.co.uk'))}"
                f"&q=blue+kettle#access_token={p('SECRET', 'Zx9vB7nM3qW5eR1tY8uI0oP2')}&state=xyz",
         "title": f"Orders for {p('EMAIL', 'olga_k@firma.example.de')} - Shop",
         "referrer": f"https://partner.example/track?phone={quote_plus(p('PHONE', '+1 (415) 555-2671'))}"
                     f"&ip={p('IP', '203.0.113.42')}&utm_source=news",
         "transition": "link"},
        {"seq": 1, "type": "input", "ts": TS, "url": "https://shop.example/login",
         "target": {"tag": "input", "attributes": {"type": "email", "name": "email", "id": "login-email",
                    "placeholder": "Email address"}, "bbox": {"x": 10, "y": 150, "width": 300, "height": 32}},
         "value": p("EMAIL", "ana.garcia@correo.example.es")},
        {"seq": 2, "type": "input", "ts": TS, "target": password_target(),
         "value": p("PASSWORD", "hunter2!Secret")},
        {"seq": 3, "type": "keypress", "ts": TS, "key": p("PASSWORD", "h", check=False),
         "target": password_target()},
        {"seq": 4, "type": "change", "ts": TS,
         "target": {"tag": "input", "attributes": {"type": "text", "name": "new_pw",
                    "autocomplete": "new-password"}},
         "value": p("PASSWORD", "Tr0ub4dor&3")},
        {"seq": 5, "type": "input", "ts": TS,
         "target": {"tag": "input", "attributes": {"type": "text", "autocomplete": "one-time-code"}},
         "value": p("PASSWORD", "492817")},
        {"seq": 6, "type": "input", "ts": TS,
         "target": {"tag": "input", "attributes": {"type": "tel", "name": "mobile"}},
         "value": p("PHONE", "555 867 5309")},
        {"seq": 7, "type": "change", "ts": TS,
         "target": {"tag": "input", "attributes": {"autocomplete": "cc-number", "name": "cardnumber"}},
         "value": p("CARD", "4111 1111 1111 1111")},
        {"seq": 8, "type": "input", "ts": TS,
         "target": {"tag": "input", "attributes": {"autocomplete": "cc-csc", "name": "cvc"}},
         "value": p("CARD", "737", check=False)},
        {"seq": 9, "type": "click", "ts": TS, "x": 612, "y": 380,
         "target": {
             "tag": "a",
             "text": f"Contact {p('EMAIL', 'bob@example.io')} or call {p('PHONE', '(212) 555-0147')}",
             "attributes": {"id": "contact-link", "class": "btn btn-link", "data-testid": "contact",
                            "href": f"mailto:{p('EMAIL', 'li.wei@example.cn')}?subject=Order%2010023",
                            "aria-label": f"Email {p('EMAIL', 'm.rossi@posta.example.it')}",
                            "title": f"Last login from {p('IP', '198.51.100.7')}"},
             "selectors": [
                 {"kind": "text", "value": f"Contact {p('EMAIL', 'bob@example.io')}", "unique": True},
                 {"kind": "css", "value": "#contact > a:nth-child(2)", "unique": True},
                 {"kind": "xpath", "value": f"//a[@title='Last login from {p('IP', '198.51.100.7')}']"}],
             "bbox": {"x": 600, "y": 370, "width": 120, "height": 32},
             "context": {
                 "ancestors": [{"tag": "div", "attributes": {"class": "profile",
                                "data-owner": p("EMAIL", "noreply-7@shop.example.org")}}],
                 "nearby": [
                     {"tag": "span", "text": f"SSN: {p('SSN', '123-45-6789')}", "relation": "left"},
                     {"tag": "span", "text": f"social security number {p('SSN', '536 22 1234')}"},
                     {"tag": "td", "text": f"IBAN {p('IBAN', 'DE89 3704 0044 0532 0130 00')}"}],
                 "form": {
                     "action": f"/profile?session_id={p('SECRET', 'a8f5f167f44f4964e6c998dee827110c')}",
                     "fields": [{"name": "phone", "type": "text", "value": p("PHONE", "415-555-0198")},
                                {"name": "password", "value": p("PASSWORD", "mySup3rPass")}]}}}},
        {"seq": 10, "type": "dom_snapshot", "ts": TS, "url": "https://shop.example/checkout",
         "elements": [
             {"tag": "input", "attributes": {"type": "email", "value": p("EMAIL", "pat.lee@example.net")},
              "bbox": {"x": 0, "y": 0, "width": 200, "height": 30}},
             {"tag": "div", "text": f"Card {p('CARD', '5500-0000-0000-0004')} wired to "
                                    f"{p('IBAN', 'ES9121000418450200051332')}",
              "bbox": {"x": 0, "y": 40, "width": 400, "height": 20}},
             {"tag": "div", "text": "Loyalty balance", "sensitive": True,
              "bbox": {"x": 0, "y": 80, "width": 100, "height": 20}}],
         "html": _planted_html(p)},
        {"seq": 11, "type": "custom", "ts": TS, "name": "checkout_debug",
         "data": {
             "user": {"email": p("EMAIL", "kim.park@example.kr"),
                      "phone": p("PHONE", "+49 30 1234 5678"), "ssn": p("SSN", "219-09-9999"),
                      "iban": p("IBAN", "FR14 2004 1010 0505 0001 3M02 606"),
                      "last_ip": p("IP", "10.20.30.40"), "password": p("PASSWORD", "pa55word-Z")},
             "auth": {"token": p("JWT", jwt_hs), "id_token": p("JWT", jwt_rs)},
             "headers": {"Authorization": f"Bearer {p('SECRET', 'f3a9c2e7b1d84f6a9e0c5b7d2a4f8e1c')}"},
             "config": {"api_key": p("SECRET", "Qm8xN2vL5kJ7hG3fD1sA9pO4"),
                        "github": p("SECRET", "ghp_aB1cD2eF3gH4iJ5kL6mN7oP8qR9sT0uV1wX2"),
                        "slack": p("SECRET", "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"),
                        "openai": p("SECRET", "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1w")},
             "notes": [f"wire to {p('IBAN', 'NL91ABNA0417164300')}",
                       f"retry login?user=jane&password={p('SECRET', 'S3cr3tPa55')}",
                       f"amex {p('CARD', '378282246310005')}, disc {p('CARD', '6011111111111117')}",
                       f"ring {p('PHONE', '+33 6 12 34 56 78')} or {p('PHONE', '020 7946 0123')}"],
             "amount": 1299.0, "items": 3, "ts": 1732262400000}},
        {"seq": 12, "type": "scroll", "ts": TS, "x": 0, "y": 1200},
    ]


def _planted_html(p: Planted) -> str:
    return (
        "<!DOCTYPE html><html><head><title>Checkout</title>"
        f"<script>window.cfg = {{\"mapsKey\": \"{p('SECRET', 'AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q')}\","
        f" \"stripe\": \"{p('SECRET', 'sk_live_4eC39HqLyjWDarjtT1zdp7dc')}\"}};</script></head><body>"
        f"<p class=\"ship\">Ship to: Jane Doe, {p('PHONE', '+44 20 7946 0958')}</p>"
        f"<form><input type=\"password\" name=\"pw\" value=\"{p('PASSWORD', 'correct-horse-battery-9')}\">"
        f"<input type=\"tel\" name=\"phone\" value=\"{p('PHONE', '06 12 34 56 79')}\">"
        f"<input type='text' name='iban' value='{p('IBAN', 'GB29NWBK60161331926819')}'></form>"
        f"<a href=\"/u/{quote(p('EMAIL', 'sam.o@example.com'))}?tab=orders&amp;page=2\">Profile</a>"
        f"<span data-ip=\"{p('IP', '2001:db8:85a3::8a2e:370:7334')}\">seen</span>"
        f"<!-- debug: {p('SECRET', 'AKIAIOSFODNN7EXAMPLE')} -->"
        f"<table><tr><td>{p('CARD', '3530 1113 3330 0000')}</td><td>{p('SSN', '078-05-1120')}</td></tr>"
        f"<tr><td data-card=\"{p('CARD', '4012888888881881')}\">Visa</td>"
        f"<td>{html.escape('<')} {'emma.w&#64;example.org'}</td></tr></table>"
        f"<p>Tel: {p('PHONE', '+81 3-1234-5678')} &middot; from {p('IP', '192.0.2.77')}</p>"
        "</body></html>"
    )


def _forms(value: str) -> set[str]:
    """Every spelling of a value that could carry it into storage."""
    return {value, quote(value), quote(value, safe="@"), quote_plus(value), html.escape(value),
            value.replace("@", "&#64;")}


@pytest.fixture(scope="module")
def planted() -> Corpus:
    p = Planted()
    events = _planted_events(p)
    p("EMAIL", "emma.w@example.org")  # planted entity-encoded in the html above
    return p, events


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
            assert any(f in source for f in _forms(value)), value


def test_no_planted_value_survives(planted: Corpus) -> None:
    p, events = planted
    result, _ = _redact_all(Redactor(), events)
    dumped = json.dumps(result)
    leaks = [v for _, v, check in p.values if check and any(f in dumped for f in _forms(v))]
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
