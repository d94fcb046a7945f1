"""`tracemill bench signin`: sign-in latency and the brute-force figure, on a private local stack.

Measured in one run:
- baseline: one argon2id verification with the deployment's parameters, in this process
  (`--count` times): what a sign-in cannot be faster than;
- sign-in over HTTP (POST /v1/auth/signin, right password), one at a time and `--concurrency`
  at once: p50/p95, and the p95 as a ratio to the baseline's;
- a wrong password beside an unknown email, in-process against the stack's database (each from
  its own address, so the sign-in limit stays out of it): their p50s, which should match;
- brute force: one address guesses one account's password over HTTP `--guesses` times,
  `--attack-concurrency` at once: after
  how many guesses the first 429 comes, how many guesses were checked at all, and the time per
  checked and per refused guess. The limit is 5 failures per address and per account in 15
  minutes, so an attacker gets 5 guesses per 15 minutes per account: 480 a day.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import numpy as np

from cluster.bench.stack import private_stack
from cluster.results import write_result

__all__ = ["add_arguments", "run"]

PASSWORD = "bench harbour violet lantern"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__
    parser.add_argument("--count", type=int, default=60, help="sign-ins per phase")
    parser.add_argument("--concurrency", type=int, default=4, help="sign-ins in flight in the concurrent phase")
    parser.add_argument("--guesses", type=int, default=40, help="wrong passwords the brute-forcer sends")
    parser.add_argument("--attack-concurrency", type=int, default=8, help="the brute-forcer's guesses in flight")
    parser.add_argument("--output", type=Path, help="write the figures as JSON here")


def _ms(samples: list[float]) -> dict[str, float]:
    values = np.array(samples) * 1000
    return {"p50_ms": round(float(np.percentile(values, 50)), 1), "p95_ms": round(float(np.percentile(values, 95)), 1),
            "max_ms": round(float(values.max()), 1), "n": len(samples)}


async def _signins(endpoint: str, email: str, count: int, concurrency: int) -> list[float]:
    times: list[float] = []
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=endpoint, timeout=60) as client:
        async def one() -> None:
            async with gate:
                start = time.perf_counter()
                response = await client.post("/v1/auth/signin", json={"email": email, "password": PASSWORD})
                times.append(time.perf_counter() - start)
                assert response.status_code == 200, response.text

        await asyncio.gather(*(one() for _ in range(count)))
    return times


async def _wrong_vs_unknown(people: Any, dsn: str, count: int) -> dict[str, Any]:
    """Each wrong password on an account of its own: five on one would lock it out (and a
    refusal costs no hash, so it would not be the figure)."""
    from actors.accounts.audit import Actor
    from actors.auth import DEFAULT_ORG_ID, DEFAULT_WORKSPACE_ID

    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    out: dict[str, list[float]] = {"wrong_password": [], "unknown_email": []}
    try:
        for i in range(count):
            email = f"bench-wrong-{uuid.uuid4().hex[:8]}@example.org"
            await people.accounts.create_account(pool, email, PASSWORD, org_id=DEFAULT_ORG_ID,
                                                 workspace_id=DEFAULT_WORKSPACE_ID, role="analyst",
                                                 actor=Actor("cli", "bench"))
            for kind, who in (("wrong_password", email), ("unknown_email", f"nobody-{uuid.uuid4().hex}@example.org")):
                address = f"198.18.{random.randint(0, 255)}.{random.randint(1, 254)}"
                start = time.perf_counter()
                try:
                    await people.accounts.sign_in(pool, who, f"wrong guess number {i}", address=address)
                except Exception as exc:  # Unauthenticated, the same for both
                    assert type(exc).__name__ == "Unauthenticated", exc
                out[kind].append(time.perf_counter() - start)
    finally:
        await pool.close()
    return {kind: _ms(samples) for kind, samples in out.items()}


async def _brute_force(endpoint: str, email: str, guesses: int, concurrency: int) -> dict[str, Any]:
    """`guesses` wrong passwords, `concurrency` in flight, in order of sending."""
    statuses: list[int] = [0] * guesses
    checked: list[float] = []
    refused: list[float] = []
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=endpoint, timeout=60) as client:
        async def guess(i: int) -> None:
            async with gate:
                start = time.perf_counter()
                response = await client.post("/v1/auth/signin", json={"email": email, "password": f"guess {i:06d} xyz"})
                (refused if response.status_code == 429 else checked).append(time.perf_counter() - start)
                statuses[i] = response.status_code

        started = time.perf_counter()
        await asyncio.gather(*(guess(i) for i in range(guesses)))
        elapsed = time.perf_counter() - started
        right = await client.post("/v1/auth/signin", json={"email": email, "password": PASSWORD})
    first = statuses.index(429) + 1 if 429 in statuses else None
    return {"guesses": guesses, "in_flight": concurrency, "first_429_at_guess": first,
            "guesses_checked": statuses.count(401), "other_statuses": sorted(set(statuses) - {401, 429}),
            "seconds": round(elapsed, 2), "per_checked_guess": _ms(checked) if checked else None,
            "per_refused_guess": _ms(refused) if refused else None,
            "right_password_while_locked": right.status_code,
            "retry_after_s": int(right.headers.get("retry-after", 0)) or None,
            "guesses_per_day_per_account": 5 * 24 * 60 // 15}


def run(args: argparse.Namespace) -> int:
    from actors.accounts.audit import Actor
    from actors.accounts.passwords import Passwords
    from actors.accounts.people import People
    from actors.auth import DEFAULT_ORG_ID, DEFAULT_WORKSPACE_ID

    with private_stack() as (stack, _key):
        settings = stack.settings
        people = People.from_settings(settings)
        dsn = settings.database.url.get_secret_value()
        emails = [f"bench-{uuid.uuid4().hex[:8]}@example.org" for _ in range(2)]

        async def make() -> None:
            pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
            try:
                for email in emails:
                    await people.accounts.create_account(pool, email, PASSWORD, org_id=DEFAULT_ORG_ID,
                                                         workspace_id=DEFAULT_WORKSPACE_ID, role="analyst",
                                                         actor=Actor("cli", "bench"))
            finally:
                await pool.close()

        asyncio.run(make())
        hasher = Passwords(settings.accounts.argon2)
        stored = hasher.hash(PASSWORD)
        baseline = []
        for _ in range(args.count):
            start = time.perf_counter()
            hasher.verify(stored, PASSWORD)
            baseline.append(time.perf_counter() - start)
        sequential = _ms(asyncio.run(_signins(stack.endpoint, emails[0], args.count, 1)))
        concurrent = _ms(asyncio.run(_signins(stack.endpoint, emails[0], args.count, args.concurrency)))
        timing = asyncio.run(_wrong_vs_unknown(people, dsn, max(10, args.count // 3)))
        brute = asyncio.run(_brute_force(stack.endpoint, emails[1], args.guesses, args.attack_concurrency))
    base = _ms(baseline)
    record = {
        "argon2": settings.accounts.argon2.model_dump(), "argon2_verify": base,
        "signin_sequential": sequential, f"signin_concurrency_{args.concurrency}": concurrent,
        "signin_p95_over_argon2_p95": round(sequential["p95_ms"] / base["p95_ms"], 2),
        "wrong_password_vs_unknown_email": timing, "brute_force": brute,
    }
    print(f"argon2id verify ({settings.accounts.argon2.memory_kib} KiB, t={settings.accounts.argon2.time_cost}): "
          f"p50 {base['p50_ms']} ms  p95 {base['p95_ms']} ms")
    print(f"sign-in over HTTP, one at a time: p50 {sequential['p50_ms']} ms  p95 {sequential['p95_ms']} ms "
          f"({record['signin_p95_over_argon2_p95']}x the hash's p95)")
    print(f"sign-in, {args.concurrency} at once: p50 {concurrent['p50_ms']} ms  p95 {concurrent['p95_ms']} ms")
    print(f"wrong password p50 {timing['wrong_password']['p50_ms']} ms, unknown email p50 "
          f"{timing['unknown_email']['p50_ms']} ms")
    print(f"brute force ({brute['in_flight']} in flight): first 429 at guess {brute['first_429_at_guess']}, "
          f"{brute['guesses_checked']} of "
          f"{brute['guesses']} guesses checked in {brute['seconds']} s; the right password then: "
          f"{brute['right_password_while_locked']} (Retry-After {brute['retry_after_s']} s)")
    write_result(args.output, record)
    return 0
