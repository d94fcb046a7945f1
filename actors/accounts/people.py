"""What a process needs to serve people: the account operations and the access-token check,
built once from settings (an ingress replica's Services, the CLI, the sign-in bench)."""

from __future__ import annotations

from dataclasses import dataclass

from actors.accounts.access import AccountTokens
from actors.accounts.passwords import Passwords
from actors.accounts.signin import Accounts
from actors.accounts.tokens import TokenSigner
from configs.accounts import AccountSettings
from configs.settings import AuthSettings, TracemillSettings

__all__ = ["People"]


@dataclass(frozen=True)
class People:
    accounts: Accounts
    tokens: AccountTokens

    @classmethod
    def from_settings(cls, settings: TracemillSettings) -> People:
        return cls.build(settings.accounts, settings.auth)

    @classmethod
    def build(cls, settings: AccountSettings, auth: AuthSettings) -> People:
        signer = TokenSigner(settings, auth)
        return cls(Accounts(settings, signer, Passwords(settings.argon2)), AccountTokens(signer, ttl_s=auth.cache_ttl_s))
