"""Replicas behind one name, on loopback: discovery, balancing, drain, on real binaries.

One host name resolves to several ``127.0.0.x`` addresses through ``/etc/hosts``, the
system resolver's own file (the runtime looks names up as any program does): the
``hosts`` fixture adds lines for the test's names and puts the file back byte for
byte afterwards, whatever happens. Each replica is the boutique's binary serving
catalog alone on its own address, all on one internal port; the callers are this
process, through the real TCP transport of ``tcp://<name>:<port>``. Every replica
records the request id (a per-call context entry) of each call its handler ran,
through an interceptor (NANO_INTERCEPTORS), so the test counts what ran where, and
what ran twice. Run with ``-s`` to see the figures.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nanobuild.runtime import Interrupted, NanoError, Unsent, context
from nanobuild.runtime.transports.base import remote_route
from nanobuild.runtime.transports.tcp import TcpTransport
from tests.conftest import REPO
from tests.servers import Binary, Server, free_port, start

sys.path[:0] = [str(REPO / "services" / "catalog"), str(REPO / "libs" / "money")]
from catalog.kernel import GetProduct, SearchProducts  # noqa: E402

SECRET = "replicas-test-secret-Vq8mZ2xPpL0sN4kR7tYw"
HOSTS = Path("/etc/hosts")
PRODUCT = "OLJCESPC7Z"

RECORDER = '''
"""Records the request id of every call a handler of this process ran."""
import os

_out = open(os.environ["REPLICA_RECORD"], "a", buffering=1)


async def record(call, proceed):
    result = await proceed()
    rid = call.context.get("rid") if call.direction == "inbound" else None
    if rid:
        _out.write(rid + "\\n")  # after the handler ran, before its answer leaves
    return result
'''


class Hosts:
    """Names this test adds to /etc/hosts, rewritten whole each time they change."""

    def __init__(self, original: bytes) -> None:
        self.original = original
        self.names: dict[str, list[str]] = {}

    def point(self, name: str, *addresses: str) -> None:
        self.names[name] = list(addresses)
        lines = [f"{address} {n}\n" for n, found in self.names.items() for address in found]
        text = self.original.decode()
        if text and not text.endswith("\n"):
            text += "\n"
        HOSTS.write_text(text + "".join(lines))


@pytest.fixture
def hosts() -> Iterator[Hosts]:
    if not os.access(HOSTS, os.W_OK):
        pytest.skip(f"{HOSTS} is not writable here: several addresses for one name need it")
    original = HOSTS.read_bytes()
    try:
        yield Hosts(original)
    finally:
        HOSTS.write_bytes(original)


@pytest.fixture(scope="module")
def recorder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("recorder")
    (folder / "replicarecord.py").write_text(RECORDER)
    return folder


class Replicas:
    """Catalog replicas of the boutique's binary, one per loopback address, one port."""

    def __init__(self, binary: Binary, recorder: Path, tmp: Path, port: int) -> None:
        self.binary, self.recorder, self.tmp, self.port = binary, recorder, tmp, port
        self.servers: dict[str, Server] = {}

    def start(self, address: str, secret: str = SECRET) -> Server:
        env = {
            **self.binary.env,
            "NANO_SECRET": secret,
            "NANO_INTERCEPTORS": "replicarecord:record",
            "PYTHONPATH": str(self.recorder),
            "REPLICA_RECORD": str(self.record(address)),
            "NANO_DRAIN_SECONDS": "5",
        }
        command = self.binary.command(
            "serve", "--only", "catalog", "--host", address, "--port", "0",
            "--internal-port", str(self.port),
        )  # fmt: skip
        server = start(command, self.tmp / f"{address}.log", env, cwd=self.binary.pyz.parent)
        self.servers[address] = server
        return server

    def record(self, address: str) -> Path:
        return self.tmp / f"{address}.ran"

    def ran(self, address: str) -> list[str]:
        path = self.record(address)
        return path.read_text().split() if path.exists() else []

    def stop(self) -> None:
        for server in self.servers.values():
            if server.proc.poll() is None:
                server.proc.kill()
            server.proc.wait()


@pytest.fixture
def replicas(boutique_binary: Binary, recorder: Path, tmp_path: Path) -> Iterator[Replicas]:
    made = Replicas(boutique_binary, recorder, tmp_path, free_port())
    try:
        yield made
    finally:
        made.stop()


