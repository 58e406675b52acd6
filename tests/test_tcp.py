"""The TCP transport and server, over real sockets on 127.0.0.1.

In-process tests run a ``TcpServer`` and its callers on one event loop; bad peers
are raw sockets speaking (or not) the protocol by hand. The fault tests run the
server as a real process, kill it with SIGKILL mid-call and start it again, and cut
connections with a small proxy, counting on the server side how often a handler ran.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import re
import signal
import struct
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import msgspec
import pytest

from nanobuild.runtime import (
    BadRequest,
    Internal,
    Interrupted,
    NotFound,
    PayloadTooLarge,
    Timeout,
    Unavailable,
    UnknownContract,
    Unsent,
    call,
    router,
)
from nanobuild.runtime.addresses import AddressError, parse_address
from nanobuild.runtime.errors import SettingsError
from nanobuild.runtime.node import Node
from nanobuild.runtime.placement import Placement
from nanobuild.runtime.serving import may_suspend
from nanobuild.runtime.settings import Settings
from nanobuild.runtime.spec import AppSpec, ServiceSpec
from nanobuild.runtime.transports import frames
from nanobuild.runtime.transports.base import Backoff, Deadlines, remote_route, remote_routes
from nanobuild.runtime.transports.http import HttpTransport
from nanobuild.runtime.transports.local import LocalTransport
from nanobuild.runtime.transports.tcp import Outbox, TcpServer, TcpTransport
from nanobuild.runtime.wiring import wire

SECRET = "tcp-test-secret-nD-0J3gkd1gBm9azorgs4Q"

SERVICE = """
import asyncio
import functools
import os
import re
from typing import ClassVar

import msgspec

from nanobuild.runtime import Contract, NotFound, handler


class Echo(msgspec.Struct):
    text: str


class Say(Contract[Echo]):
    text: str


class Shout(Contract[Echo]):
    text: str


class Find(Contract[Echo]):
    key: str


class Explode(Contract[Echo]):
    pass


class Repeat(Contract[Echo]):
    text: str
    times: int


class Nap(Contract[Echo]):
    seconds: float


class Reread(Contract[Echo]):
    idempotent: ClassVar[bool] = True
    seconds: float


def record(name: str) -> None:
    path = os.environ.get("FAULTS_COUNT_FILE")
    if path:
        with open(path, "a") as file:
            file.write(name + "\\n")


@handler
async def say(req: Say) -> Echo:
    return Echo(req.text)


@handler
def shout(req: Shout) -> Echo:
    return Echo(req.text.upper())


@handler
async def find(req: Find) -> Echo:
    raise NotFound(f"no {req.key} here")


@handler
async def explode(req: Explode) -> Echo:
    raise RuntimeError("kaboom")


@handler
def repeat(req: Repeat) -> Echo:
    return Echo(req.text * req.times)


@handler
async def nap(req: Nap) -> Echo:
    record("nap")
    await asyncio.sleep(req.seconds)
    return Echo("awake")


@handler
async def reread(req: Reread) -> Echo:
    record("reread")
    await asyncio.sleep(req.seconds)
    return Echo("read")
"""

HANDLERS = {
    "Say": "say",
    "Shout": "shout",
    "Find": "find",
    "Explode": "explode",
    "Repeat": "repeat",
    "Nap": "nap",
    "Reread": "reread",
}

SERVER_SCRIPT = """
import asyncio
import functools
import sys

sys.path.insert(0, sys.argv[1])

from nanobuild.runtime.transports.tcp import TcpServer
from nanobuild.runtime.spec import AppSpec, ServiceSpec
from nanobuild.runtime.wiring import wire

HANDLERS = {handlers!r}
SPEC = AppSpec(
    name="faults",
    services=(
        ServiceSpec(
            name="faults",
            package="faults",
            handlers={{c: "faults:" + f for c, f in HANDLERS.items()}},
        ),
    ),
)


async def main() -> None:
    server = TcpServer(wire(SPEC), port=int(sys.argv[2]))  # the secret: NANO_SECRET
    await server.start()
    print("listening on", server.address.port, flush=True)
    await asyncio.Event().wait()


