"""Access tokens: short-lived JWTs (HS256, pyjwt) naming their signing key by `kid`.

Only HS256 under a key this process knows by its `kid` is accepted: the algorithm list given
to pyjwt is fixed (so `alg: none` and algorithm confusion are refused), a token whose `kid` is
unknown is refused before any signature check, and `exp`, `iat`, `sub`, `iss`, `aud` and our
claims are required. Every refusal is Unauthenticated (401 in the one error shape); only an
expired token says so, so a page knows to refresh.

Refresh tokens are not JWTs: they are random, stored hashed, and rotate (actors/accounts/signin.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import re
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

import jwt

from actors.auth import Principal
from actors.errors import ConfigError, Unauthenticated
from configs.accounts import AccountSettings
from configs.settings import AuthSettings

__all__ = ["AUDIENCE", "ALGORITHM", "AccessClaims", "ROLE_SCOPES", "TokenSigner", "UNKNOWN_CREDENTIAL",
           "looks_like_token"]

ALGORITHM = "HS256"
AUDIENCE = "tracemill-api"
MAX_TOKEN_CHARS = 4096
# Until roles decide permissions (actors/permissions.py), a role maps onto the key scopes.
ROLE_SCOPES: dict[str, frozenset[str]] = {
    "owner": frozenset({"admin", "read", "ingest"}),
    "admin": frozenset({"admin", "read", "ingest"}),
    "reviewer": frozenset({"read"}),
    "analyst": frozenset({"read"}),
    "recorder": frozenset({"ingest"}),
}
_DERIVE_LABEL = b"tracemill access token signing key:"
# A bearer that is neither an API key (tm_...) nor shaped like a JWT: the caller sent something
# else (another service's key, a truncated paste), so the message names both forms we accept.
UNKNOWN_CREDENTIAL = ("unknown credential: send an API key (tm_...) or an access token "
                      "(from POST /v1/auth/signin) as 'Authorization: Bearer <credential>'")
_JWT_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


def looks_like_token(text: str) -> bool:
    """Three base64url parts joined by dots: a JWT's shape, whatever it says."""
    return _JWT_SHAPE.fullmatch(text) is not None


@dataclass(frozen=True)
class AccessClaims:
    account_id: uuid.UUID
    org_id: uuid.UUID
    workspace_id: uuid.UUID
    role: str
    expires_at: datetime
    token_id: str
    issued_at: float

    def principal(self, role: str | None = None) -> Principal:
        """The caller, with `role` (the membership's now) or the token's. The account fields
        are passed when Principal has them (actors/auth.py grows them with workspaces and
        roles); before, key_id carries the account id, which the per-caller rate limits count by."""
        role = role or self.role
        known = {f.name for f in dataclasses.fields(Principal)}
        extra = {"workspace_id": self.workspace_id, "role": role, "actor_kind": "account",
                 "account_id": self.account_id}
        key_id = None if "account_id" in known else self.account_id
        return Principal(org_id=self.org_id, key_id=key_id, scopes=ROLE_SCOPES[role],  # type: ignore[arg-type]
                         expires_at=self.expires_at, **{k: v for k, v in extra.items() if k in known})


class TokenSigner:
    """Signs with the current key; verifies with the current and the previous one."""

    def __init__(self, settings: AccountSettings, auth: AuthSettings):
        self.settings = settings
        self.kid = settings.token_kid
        self._keys = {settings.token_kid: _key_bytes(settings.token_key, settings.token_kid, auth)}
        # Names accounts in the audit log (signin.py subject_of): from the pepper when there is
        # one, so rotating the signing key does not reset the sign-in failure counts.
        base = auth.pepper.get_secret_value().encode("utf-8") if auth.pepper else self._keys[self.kid]
        self.audit_key = hmac.new(base, b"tracemill audit subject", hashlib.sha256).digest()
        if settings.previous_token_kid is not None:
            self._keys[settings.previous_token_kid] = _key_bytes(settings.previous_token_key,
                                                                 settings.previous_token_kid, auth)

    def issue(self, account_id: uuid.UUID, org_id: uuid.UUID, workspace_id: uuid.UUID, role: str,
              now: float | None = None) -> tuple[str, int]:
        """(token, lifetime in seconds)."""
        # iat in milliseconds (RFC 7519 allows fractions): a password change cuts off the tokens
        # issued before it, not those of a sign-in in the same second after it.
        issued = round(time.time() if now is None else now, 3)
        ttl = self.settings.access_ttl_s
        claims = {"iss": self.settings.issuer, "aud": AUDIENCE, "sub": str(account_id), "org": str(org_id),
                  "ws": str(workspace_id), "role": role, "iat": issued, "nbf": int(issued), "exp": int(issued) + ttl,
                  "jti": uuid.uuid4().hex, "typ": "access"}
        token = jwt.encode(claims, self._keys[self.kid], algorithm=ALGORITHM, headers={"kid": self.kid})
        return token, ttl

    def verify(self, token: str) -> AccessClaims:
        if not token or not looks_like_token(token):
            raise Unauthenticated(UNKNOWN_CREDENTIAL)
        if len(token) > MAX_TOKEN_CHARS:
            raise Unauthenticated("invalid access token")
        try:
            header = jwt.get_unverified_header(token)
            key = self._keys.get(header.get("kid")) if isinstance(header.get("kid"), str) else None
            if key is None or header.get("alg") != ALGORITHM:
                raise Unauthenticated("invalid access token")
            claims = jwt.decode(token, key, algorithms=[ALGORITHM], audience=AUDIENCE, issuer=self.settings.issuer,
                                options={"require": ["exp", "iat", "nbf", "sub", "iss", "aud", "jti"]}, leeway=5)
            if claims.get("typ") != "access" or claims.get("role") not in ROLE_SCOPES:
                raise Unauthenticated("invalid access token")
            return AccessClaims(
                account_id=uuid.UUID(claims["sub"]), org_id=uuid.UUID(claims["org"]),
                workspace_id=uuid.UUID(claims["ws"]), role=claims["role"],
                expires_at=datetime.fromtimestamp(claims["exp"], timezone.utc), token_id=str(claims["jti"]),
                issued_at=float(claims["iat"]),
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the access token has expired; refresh it") from None
        except (jwt.PyJWTError, KeyError, ValueError, TypeError, AttributeError):
            raise Unauthenticated("invalid access token") from None


def _key_bytes(given: object, kid: str, auth: AuthSettings) -> bytes:
    secret = getattr(given, "get_secret_value", None)
    if secret is not None:
        return secret().encode("utf-8")
    if auth.pepper is None:
        raise ConfigError("accounts.token_key is not set and there is no key pepper to derive one from: "
                          "give TRACEMILL_TOKEN_KEY or TRACEMILL_TOKEN_KEY_FILE (32+ random characters)")
    pepper = auth.pepper.get_secret_value().encode("utf-8")
    return hmac.new(pepper, _DERIVE_LABEL + kid.encode(), hashlib.sha256).digest()
