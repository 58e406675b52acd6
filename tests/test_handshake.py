"""The TCP handshake proves the client first, over real sockets on 127.0.0.1.

A real ``TcpServer`` and ``TcpTransport`` on one event loop; the peers that lie are
raw sockets: a stranger that says hello, a server that does not hold the secret, one
that replays a WELCOME it recorded, one that reflects the client's own proof.
"""

from __future__ import annotations

import asyncio
import secrets
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import pytest

from nanobuild.runtime import Contract, Unsent, handler
from nanobuild.runtime.errors import SettingsError
from nanobuild.runtime.node import Node
from nanobuild.runtime.spec import AppSpec, ServiceSpec
from nanobuild.runtime.transports import frames
from nanobuild.runtime.transports.base import remote_route
from nanobuild.runtime.transports.tcp import TcpServer, TcpTransport
from nanobuild.runtime.wiring import wire

SECRET = secrets.token_urlsafe(32)


class Pong(msgspec.Struct, frozen=True):
    n: int


class Ping(Contract[Pong], frozen=True):
    n: int


@handler
async def ping(req: Ping) -> Pong:
    return Pong(req.n)


@pytest.fixture
def node() -> Node:
    return wire(AppSpec("hs", (ServiceSpec("hs", "hs", {"Ping": f"{__name__}:ping"}),)))


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(coro)  # type: ignore[arg-type]


@asynccontextmanager
async def serving(node: Node, secret: str = SECRET) -> AsyncIterator[TcpServer]:
    server = TcpServer(node, secret=secret)
    await server.start()
    try:
        yield server
    finally:
        await server.close()


async def read_message(reader: asyncio.StreamReader) -> tuple[frames.Message, bytes]:
    """The next message and its body's bytes."""
    header = await reader.readexactly(4)
    body = await reader.readexactly(struct.unpack(">I", header)[0])
    (message,) = frames.FrameDecoder().feed(header + body)
    return message, body


async def ping_through(transport: TcpTransport) -> Pong:
    try:
        answer: Pong = await remote_route(transport, "hs", Ping)(Ping(7))
        return answer
    finally:
        await transport.aclose()


# -- the server says nothing of the secret before the client has proved it


def test_a_stranger_who_says_hello_gets_a_nonce_and_nothing_else(node: Node) -> None:
    """Two servers with different secrets answer the same HELLO with the same kind of
    bytes: a tag and 32 random ones, nothing a guess of the secret could be checked on."""

    async def challenge(secret: str) -> list[Any]:
        async with serving(node, secret) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.address.port)
            writer.write(frames.frame(frames.Hello(frames.VERSION, b"c" * 32)))
            message, body = await read_message(reader)
            writer.close()
            assert isinstance(message, frames.Challenge)
            decoded: list[Any] = msgspec.msgpack.decode(body)
            return decoded

    first, second = run(challenge(SECRET)), run(challenge(secrets.token_urlsafe(32)))
    assert [first[0], len(first[1]), len(first)] == [frames.CHALLENGE, 32, 2]
    assert [second[0], len(second[1]), len(second)] == [frames.CHALLENGE, 32, 2]
    assert first[1] != second[1]  # fresh for each connection


def test_the_server_proves_itself_only_in_welcome_after_the_client(node: Node) -> None:
    async def scenario() -> tuple[bytes, frames.Message, frames.Message]:
        async with serving(node) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.address.port)
            mine = frames.nonce()
            writer.write(frames.frame(frames.Hello(frames.VERSION, mine)))
            challenge, _ = await read_message(reader)
            assert isinstance(challenge, frames.Challenge)
            proof = frames.proof(SECRET.encode(), "client", mine, challenge.nonce)
            writer.write(frames.frame(frames.Auth(proof)))
            welcome, _ = await read_message(reader)
            writer.close()
            return mine, challenge, welcome

    mine, challenge, welcome = run(scenario())
    assert isinstance(challenge, frames.Challenge) and isinstance(welcome, frames.Welcome)
    # the server's proof covers both of this connection's nonces, under its own role
    secret = SECRET.encode()
    assert frames.proves(secret, "server", mine, challenge.nonce, welcome.proof)
    assert not frames.proves(secret, "client", mine, challenge.nonce, welcome.proof)


# -- a server that cannot prove it holds the secret gets no call


