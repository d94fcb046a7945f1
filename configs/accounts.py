"""Settings of people's accounts: password hashing, access and refresh tokens, sign-in limits.

Access tokens are JWTs signed with HS256 under `token_key` (a secret: TRACEMILL_TOKEN_KEY or
TRACEMILL_TOKEN_KEY_FILE, kept out of Ray like every SecretStr, configs/secrets.py), named in
the token header by `token_kid`. Rotation: move the old key and kid to `previous_token_key` /
`previous_token_kid` (still verified) and set a new pair (signs from now on); after one access
token lifetime the previous pair can go. Without `token_key`, a key is derived from the API key
pepper (HMAC under a fixed label and the kid), so a stack with a pepper can sign people in
without another secret; a deployment sets its own key so that the two secrets are separable.

The argon2id parameters were chosen on the 2-core test machine for about 40-50 ms a hash
(README, "Accounts and sign-in"): above OWASP's floor (19 MiB, 2 passes) with 24 MiB and 3
passes, still cheap enough that one replica signs in ~20 people a second per core.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

__all__ = ["AccountSettings", "Argon2Settings"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Argon2Settings(_Strict):
    time_cost: int = Field(3, ge=1, le=20, description="passes over memory")
    memory_kib: int = Field(24 * 1024, ge=8 * 1024, le=1024 * 1024, description="KiB per hash")
    parallelism: int = Field(1, ge=1, le=16)


class AccountSettings(_Strict):
    argon2: Argon2Settings = Argon2Settings()
    min_password_chars: int = Field(12, ge=12, le=128)
    # Access tokens live 15-60 minutes (issue 17): long enough for a page, short enough that a
    # stolen one expires soon; refresh tokens rotate on every use and die with their family.
    access_ttl_s: int = Field(900, ge=900, le=3600)
    refresh_ttl_s: int = Field(14 * 86_400, ge=3600, le=90 * 86_400)
    invite_ttl_s: int = Field(7 * 86_400, ge=600, le=30 * 86_400)
    token_key: SecretStr | None = Field(None, min_length=32, description="TRACEMILL_TOKEN_KEY(_FILE)")
    token_kid: str = Field("k1", pattern=r"^[A-Za-z0-9._-]{1,32}$")
    previous_token_key: SecretStr | None = Field(None, min_length=32)
    previous_token_kid: str | None = Field(None, pattern=r"^[A-Za-z0-9._-]{1,32}$")
    issuer: str = "tracemill"
    # Sign-in attempts: at most this many failures per address and per account in the window
    # (the seeds: 5 per 15 minutes), counted in the audit log, so across replicas.
    signin_failures: int = Field(5, ge=1, le=1000)
    signin_window_s: int = Field(900, ge=60, le=86_400)
    # The refresh cookie is `Secure` (sent over HTTPS only). Browsers treat http://localhost as
    # secure, so the local stack needs no exception.
    cookie_secure: bool = True

    @model_validator(mode="after")
    def _check_rotation(self) -> AccountSettings:
        if (self.previous_token_key is None) != (self.previous_token_kid is None):
            raise ValueError("previous_token_key and previous_token_kid go together")
        if self.previous_token_kid is not None and self.previous_token_kid == self.token_kid:
            raise ValueError("previous_token_kid must differ from token_kid")
        return self