class Load:
    """Callers in this process, each calling one after another until stopped, ``think``
    seconds apart: a load the replicas keep up with, so that the share each gets is the
    balancer's doing, not the doing of a scheduler that gives one process less time."""

    def __init__(self, transport: TcpTransport, think: float = 0.0) -> None:
        self.think = think
        self.get = remote_route(transport, "catalog", GetProduct, idempotent=True)
        self.search = remote_route(transport, "catalog", SearchProducts, idempotent=False)
        self.sent: dict[str, str] = {}  # request id -> "ok" or the error's class
        self.failures: list[tuple[float, str, NanoError]] = []
        self.running = True
        self._ids = iter(range(10**9))

    async def caller(self, number: int) -> None:
        while self.running:
            i = next(self._ids)
            idempotent = i % 4 != 3  # a quarter of the calls may not be sent twice
            rid = f"{'g' if idempotent else 's'}{i}"
            with context.extended({"rid": rid}):
                try:
                    if idempotent:
                        await self.get(GetProduct(id=PRODUCT))
                    else:
                        await self.search(SearchProducts(query="mug"))
                    self.sent[rid] = "ok"
                except NanoError as exc:
                    self.sent[rid] = type(exc).__name__
                    self.failures.append((time.monotonic(), rid, exc))
            if self.think:
                await asyncio.sleep(self.think)

    def failed(self, prefix: str) -> list[tuple[float, str, NanoError]]:
        return [f for f in self.failures if f[1].startswith(prefix)]


def counts(replicas: Replicas, addresses: list[str]) -> dict[str, int]:
    return {a: len(replicas.ran(a)) for a in addresses}


async def wait_until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {timeout:g} s")
        await asyncio.sleep(0.05)


def test_three_replicas_kill_drain_and_a_fourth(hosts: Hosts, replicas: Replicas) -> None:
    """64 callers over 3 replicas behind one name: the load spreads within 20%; one
    replica SIGKILLed and one drained (SIGTERM) mid-run fail no idempotent call and run
    no call twice but those the killed one took down with it; a 4th that joins the name
    gets load after the next look-up."""
    name = "catalog-replicas.nanotest"
    a, b, c, d = "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"
    hosts.point(name, a, b, c)
    for address in (a, b, c):
        replicas.start(address)
    figures = asyncio.run(_run(hosts, replicas, name, (a, b, c, d)))
    print("\nreplicas:", figures)


async def _run(
    hosts: Hosts, replicas: Replicas, name: str, addresses: tuple[str, str, str, str]
) -> dict[str, Any]:
    a, b, c, d = addresses
    transport = TcpTransport(f"tcp://{name}:{replicas.port}", secret=SECRET, resolve_every=0.5)
    load = Load(transport, think=0.03)  # while the shares are counted
    callers = [asyncio.create_task(load.caller(n)) for n in range(64)]
    figures: dict[str, Any] = {}
    try:
        await asyncio.sleep(1.0)  # connections opened, warm
        before = counts(replicas, [a, b, c])
        await asyncio.sleep(3.0)
        after = counts(replicas, [a, b, c])
        spread = {x: after[x] - before[x] for x in (a, b, c)}
        mean = sum(spread.values()) / 3
        figures["all up, calls each"] = spread
        figures["spread"] = round((max(spread.values()) - min(spread.values())) / mean, 3)
        assert mean > 50, spread
        assert figures["spread"] <= 0.2, spread

        load.think = 0.0  # as fast as they go: many calls in flight at the kill
        await asyncio.sleep(0.5)
        killed_at = time.monotonic()
        replicas.servers[a].proc.kill()  # SIGKILL: no goodbye
        await asyncio.sleep(1.5)
        drained_at = time.monotonic()
        replicas.servers[b].proc.send_signal(signal.SIGTERM)  # a drain
        code = await asyncio.to_thread(replicas.servers[b].proc.wait, 10)
        figures["drain exit code, seconds"] = (code, round(time.monotonic() - drained_at, 2))
        assert code == 0, replicas.servers[b].log()
        await asyncio.sleep(0.5)

        await asyncio.to_thread(replicas.start, d)  # a fourth joins the name; the callers
        # find it by looking the name up again
        hosts.point(name, a, b, c, d)
        joined = time.monotonic()
        await wait_until(lambda: len(replicas.ran(d)) > 100, 5, "load on the 4th")
        figures["4th replica: 100 calls, seconds after it joined"] = round(
            time.monotonic() - joined, 2
        )
    finally:
        load.running = False
        await asyncio.gather(*callers)
        await transport.aclose()
    ran = collections.Counter(r for x in addresses for r in replicas.ran(x))
    twice = [rid for rid, n in ran.items() if n > 1]
    figures["calls"] = len(load.sent)
    figures["failed idempotent"] = len(load.failed("g"))
    figures["failed others (Interrupted)"] = len(load.failed("s"))
    figures["ran twice"] = len(twice)
    assert not load.failed("g"), load.failed("g")[:3]
    # a call that may not be sent twice fails only if it was cut off by the kill: it
    # was sent, and may have run
    for when, rid, exc in load.failed("s"):
        assert isinstance(exc, Interrupted), (rid, exc)
        assert killed_at <= when < drained_at, (rid, exc)
    # only an idempotent call the killed replica ran, and whose answer died with it,
    # runs again elsewhere; nothing else runs twice
    killed = set(replicas.ran(a))
    assert all(rid.startswith("g") and rid in killed for rid in twice), twice[:5]
    assert len(twice) <= 64, len(twice)
    # every call answered ran somewhere
    missing = [rid for rid, how in load.sent.items() if how == "ok" and rid not in ran]
    assert not missing, missing[:5]
    # the drained replica took no call after it said it was going away, and failed none
    log = replicas.servers[b].log()
    assert "draining" in log and "Traceback" not in log
    return figures


