"""Access tokens: issued tokens verify; expired, tampered, wrong-kid, alg:none and foreign-key
tokens are always refused with Unauthenticated (401), over random claims (hypothesis)."""

from __future__ import annotations

import base64
import json
import time
import uuid

import jwt
import pytest
from hypothesis import given, settings, strategies as st
from pydantic import SecretStr

from actors.accounts.tokens import ALGORITHM, AUDIENCE, ROLE_SCOPES, UNKNOWN_CREDENTIAL, TokenSigner
from actors.errors import Unauthenticated
from configs.accounts import AccountSettings
from configs.settings import AuthSettings

AUTH = AuthSettings(pepper=SecretStr("p" * 40))
KEY = "k" * 40


def signer(**changes: object) -> TokenSigner:
    return TokenSigner(AccountSettings(token_key=SecretStr(KEY), **changes), AUTH)


uuids = st.uuids()
roles = st.sampled_from(sorted(ROLE_SCOPES))


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


@settings(max_examples=60, deadline=None)
@given(account=uuids, org=uuids, ws=uuids, role=roles)
def test_issued_tokens_verify_with_their_claims(account, org, ws, role):
    s = signer()
    token, ttl = s.issue(account, org, ws, role)
    claims = s.verify(token)
    assert (claims.account_id, claims.org_id, claims.workspace_id, claims.role) == (account, org, ws, role)
    assert ttl == 900
    assert claims.principal().org_id == org


@settings(max_examples=60, deadline=None)
@given(account=uuids, org=uuids, ws=uuids, role=roles, age=st.integers(min_value=906, max_value=10**8))
def test_expired_tokens_are_refused(account, org, ws, role, age):
    s = signer()
    token, _ = s.issue(account, org, ws, role, now=time.time() - age)
    with pytest.raises(Unauthenticated, match="expired"):
        s.verify(token)


@settings(max_examples=150, deadline=None)
@given(account=uuids, org=uuids, ws=uuids, role=roles, position=st.integers(min_value=0, max_value=10**6),
       replacement=st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."))
def test_any_changed_character_is_refused(account, org, ws, role, position, replacement):
    s = signer()
    token, _ = s.issue(account, org, ws, role)
    index = position % len(token)
    tampered = token[:index] + replacement + token[index + 1:]
    if tampered == token:
        return
    try:
        claims = s.verify(tampered)
    except Unauthenticated:
        return
    # base64url's last character of a segment carries spare bits: a change there may decode to
    # the same bytes, so the same token. Anything else accepted is a failure.
    segment_ends = [i for i, c in enumerate(token) if c == "."] + [len(token)]
    assert index + 1 in segment_ends, f"a change at {index} was accepted"
    assert claims == s.verify(token)


@settings(max_examples=60, deadline=None)
@given(account=uuids, org=uuids, ws=uuids, role=roles, new_role=roles, new_org=uuids)
def test_forged_claims_with_the_old_signature_are_refused(account, org, ws, role, new_role, new_org):
    s = signer()
    token, _ = s.issue(account, org, ws, role)
    header, payload, signature = token.split(".")
    claims = jwt.decode(token, options={"verify_signature": False})
    claims.update(role=new_role, org=str(new_org), exp=claims["exp"] + 86_400)
    forged = ".".join([header, _b64(claims), signature])
    if forged == token:
        return
    with pytest.raises(Unauthenticated):
        s.verify(forged)


@settings(max_examples=40, deadline=None)
@given(account=uuids, org=uuids, ws=uuids, role=roles,
       kid=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8))
def test_unknown_kid_and_alg_none_are_refused(account, org, ws, role, kid):
    s = signer()
    now = int(time.time())
    claims = {"iss": "tracemill", "aud": AUDIENCE, "sub": str(account), "org": str(org), "ws": str(ws),
              "role": role, "iat": now, "nbf": now, "exp": now + 600, "jti": uuid.uuid4().hex, "typ": "access"}
    if kid != "k1":
        wrong_kid = jwt.encode(claims, KEY, algorithm=ALGORITHM, headers={"kid": kid})
        with pytest.raises(Unauthenticated):
            s.verify(wrong_kid)
    unsigned = _b64({"alg": "none", "typ": "JWT", "kid": "k1"}) + "." + _b64(claims) + "."
    with pytest.raises(Unauthenticated):
        s.verify(unsigned)
    other_key = jwt.encode(claims, "x" * 40, algorithm=ALGORITHM, headers={"kid": "k1"})
    with pytest.raises(Unauthenticated):
        s.verify(other_key)
    hs512 = jwt.encode(claims, KEY * 2, algorithm="HS512", headers={"kid": "k1"})
    with pytest.raises(Unauthenticated):
        s.verify(hs512)


