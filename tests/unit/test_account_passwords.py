"""Password rules (length, the bundled common list with its variants, no class rules), the
argon2id hasher, and the audit details guard."""

from __future__ import annotations

import pytest

from actors.accounts.audit import ACTIONS, Actor, _check_details, inet_or_none
from actors.accounts.passwords import Passwords, check_password_rules, is_common
from actors.accounts.signin import normalise_email
from actors.errors import InvalidInput
from configs.accounts import AccountSettings, Argon2Settings

SETTINGS = AccountSettings()


@pytest.mark.parametrize("password", [
    "password1234", "Password2024!", "P@ssw0rd1234", "qwertyuiop12", "123456789012", "aaaaaaaaaaaa",
    "abababababab", "iloveyou!!!!", "Welcome12345", "!!qwerty1234", "letmein2020!", "1q2w3e4r5t6y",
])
def test_common_passwords_and_their_variants_are_refused(password):
    assert is_common(password)
    with pytest.raises(InvalidInput) as err:
        check_password_rules(password, SETTINGS)
    assert password not in str(err.value.details)


@pytest.mark.parametrize("password", [
    "correct horse battery", "tracemill-review-2026-x", "zebra lantern quietly", "all lowercase words here",
    "x7#Kq2!mP9vL",
])
def test_long_uncommon_passwords_pass_without_class_rules(password):
    assert not is_common(password)
    check_password_rules(password, SETTINGS)


def test_length_bounds_and_the_email_itself():
    with pytest.raises(InvalidInput, match="not accepted"):
        check_password_rules("short pw 11", SETTINGS)
    with pytest.raises(InvalidInput):
        check_password_rules("z" * 12 + "y" * 300, SETTINGS)
    with pytest.raises(InvalidInput):
        check_password_rules("someone.long@example.org", SETTINGS, "Someone.Long@example.org")


def test_the_bundled_list_is_packaged_and_loaded():
    from actors.accounts.passwords import _common

    assert len(_common()) > 1000 and "password" in _common()


def test_argon2id_hash_verifies_and_a_missing_account_costs_a_hash_too():
    passwords = Passwords(Argon2Settings(time_cost=1, memory_kib=8 * 1024))
    stored = passwords.hash("zebra lantern quietly")
    assert stored.startswith("$argon2id$v=19$m=8192,t=1,p=1$")
    assert passwords.verify(stored, "zebra lantern quietly")
    assert not passwords.verify(stored, "zebra lantern quietlY")
    assert not passwords.verify(None, "zebra lantern quietly")  # the dummy hash: same work, False
    assert not passwords.verify("not a hash", "x")
    assert Passwords(Argon2Settings(time_cost=2, memory_kib=8 * 1024)).needs_rehash(stored)


def test_emails_are_normalised_or_refused():
    assert normalise_email("  Ada@Example.ORG ") == "ada@example.org"
    for bad in ["ada", "ada@", "@example.org", "ada@example", "a da@example.org", "x" * 250 + "@example.org"]:
        with pytest.raises(InvalidInput):
            normalise_email(bad)


def test_audit_details_refuse_secret_names_and_addresses_are_checked():
    for name in ["password", "refresh_token", "api_key", "key_hmac_hash", "Secret"]:
        with pytest.raises(ValueError):
            _check_details({name: "x"})
    assert _check_details({"role": "admin", "count": 3}) == {"role": "admin", "count": 3}
    assert inet_or_none("testclient") is None and inet_or_none("::1") == "::1"
    assert all(a.count(".") == 1 for a in ACTIONS)
    assert Actor("cli").kind == "cli"
