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

``--stack`` names the stacks to compare (default: asyncio-h11 and, where installed,
uvloop-httptools). Each stack has its own servers and its own client process, all
on its event loop (FastAPI on its HTTP parser too); the clients take turns a round
at a time, so the stacks' figures and their ratios come from one run.
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
                                      [--stack asyncio-h11,uvloop-httptools]

Needs FastAPI and httpx (pip install -e ".[dev]").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, cast

import msgspec
import stacks
from workload import at_least, free_port, running, write_workspace

SECRET = "bench-secret-Vb0mW4cXq9LrT2yHs7KdAg"
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

if sys.argv[3] == "uvloop-httptools":
    import uvloop

    uvloop.run(serve())
else:
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
        # uvloop's transports are no subclass of asyncio.Transport, but have its methods
        self.transport = cast(asyncio.Transport, transport)
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


# -- measuring

Loop = Callable[[int], Awaitable[None]]
Round = dict[str, float]  # loop name -> mean seconds per call


async def run_round(loops: Mapping[str, tuple[Loop, int]]) -> Round:
    """Every loop for its number of calls, in SLICES turns.

    The loops take turns a slice of their calls at a time, so a busy moment of the
    machine falls on all of them rather than on whichever loop was running.
    """
    spent = dict.fromkeys(loops, 0.0)
    for _ in range(SLICES):
        for name, (loop, calls) in loops.items():
            start = time.perf_counter()
            await loop(calls // SLICES)
            spent[name] += time.perf_counter() - start
    return {name: spent[name] / (calls // SLICES * SLICES) for name, (_, calls) in loops.items()}


async def client(root: Path, ports: dict[str, int], calls: int) -> None:
    """Warm up, then run a round for each ``round`` line on stdin, a JSON line each.

    It says ``ready`` first (with its event loop's module) and stops at ``done``.
    """
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
    for run, count in loops.values():
        await run(max(count // 10, CONCURRENCY))  # warm up: connections, caches
    print(json.dumps({"ready": type(loop).__module__}), flush=True)
    # read while the loop runs, so the connections are served while it waits its turn
    while (await loop.run_in_executor(None, sys.stdin.readline)).strip() == "round":
        print(json.dumps(await run_round(loops)), flush=True)
    assert tcp.connections == 1, "every call shared one connection"
    await http.aclose()
    await tcp.aclose()
    echo.transport.close()


class Client:
    """A client process on one stack, running a round when asked."""

    def __init__(self, stack: str, root: Path, ports: dict[str, int], calls: int) -> None:
        self.stack = stack
        command = [sys.executable, __file__, "--client", stack, "--root", str(root)]
        command += ["--ports", json.dumps(ports), "--calls", str(calls)]
        self.proc = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        loop = self._answer().get("ready")
        wanted = "uvloop" if stack == "uvloop-httptools" else "asyncio"
        if not isinstance(loop, str) or loop.split(".")[0] != wanted:
            sys.exit(f"the {stack} client runs on {loop}'s loop")

    def round(self) -> Round:
        self._say("round")
        return self._answer()

    def close(self) -> None:
        self._say("done")
        if self.proc.wait(timeout=30) != 0:
            sys.exit(f"the {self.stack} client failed")

    def _say(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def _answer(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            sys.exit(f"the {self.stack} client ended early (exit code {self.proc.wait()})")
        answer: dict[str, Any] = json.loads(line)
        return answer


def measure(clients: list[Client], rounds: int) -> dict[str, list[Round]]:
    """Each stack's rounds; the clients take turns, one starting later each round."""
    results: dict[str, list[Round]] = {c.stack: [] for c in clients}
    for index in range(rounds):
        turn = clients[index % len(clients) :] + clients[: index % len(clients)]
        for each in turn:
            results[each.stack].append(each.round())
    for each in clients:
        each.close()
    return results


LABELS = {
    "echo": "echo floor (msgpack frames)",
    "nano": "nanobuild tcp (remote_route)",
    "fastapi": "fastapi + httpx (JSON, HTTP/1.1)",
    "nano_x64": f"nanobuild tcp, {CONCURRENCY} callers",
}


def report(results: dict[str, list[Round]]) -> None:
    """Median µs per call on each stack, the targets' ratios, and stack against stack."""
    names = list(results)
    print(f"{'µs per call (median)':<34}" + "".join(f"{stack:>18}" for stack in names))
    for loop, label in LABELS.items():
        us = [statistics.median(r[loop] for r in results[stack]) * 1e6 for stack in names]
        print(f"{label:<34}" + "".join(f"{u:>18.1f}" for u in us))
    for stack in names:
        print(f"\n{stack}:")
        targets(results[stack])
    if len(names) == 2:
        slow, fast = names
        print(f"\n{fast} / {slow}, time per call (rounds' ratios, taken in turn):")
        for loop, label in LABELS.items():
            ratios = [f[loop] / s[loop] for f, s in zip(results[fast], results[slow], strict=True)]
            spread = f"rounds {min(ratios):.2f}-{max(ratios):.2f}"
            print(f"  {label:<32} {statistics.median(ratios):6.2f}x  ({spread})")


def targets(results: list[Round]) -> None:
    """The median over rounds of each round's ratio, against its target."""
    us = {name: statistics.median(r[name] for r in results) * 1e6 for name in results[0]}
    rates = f"{1e6 / us['nano_x64']:,.0f} calls/s with {CONCURRENCY} callers"
    print(f"  {rates}, {1e6 / us['nano']:,.0f} sequential")
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
        print(f"  {label:<32} {ratio:6.2f}x  ({spread}; target {sense} {target}: {verdict})")


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


def servers(root: Path, stack: str) -> tuple[dict[str, int], dict[str, list[str]]]:
    """The ports and commands of the stack's echo, nanobuild and FastAPI servers."""
    ports = {name: free_port() for name in ("echo", "nano", "fastapi")}
    commands = {
        "echo": [sys.executable, __file__, "--serve-echo", str(ports["echo"]), "--client", stack],
        "nano": [sys.executable, "nano_server.py", str(ports["nano"]), SECRET, stack],
        "fastapi": [
            *(sys.executable, "-m", "uvicorn", "fastapi_app:app", "--log-level", "warning"),
            *("--no-access-log", "--port", str(ports["fastapi"]), *stacks.uvicorn_flags(stack)),
        ],
    }
    return ports, commands


def run_all(root: Path, args: argparse.Namespace) -> dict[str, list[Round]]:
    """Start every stack's servers and client, check what each loaded, and measure."""
    importable = {"PYTHONPATH": str(root / "services" / "greeter")}
    with ExitStack() as started:
        clients = []
        for stack in args.stack:
            ports, commands = servers(root, stack)
            for name, command in commands.items():
                env = importable if name == "nano" else None
                started.enter_context(running(command, ports[name], root, env=env))
                pid = stacks.started_as(command)
                stacks.check(stack, [pid], f"the {stack} {name} server", http=name == "fastapi")
            clients.append(Client(stack, root, ports, args.calls))
        return measure(clients, args.rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--calls", type=at_least(100), default=5000, help="calls per round (default 5000)"
    )
    parser.add_argument("--rounds", type=at_least(1), default=7, help="rounds (default 7)")
    parser.add_argument(
        "--allow-idle", action="store_true", help="let the CPUs enter idle states between calls"
    )
    stacks.add_stack_option(parser)
    parser.add_argument("--serve-echo", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--client", choices=list(stacks.STACKS), help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--ports", type=json.loads, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_echo:
        stacks.run_on(args.client, serve_echo(args.serve_echo))
        return
    if args.client:
        stacks.run_on(args.client, client(args.root, args.ports, args.calls))
        return
    with tempfile.TemporaryDirectory(prefix="nano-bench-") as tmp:
        root = Path(tmp)
        write_workspace(root)
        (root / "nano_server.py").write_text(textwrap.dedent(NANO_SERVER))
        with cpus_awake(allow_idle=args.allow_idle) as condition:
            results = run_all(root, args)
    print(condition, end="\n\n")
    report(results)


if __name__ == "__main__":
    main()
