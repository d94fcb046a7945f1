"""The rate guard without a stack: limits refuse with the policy named and take nothing when
refused, the 429 carries exact headers, the negative cache and the auth backoff spare the
database, the client address ignores X-Forwarded-For unless its peer is trusted."""

from __future__ import annotations

import asyncio
import json
import pickle
import time
import uuid
from types import SimpleNamespace
from typing import Any

import pytest

from actors import errors as E
from actors.auth import KeyCache, Principal, generate_key
from configs.limits import RateLimitSettings
from configs.settings import SettingsError, TracemillSettings
from serve_app.error_responses import error_response
from serve_app.rate_limits import RateGuard, bound_peer, current_address

PEPPER = b"a-test-pepper-of-at-least-32-characters"
PRINCIPAL = Principal(org_id=uuid.uuid4(), key_id=uuid.uuid4(), scopes=frozenset({"ingest"}))


def guard(**limits: Any) -> RateGuard:
    return RateGuard(RateLimitSettings.model_validate(limits))


def peer(host: str, forwarded: str | None = None) -> Any:
    return bound_peer(SimpleNamespace(host=host, port=1234), forwarded)


def test_events_over_the_key_limit_are_refused_naming_the_policy() -> None:
    g = guard(events_per_key={"amount": 100, "window_s": 10})
    with peer("10.0.0.1"):
        g.charge_events(PRINCIPAL, 60)
        with pytest.raises(E.RateLimited) as caught:
            g.charge_events(PRINCIPAL, 60)
    exc = caught.value
    assert exc.code == "rate_limited" and isinstance(exc, E.Overloaded)  # a stream answers slow_down
    assert exc.details == [{"policy": "events-per-key", "quota": 100, "window_s": 10, "remaining": 40,
                            "unit": "events"}]
    assert exc.retry_after_s >= 1


def test_a_refused_charge_takes_nothing_from_any_policy() -> None:
    g = guard(sessions_per_key={"amount": 5, "window_s": 60}, sessions_per_address={"amount": 2, "window_s": 60})
    with peer("10.0.0.2"):
        g.charge_session(PRINCIPAL)
        g.charge_session(PRINCIPAL)
        for _ in range(3):  # the address refuses; the key's count must not move
            with pytest.raises(E.RateLimited, match="sessions-per-address"):
                g.charge_session(PRINCIPAL)
    with peer("10.0.0.3"):  # another address: the key still has 3 of its 5
        for _ in range(2):
            g.charge_session(PRINCIPAL)
    with peer("10.0.0.4"):
        g.charge_session(PRINCIPAL)
        with pytest.raises(E.RateLimited, match="sessions-per-key"):
            g.charge_session(PRINCIPAL)


def test_the_429_carries_retry_after_and_the_ratelimit_headers_exactly() -> None:
    g = guard(http_requests_per_address={"amount": 3, "window_s": 60})
    with peer("10.0.0.5"):
        for _ in range(3):
            g.charge(("http_requests_per_address", g.address(), 1))
        with pytest.raises(E.RateLimited) as caught:
            g.charge(("http_requests_per_address", g.address(), 1))
    response = error_response(caught.value, "req-1")
    assert response.status_code == 429
    retry = response.headers["retry-after"]
    assert int(retry) >= 1
    assert response.headers["ratelimit-policy"] == "requests-per-address;q=3;w=60"
    assert response.headers["ratelimit"] == f"requests-per-address;r=0;t={retry}"
    body = json.loads(response.body)
    assert body["error"]["code"] == "rate_limited" and body["error"]["request_id"] == "req-1"
    assert body["error"]["details"][0]["policy"] == "requests-per-address"


def test_byte_limits_name_their_unit() -> None:
    g = guard(screenshot_bytes_per_key={"amount": 1000, "window_s": 60})
    with peer("10.0.0.6"), pytest.raises(E.RateLimited) as caught:
        g.charge_screenshot_bytes(PRINCIPAL, 1001)
    headers = error_response(caught.value, "r").headers
    assert headers["ratelimit-policy"] == 'screenshot-bytes-per-key;q=1000;w=60;qu="content-bytes"'


def test_rate_limited_and_quota_exceeded_pickle() -> None:
    for exc in (E.RateLimited("slow", 2.0, [{"policy": "p", "quota": 1, "window_s": 1, "remaining": 0,
                                              "unit": None}]),
                E.QuotaExceeded("full", 30.0, [{"quota": "concurrent_datasets", "limit": 1, "used": 1}])):
        back = pickle.loads(pickle.dumps(exc))
        assert (type(back), back.details, back.retry_after_s, back.code) == (
            type(exc), exc.details, exc.retry_after_s, exc.code)
    assert error_response(E.QuotaExceeded("full", 30.0, []), "r").status_code == 429


def test_disabled_limits_refuse_nothing() -> None:
    g = guard(enabled=False, events_per_key={"amount": 1, "window_s": 1})
    with peer("10.0.0.7"):
        for _ in range(5):
            g.charge_events(PRINCIPAL, 1)