def test_a_name_that_does_not_resolve_at_start(
    hosts: Hosts, replicas: Replicas, caplog: pytest.LogCaptureFixture
) -> None:
    """The calls fail at once with Unsent naming the service and the name; the look-ups
    go on, and once the name resolves the calls go through."""
    name = "catalog-later.nanotest"
    replicas.start("127.0.0.6")

    async def run() -> None:
        transport = TcpTransport(f"tcp://{name}:{replicas.port}", secret=SECRET, resolve_every=0.2)
        get = remote_route(transport, "catalog", GetProduct, idempotent=True)
        try:
            began = time.monotonic()
            with pytest.raises(Unsent) as failed:
                await get(GetProduct(id=PRODUCT))
            assert time.monotonic() - began < 2
            message = str(failed.value)
            assert f"catalog has no reachable replica ({name} does not resolve" in message
            assert "GetProduct was not sent (it did not run)" in message
            assert await transport.reachable(0.5) == "its host name does not resolve"
            hosts.point(name, "127.0.0.6")
            deadline = time.monotonic() + 5
            while True:
                try:
                    product = await get(GetProduct(id=PRODUCT))
                    break
                except Unsent:
                    assert time.monotonic() < deadline, "the name was not looked up again"
                    await asyncio.sleep(0.1)
            assert product.id == PRODUCT
            assert await transport.reachable(0.5) == ""  # what /readyz asks
        finally:
            await transport.aclose()

    with caplog.at_level(logging.INFO, "nanobuild.tcp"):
        asyncio.run(run())
    unresolved = [r for r in caplog.records if "does not resolve" in r.getMessage()]
    assert len(unresolved) == 1, [r.getMessage() for r in unresolved]  # once per outage


def test_a_process_with_a_name_that_does_not_resolve_starts(
    boutique_binary: Binary, tmp_path: Path
) -> None:
    """The binary starts with such a remote, and answers a call needing it 503, no crash."""
    command = boutique_binary.command(
        "serve", "--only", "recommendation", "--port", "0",
        "--remote", "catalog=tcp://catalog-nowhere.nanotest:9100",
    )  # fmt: skip
    env = {**boutique_binary.env, "NANO_SECRET": SECRET}
    server = start(command, tmp_path / "rec.log", env, cwd=boutique_binary.pyz.parent)
    try:
        answer = server.call("recommendation", "ListRecommendations", {"user_id": "ada"})
        assert answer.status_code == 503, answer.text
        assert server.proc.poll() is None
    finally:
        assert server.stop() == 0
    log = server.log()
    assert "catalog-nowhere.nanotest" in log and "does not resolve" in log
    assert "Traceback" not in log