class FakeServer:
    """A listener that speaks the handshake by a script, and records what it was sent."""

    def __init__(self, script: Callable[[frames.Hello, frames.Auth], frames.Welcome]) -> None:
        self.script = script
        self.received: list[type] = []
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._talk, "127.0.0.1", 0)
        return f"tcp://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    async def _talk(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            hello, _ = await read_message(reader)
            assert isinstance(hello, frames.Hello)
            self.received.append(type(hello))
            self.nonce = frames.nonce()
            writer.write(frames.frame(frames.Challenge(self.nonce)))
            auth, _ = await read_message(reader)
            assert isinstance(auth, frames.Auth)
            self.received.append(type(auth))
            writer.write(frames.frame(self.script(hello, auth)))
            while True:  # whatever the client sends next (a CALL would be a failure)
                message, _ = await read_message(reader)
                self.received.append(type(message))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def refused(
    script: Callable[[frames.Hello, frames.Auth], frames.Welcome],
) -> tuple[str, list[type]]:
    """What a client that calls a FakeServer playing ``script`` raises, and what it sent."""
    fake = FakeServer(script)

    async def scenario() -> str:
        async with fake as address:
            with pytest.raises(Unsent) as caught:
                await ping_through(TcpTransport(address, secret=SECRET))
        return str(caught.value)

    return run(scenario()), fake.received


def test_a_server_without_the_secret_gets_no_call() -> None:
    message, received = refused(lambda hello, auth: frames.Welcome(b"\0" * 32))
    assert "could not prove it holds NANO_SECRET" in message and "Ping was not sent" in message
    assert received == [frames.Hello, frames.Auth]


def test_a_server_that_reflects_the_clients_proof_is_refused() -> None:
    message, received = refused(lambda hello, auth: frames.Welcome(auth.proof))
    assert "could not prove it holds NANO_SECRET" in message
    assert received == [frames.Hello, frames.Auth]


def test_a_welcome_replayed_from_another_connection_is_refused(node: Node) -> None:
    """A WELCOME recorded off a real server's connection proves nothing on another:
    the client's nonce is new, and the proof covers it."""

    async def record() -> frames.Welcome:
        async with serving(node) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.address.port)
            mine = frames.nonce()
            writer.write(frames.frame(frames.Hello(frames.VERSION, mine)))
            challenge, _ = await read_message(reader)
            assert isinstance(challenge, frames.Challenge)
            proof = frames.proof(SECRET.encode(), "client", mine, challenge.nonce)
            writer.write(frames.frame(frames.Auth(proof)))
            welcome, _ = await read_message(reader)
            writer.close()
            assert isinstance(welcome, frames.Welcome)
            return welcome

    recorded = run(record())
    message, received = refused(lambda hello, auth: recorded)
    assert "could not prove it holds NANO_SECRET" in message
    assert frames.Call not in received


def test_a_server_with_the_secret_is_trusted_and_called(node: Node) -> None:
    """The same fake, playing the server's part right (it holds the secret), gets the call."""

    def honest(hello: frames.Hello, auth: frames.Auth) -> frames.Welcome:
        proof = frames.proof(SECRET.encode(), "server", hello.nonce, fake.nonce)
        return frames.Welcome(proof)

    fake = FakeServer(honest)

    async def scenario() -> None:
        async with fake as address:
            transport = TcpTransport(address, secret=SECRET, connect_timeout=2.0)
            with pytest.raises(asyncio.TimeoutError):  # the fake never answers the call
                await asyncio.wait_for(ping_through(transport), 1.0)

    run(scenario())
    assert fake.received[:3] == [frames.Hello, frames.Auth, frames.Call]


# -- the server checks the client


def test_a_proof_made_for_the_servers_role_does_not_open_the_server(node: Node) -> None:
    async def scenario() -> frames.Message:
        async with serving(node) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.address.port)
            mine = frames.nonce()
            writer.write(frames.frame(frames.Hello(frames.VERSION, mine)))
            challenge, _ = await read_message(reader)
            assert isinstance(challenge, frames.Challenge)
            wrong = frames.proof(SECRET.encode(), "server", mine, challenge.nonce)
            writer.write(frames.frame(frames.Auth(wrong)))
            answer, _ = await read_message(reader)
            assert await reader.read() == b""  # then it hangs up
            writer.close()
            return answer

    answer = run(scenario())
    assert isinstance(answer, frames.Denied) and "did not prove" in answer.reason


def test_processes_with_one_strong_secret_connect(node: Node) -> None:
    async def scenario() -> Pong:
        async with serving(node) as server:
            return await ping_through(TcpTransport(str(server.address), secret=SECRET))

    assert run(scenario()) == Pong(7)


@pytest.mark.parametrize("weak", ["sunshine", "s3cret", "0123456789abcdef", "tcp-test-secret"])
def test_a_weak_secret_is_refused_on_both_sides(node: Node, weak: str) -> None:
    with pytest.raises(SettingsError, match="the secret is too weak") as caught:
        TcpTransport("tcp://127.0.0.1:9", secret=weak)
    assert weak not in str(caught.value)
    with pytest.raises(SettingsError, match="at least 128 are wanted"):
        TcpServer(node, secret=weak)
