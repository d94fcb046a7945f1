"""A corpus of planted personal data and secrets in PROTOCOL.md events: the unit tests check
the redactor against it, the integration test streams it through the whole pipeline."""

from __future__ import annotations

import base64
import html
import json
from collections import Counter
from typing import Any
from urllib.parse import quote, quote_plus

__all__ = ["TS", "Events", "Planted", "forms", "planted_corpus", "planted_events", "planted_session"]

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


def planted_events(p: Planted) -> Events:
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


def planted_session(p: Planted) -> dict[str, Any]:
    """The client-written fields of POST /v1/sessions, each carrying planted values: the task
    goes into every training prompt, the rest into the session's row."""
    return {
        "task": f"Email {p('EMAIL', 'grace.h@example.com')} the invoice, then call "
                f"{p('PHONE', '+1 (646) 555-0134')}; pay with {p('CARD', '4539 1488 0343 6467')}",
        "user_agent": f"Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0.0.0 "
                      f"tm-debug/{p('SECRET', 'sk-live3Xb7Qp2Lk9Rw4Tz8Nv6Hy1Dm5')}",
        "client": {"name": f"recorder {p('EMAIL', 'ops.lead@example.net')}", "version": "1.2.3"},
        "metadata": {"account": {"email": p("EMAIL", "h.tanaka@example.jp"),
                                 "phone": p("PHONE", "+44 7700 900461")},
                     "notes": [f"ssn {p('SSN', '212-67-4450')}", f"from {p('IP', '198.51.100.23')}"],
                     "api_key": p("SECRET", "Rt5yU8iO1pA4sD7fG0hJ3kL6"), "plan": "pro", "seats": 3},
    }


def forms(value: str) -> set[str]:
    """Every spelling of a value that could carry it into storage."""
    return {value, quote(value), quote(value, safe="@"), quote_plus(value), html.escape(value),
            value.replace("@", "&#64;")}


def planted_corpus() -> tuple[Planted, Events]:
    p = Planted()
    events = planted_events(p)
    p("EMAIL", "emma.w@example.org")  # planted entity-encoded in the html above
    return p, events
