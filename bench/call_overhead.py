"""How much ``await call(req)`` adds over awaiting the handler directly, in memory.

Both loops run the same trivial handler on the same event loop; rounds alternate so
that machine noise hits both alike, and the best round of each is compared. The
issue's target: the ratio is at most 1.3 with strict mode off.

    python bench/call_overhead.py [--calls 20000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Mapping

import msgspec
from workload import at_least

from nanobuild.runtime import Contract, call, handler
from nanobuild.runtime.spec import AppSpec, ServiceSpec
from nanobuild.runtime.wiring import wire

TARGET = 1.3


class Pong(msgspec.Struct, frozen=True):
    n: int


class Ping(Contract[Pong], frozen=True):
    n: int


@handler
async def ping(req: Ping) -> Pong:
    return Pong(req.n)


async def direct(req: Ping, calls: int) -> None:
    for _ in range(calls):
        await ping(req)


async def via_call(req: Ping, calls: int) -> None:
    for _ in range(calls):
        await call(req)


def best_of(
    loops: Mapping[str, Callable[[Ping, int], Awaitable[None]]], calls: int, rounds: int
) -> dict[str, float]:
    """The fastest round of each loop, in seconds per call."""
    best = dict.fromkeys(loops, float("inf"))
    req = Ping(1)

    async def measure() -> None:
        for _ in range(rounds):
            for name, loop in loops.items():
                start = time.perf_counter()
                await loop(req, calls)
                best[name] = min(best[name], (time.perf_counter() - start) / calls)

    asyncio.run(measure())
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=at_least(1), default=20_000)
    parser.add_argument("--rounds", type=at_least(1), default=15)
    args = parser.parse_args()

    spec = AppSpec("bench", (ServiceSpec("pinger", "pinger", {"Ping": "__main__:ping"}),))
    loops = {"direct": direct, "call": via_call}
    os.environ["NANO_STRICT"] = "0"
    wire(spec)
    fast = best_of(loops, args.calls, args.rounds)
    os.environ["NANO_STRICT"] = "1"
    wire(spec)
    strict = best_of({"call": via_call}, args.calls, args.rounds)

    ratio = fast["call"] / fast["direct"]
    print(f"calls per round: {args.calls}, rounds: {args.rounds} (best round shown)")
    print(f"await handler(req)          {fast['direct'] * 1e6:8.3f} us/call")
    print(f"await call(req)             {fast['call'] * 1e6:8.3f} us/call")
    print(f"await call(req), strict     {strict['call'] * 1e6:8.3f} us/call  (for reference)")
    verdict = "meets" if ratio <= TARGET else "MISSES"
    print(f"ratio call/direct: {ratio:.2f}x  ({verdict} the <= {TARGET}x target)")


if __name__ == "__main__":
    main()
