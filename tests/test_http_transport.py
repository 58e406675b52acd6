"""The HTTP transport, against a real ``nanobuild serve`` and a few misbehaving stubs.

The server is the mini sample served with NANO_SECRET set: ``users.GetUser`` is
public, ``users.ListUsers`` is not. Stubs are small asyncio servers on 127.0.0.1
that hang, or hang up, where a real server would answer.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import msgspec
import pytest

from nanobuild.runtime import (
    BadRequest,
    Contract,
    Interrupted,
    NotFound,
    Timeout,
    Unavailable,
    UnknownContract,
    Unsent,
)
from nanobuild.runtime.transports.base import remote_route
from nanobuild.runtime.transports.http import HttpTransport
from tests.conftest import SAMPLES
from tests.servers import Server, start

SECRET = "http-transport-secret-j89aXz3fzqoenwwXhoBqog"


class User(msgspec.Struct, frozen=True):
    id: str
    name: str


class GetUser(Contract[User], frozen=True):  # the same wire shape as the users kernel's
    id: str


class ListUsers(Contract[list[User]], frozen=True):
    pass


def newer_get_user() -> Any:
    """``GetUser`` as a newer kernel might have it: a field this server does not know."""

    class GetUser(msgspec.Struct, frozen=True):
        id: str
        loud: bool = True

    return GetUser


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(coro)  # type: ignore[arg-type]


def serve_on(root: Path, port: int) -> list[str]:
    command = [sys.executable, "-m", "nanobuild", "serve", "--workspace", str(root)]
    return [*command, "--port", str(port)]


@pytest.fixture(scope="module")
def mini_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("http-transport") / "mini"
    shutil.copytree(SAMPLES / "mini", root)
    return root


@pytest.fixture(scope="module")
def server(mini_root: Path) -> Iterator[Server]:
    served = start(serve_on(mini_root, 0), mini_root.parent / "server.log", NANO_SECRET=SECRET)
    yield served
    assert served.stop() == 0, served.log()


def transport_to(server: Server, **options: Any) -> HttpTransport:
    return HttpTransport(server.url, secret=options.pop("secret", SECRET), **options)


# -- against nanobuild serve


def test_public_and_secret_contracts(server: Server) -> None:
    async def scenario() -> None:
        transport = transport_to(server)
        get_user = remote_route(transport, "users", GetUser)
        list_users = remote_route(transport, "users", ListUsers)
        assert await get_user(GetUser(id="u1")) == User(id="u1", name="Ada")
        assert await list_users(ListUsers()) == [User(id="u1", name="Ada")]
        for _ in range(20):
            await get_user(GetUser(id="u1"))
        assert transport.connections == 1  # one keep-alive connection did it all
        await transport.aclose()

    run(scenario())


def test_without_the_secret_only_public_contracts_answer(server: Server) -> None:
    async def scenario() -> None:
        transport = transport_to(server, secret="")
        assert (await remote_route(transport, "users", GetUser)(GetUser(id="u1"))).name == "Ada"
        with pytest.raises(UnknownContract) as hidden:
            await remote_route(transport, "users", ListUsers)(ListUsers())
        assert (hidden.value.service, hidden.value.contract) == ("users", "ListUsers")
        await transport.aclose()

    run(scenario())


def test_errors_keep_their_class(server: Server) -> None:
    async def scenario() -> None:
        transport = transport_to(server)
        with pytest.raises(NotFound, match="no user nobody") as missing:
            await remote_route(transport, "users", GetUser)(GetUser(id="nobody"))
        assert type(missing.value) is NotFound
        assert (missing.value.service, missing.value.contract) == ("users", "GetUser")
        newer = newer_get_user()
        with pytest.raises(BadRequest, match="unknown field `loud`"):
            await remote_route(transport, "users", newer, User)(newer(id="u1"))
        with pytest.raises(UnknownContract):
            await remote_route(transport, "nobody", GetUser)(GetUser(id="u1"))
        await transport.aclose()

    run(scenario())


def test_concurrent_calls_use_a_pool_and_reuse_it(server: Server) -> None:
    async def scenario() -> None:
        transport = transport_to(server)
        get_user = remote_route(transport, "users", GetUser)
        answers = await asyncio.gather(*(get_user(GetUser(id="u1")) for _ in range(8)))
        assert {a.name for a in answers} == {"Ada"}
        opened = transport.connections
        assert 1 <= opened <= 8
        await asyncio.gather(*(get_user(GetUser(id="u1")) for _ in range(8)))
        assert transport.connections == opened  # the idle ones were reused
        await transport.aclose()

    run(scenario())


def test_a_restarted_server_is_reached_again(mini_root: Path, tmp_path: Path) -> None:
    first = start(serve_on(mini_root, 0), tmp_path / "first.log", NANO_SECRET=SECRET)

    async def scenario() -> None:
        transport = transport_to(first)
        get_user = remote_route(transport, "users", GetUser, timeout=5)
        assert (await get_user(GetUser(id="u1"))).name == "Ada"
        assert first.stop(signal.SIGTERM) == 0
        started = time.monotonic()
        with pytest.raises(Unsent, match=r"cannot reach .*connection refused") as refused:
            await get_user(GetUser(id="u1"))
        assert "GetUser was not sent (it did not run)" in refused.value.message
        assert time.monotonic() - started < 2
        again = start(serve_on(mini_root, first.port), tmp_path / "again.log", NANO_SECRET=SECRET)
        try:
            assert (await get_user(GetUser(id="u1"))).name == "Ada"  # the stale one is dropped
        finally:
            await transport.aclose()
            assert again.stop() == 0

    run(scenario())


# -- against stubs that misbehave


async def stub(
    behave: Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]],
) -> tuple[asyncio.Server, str, list[int]]:
    """A server running ``behave`` on each connection; the list counts requests seen."""
    seen: list[int] = []

    async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        seen.append(1)
        await behave(reader, writer, len(seen))

    server = await asyncio.start_server(connected, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}", seen


def answer(body: Any) -> bytes:
    payload = msgspec.msgpack.encode(body)
    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/msgpack\r\n"
    return head + b"content-length: %d\r\n\r\n" % len(payload) + payload


class Lookup(Contract[User], frozen=True):
    idempotent: ClassVar[bool] = True
    id: str


class Create(Contract[User], frozen=True):
    id: str


def test_a_server_that_never_answers_times_out() -> None:
    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await asyncio.sleep(10)

    async def scenario() -> None:
        server, url, _ = await stub(hang)
        transport = HttpTransport(url, secret=SECRET)
        started = time.monotonic()
        with pytest.raises(Timeout, match=r"did not answer Create within 0\.2 s"):
            await remote_route(transport, "users", Create, timeout=0.2)(Create(id="x"))
        assert time.monotonic() - started < 1
        await transport.aclose()
        server.close()

    run(scenario())


@pytest.mark.parametrize("contract", [Lookup, Create], ids=["idempotent", "not-idempotent"])
def test_a_dropped_connection_reruns_only_idempotent_calls(contract: type) -> None:
    async def drop_first(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int
    ) -> None:
        await reader.read(100)  # the body
        if n > 1:
            writer.write(answer({"id": "x", "name": "Grace"}))
            await writer.drain()
        writer.close()

    async def scenario() -> None:
        server, url, seen = await stub(drop_first)
        transport = HttpTransport(url, secret=SECRET)
        route = remote_route(transport, "users", contract)
        if contract.idempotent:  # type: ignore[attr-defined]
            assert (await route(contract(id="x"))).name == "Grace"
            assert len(seen) == 2
        else:
            with pytest.raises(Interrupted, match="not idempotent, so not sent again") as cut:
                await route(contract(id="x"))
            assert "Create was sent and may have run" in cut.value.message
            assert not isinstance(cut.value, Unsent)
            assert len(seen) == 1
        await transport.aclose()
        server.close()

    run(scenario())


def test_an_answer_without_an_error_body_is_mapped_by_status() -> None:
    async def gateway(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        writer.write(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\n\r\noops")
        await writer.drain()

    async def scenario() -> None:
        server, url, _ = await stub(gateway)
        transport = HttpTransport(url, secret=SECRET)
        with pytest.raises(Unavailable, match="answered HTTP 503") as gone:
            await remote_route(transport, "users", Create)(Create(id="x"))
        assert (gone.value.service, gone.value.contract) == ("users", "Create")
        await transport.aclose()
        server.close()

    run(scenario())