def test_a_correctly_signed_token_with_the_right_kid_verifies_and_garbage_does_not():
    s = signer()
    now = int(time.time())
    claims = {"iss": "tracemill", "aud": AUDIENCE, "sub": str(uuid.uuid4()), "org": str(uuid.uuid4()),
              "ws": str(uuid.uuid4()), "role": "analyst", "iat": now, "nbf": now, "exp": now + 600,
              "jti": "x", "typ": "access"}
    assert s.verify(jwt.encode(claims, KEY, algorithm=ALGORITHM, headers={"kid": "k1"})).role == "analyst"
    for bad in ["", "a.b.c", "x" * 5000, "é.é.é", jwt.encode(claims | {"typ": "refresh"}, KEY, algorithm=ALGORITHM,
                                                               headers={"kid": "k1"}),
                jwt.encode(claims | {"role": "superuser"}, KEY, algorithm=ALGORITHM, headers={"kid": "k1"}),
                jwt.encode(claims | {"aud": "elsewhere"}, KEY, algorithm=ALGORITHM, headers={"kid": "k1"})]:
        with pytest.raises(Unauthenticated):
            s.verify(bad)


def test_a_credential_of_neither_form_is_named_so_and_a_broken_jwt_is_an_invalid_token():
    s = signer()
    for neither in ["sk_live_abc", "x" * 5000, "é.é.é", "a.b", "Basic dXNlcjpwYXNz", "a..c", "a.b.c.d"]:
        with pytest.raises(Unauthenticated) as caught:
            s.verify(neither)
        assert caught.value.args[0] == UNKNOWN_CREDENTIAL, neither
    for broken in ["a.b.c", "eyJhbGciOiJIUzI1NiJ9.e30.", "a.b." + "c" * 5000]:
        with pytest.raises(Unauthenticated) as caught:
            s.verify(broken)
        assert caught.value.args[0] == "invalid access token", broken


def test_rotation_keeps_the_previous_kid_verifying_and_signs_with_the_new():
    old = signer()
    token, _ = old.issue(uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), "admin")
    rotated = TokenSigner(AccountSettings(token_key=SecretStr("n" * 40), token_kid="k2",
                                          previous_token_key=SecretStr(KEY), previous_token_kid="k1"), AUTH)
    assert rotated.verify(token).role == "admin"
    fresh, _ = rotated.issue(uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), "analyst")
    assert jwt.get_unverified_header(fresh)["kid"] == "k2"
    with pytest.raises(Unauthenticated):
        old.verify(fresh)  # a replica still on the old settings does not know k2
    dropped = TokenSigner(AccountSettings(token_key=SecretStr("n" * 40), token_kid="k2"), AUTH)
    with pytest.raises(Unauthenticated):
        dropped.verify(token)


def test_without_a_token_key_the_key_is_derived_from_the_pepper_and_kid():
    a = TokenSigner(AccountSettings(), AUTH)
    b = TokenSigner(AccountSettings(token_kid="k9"), AUTH)
    token, _ = a.issue(uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), "owner")
    assert a.verify(token).role == "owner"
    with pytest.raises(Unauthenticated):
        b.verify(token)
    other_pepper = TokenSigner(AccountSettings(), AuthSettings(pepper=SecretStr("q" * 40)))
    with pytest.raises(Unauthenticated):
        other_pepper.verify(token)


def test_token_settings_are_bounded():
    with pytest.raises(ValueError):
        AccountSettings(access_ttl_s=60)
    with pytest.raises(ValueError):
        AccountSettings(access_ttl_s=7200)
    with pytest.raises(ValueError):
        AccountSettings(previous_token_kid="k0")
    with pytest.raises(ValueError):
        AccountSettings(token_key=SecretStr("short"))