asyncio.run(main())
"""


def spec() -> AppSpec:
    handlers = {contract: f"faults:{fn}" for contract, fn in HANDLERS.items()}
    return AppSpec(name="faults", services=(ServiceSpec("faults", "faults", handlers),))


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[Path]:
    """A folder holding the ``faults`` service module, importable for the test's duration."""
    (tmp_path / "faults.py").write_text(textwrap.dedent(SERVICE))
    sys.path.insert(0, str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    sys.path.remove(str(tmp_path))
    for name in set(sys.modules) - before:
        del sys.modules[name]
    router.install({})


@pytest.fixture
def node(workdir: Path) -> Node:
    return wire(spec())


@pytest.fixture
def faults(workdir: Path) -> Any:
    import faults  # type: ignore[import-not-found]

    return faults


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(coro)  # type: ignore[arg-type]


@asynccontextmanager
async def serving(node: Node, **options: Any) -> AsyncIterator[TcpServer]:
    server = TcpServer(node, secret=options.pop("secret", SECRET), **options)
    await server.start()
    try:
        yield server
    finally:
        await server.close()


def client(server: TcpServer, **options: Any) -> TcpTransport:
    return TcpTransport(str(server.address), secret=options.pop("secret", SECRET), **options)


def tcp_lines(caplog: pytest.LogCaptureFixture, needle: str = "") -> list[str]:
    """Warnings and errors the TCP side logged, optionally only those containing ``needle``."""
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "nanobuild.tcp"
        and record.levelno >= logging.WARNING
        and needle in record.getMessage()
    ]


