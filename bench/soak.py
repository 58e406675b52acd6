"""A soak: many connections for a minute against a real binary, fused and split; do its
servers' memory and open files stay flat?

The binary is the two-service workspace of ``faults.py`` (front calls ledger). It runs
fused (one process) and split (front and ledger in two processes over TCP), on
127.0.0.1 only. ``--connections`` keep-alive connections (loadgen.py's pool, one
request at a time each) send requests back to back: 90% good ones (front.Echo, which
calls ledger.Ping), 5% a handler's NotFound (404), 5% a malformed body (400), so the
error paths soak too. After ``--warmup`` seconds, and every ``--every`` seconds until
``--seconds`` more have passed, each server process's RSS (``VmRSS`` of
``/proc/<pid>/status``) and open file descriptors (``/proc/<pid>/fd``) are read.

    python bench/soak.py                    # 60 s at 200 connections, fused then split
    python bench/soak.py --seconds 20 --connections 50 --placements split

Prints, per process: RSS and fds after warm-up and at the end and the growth in %,
then the requests/s and the errors (an unexpected status or a failed connection).
The targets: RSS growth < 10% after warm-up, fds flat (no more than 2% or 4 more).
Exits 1 if a target is missed or a request failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import faults
from loadgen import Pool, new_loop

GOOD = b'{"id": "u%d"}'
REQUESTS = [  # (weight, body, expected status)
    (90, None, 200),
    (5, b'{"id": "missing"}', 404),
    (5, b'{"id": ', 400),
]


def raw(body: bytes) -> bytes:
    head = (
        "POST /api/front/Echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


@dataclass
class Sample:
    """One reading of a process: seconds since the run began, RSS in KiB, open fds."""

    at: float
    rss_kib: int
    fds: int


def read(pid: int, at: float) -> Sample:
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    return Sample(at, rss, len(list(Path(f"/proc/{pid}/fd").iterdir())))


@dataclass
class Load:
    """Requests sent back to back over a pool of keep-alive connections."""

    port: int
    connections: int
    done: int = 0
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    stop: bool = False

    async def user(self, pool: Pool, rng: random.Random) -> None:
        weights = [w for w, _, _ in REQUESTS]
        while not self.stop:
            _, body, expected = rng.choices(REQUESTS, weights)[0]
            data = raw(body if body is not None else GOOD % rng.randrange(1000))
            try:
                status, _ = await pool.request(data)
            except (OSError, ConnectionError, TimeoutError):
                self.errors += 1
                continue
            self.done += 1
            self.statuses[status] = self.statuses.get(status, 0) + 1
            if status != expected:
                self.errors += 1


async def soak(
    pids: dict[str, int], port: int, args: argparse.Namespace
) -> tuple[dict[str, list[Sample]], Load, float]:
    """Load for the warm-up and the run; the samples of every process, the load, and
    the seconds the measured run took."""
    load = Load(port, args.connections)
    pool = Pool(port, limit=args.connections)
    rng = random.Random(7)
    users = [
        asyncio.create_task(load.user(pool, random.Random(rng.random())))
        for _ in range(args.connections)
    ]
    samples: dict[str, list[Sample]] = {name: [] for name in pids}
    await asyncio.sleep(args.warmup)
    begun, counted = time.monotonic(), load.done
    load.statuses.clear()  # the measured run's only (errors count from the start)
    end = begun + args.seconds
    while True:
        now = time.monotonic()
        for name, pid in pids.items():
            samples[name].append(read(pid, now - begun))
        if now >= end:
            break
        await asyncio.sleep(min(args.every, end - now))
    elapsed = time.monotonic() - begun
    load.done -= counted  # requests/s of the measured run only
    load.stop = True
    for task in users:
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.gather(*users, return_exceptions=True)
    pool.close()
    return samples, load, elapsed


def report(name: str, samples: dict[str, list[Sample]], load: Load, elapsed: float) -> bool:
    """Print one placement's figures; whether it met the targets."""
    ok = load.errors == 0
    print(f"{name}: {load.done / elapsed:,.0f} requests/s over {elapsed:.0f} s, "
          f"{load.errors} errors, statuses {dict(sorted(load.statuses.items()))}")  # fmt: skip
    for process, series in samples.items():
        first, last = series[0], series[-1]
        rss = 100 * (last.rss_kib - first.rss_kib) / first.rss_kib
        fds = last.fds - first.fds
        flat = fds <= max(4, first.fds * 0.02)
        ok = ok and rss < 10 and flat
        peak = max(s.rss_kib for s in series)
        print(
            f"  {process:<7} RSS {first.rss_kib / 1024:6.1f} -> {last.rss_kib / 1024:6.1f} MiB "
            f"({rss:+.1f}%; peak {peak / 1024:.1f})   fds {first.fds} -> {last.fds} ({fds:+d})"
        )
    return ok


def run(name: str, pyz: Path, tmp: Path, args: argparse.Namespace) -> bool:
    where = faults.placement(name, pyz, tmp, tmp / f"ledger-{name}.txt", "soak")
    where.start()
    try:
        pids = {server.name: server.pid for server in where.servers}
        loop, _ = new_loop()
        try:
            samples, load, elapsed = loop.run_until_complete(soak(pids, where.front_port, args))
        finally:
            loop.close()
        for server in where.servers:
            if server.popen is not None and server.popen.poll() is not None:
                sys.exit(f"{server.name} died during the soak:\n{server.log.read_text()[-3000:]}")
    finally:
        where.stop()
    return report(name, samples, load, elapsed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="measured run (default 60)")
    parser.add_argument("--warmup", type=float, default=10.0, help="before it (default 10)")
    parser.add_argument("--connections", type=int, default=200, help="default 200")
    parser.add_argument("--every", type=float, default=10.0, help="seconds between readings")
    parser.add_argument("--placements", default="fused,split", help="fused,split")
    args = parser.parse_args()
    with faults.scratch() as tmp:
        pyz = faults.build(tmp)
        results = [run(name, pyz, tmp, args) for name in args.placements.split(",")]
    met = all(results)
    print(
        "targets (RSS growth < 10% after warm-up, fds flat, no errors):",
        "met" if met else "NOT met",
    )
    sys.exit(0 if met else 1)


if __name__ == "__main__":
    main()