def test_a_replica_that_fails_the_handshake_is_set_aside(
    hosts: Hosts, replicas: Replicas, caplog: pytest.LogCaptureFixture
) -> None:
    """A replica with another secret accepts TCP but fails the handshake: every call
    goes to the good one, the log names the bad one once, and it is not hammered."""
    name = "catalog-mixed.nanotest"
    good, bad = "127.0.0.7", "127.0.0.8"
    replicas.start(good)
    replicas.start(bad, secret="another-secret-of-128-bits-Jx4Qw9Zr2Lm7")
    hosts.point(name, good, bad)

    async def run() -> tuple[int, int]:
        transport = TcpTransport(f"tcp://{name}:{replicas.port}", secret=SECRET)
        get = remote_route(transport, "catalog", GetProduct, idempotent=True)
        calls = 0
        try:
            until = time.monotonic() + 3
            while time.monotonic() < until:
                await asyncio.gather(*(get(GetProduct(id=PRODUCT)) for _ in range(16)))
                calls += 16
            assert transport.replicas is not None
            tried = transport.replicas.replicas[bad]
            assert isinstance(tried, TcpTransport) and tried.connections == 0
            attempts = tried.backoff.failures  # attempts in a row, all failed
        finally:
            await transport.aclose()
        return calls, attempts

    with caplog.at_level(logging.INFO, "nanobuild.tcp"):
        calls, attempts = asyncio.run(run())
    warned = [r for r in caplog.records if r.levelno >= logging.WARNING]
    named = [r.getMessage() for r in warned if bad in r.getMessage()]
    assert len(named) == 1, named
    assert "refused the connection" in named[0] and "secret" in named[0]
    print(f"\nhandshake-failing replica: {calls} calls all answered, {attempts} attempts on it")
    assert 2 <= attempts <= 10, attempts  # the back-off doubles its pauses, up to 1 s
    assert "refused" in replicas.servers[bad].log()  # it did see them, and said so
    assert calls >= 160


def test_drain_answers_the_calls_in_flight(
    hosts: Hosts, replicas: Replicas, tmp_path: Path
) -> None:
    """SIGTERM with calls in flight on one replica of two: none fails, that process exits
    0 within NANO_DRAIN_SECONDS, and it ran none of the calls sent after its GOAWAY."""
    name = "catalog-drain.nanotest"
    first, second = "127.0.0.9", "127.0.0.10"
    for address in (first, second):
        replicas.start(address)
    hosts.point(name, first, second)

    async def run() -> tuple[int, float, Load]:
        transport = TcpTransport(f"tcp://{name}:{replicas.port}", secret=SECRET)
        load = Load(transport)
        callers = [asyncio.create_task(load.caller(n)) for n in range(16)]
        try:
            await asyncio.sleep(1)
            began = time.monotonic()
            replicas.servers[first].proc.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(replicas.servers[first].proc.wait, 10)
            took = time.monotonic() - began
            await asyncio.sleep(0.5)
        finally:
            load.running = False
            await asyncio.gather(*callers)
            await transport.aclose()
        return code, took, load

    code, took, load = asyncio.run(run())
    assert code == 0 and took < 5, (code, took)
    assert not load.failures, load.failures[:3]
    ran = collections.Counter(r for x in (first, second) for r in replicas.ran(x))
    assert not [rid for rid, n in ran.items() if n > 1]
    assert all(rid in ran for rid, how in load.sent.items() if how == "ok")
    print(f"\ndrain: {len(load.sent)} calls, none failed, exit 0 after {took:.2f} s")


def test_the_new_settings_are_checked() -> None:
    """NANO_RESOLVE_EVERY and NANO_DRAIN_SECONDS take positive seconds, else one line."""
    for variable in ("NANO_RESOLVE_EVERY", "NANO_DRAIN_SECONDS"):
        done = subprocess.run(
            [sys.executable, "-m", "nanobuild", "serve", "--workspace", str(REPO), "--port", "0"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, variable: "soon", "NANO_SECRET": SECRET},
        )
        assert done.returncode == 2, done.stderr
        assert f"{variable} must be a positive number of seconds, not 'soon'" in done.stderr
        assert "Traceback" not in done.stderr