async def eventually(check: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the condition never held"
        await asyncio.sleep(0.01)


# -- round trips


def test_calls_round_trip_on_uvloop(node: Node, faults: Any) -> None:
    uvloop = pytest.importorskip("uvloop")  # in the bench extra, which CI installs

    async def scenario() -> None:
        async with serving(node) as server:
            transport = client(server)
            say = remote_route(transport, "faults", faults.Say)
            answers = await asyncio.gather(*(say(faults.Say(f"u{i}")) for i in range(50)))
            assert [a.text for a in answers] == [f"u{i}" for i in range(50)]
            await transport.aclose()

    loop = uvloop.new_event_loop()
    try:
        loop.run_until_complete(asyncio.wait_for(scenario(), 10))
    finally:
        loop.close()


def test_many_concurrent_calls_share_one_connection(node: Node, faults: Any) -> None:
    async def scenario() -> None:
        async with serving(node) as server:
            transport = client(server)
            say = remote_route(transport, "faults", faults.Say)
            shout = remote_route(transport, "faults", faults.Shout)
            texts = [f"call {i}" for i in range(500)]
            answers = await asyncio.gather(
                *(
                    say(faults.Say(t)) if i % 2 else shout(faults.Shout(t))
                    for i, t in enumerate(texts)
                )
            )
            assert [a.text for a in answers] == [
                t if i % 2 else t.upper() for i, t in enumerate(texts)
            ]
            assert all(type(a) is faults.Echo for a in answers)
            assert (transport.connections, server.accepted) == (1, 1)
            await transport.aclose()

    run(scenario())


def test_errors_keep_their_class_and_place(
    node: Node, faults: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        async with serving(node) as server:
            transport = client(server)
            with pytest.raises(NotFound, match="no x here") as found:
                await remote_route(transport, "faults", faults.Find)(faults.Find("x"))
            assert (found.value.service, found.value.contract) == ("faults", "Find")
            with pytest.raises(Internal, match="unexpected RuntimeError") as internal:
                await remote_route(transport, "faults", faults.Explode)(faults.Explode())
            assert "kaboom" not in internal.value.message  # the details stay in the server log
            await transport.aclose()

    run(scenario())
    traceback = [r for r in caplog.records if r.exc_info and "faults.Explode" in r.getMessage()]
    assert len(traceback) == 1 and "kaboom" in str(traceback[0].exc_info[1])  # type: ignore[index]


def test_requests_are_decoded_strictly(node: Node) -> None:
    class Say(msgspec.Struct):  # a caller whose kernel is newer than the server's
        text: str
        loud: bool = True

    async def scenario() -> None:
        async with serving(node) as server:
            transport = client(server)
            route = remote_route(transport, "faults", Say, response=dict)
            with pytest.raises(BadRequest, match="unknown field `loud`"):
                await route(Say("hi"))
            await transport.aclose()

    run(scenario())


def test_frames_over_the_limit_fail_their_own_call_only(node: Node, faults: Any) -> None:
    async def scenario() -> None:
        async with serving(node, max_frame=1024) as server:
            transport = client(server, max_frame=1024)
            repeat = remote_route(transport, "faults", faults.Repeat)
            with pytest.raises(PayloadTooLarge, match="over the frame limit of 1024"):
                await repeat(faults.Repeat("x" * 2000, 1))  # refused before it is sent
            with pytest.raises(
                Internal, match=r"the answer is \d+ bytes, over the frame limit of 1024"
            ):
                await repeat(faults.Repeat("x", 2000))  # answered with an error instead
            assert (await repeat(faults.Repeat("ab", 2))).text == "abab"
            assert (transport.connections, server.accepted) == (1, 1)
            await transport.aclose()

    run(scenario())


def test_an_unknown_contract_is_answered_and_the_connection_kept(
    node: Node, faults: Any, caplog: pytest.LogCaptureFixture
) -> None:
    class Vanished(msgspec.Struct):
        pass

    async def scenario() -> None:
        async with serving(node) as server:
            transport = client(server)
            with pytest.raises(UnknownContract) as unknown:
                await remote_route(transport, "faults", Vanished, response=dict)(Vanished())
            assert (unknown.value.service, unknown.value.contract) == ("faults", "Vanished")
            with pytest.raises(UnknownContract):
                await remote_route(transport, "elsewhere", faults.Say)(faults.Say("x"))
            assert (
                await remote_route(transport, "faults", faults.Say)(faults.Say("ok"))
            ).text == "ok"
            assert transport.connections == 1
            await transport.aclose()

    run(scenario())
    assert len(tcp_lines(caplog, "faults.Vanished, which is not served here")) == 1


def test_a_timeout_raises_timeout_and_the_late_answer_is_dropped(
    node: Node, faults: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        async with serving(node) as server:
            transport = client(server)
            nap = remote_route(transport, "faults", faults.Nap, timeout=0.1)
            started = time.monotonic()
            with pytest.raises(Timeout, match=r"did not answer Nap within 0\.1 s") as late:
                await nap(faults.Nap(0.4))
            assert time.monotonic() - started < 0.3
            assert (late.value.service, late.value.contract) == ("faults", "Nap")
            await asyncio.sleep(0.5)  # the answer arrives now, for nobody
            say = remote_route(transport, "faults", faults.Say)
            assert (await say(faults.Say("still here"))).text == "still here"
            assert transport.connections == 1
            await transport.aclose()

    run(scenario())
    assert tcp_lines(caplog) == []


def test_a_dead_address_is_unavailable_at_once(faults: Any) -> None:
    async def scenario() -> None:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()  # the port is now free: nobody listens there
        transport = TcpTransport(f"tcp://127.0.0.1:{port}", secret=SECRET)
        say = remote_route(transport, "faults", faults.Say, timeout=5)
        for _ in range(3):  # the first attempt fails, the others fall in the back-off
            started = time.monotonic()
            with pytest.raises(Unsent, match="connection refused") as unavailable:
                await say(faults.Say("x"))
            assert time.monotonic() - started < 1.5
            assert unavailable.value.service == "faults"
            assert "was not sent (it did not run)" in unavailable.value.message
            assert not isinstance(unavailable.value, Interrupted)
        await transport.aclose()

    run(scenario())


async def babble(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"SSH-2.0-OpenSSH_9.6\r\n")
    await asyncio.sleep(5)


async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(5)


@pytest.mark.parametrize(
    ("behave", "why"),
    [(babble, "cannot reach .*: a frame of .* bytes is over the limit"), (mute, "within 0.3 s")],
    ids=["not-nanobuild", "never-answers"],
)
def test_a_remote_that_does_not_speak_the_protocol_is_unavailable(
    faults: Any,
    caplog: pytest.LogCaptureFixture,
    behave: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
    why: str,
) -> None:
    async def scenario() -> None:
        server = await asyncio.start_server(behave, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        transport = TcpTransport(f"tcp://127.0.0.1:{port}", secret=SECRET)
        started = time.monotonic()
        with pytest.raises(Unavailable, match=why):
            await remote_route(transport, "faults", faults.Say, timeout=0.3)(faults.Say("x"))
        assert time.monotonic() - started < 1
        await transport.aclose()
        server.close()

    run(scenario())
    assert len(tcp_lines(caplog)) <= 1


def test_a_call_waiting_on_a_connection_its_transport_closes_is_unsent(faults: Any) -> None:
    """A replica retired while a call waits for its connection: the call was not sent, so
    the pool can send it elsewhere (not a cancellation leaking out of the shared attempt)."""

    async def scenario() -> None:
        server = await asyncio.start_server(mute, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        transport = TcpTransport(f"tcp://127.0.0.1:{port}", secret=SECRET)
        route = remote_route(transport, "faults", faults.Say, timeout=5)
        waiting = asyncio.ensure_future(route(faults.Say("x")))
        await asyncio.sleep(0.2)  # connected, waiting for the handshake's answer
        await transport.aclose()
        with pytest.raises(Unsent, match="closed as it connected"):
            await waiting
        server.close()

    run(scenario())


def test_local_transport_crosses_the_wire_form_in_process(node: Node, faults: Any) -> None:
    async def scenario() -> None:
        transport = LocalTransport(node)
        assert (
            await remote_route(transport, "faults", faults.Shout)(faults.Shout("a"))
        ).text == "A"
        with pytest.raises(NotFound):
            await remote_route(transport, "faults", faults.Find)(faults.Find("x"))
        with pytest.raises(Timeout):
            await remote_route(transport, "faults", faults.Nap, timeout=0.05)(faults.Nap(1))

    run(scenario())


# -- secrets


def test_processes_with_different_secrets_do_not_connect(
    node: Node, faults: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        async with serving(node, secret="the server's own secret, not the client's") as server:
            transport = client(server)
            with pytest.raises(Unavailable, match="did not prove it holds NANO_SECRET"):
                await remote_route(transport, "faults", faults.Say)(faults.Say("x"))
            await transport.aclose()

    run(scenario())
    assert len(tcp_lines(caplog, "cannot reach")) == 1  # the client's one line
    # the server's line: the client proves first, so the server is the one that refuses
    assert len(tcp_lines(caplog, "tcp: refused 127.0.0.1")) == 1


def test_a_client_without_the_secret_is_refused_by_the_server(
    node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        async with serving(node) as server:
            peer = await Peer.open(server)
            await peer.send(frames.Hello(frames.VERSION, frames.nonce()))
            assert isinstance(await peer.receive(), frames.Challenge)
            await peer.send(frames.Auth(b"\0" * 32))  # a guess
            denied = await peer.receive()
            assert isinstance(denied, frames.Denied)
            assert "did not prove it holds NANO_SECRET" in denied.reason
            assert await peer.hung_up()

    run(scenario())
    assert len(tcp_lines(caplog, "refused")) == 1


def test_the_secret_is_required_on_both_sides(node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NANO_SECRET", raising=False)
    with pytest.raises(SettingsError, match="need NANO_SECRET"):
        TcpTransport("tcp://127.0.0.1:9")
    with pytest.raises(SettingsError, match="need NANO_SECRET"):
        TcpServer(node)
    monkeypatch.setenv("NANO_SECRET", "from the environment")
    assert TcpServer(node).secret == b"from the environment"


# -- bad peers: each loses its connection, the log gets one line, the rest are served


class Peer:
    """A raw socket that speaks the protocol by hand, or not at all."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.name = "{}:{}".format(*writer.get_extra_info("sockname")[:2])

    @classmethod
    async def open(cls, server: TcpServer) -> Peer:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.address.port)
        return cls(reader, writer)

    async def send(self, message: Any) -> None:
        await self.send_raw(frames.frame(message))

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def receive(self) -> frames.Message:
        header = await self.reader.readexactly(4)
        body = await self.reader.readexactly(struct.unpack(">I", header)[0])
        (message,) = frames.FrameDecoder().feed(header + body)
        return message

    async def shake_hands(self) -> None:
        mine = frames.nonce()
        await self.send(frames.Hello(frames.VERSION, mine))
        challenge = await self.receive()
        assert isinstance(challenge, frames.Challenge)
        proof = frames.proof(SECRET.encode(), "client", mine, challenge.nonce)
        await self.send(frames.Auth(proof))
        assert isinstance(await self.receive(), frames.Welcome)

    async def hung_up(self, timeout: float = 3.0) -> bool:
        """Whether the server closes the connection (what it sends before is skipped)."""
        with suppress(ConnectionResetError):  # an abort, rather than a close
            await asyncio.wait_for(self._read_to_the_end(), timeout)
        self.writer.close()
        return True

    async def _read_to_the_end(self) -> None:
        while await self.reader.read(65536):
            pass

    async def close(self) -> None:
        self.writer.close()


async def garbage(peer: Peer) -> None:
    await peer.send_raw(b"\0\0\0\x05hello")


async def oversized(peer: Peer) -> None:
    await peer.send_raw(struct.pack(">I", 1025) + b"x" * 10)


async def http_request(peer: Peer) -> None:
    await peer.send_raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")


async def half_frame(peer: Peer) -> None:
    await peer.shake_hands()
    data = frames.call_frame(1, "faults", "Say", {}, {"text": "x"})
    await peer.send_raw(data[: len(data) // 2])
    await peer.close()


async def stalled_handshake(peer: Peer) -> None:
    await peer.send_raw(frames.frame(frames.Hello(frames.VERSION, frames.nonce()))[:10])


async def call_first(peer: Peer) -> None:
    await peer.send_raw(frames.call_frame(1, "faults", "Say", {}, {"text": "x"}))


async def call_before_auth(peer: Peer) -> None:
    await peer.send(frames.Hello(frames.VERSION, frames.nonce()))
    await peer.receive()
    await peer.send_raw(frames.call_frame(1, "faults", "Say", {}, {"text": "x"}))


async def wrong_version(peer: Peer) -> None:
    await peer.send(frames.Hello(99, frames.nonce()))


async def version_1(peer: Peer) -> None:  # a process built before the call context
    await peer.send(frames.Hello(1, frames.nonce()))


async def second_hello(peer: Peer) -> None:
    await peer.shake_hands()
    await peer.send(frames.Hello(frames.VERSION, frames.nonce()))


BAD_PEERS = {
    garbage: "not a nanobuild message",
    oversized: "a frame of 1025 bytes is over the limit of 1024",
    http_request: "over the limit",
    half_frame: "hung up in the middle of a frame",
    stalled_handshake: "no handshake within 0.2 s",
    call_first: "sent a call before completing the handshake",
    call_before_auth: "sent a call before completing the handshake",
    wrong_version: "protocol version 99 is not spoken here",
    version_1: f"protocol version 1 is not spoken here (only {frames.VERSION}): the two processes",
    second_hello: "unexpected Hello message",
}


@pytest.mark.parametrize("behave", BAD_PEERS, ids=[f.__name__ for f in BAD_PEERS])
def test_a_bad_peer_loses_only_its_own_connection(
    node: Node,
    faults: Any,
    caplog: pytest.LogCaptureFixture,
    behave: Callable[[Peer], Awaitable[None]],
) -> None:
    async def scenario() -> None:
        async with serving(node, max_frame=1024, handshake_timeout=0.2) as server:
            transport = client(server)
            say = remote_route(transport, "faults", faults.Say)
            assert (await say(faults.Say("before"))).text == "before"
            peer = await Peer.open(server)
            await behave(peer)
            assert await peer.hung_up()
            await eventually(lambda: bool(tcp_lines(caplog, peer.name)))
            await asyncio.sleep(0.05)  # a second line would have come by now
            lines = tcp_lines(caplog, peer.name)
            assert len(lines) == 1, lines
            assert BAD_PEERS[behave] in lines[0]
            assert (await say(faults.Say("after"))).text == "after"
            newcomer = client(server)
            assert (
                await remote_route(newcomer, "faults", faults.Say)(faults.Say("new"))
            ).text == "new"
            assert transport.connections == 1
            await transport.aclose()
            await newcomer.aclose()

    run(scenario())


def test_a_peer_that_connects_and_leaves_is_not_logged(
    node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        async with serving(node) as server:
            peer = await Peer.open(server)
            await peer.close()
            await asyncio.sleep(0.1)

    run(scenario())
    assert tcp_lines(caplog) == []


def test_a_closing_server_lets_calls_in_flight_finish(node: Node, faults: Any) -> None:
    async def scenario() -> None:
        server = TcpServer(node, secret=SECRET)
        await server.start()
        transport = client(server)
        nap = remote_route(transport, "faults", faults.Nap)
        pending = asyncio.ensure_future(nap(faults.Nap(0.2)))
        await asyncio.sleep(0.05)
        await server.close()
        assert (await pending).text == "awake"
        with pytest.raises(Unavailable):
            await nap(faults.Nap(0))
        await transport.aclose()

    run(scenario())


# -- faults with a real process


class ServerProcess:
    """The ``faults`` service behind a TcpServer, in its own process."""

    def __init__(self, workdir: Path, count_file: Path) -> None:
        self.workdir = workdir
        self.script = workdir / "serve_faults.py"
        self.script.write_text(SERVER_SCRIPT.format(handlers=HANDLERS))
        self.count_file = count_file
        self.port = 0
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        if self.proc is not None:
            await self.proc.wait()  # the one killed before
        env = {**os.environ, "NANO_SECRET": SECRET, "FAULTS_COUNT_FILE": str(self.count_file)}
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(self.script),
            str(self.workdir),
            str(self.port),
            stdout=asyncio.subprocess.PIPE,
            env=env,
        )
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), 30)
        assert line.startswith(b"listening on"), line
        self.port = int(line.split()[-1])

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()

    def executions(self, name: str) -> int:
        if not self.count_file.exists():
            return 0
        return self.count_file.read_text().split().count(name)

    @property
    def address(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"


@pytest.fixture
def process(workdir: Path) -> ServerProcess:
    return ServerProcess(workdir, workdir / "executions.txt")


def test_sigkill_mid_call_then_restart(process: ServerProcess, faults: Any) -> None:
    async def scenario() -> None:
        await process.start()
        transport = TcpTransport(process.address, secret=SECRET)
        say = remote_route(transport, "faults", faults.Say)
        nap = remote_route(transport, "faults", faults.Nap, timeout=5)
        reread = remote_route(transport, "faults", faults.Reread, timeout=5)
        try:
            assert (await say(faults.Say("up"))).text == "up"
            in_flight = [asyncio.ensure_future(nap(faults.Nap(30)))]
            in_flight.append(asyncio.ensure_future(reread(faults.Reread(30))))
            await eventually(lambda: process.executions("reread") == 1)
            process.kill()
            started = time.monotonic()
            for call in in_flight:  # both fail, well within their timeout: no hang
                with pytest.raises(Unavailable):
                    await call
            assert time.monotonic() - started < 2
            with pytest.raises(Unavailable, match="cannot reach"):
                await say(faults.Say("down"))

            await process.start()  # same port, same client: no restart of the caller
            started = time.monotonic()
            assert (await say(faults.Say("back"))).text == "back"
            assert time.monotonic() - started < 2  # at most one back-off pause
            assert transport.connections == 2
        finally:
            await transport.aclose()
            await process.stop()

    run(scenario())


class Proxy:
    """Forwards TCP between callers and a server; ``cut()`` drops every connection."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._connect, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"tcp://127.0.0.1:{port}"

    async def _connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self.writers += [writer, up_writer]
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
        except ConnectionError:
            pass
        writer.close()

    def cut(self) -> None:
        for writer in self.writers:
            writer.transport.abort()
        self.writers.clear()

    async def close(self) -> None:
        self.cut()
        if self.server is not None:
            self.server.close()


@pytest.mark.parametrize("idempotent", [True, False], ids=["idempotent", "not-idempotent"])
def test_a_dropped_connection_reruns_only_idempotent_calls(
    process: ServerProcess, faults: Any, idempotent: bool
) -> None:
    name, contract = ("reread", faults.Reread) if idempotent else ("nap", faults.Nap)

    async def scenario() -> None:
        await process.start()
        proxy = Proxy(process.port)
        transport = TcpTransport(await proxy.start(), secret=SECRET)
        route = remote_route(transport, "faults", contract, timeout=5)
        try:
            pending = asyncio.ensure_future(route(contract(0.3)))
            await eventually(lambda: process.executions(name) == 1)
            proxy.cut()  # mid-call: the server has started it, the answer will not come back
            if idempotent:
                assert (await pending).text == "read"  # sent again, on a fresh connection
                assert process.executions(name) == 2
                assert transport.connections == 2
            else:
                with pytest.raises(Interrupted, match="not idempotent, so not sent again") as cut:
                    await pending
                assert "Nap was sent and may have run" in cut.value.message
                assert not isinstance(cut.value, Unsent)
                assert isinstance(cut.value, Unavailable)  # what callers caught before
                await asyncio.sleep(0.5)
                assert process.executions(name) == 1
        finally:
            await transport.aclose()
            await proxy.close()
            await process.stop()

    run(scenario())


# -- addresses, back-off and the pool


@pytest.mark.parametrize(
    ("text", "scheme", "host", "port"),
    [
        ("tcp://10.0.0.7:9100", "tcp", "10.0.0.7", 9100),
        ("http://catalog.internal:8000/", "http", "catalog.internal", 8000),
        ("tcp://[::1]:9100", "tcp", "::1", 9100),
    ],
)
def test_addresses(text: str, scheme: str, host: str, port: int) -> None:
    address = parse_address(text)
    assert (address.scheme, address.host, address.port) == (scheme, host, port)
    assert parse_address(str(address)) == address


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("10.0.0.7:9100", "write tcp://host:port or http://host:port"),
        ("udp://h:1", "write tcp://host:port"),
        ("tcp://h", "it names no port"),
        ("tcp://[::1]", "the port must be 1-65535"),
        ("tcp://h:0", "the port must be 1-65535"),
        ("tcp://h:99999", "the port must be 1-65535"),
        ("tcp://h:port", "the port must be 1-65535"),
        ("tcp://:9100", "it names no host"),
        ("tcp://user@h:9100", "it names no host"),
        ("tcp://::1:9100", "it names no host"),
    ],
)
def test_bad_addresses_are_named(text: str, why: str) -> None:
    with pytest.raises(AddressError, match=f"bad remote address {re.escape(repr(text))}.*{why}"):
        parse_address(text)


def test_remote_routes_make_a_table_for_a_service(node: Node, faults: Any) -> None:
    async def scenario() -> None:
        async with serving(node) as server:
            transport = client(server)
            routes = remote_routes(transport, "faults", [faults.Say, faults.Shout], timeout=1)
            assert set(routes) == {faults.Say, faults.Shout}
            router.install(routes)  # as wiring would: now ``call`` goes over TCP
            assert (await call(faults.Shout("split"))).text == "SPLIT"
            assert (transport.connections, server.accepted) == (1, 1)
            await transport.aclose()

    run(scenario())


def test_wiring_makes_one_transport_per_address(workdir: Path) -> None:
    kernel = workdir / "pooled" / "kernel.py"
    kernel.parent.mkdir()
    kernel.write_text(
        "from nanobuild.runtime import Contract\n"
        "class Ping(Contract[str], frozen=True): pass\n"
        "class Pong(Contract[str], frozen=True): pass\n"
    )
    (workdir / "pooled" / "__init__.py").write_text("")
    handlers = {"Ping": "pooled.handlers:ping", "Pong": "pooled.handlers:pong"}
    services = tuple(ServiceSpec(name, "pooled", handlers) for name in ("a", "b", "c"))
    addresses = {"a": "tcp://127.0.0.1:9100", "b": "tcp://127.0.0.1:9100/", "c": "http://h:1"}
    node = wire(
        AppSpec("pool", services, packed=()),
        Placement(local=(), remotes=addresses),
        settings=Settings(secret=SECRET),
    )
    tcp, http = node.closables  # a and b share one connection
    assert isinstance(tcp, TcpTransport) and isinstance(http, HttpTransport)
    assert {e.via for e in node.remote.values()} == {"tcp", "http"}
    run(node.shutdown())


def test_backoff_doubles_up_to_its_cap_and_resets() -> None:
    backoff = Backoff(first=0.1, cap=0.5)
    pauses = []
    for _ in range(5):
        backoff.failed("refused", now=0.0)
        pauses.append(backoff.next_attempt)
    assert pauses == [0.1, 0.2, 0.4, 0.5, 0.5]
    backoff.succeeded()
    assert (backoff.next_attempt, backoff.failures) == (0.0, 0)


def test_deadlines_expire_live_calls_in_order_with_one_timer() -> None:
    async def scenario() -> list[int]:
        loop = asyncio.get_running_loop()
        expired: list[int] = []
        deadlines = Deadlines(loop, expired.append)
        now = loop.time()
        for key, delay in [(1, 0.06), (2, 0.02), (3, 0.04), (4, 0.03)]:
            deadlines.add(key, now + delay)
        deadlines.discard(3)  # answered in time
        for key in range(100, 400):  # answered at once: the heap sheds them
            deadlines.add(key, now + 10)
            deadlines.discard(key)
        assert len(deadlines._heap) < 100
        await asyncio.sleep(0.1)
        deadlines.add(5, loop.time() + 0.01)
        await asyncio.sleep(0.05)
        deadlines.add(6, loop.time() + 10)
        deadlines.clear()
        return expired

    assert run(scenario()) == [2, 4, 1, 5]


class Recorder(asyncio.Transport):
    """Keeps what is written: the edge an Outbox writes to."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return False


def test_the_outbox_gathers_a_turns_frames_and_lets_full_slices_go_at_once() -> None:
    async def scenario() -> list[list[bytes]]:
        outbox = Outbox(asyncio.get_running_loop())
        outbox.transport = recorder = Recorder()
        seen = []
        outbox.send(b"alone")  # nothing else in flight: written at once
        seen.append(recorder.writes[:])
        pieces = [bytes([n]) for n in range(40)]
        for piece in pieces:
            outbox.send(piece, batch=True)
        seen.append(recorder.writes[1:])  # two full slices left already
        await asyncio.sleep(0)
        seen.append(recorder.writes[3:])  # the rest, at the end of the turn
        big = b"x" * Outbox.SLICE_BYTES
        outbox.send(b"small", batch=True)
        outbox.send(big, batch=True)  # over the byte limit: both leave now
        seen.append(recorder.writes[4:])
        return seen

    alone, slices, rest, big = run(scenario())
    assert alone == [b"alone"]
    assert slices == [bytes(range(16)), bytes(range(16, 32))]
    assert rest == [bytes(range(32, 40))]
    assert big == [b"small" + b"x" * Outbox.SLICE_BYTES]


async def _plain(x: int) -> int:
    return x + 1


async def _awaits(x: int) -> int:
    await asyncio.sleep(0)
    return x


async def _async_with(lock: asyncio.Lock) -> None:
    async with lock:
        pass


async def _async_for(items: Any) -> list[Any]:
    return [item async for item in items]


def test_handlers_without_an_await_are_known_not_to_wait() -> None:
    assert not may_suspend(_plain)
    assert all(may_suspend(fn) for fn in (_awaits, _async_with, _async_for))
    assert may_suspend(functools.partial(_plain))  # not a plain function: assume it waits


def test_a_handler_answered_inline_gets_a_context_of_its_own(workdir: Path) -> None:
    (workdir / "ctxsvc.py").write_text(
        textwrap.dedent(
            """
            import contextvars
            import msgspec
            from nanobuild.runtime import Contract, handler

            SEEN = contextvars.ContextVar("seen", default=0)


            class Count(Contract[int]):
                pass


            class CountSync(Contract[int]):
                pass


            @handler
            async def count(req: Count) -> int:
                SEEN.set(SEEN.get() + 1)
                return SEEN.get()


            @handler
            def count_sync(req: CountSync) -> int:
                SEEN.set(SEEN.get() + 1)
                return SEEN.get()
            """
        )
    )
    handlers = {"Count": "ctxsvc:count", "CountSync": "ctxsvc:count_sync"}
    spec = AppSpec("ctx", (ServiceSpec("ctxsvc", "ctxsvc", handlers),))
    node = wire(spec)
    import ctxsvc  # type: ignore[import-not-found]

    async def scenario() -> list[int]:
        async with serving(node) as server:
            transport = client(server)
            count = remote_route(transport, "ctxsvc", ctxsvc.Count)
            count_sync = remote_route(transport, "ctxsvc", ctxsvc.CountSync)
            answers = [await count(ctxsvc.Count()) for _ in range(3)]
            answers += [await count_sync(ctxsvc.CountSync()) for _ in range(3)]
            await transport.aclose()
            return answers

    assert run(scenario()) == [1] * 6


def test_a_stranger_cannot_make_the_server_hold_a_big_frame() -> None:
    """Before the handshake only a small frame is accepted: a big header ends that peer."""
    from nanobuild.runtime.transports.frames import FrameDecoder, FrameTooLarge
    from nanobuild.runtime.transports.tcp import HANDSHAKE_FRAME

    decoder = FrameDecoder(HANDSHAKE_FRAME)
    with pytest.raises(FrameTooLarge):
        decoder.feed((HANDSHAKE_FRAME + 1).to_bytes(4, "big"))


def test_a_server_that_speaks_another_version_is_refused_by_name(faults: Any) -> None:
    async def old_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)  # HELLO [0, VERSION, nonce]: an older server denies it
        old = frames.VERSION - 1
        denied = f"protocol version {frames.VERSION} is not spoken here (only {old})"
        writer.write(frames.frame(frames.Denied(denied)))
        await writer.drain()
        writer.close()

    async def scenario() -> None:
        server = await asyncio.start_server(old_server, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        transport = TcpTransport(f"tcp://127.0.0.1:{port}", secret=SECRET)
        refused = f"refused the connection: protocol version {frames.VERSION} is not"
        with pytest.raises(Unsent, match=refused):
            await remote_route(transport, "faults", faults.Say)(faults.Say("x"))
        await transport.aclose()
        server.close()

    run(scenario())


# -- two builds at one handshake


def test_the_handshake_refuses_contracts_whose_shapes_break_and_keeps_the_rest(
    node: Node, faults: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from nanobuild.runtime import Incompatible

    # the caller's Say requires a field the callee does not know: its calls would
    # be refused there as "unknown field"; Shout and Repeat agree
    newer = type("Say", (faults.Say,), {"__annotations__": {"loud": bool}})

    async def scenario() -> None:
        async with serving(node) as server:
            transport = client(server)
            transport.expect("faults", newer, faults.Echo)
            transport.expect("faults", faults.Shout, faults.Echo)
            say = remote_route(transport, "faults", newer)
            shout = remote_route(transport, "faults", faults.Shout)
            with pytest.raises(Incompatible) as refused:
                await say(newer("hi", True))
            assert isinstance(refused.value, Unsent)
            assert refused.value.contract == "Say" and refused.value.service == "faults"
            assert str(refused.value).startswith(
                "faults.Say: this process (build nanobuild 0.1.0) and "
                f"{server.address} (build nanobuild 0.1.0) disagree on its shape: request field "
                f"`loud` (bool) is sent by this process but refused as unknown by {server.address}"
            )
            assert (await shout(faults.Shout("hi"))).text == "HI"
            with pytest.raises(Incompatible):
                await say(newer("again", False))
            [found] = transport.disagreements
            assert (found.contract, found.breaking) == ("faults.Say", True)
            await transport.aclose()

    run(scenario())
    assert len(tcp_lines(caplog, "runs build")) == 2  # once by each side, for one connection


def test_a_contract_the_remote_does_not_serve_is_refused_before_sending(
    node: Node, faults: Any
) -> None:
    from nanobuild.runtime import Incompatible

    async def scenario() -> None:
        async with serving(node) as server:
            transport = client(server)
            transport.expect("elsewhere", faults.Say, faults.Echo)
            with pytest.raises(Incompatible, match=f"{server.address} does not serve it"):
                await remote_route(transport, "elsewhere", faults.Say)(faults.Say("hi"))
            await transport.aclose()

    run(scenario())


def test_agreeing_builds_send_no_describe(node: Node, faults: Any) -> None:
    async def scenario() -> None:
        async with serving(node) as server:
            transport = client(server)
            transport.expect("faults", faults.Say, faults.Echo)
            assert (
                await remote_route(transport, "faults", faults.Say)(faults.Say("a"))
            ).text == "a"
            assert transport.disagreements == []
            peer = next(iter(server.peers))
            assert peer._described is False
            await transport.aclose()

    run(scenario())