class Lookups:
    """The database side of a key check: counts the queries, knows no key."""

    def __init__(self) -> None:
        self.queries = 0

    def for_key(self, key: str | None) -> Any:
        async def lookup() -> Principal:
            self.queries += 1
            raise E.Unauthenticated("unknown API key")

        return lookup


def attempt(g: RateGuard, lookups: Lookups, key: str | None) -> BaseException:
    keys = KeyCache(ttl_s=30, pepper=PEPPER)
    try:
        asyncio.run(g.authenticate(key, keys, lookups.for_key(key)))
    except E.TracemillError as exc:
        return exc
    raise AssertionError("an unknown key was accepted")


def test_a_repeated_bad_key_is_refused_from_memory() -> None:
    g, lookups, key = guard(), Lookups(), generate_key()
    with peer("10.0.1.1"):
        for _ in range(50):
            assert isinstance(attempt(g, lookups, key), E.Unauthenticated)
    assert lookups.queries == 1


def test_malformed_and_missing_keys_cost_no_query_and_no_backoff() -> None:
    g, lookups = guard(auth_backoff={"free_failures": 1}), Lookups()
    with peer("10.0.1.2"):
        for key in [None, "", "tm_short", "not a key at all"] * 5:
            # auth itself refuses these without a query; the guard must not count them
            assert not isinstance(attempt(g, lookups, key), E.RateLimited)
    assert g._backoff == {}


def test_failures_beyond_the_free_ones_back_off_the_address_without_queries() -> None:
    g, lookups = guard(auth_backoff={"free_failures": 3, "base_s": 5, "max_s": 60}), Lookups()
    with peer("10.0.1.3"):
        answers = [attempt(g, lookups, generate_key()) for _ in range(20)]
    assert all(isinstance(a, E.Unauthenticated) for a in answers[:4])  # 3 free, the 4th starts the backoff
    assert all(isinstance(a, E.RateLimited) for a in answers[4:])
    assert lookups.queries == 4
    headers = error_response(answers[-1], "r").headers  # type: ignore[arg-type]
    assert headers["ratelimit-policy"] == "auth-failures-per-address;q=3;w=60"
    assert headers["retry-after"] == "5" and headers["ratelimit"] == "auth-failures-per-address;r=0;t=5"
    with peer("10.0.1.4"):  # another address is not affected
        assert isinstance(attempt(g, lookups, generate_key()), E.Unauthenticated)


def test_the_backoff_doubles_up_to_its_cap() -> None:
    g, lookups = guard(auth_backoff={"free_failures": 1, "base_s": 0.05, "max_s": 0.2}), Lookups()
    waits = []
    with peer("10.0.1.5"):
        attempt(g, lookups, generate_key())  # the free one
        for _ in range(4):
            assert isinstance(attempt(g, lookups, generate_key()), E.Unauthenticated)
            state = g._backoff["10.0.1.5"]
            waits.append(round(state.blocked_until - time.monotonic(), 2))
            time.sleep(state.blocked_until - time.monotonic() + 0.01)
    assert waits == pytest.approx([0.05, 0.1, 0.2, 0.2], abs=0.02)


def test_x_forwarded_for_counts_only_behind_a_trusted_proxy() -> None:
    plain = RateLimitSettings()
    behind = RateLimitSettings.model_validate({"trusted_proxies": ["10.9.0.0/16"]})
    with peer("203.0.113.7", "198.51.100.1"):
        assert current_address(plain) == "203.0.113.7"  # a client cannot pick its own address
        assert current_address(behind) == "203.0.113.7"  # nor can an untrusted peer
    with peer("10.9.1.1", "198.51.100.1, 192.0.2.5, 10.9.2.2"):
        assert current_address(behind) == "192.0.2.5"  # the right-most hop not a trusted proxy
    with peer("10.9.1.1", "garbage"):
        assert current_address(behind) == "10.9.1.1"
    assert current_address(plain) is None  # outside any request


def test_limit_settings_are_validated_at_start() -> None:
    base = {"database": {"url": "postgresql://x"}, "object_store": {"kind": "local", "local_dir": "/tmp/x"}}
    for bad in ({"events_per_key": {"amount": 0, "window_s": 1}}, {"trusted_proxies": ["not-a-net"]},
                {"no_such_limit": 1}):
        with pytest.raises(SettingsError, match="limits"):
            TracemillSettings.build({**base, "limits": bad})
    with pytest.raises(SettingsError, match="quotas"):
        TracemillSettings.build({**base, "quotas": {"sessions_per_day": -1}})
    assert TracemillSettings.build(base).limits.events_per_key.amount >= 100_000


def test_a_check_costs_microseconds() -> None:
    """Not an assertion on speed (benchmarks measure): prints the figure for the report."""
    g = guard()
    with peer("10.0.2.1"):
        n = 20_000
        started = time.perf_counter()
        for _ in range(n):
            g.charge_frame(PRINCIPAL)
            g.charge_events(PRINCIPAL, 50)
        per_frame_us = (time.perf_counter() - started) / n * 1e6
    print(f"rate checks per stream frame: {per_frame_us:.1f} us")
