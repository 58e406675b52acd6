"""Latency of a split call over nanobuild's TCP transport, against two yardsticks.

Every server runs in its own subprocess on 127.0.0.1; this process is the client,
on one event loop. The payload is the same small request everywhere
(``{"name": "Ada"}``). Four measurements:

- ``echo``: a bare asyncio server and client exchanging length-prefixed
  MessagePack frames, decoding and re-encoding the payload: the floor any
  msgpack-over-TCP RPC in asyncio stands on.
- ``nanobuild tcp``: ``await route(Greet(name="Ada"))`` through ``remote_route`` and a
  ``TcpTransport`` to a ``TcpServer`` serving a real wired service.
- ``fastapi+httpx``: what teams do today — the same handler as a FastAPI route under
  uvicorn, called with ``httpx.AsyncClient`` POSTs (JSON, keep-alive).
- ``nanobuild tcp x64``: 64 concurrent callers sharing the one TCP connection.

Every round runs all four, taking turns a fifth of their calls at a time, so
machine noise hits them alike; each figure is the median over rounds of a round's
mean, each ratio the median of the rounds' ratios.
Targets: nanobuild tcp <= 1.5x the echo floor, >= 8x faster than FastAPI+httpx,
and 64 callers >= 5x the sequential throughput.

A sequential call is a chain of wake-ups, one process after the other, and waking
a CPU from an idle state costs the hardware's time, not the program's: on a
virtual machine, where an idle CPU is handed back to the hypervisor, a C-level
loopback ping-pong takes ~5x longer than with the CPUs kept busy. So, as latency
benchmarks do, the script holds the CPUs out of idle states while it runs (a PM
QoS request: ``/dev/cpu_dma_latency`` = 0, which needs root; it says when it
cannot). ``--allow-idle`` measures without, to see what idle states add on the
machine at hand. FastAPI + httpx spends its time computing, not waking, and
measures the same either way.

    python bench/transport_latency.py [--calls 5000] [--rounds 7] [--allow-idle]

Needs FastAPI and httpx (pip install -e ".[dev]").
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import struct
import sys
import tempfile
import textwrap
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgspec
from workload import at_least, free_port, running, write_workspace

SECRET = "bench-secret"
CONCURRENCY = 64
SLICES = 5  # turns the loops take in each round
TARGETS = {"echo": 1.5, "fastapi": 8.0, "concurrency": 5.0}

NANO_SERVER = """
import asyncio, sys
from nanobuild.runtime.transports.tcp import TcpServer
from nanobuild.runtime.spec import AppSpec, ServiceSpec
from nanobuild.runtime.wiring import wire

spec = AppSpec(name="bench", services=(
    ServiceSpec(name="greeter", package="greeter", handlers={"Greet": "greeter.handlers:greet"}),
))

async def serve() -> None:
    server = TcpServer(wire(spec), port=int(sys.argv[1]), secret=sys.argv[2])
    await server.start()
    await asyncio.Event().wait()

