"""The one exception tree of tracemill.

    TracemillError
    ├── MalformedInput          bytes that are not the JSON they claim to be
    ├── InvalidInput            valid JSON, invalid content (one detail per problem)
    ├── PayloadTooLarge         body, frame or image over a configured limit
    ├── UnsupportedMedia        a body that is not what its Content-Type says
    ├── RequestTimeout          a body that stopped arriving before its end
    ├── Unauthenticated         missing or unknown API key
    ├── Forbidden               a key without the scope a route needs
    │   └── ConsentRequired     a recorder without consent to its workspace's current notice
    ├── NotFound                no such session / screenshot (in this organisation)
    ├── Conflict                the request contradicts stored state
    │   ├── SessionClosed       events for a session that is no longer recording
    │   ├── NotReady            exists, but not processed yet; retry after `retry_after_s`
    │   └── NoticeChanged       consent to a notice version that is not the current one
    ├── Overloaded              shed load; retry after `retry_after_s`
    │   └── RateLimited         over a rate limit; `details[0]` names the policy
    ├── QuotaExceeded           over an organisation's quota; `details[0]` names the quota
    ├── DependencyUnavailable   database or object store down; retry after `retry_after_s`
    ├── ConfigError             settings or config files that do not validate
    └── MigrationFailed         a schema migration failed and was rolled back

HTTP status codes belong to the ingress (serve_app.error_responses); here an error only carries a
stable snake_case `code`. Every subclass passes all of its constructor arguments to
`super().__init__` so that it pickles across Ray process boundaries intact.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

__all__ = [
    "TracemillError",
    "MalformedInput",
    "InvalidInput",
    "PayloadTooLarge",
    "UnsupportedMedia",
    "RequestTimeout",
    "Unauthenticated",
    "Forbidden",
    "NotFound",
    "Conflict",
    "SessionClosed",
    "NotReady",
    "Overloaded",
    "RateLimited",
    "QuotaExceeded",
    "DependencyUnavailable",
    "ConfigError",
    "MigrationFailed",
    "details_from_validation_error",
]

Detail = dict[str, Any]


class TracemillError(Exception):
    code = "internal_error"

    def __init__(self, message: str, details: list[Detail] | None = None, code: str | None = None):
        super().__init__(message, details, code)
        self.message = message
        self.details: list[Detail] = list(details or [])
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.message


class MalformedInput(TracemillError):
    code = "malformed_json"


class InvalidInput(TracemillError):
    code = "invalid_input"


class PayloadTooLarge(TracemillError):
    code = "payload_too_large"


class UnsupportedMedia(TracemillError):
    code = "unsupported_media_type"


class RequestTimeout(TracemillError):
    code = "request_timeout"


class Unauthenticated(TracemillError):
    code = "unauthenticated"


class Forbidden(TracemillError):
    code = "forbidden"


class NotFound(TracemillError):
    code = "not_found"


class Conflict(TracemillError):
    code = "conflict"


class SessionClosed(Conflict):
    code = "session_closed"


class _RetryableError(TracemillError):
    def __init__(
        self,
        message: str,
        retry_after_s: float = 1.0,
        details: list[Detail] | None = None,
        code: str | None = None,
    ):
        super().__init__(message, details, code)
        # Re-pass every argument so pickling rebuilds the same object.
        self.args = (message, retry_after_s, details, code)
        self.retry_after_s = retry_after_s


class NotReady(_RetryableError, Conflict):
    """A Conflict (409) that carries when to come back: the same constructor and pickling as
    the retryable errors, through the MRO rather than a copy of it."""

    code = "not_ready"


class Overloaded(_RetryableError):
    code = "overloaded"


class RateLimited(Overloaded):
    """A rate limit refused this request or frame. A subclass of Overloaded, so a stream
    answers it with `slow_down` like any shed frame; `details[0]` is the policy that tripped:
    {"policy", "quota", "window_s", "remaining", "unit"} (the RateLimit headers come from it)."""

    code = "rate_limited"


class QuotaExceeded(_RetryableError):
    """An organisation's quota refused this request; `details[0]` is {"quota", "limit", "used"}."""

    code = "quota_exceeded"


class DependencyUnavailable(_RetryableError):
    code = "dependency_unavailable"


class ConfigError(TracemillError):
    code = "config_error"


class MigrationFailed(TracemillError):
    code = "migration_failed"


def details_from_validation_error(exc: ValidationError, prefix: str = "") -> list[Detail]:
    """Turn pydantic's errors into our `details` entries: one per problem, field as a dotted path."""
    details: list[Detail] = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = [str(part) for part in err.get("loc", ())]
        field = ".".join(([prefix] if prefix else []) + loc)
        details.append({"field": field or None, "error": err.get("msg", "invalid")})
    return details


class EncryptionError(TracemillError):
    """Encryption at rest (actors/crypto): a value or data key cannot be encrypted or read."""

    code = "encryption_error"


class DecryptionFailed(EncryptionError):
    """An encrypted value is malformed, altered, moved, or names another key: never guessed at."""

    code = "decryption_failed"


class DataKeyUnavailable(EncryptionError):
    """A data key cannot be used here: unknown id, no KEK in this process, or another KEK wrapped it."""

    code = "data_key_unavailable"


__all__ += ["EncryptionError", "DecryptionFailed", "DataKeyUnavailable"]


class ConsentRequired(Forbidden):
    """A recorder-bound key whose recorder has no current consent (issue 18.1): nothing of the
    request is stored. `details[0]` names the notice version to show and agree to."""

    code = "consent_required"


class NoticeChanged(Conflict):
    """Consent given to a notice version other than the workspace's current one; `details[0]`
    names the current version."""

    code = "notice_changed"


__all__ += ["ConsentRequired", "NoticeChanged"]
