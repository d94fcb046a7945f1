"""The one way tracemill calls an OpenAI-compatible API: client, retries, errors, scrubbing.

Vision (actors.vision.openai_vision), fine-tuning (actors.training.finetune.openai_provider)
and evaluation (actors.training.evaluation.predictor) each hold an `OpenAIApi` built from
their settings (a configs.openai.OpenAISettings) and pass every request through `call`.

The openai client is built with `max_retries=0`: retries, backoff and Retry-After handling live
here, bounded by the settings and testable against a real HTTP server. Failures map onto the
one exception tree (actors.errors):

- 408 / 409 / 429 / 5xx, timeouts, connection errors, and a `RetryableReply` raised by the
  caller's own parsing → retried up to `max_attempts`, waiting the server's Retry-After or
  else a full-jitter exponential backoff (`backoff_base_s` doubling, capped at
  `backoff_max_s`), then DependencyUnavailable. A Retry-After longer than `backoff_max_s`
  gives up at once with DependencyUnavailable(retry_after_s=that value): sleeping minutes
  would hold a slot.
- the statuses in the caller's `errors` map (by default 401 / 403 / 404 → ConfigError: a wrong
  key, a key without access or a model the host does not know will not heal by retrying).
- 429 with code `insufficient_quota`, and other 4xx → DependencyUnavailable, not retried.

Messages carry only our own words, status codes and the provider's short error `code`, never
the provider's free text (OpenAI echoes part of a wrong key back), the key or the payload;
no openai exception is chained. Every error's `details` name the provider and a `reason`
(http_429, timeout, …), plus the provider's `code` when it gave one.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, NoReturn, TypeVar

import openai

from actors.errors import ConfigError, DependencyUnavailable, TracemillError
from configs.openai import OpenAISettings

__all__ = [
    "CONFIG_ERRORS",
    "OpenAIApi",
    "RetryableReply",
    "parse_retry_after",
    "provider_detail",
    "short_code",
]

log = logging.getLogger(__name__)

T = TypeVar("T")
RETRYABLE_STATUSES = frozenset({408, 409, 429})
# What a status says about our settings or request, when retrying cannot help.
CONFIG_ERRORS: Mapping[int, type[TracemillError]] = {
    401: ConfigError,
    403: ConfigError,
    404: ConfigError,
}
_PROBLEMS = {401: "credentials refused", 403: "credentials refused", 404: "not found"}
_CODE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


class RetryableReply(Exception):
    """Raised by a `call`'s request function for a reply it cannot use but a retry might."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def parse_retry_after(
    headers: Mapping[str, str], now: Callable[[], float] = time.time
) -> float | None:
    """Seconds the server asked us to wait: retry-after-ms, Retry-After seconds or HTTP date."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            value = float(ms) / 1000
            if math.isfinite(value):
                return max(0.0, value)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        value = float(raw)
        return max(0.0, value) if math.isfinite(value) else None
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - now())


def short_code(exc: openai.APIStatusError) -> str:
    """The provider's machine-readable error code, if it is one (never its free text)."""
    code = exc.code
    if code is None and isinstance(exc.body, dict):
        inner = exc.body.get("error")
        code = inner.get("code") if isinstance(inner, dict) else None
    return code if isinstance(code, str) and _CODE.match(code) else ""


def provider_detail(exc: TracemillError, key: str) -> str:
    """The `reason` or `code` an `OpenAIApi` error carries in its details ("" if none)."""
    for detail in exc.details:
        if isinstance(detail, dict) and isinstance(detail.get(key), str):
            return str(detail[key])
    return ""