asyncio.run(serve())
"""

HEADER = struct.Struct(">I")


# -- the echo floor


class FramedProtocol(asyncio.BufferedProtocol):
    """Length-prefixed MessagePack frames in; ``received`` gets each decoded value.

    Reads land in one buffer allocated with the connection, as in nanobuild's
    transport: a plain ``asyncio.Protocol`` gets a fresh 256 KiB bytes object per
    read, whose mapping and unmapping would make this floor higher than it is.
    """

    def __init__(self) -> None:
        self.buffer = b""
        self.reads = memoryview(bytearray(256 * 1024))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.loop = asyncio.get_running_loop()

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.reads

    def buffer_updated(self, nbytes: int) -> None:
        self.buffer += self.reads[:nbytes]
        while len(self.buffer) >= 4:
            (size,) = HEADER.unpack_from(self.buffer)
            if len(self.buffer) < 4 + size:
                return
            value = msgspec.msgpack.decode(self.buffer[4 : 4 + size])
            self.buffer = self.buffer[4 + size :]
            self.received(value)

    def send(self, value: Any) -> None:
        body = msgspec.msgpack.encode(value)
        self.transport.write(HEADER.pack(len(body)) + body)

    def received(self, value: Any) -> None:
        raise NotImplementedError


class EchoServer(FramedProtocol):
    """Answers each frame with the same value, re-encoded."""

    def received(self, value: Any) -> None:
        self.send(value)


class EchoClient(FramedProtocol):
    """Sends one frame at a time and resolves a future with the decoded answer."""

    def __init__(self) -> None:
        super().__init__()
        self.waiter: asyncio.Future[Any] | None = None

    def received(self, value: Any) -> None:
        assert self.waiter is not None
        self.waiter.set_result(value)

    async def call(self, value: Any) -> Any:
        self.waiter = self.loop.create_future()
        self.send(value)
        return await self.waiter


async def serve_echo(port: int) -> None:
    loop = asyncio.get_running_loop()
    await loop.create_server(EchoServer, "127.0.0.1", port)
    await asyncio.Event().wait()


# -- processes


# -- measuring

Loop = Callable[[int], Awaitable[None]]
Round = dict[str, float]  # loop name -> mean seconds per call


async def rounds_of(loops: Mapping[str, tuple[Loop, int]], rounds: int) -> list[Round]:
    """Each round runs every loop for its number of calls, in SLICES turns.

    The loops take turns a slice of their calls at a time, so a busy moment of the
    machine falls on all of them rather than on whichever loop was running.
    """
    for loop, calls in loops.values():
        await loop(max(calls // 10, CONCURRENCY))  # warm up: connections, caches
    results = []
    for _ in range(rounds):
        spent = dict.fromkeys(loops, 0.0)
        for _ in range(SLICES):
            for name, (loop, calls) in loops.items():
                start = time.perf_counter()
                await loop(calls // SLICES)
                spent[name] += time.perf_counter() - start
        results.append(
            {name: spent[name] / (calls // SLICES * SLICES) for name, (_, calls) in loops.items()}
        )
    return results


async def measure(root: Path, ports: dict[str, int], calls: int, rounds: int) -> list[Round]:
    import httpx

    from nanobuild.runtime.transports.base import remote_route
    from nanobuild.runtime.transports.tcp import TcpTransport

    sys.path.insert(0, str(root / "services" / "greeter"))
    from greeter.kernel import Greet  # type: ignore[import-not-found]

    loop = asyncio.get_running_loop()
    _, echo = await loop.create_connection(EchoClient, "127.0.0.1", ports["echo"])
    tcp = TcpTransport(f"tcp://127.0.0.1:{ports['nano']}", secret=SECRET)
    greet = remote_route(tcp, "greeter", Greet)
    http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports['fastapi']}")
    request, payload = Greet(name="Ada"), {"name": "Ada"}

    async def echo_loop(n: int) -> None:
        for _ in range(n):
            await echo.call(payload)

    async def nano_loop(n: int) -> None:
        for _ in range(n):
            await greet(request)

    async def fastapi_loop(n: int) -> None:
        for _ in range(n):
            (await http.post("/api/greeter/Greet", json=payload)).raise_for_status()

    async def nano_concurrent(n: int) -> None:
        async def caller(share: int) -> None:
            for _ in range(share):
                await greet(request)

        await asyncio.gather(*(caller(n // CONCURRENCY) for _ in range(CONCURRENCY)))

    # each loop runs for about as long as the others: FastAPI is ~10x slower per
    # call, so it makes a tenth of the calls, and 64 callers, ~5x faster, make 4x more
    batch = CONCURRENCY * SLICES  # each slice gives every caller the same share
    concurrent = max(calls * 4, CONCURRENCY * 50) // batch * batch
    loops = {
        "echo": (echo_loop, calls),
        "nano": (nano_loop, calls),
        "fastapi": (fastapi_loop, max(calls // 10, 100)),
        "nano_x64": (nano_concurrent, concurrent),
    }
    results = await rounds_of(loops, rounds)
    assert tcp.connections == 1, "every call shared one connection"
    await http.aclose()
    await tcp.aclose()
    echo.transport.close()
    return results


def report(results: list[Round]) -> None:
    """Median per-call figures, and the median over rounds of each round's ratio."""
    us = {name: statistics.median(r[name] for r in results) * 1e6 for name in results[0]}
    print(f"{'echo floor (asyncio, msgpack frames)':<40} {us['echo']:8.1f} µs/call")
    print(f"{'nanobuild tcp (remote_route)':<40} {us['nano']:8.1f} µs/call")
    print(f"{'fastapi + httpx (JSON over HTTP/1.1)':<40} {us['fastapi']:8.1f} µs/call")
    print(
        f"{f'nanobuild tcp, {CONCURRENCY} concurrent callers':<40} {us['nano_x64']:8.1f} µs/call "
        f"({1e6 / us['nano_x64']:,.0f} calls/s vs {1e6 / us['nano']:,.0f} sequential)"
    )
    print()
    concurrency = f"x{CONCURRENCY} / sequential throughput"
    checks = [
        ("tcp / echo floor", "nano", "echo", "<=", TARGETS["echo"]),
        ("fastapi+httpx / tcp", "fastapi", "nano", ">=", TARGETS["fastapi"]),
        (concurrency, "nano", "nano_x64", ">=", TARGETS["concurrency"]),
    ]
    for label, top, bottom, sense, target in checks:
        ratios = [r[top] / r[bottom] for r in results]
        ratio = statistics.median(ratios)
        met = ratio <= target if sense == "<=" else ratio >= target
        spread = f"rounds {min(ratios):.2f}-{max(ratios):.2f}"
        verdict = "met" if met else "MISSED"
        print(f"{label:<34} {ratio:6.2f}x  ({spread}; target {sense} {target}: {verdict})")


