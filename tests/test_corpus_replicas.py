"""Corpus: replicas and drains. Settings and remote names a user can get wrong, a name
that does not resolve at start, SIGTERM on a serving binary, and GOAWAY frames where
none belongs (from a stranger to the server, from a false server before the handshake).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from nanobuild.runtime import Contract, Unsent
from nanobuild.runtime.transports import frames
from nanobuild.runtime.transports.base import remote_route
from nanobuild.runtime.transports.tcp import TcpTransport
from tests.corpus import (
    SECRET,
    BinaryCase,
    address,
    binary,
    check_unique,
    run_binary_case,
    serving,
)
from tests.servers import Cluster

SERVE = ["serve", "--port", "0"]
SPLIT = ["serve", "--only", "orders", "--port", "0"]


def positive(variable: str, value: str) -> str:
    return f"{variable} must be a positive number of seconds, not {value!r}"


BINARY_CASES = [
    BinaryCase(
        "replicas-resolve-every-not-a-number",
        SERVE,
        env={"NANO_RESOLVE_EVERY": "soon"},
        names=[positive("NANO_RESOLVE_EVERY", "soon")],
    ),
    BinaryCase(
        "replicas-resolve-every-zero",
        SERVE,
        env={"NANO_RESOLVE_EVERY": "0"},
        names=[positive("NANO_RESOLVE_EVERY", "0")],
    ),
    BinaryCase(
        "replicas-drain-seconds-negative",
        SERVE,
        env={"NANO_DRAIN_SECONDS": "-1"},
        names=[positive("NANO_DRAIN_SECONDS", "-1")],
    ),
    BinaryCase(
        "replicas-drain-seconds-infinite",
        SERVE,
        env={"NANO_DRAIN_SECONDS": "inf"},
        names=[positive("NANO_DRAIN_SECONDS", "inf")],
    ),
    BinaryCase(
        "replicas-drain-seconds-nan",
        SERVE,
        env={"NANO_DRAIN_SECONDS": "nan"},
        names=[positive("NANO_DRAIN_SECONDS", "nan")],
    ),
    BinaryCase(
        "replicas-remote-name-without-a-port",
        [*SPLIT, "--remote", "users=tcp://users-replicas"],
        env={"NANO_SECRET": SECRET},
        names=["'tcp://users-replicas'", "it names no port"],
    ),
    BinaryCase(
        "replicas-remote-name-empty-host",
        [*SPLIT, "--remote", "users=tcp://:9100"],
        env={"NANO_SECRET": SECRET},
        names=["'tcp://:9100'", "it names no host"],
    ),
    # a name that does not resolve is no reason not to start; SIGTERM then drains: exit 0
    BinaryCase(
        "replicas-name-unresolvable-at-start-serves-and-drains",
        [*SPLIT, "--remote", "users=tcp://users-nowhere.nanotest:9100"],
        exit=0,
        env={"NANO_SECRET": SECRET},
        names=["nanobuild: serving mini"],
        signal=(4.0, signal.SIGTERM),
    ),
]
check_unique(BINARY_CASES)


@pytest.mark.parametrize("case", BINARY_CASES, ids=lambda c: c.name)
def test_binary_case(
    case: BinaryCase, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    run_binary_case(case, binary(tmp_path_factory), tmp_path)


# -- GOAWAY where none belongs


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with serving(tmp_path_factory, "mini", [["users"], ["orders"]]) as cluster:
        yield cluster


def test_a_stranger_saying_goaway_is_hung_up_on(split: Cluster) -> None:
    """GOAWAY is the server's to send: from a peer it ends the connection, says nothing
    to the stranger, logs one line, and the port serves on."""
    users = split.servers[0]
    assert users.internal is not None
    logged = users.log_path.stat().st_size
    received = b""
    with socket.create_connection(address(users.internal), timeout=3) as sock:
        sock.sendall(frames.frame(frames.GoAway(0)))
        while chunk := sock.recv(65536):
            received += chunk
    assert received == b""
    assert split.front.call(
        "orders", "PlaceOrder", {"user_id": "u1", "quantity": {"amount": 2}}
    ).is_success
    log = users.log()[logged:]
    assert "unexpected GoAway message" in log and "Traceback" not in log


class Ping(Contract[str], frozen=True):
    text: str


def test_a_false_server_saying_goaway_before_the_handshake(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A process that accepts TCP and answers GOAWAY instead of CHALLENGE fails the
    handshake: the call is Unsent (it did not run), the log names it once."""

    async def run() -> str:
        async def false_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(1024)
            writer.write(frames.frame(frames.GoAway(0)))
            await writer.drain()
            await asyncio.sleep(0.5)
            writer.close()

        server = await asyncio.start_server(false_server, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        transport = TcpTransport(f"tcp://127.0.0.1:{port}", secret=SECRET)
        route = remote_route(transport, "users", Ping, msgspec.Raw, timeout=2)
        try:
            began = time.monotonic()
            with pytest.raises(Unsent) as failed:
                await route(Ping(text="x"))
            assert time.monotonic() - began < 2
            return str(failed.value)
        finally:
            await transport.aclose()
            server.close()
            await server.wait_closed()

    with caplog.at_level(logging.WARNING, "nanobuild.tcp"):
        message = asyncio.run(run())
    assert "unexpected GoAway message" in message and "Ping was not sent" in message
    named = [r for r in caplog.records if "GoAway" in r.getMessage()]
    assert len(named) == 1, [r.getMessage() for r in named]
