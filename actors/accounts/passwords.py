"""Passwords: argon2id hashing (argon2-cffi) and the rules a new password must meet.

The rules are NIST SP 800-63B's: at least `min_password_chars` (12) characters and not a
common password, with no character-class rules (they push people to `Password1!`, which the
list refuses anyway). The list ships with the package (common_passwords.txt); a password
matches when, lower-cased, with leetspeak undone and trailing digits and symbols stripped, it
is on the list, or when it is one short unit repeated ("abcabcabcabc").

Verification of a missing account hashes against a dummy hash with the same parameters, so a
sign-in takes about as long whether or not the email exists (actors/accounts/signin.py).
"""

from __future__ import annotations

import asyncio
import functools
import re
from importlib import resources

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from actors.errors import InvalidInput
from configs.accounts import AccountSettings, Argon2Settings

__all__ = ["Passwords", "check_password_rules", "is_common"]

MAX_PASSWORD_CHARS = 256  # argon2 takes any length; a megabyte "password" is a CPU attack
_LEET = str.maketrans({"@": "a", "4": "a", "3": "e", "1": "i", "!": "i", "0": "o", "$": "s", "5": "s",
                       "7": "t", "+": "t", "8": "b", "9": "g"})
_TRAILING = re.compile(r"[\d\W_]+$")
_LEADING = re.compile(r"^[\d\W_]+")


@functools.cache
def _common() -> frozenset[str]:
    text = (resources.files("actors.accounts") / "common_passwords.txt").read_text("utf-8")
    return frozenset(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))


def _variants(password: str) -> set[str]:
    lowered = password.lower()
    out = {lowered, lowered.translate(_LEET)}
    for text in list(out):
        stripped = _LEADING.sub("", _TRAILING.sub("", text))
        out.add(stripped)
        out.add(stripped.translate(_LEET))
        out.add(_TRAILING.sub("", text.translate(_LEET)))
    return {v for v in out if v}


def _repeated(password: str) -> bool:
    """One unit of up to 4 characters, repeated: "aaaaaaaaaaaa", "abababababab"."""
    for size in range(1, 5):
        unit = password[:size]
        if len(password) >= 2 * size and unit * (len(password) // size) + unit[: len(password) % size] == password:
            return True
    return False


def is_common(password: str) -> bool:
    common = _common()
    return _repeated(password.lower()) or any(v in common for v in _variants(password))


def check_password_rules(password: str, settings: AccountSettings, email: str | None = None) -> None:
    """Raise InvalidInput (one detail, never echoing the password) when `password` is refused."""
    problem = None
    if len(password) < settings.min_password_chars:
        problem = f"must have at least {settings.min_password_chars} characters"
    elif len(password) > MAX_PASSWORD_CHARS:
        problem = f"must have at most {MAX_PASSWORD_CHARS} characters"
    elif is_common(password):
        problem = "is a common password (or one with digits or symbols added); choose another"
    elif email and password.lower() in {email.lower(), email.split("@", 1)[0].lower()}:
        problem = "must not be your email address"
    if problem:
        raise InvalidInput("the password is not accepted", [{"field": "body.password", "error": problem}])


class Passwords:
    """The argon2id hasher of one process (parameters from settings)."""

    def __init__(self, settings: Argon2Settings):
        self._hasher = PasswordHasher(time_cost=settings.time_cost, memory_cost=settings.memory_kib,
                                      parallelism=settings.parallelism, type=Type.ID)
        # Verified when no account matches: same parameters, so the same work as a real check.
        self._dummy = self._hasher.hash("tracemill dummy password for a missing account")

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, stored: str | None, password: str) -> bool:
        """Whether `password` matches `stored`; with `stored` None, the same work and False."""
        try:
            return self._hasher.verify(stored or self._dummy, password) and stored is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    # The async forms run the hash in a thread (argon2-cffi releases the GIL): 40 ms on the
    # replica's event loop would stall every other request it serves.
    async def hash_async(self, password: str) -> str:
        return await asyncio.to_thread(self.hash, password)

    async def verify_async(self, stored: str | None, password: str) -> bool:
        return await asyncio.to_thread(self.verify, stored, password)

    def needs_rehash(self, stored: str) -> bool:
        return self._hasher.check_needs_rehash(stored)