class OpenAIApi:
    """An AsyncOpenAI client with our retry loop and error mapping around each request.

    `name` starts every message ("vision provider"). `gave_up_retry_after_s` is the
    retry_after_s of a final refusal (a 4xx, an exhausted quota): when the caller should
    come back. `require_key=False` lets a configured `base_url` go without a key (vLLM and
    Ollama want none; the client insists on one, so a placeholder is sent).
    """

    def __init__(
        self,
        settings: OpenAISettings,
        http_client: Any = None,
        *,
        name: str,
        gave_up_retry_after_s: float,
        require_key: bool = False,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
    ):
        self._settings = settings
        self._name = name
        self._gave_up_retry_after_s = gave_up_retry_after_s
        self._sleep = sleep
        self._rng = rng
        self._secret = settings.api_key.get_secret_value() if settings.api_key else None
        self.client = self._build_client(http_client, require_key)

    def _build_client(self, http_client: Any, require_key: bool) -> openai.AsyncOpenAI:
        s, section = self._settings, self._settings.section
        kwargs: dict[str, Any] = {
            "base_url": s.base_url,
            "timeout": s.timeout_s,
            "max_retries": 0,
            "http_client": http_client,
        }
        try:
            # None lets the client read OPENAI_API_KEY / OPENAI_BASE_URL itself.
            return openai.AsyncOpenAI(api_key=self._secret, **kwargs)
        except openai.OpenAIError as exc:
            missing_key = self._secret is None and "credential" in str(exc).lower()
            if not missing_key:
                raise ConfigError(
                    f"cannot configure the openai client of the {self._name} "
                    f"({type(exc).__name__})"
                ) from None
        if s.base_url and not require_key:
            return openai.AsyncOpenAI(api_key="unset", **kwargs)
        keyless = "" if require_key else f" (or {section}.base_url for a server that needs none)"
        raise ConfigError(
            f"no API key for the openai {self._name}: set {section}.api_key or "
            f"OPENAI_API_KEY{keyless}"
        )

    @property
    def max_tokens_field(self) -> str:
        """OpenAI deprecated max_tokens (reasoning models reject it); compatible servers (vLLM,
        Ollama, LiteLLM) have accepted max_tokens far longer than the new name."""
        host = self.client.base_url.host
        official = host == "api.openai.com" or host.endswith(".openai.azure.com")
        return "max_completion_tokens" if official else "max_tokens"

    async def aclose(self) -> None:
        await self.client.close()

    async def call(
        self,
        what: str,
        make: Callable[[], Awaitable[T]],
        *,
        errors: Mapping[int, type[TracemillError]] = CONFIG_ERRORS,
    ) -> T:
        """`await make()` under the attempt deadline, retried as the module docstring says;
        `errors` maps the statuses that mean "fix the settings or the request" to their error."""
        s = self._settings
        reason, hint = "unknown", s.backoff_base_s
        for attempt in range(1, s.max_attempts + 1):
            server_wait: float | None = None
            try:
                async with asyncio.timeout(s.timeout_s):
                    return await make()
            except (TimeoutError, openai.APITimeoutError):
                reason = "timeout"
            except openai.APIConnectionError:
                reason = "connection_error"
            except openai.APIStatusError as exc:
                reason = f"http_{exc.status_code}"
                server_wait = self._check_status(what, exc, reason, errors)
            except RetryableReply as exc:
                reason = exc.reason
            except openai.OpenAIError as exc:
                kind = type(exc).__name__
                self.fail(f"{self._name}: {what} failed ({kind})", kind, retry=False)
            cap = min(s.backoff_max_s, s.backoff_base_s * 2 ** (attempt - 1))
            hint = server_wait if server_wait is not None else cap
            if attempt == s.max_attempts:
                break
            # Full jitter spreads the retries of many callers hit by the same outage.
            delay = server_wait if server_wait is not None else self._rng() * cap
            log.warning(
                "%s: %s attempt %d/%d failed (%s); retrying in %.2fs",
                self._name, what, attempt, s.max_attempts, reason, delay,
            )
            await self._sleep(delay)
        self.fail(
            f"{self._name} unavailable: {what} failed after {s.max_attempts} "
            f"attempt(s) ({reason})",
            reason,
            retry_after_s=hint,
        )

    def _check_status(
        self,
        what: str,
        exc: openai.APIStatusError,
        reason: str,
        errors: Mapping[int, type[TracemillError]],
    ) -> float | None:
        """Raise unless the status is worth retrying; return the server's wait, if it named one."""
        # Scrubbed too: a key-shaped string passes for a code, and a host may echo ours.
        status, code = exc.status_code, self.scrub(short_code(exc))
        label = f"HTTP {status}" + (f" {code}" if code else "")
        error = errors.get(status)
        if error is not None:
            problem = _PROBLEMS.get(status, "rejected")
            message = f"{self._name}: {what} — {problem} ({label})"
            if error is ConfigError:
                section = self._settings.section
                message += (
                    f"; check {section}.model, {section}.api_key and {section}.base_url"
                )
            raise error(self.scrub(message), details=_details(reason, code)) from None
        if code == "insufficient_quota" or not (
            status in RETRYABLE_STATUSES or status >= 500
        ):
            self.fail(f"{self._name} rejected {what} ({label})", reason, code, retry=False)
        wait = parse_retry_after(exc.response.headers)
        if wait is not None and wait > self._settings.backoff_max_s:
            self.fail(
                f"{self._name} asked us to wait {wait:.0f}s on {what} ({label}), "
                "longer than backoff_max_s",
                reason,
                code,
                retry_after_s=wait,
            )
        return wait

    def fail(
        self,
        message: str,
        reason: str,
        code: str = "",
        *,
        retry: bool = True,
        retry_after_s: float | None = None,
    ) -> NoReturn:
        """Raise DependencyUnavailable, scrubbed; `retry=False` says not to come back soon."""
        if retry_after_s is None:
            retry_after_s = (
                self._settings.backoff_base_s if retry else self._gave_up_retry_after_s
            )
        raise DependencyUnavailable(
            self.scrub(message), retry_after_s=retry_after_s, details=_details(reason, code)
        ) from None

    def scrub(self, text: str) -> str:
        # Last line of defence: our messages never include the key, but make sure of it.
        return text.replace(self._secret, "***") if self._secret else text


def _details(reason: str, code: str = "") -> list[dict[str, Any]]:
    detail = {"provider": "openai", "reason": reason}
    return [detail | {"code": code}] if code else [detail]