@contextmanager
def cpus_awake(*, allow_idle: bool) -> Iterator[str]:
    """Hold every CPU out of idle states while the block runs, unless ``allow_idle``.

    A PM QoS request: asking for 0 µs of wake-up latency lasts as long as
    ``/dev/cpu_dma_latency`` stays open. Yields a line saying what was done.
    """
    if allow_idle:
        yield "CPUs may enter idle states (--allow-idle): wake-ups include leaving them"
        return
    try:
        fd = os.open("/dev/cpu_dma_latency", os.O_WRONLY)
    except OSError as exc:
        yield (
            f"CPUs may enter idle states: cannot open /dev/cpu_dma_latency ({exc.strerror}); "
            "run as root to hold them awake"
        )
        return
    try:
        os.write(fd, struct.pack("i", 0))
        yield "CPUs held out of idle states (/dev/cpu_dma_latency = 0; --allow-idle for without)"
    finally:
        os.close(fd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--calls", type=at_least(100), default=5000, help="calls per round (default 5000)"
    )
    parser.add_argument("--rounds", type=at_least(1), default=7, help="rounds (default 7)")
    parser.add_argument(
        "--allow-idle", action="store_true", help="let the CPUs enter idle states between calls"
    )
    parser.add_argument("--serve-echo", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_echo:
        asyncio.run(serve_echo(args.serve_echo))
        return
    with tempfile.TemporaryDirectory(prefix="nano-bench-") as tmp:
        root = Path(tmp)
        write_workspace(root)
        (root / "nano_server.py").write_text(textwrap.dedent(NANO_SERVER))
        importable = {"PYTHONPATH": str(root / "services" / "greeter")}
        ports = {name: free_port() for name in ("echo", "nano", "fastapi")}
        servers = {
            "echo": [sys.executable, __file__, "--serve-echo", str(ports["echo"])],
            "nano": [sys.executable, "nano_server.py", str(ports["nano"]), SECRET],
            "fastapi": [
                *(sys.executable, "-m", "uvicorn", "fastapi_app:app", "--log-level", "warning"),
                *("--no-access-log", "--port", str(ports["fastapi"])),
            ],
        }
        with (
            cpus_awake(allow_idle=args.allow_idle) as condition,
            running(servers["echo"], ports["echo"], root),
            running(servers["nano"], ports["nano"], root, env=importable),
            running(servers["fastapi"], ports["fastapi"], root),
        ):
            results = asyncio.run(measure(root, ports, args.calls, args.rounds))
    print(condition, end="\n\n")
    report(results)


if __name__ == "__main__":
    main()
