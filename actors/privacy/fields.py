"""What kind of personal value a form field, JSON key or query parameter holds.

Form fields are classified by attributes: ``type=password`` or autocomplete current-password,
new-password, one-time-code is PASSWORD; ``cc-*`` is CARD; ``type``/autocomplete email or tel is
EMAIL or PHONE. Those are *strong*: the value goes whole. Names (name/id attributes, JSON keys,
query parameters) classify the same way but weakly: the value goes whole only when it has the
shape (digits, "@"), so ``{"card": "Visa"}`` stays.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["FieldKind", "field_kind", "has_shape", "name_kind"]

FieldKind = tuple[str, bool]  # (type, strong): strong when the field's type says so outright

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")  # a zero-width split point: no template per hit
_NON_WORD = re.compile(r"[^a-z0-9]+")
_PASSWORD_AUTOCOMPLETE = frozenset({"current-password", "new-password", "one-time-code"})
_PASSWORD_WORDS = frozenset({"password", "passwd", "pwd", "passcode", "passphrase", "otp"})
# "password_hint", "show_password" describe the field, they do not hold the password.
_DESCRIBING = frozenset({"url", "link", "href", "hint", "label", "policy", "strength", "rules",
                         "visible", "show", "toggle", "type", "error", "message", "placeholder",
                         "required", "length", "min", "max", "forgot", "reset"})
_SECRET_LAST = frozenset({"token", "secret", "apikey", "sessionid", "sid", "jwt", "signature",
                          "sig", "auth", "authorization", "credential", "credentials"})
_SECRET_ENDINGS = ("apikey", "secretkey", "accesskey", "privatekey", "sessionid")
_CARD_WORDS = frozenset({"cvc", "cvv", "cvv2", "csc", "ccnum", "ccnumber", "cardnumber"})
_PHONE_WORDS = frozenset({"phone", "telephone", "tel", "mobile", "msisdn", "fax", "phonenumber"})
_EMAIL_WORDS = frozenset({"email", "mail", "emailaddress"})
_FORM_TAGS = frozenset({"input", "textarea", "select"})


@functools.lru_cache(maxsize=4096)
def name_kind(name: str) -> str | None:
    """The type a field, JSON key or query parameter name implies ("apiKey" -> SECRET)."""
    words = [w for w in _NON_WORD.split(_CAMEL.sub("_", name).lower()) if w]
    if not words or words[-1] in _DESCRIBING:
        return None
    joined, last, found = "".join(words), words[-1], set(words)
    if found & _PASSWORD_WORDS:
        return "PASSWORD"
    if last in _SECRET_LAST or joined.endswith(_SECRET_ENDINGS):
        return "SECRET"
    if found & _CARD_WORDS or last == "card" or (words[0] == "cc" and len(words) > 1):
        return "CARD"
    if found & _PHONE_WORDS:
        return "PHONE"
    return "EMAIL" if found & _EMAIL_WORDS or joined.endswith("email") else None


def field_kind(attrs: Mapping[str, Any] | None, tag: str | None = None) -> FieldKind | None:
    """What a form field holds, from its attributes (PROTOCOL Element `attributes`)."""
    a = {str(k).lower(): v.strip() for k, v in (attrs or {}).items() if isinstance(v, str)}
    kind, auto = a.get("type", "").lower(), set(a.get("autocomplete", "").lower().split())
    if kind == "password" or auto & _PASSWORD_AUTOCOMPLETE:
        return ("PASSWORD", True)
    if any(token.startswith("cc-") for token in auto):
        return ("CARD", True)
    if kind == "email" or "email" in auto:
        return ("EMAIL", True)
    if kind == "tel" or any(token.startswith("tel") for token in auto):
        return ("PHONE", True)
    if tag is not None and tag.lower() not in _FORM_TAGS:
        return None  # a <div id="card"> is a product card
    for key in ("name", "id"):
        named = name_kind(a.get(key, ""))
        if named is not None:
            return (named, False)
    return None


def has_shape(kind: FieldKind, value: str) -> bool:
    name, strong = kind
    digits = sum(c.isdigit() for c in value)
    if name == "EMAIL":
        return strong or "@" in value
    if name == "PHONE":
        return digits >= (3 if strong else 7)
    if name == "CARD":
        return digits >= (1 if strong else 3)
    if name == "SECRET":
        no_space = len(value) >= 8 and not any(c.isspace() for c in value)
        return no_space and (not value.isalpha() or len(value) >= 24)
    return False
