"""The corpus's server cases: hostile peers of the HTTP face (half heads, huge heads,
broken request lines, trickled bodies, floods) on both server stacks, and of the
internal TCP port (garbage, HTTP and TLS where frames belong, huge length prefixes,
half frames, silent peers, floods). See tests/corpus.py for the harness.

Every case asserts what the server answered (or that it hung up), within a deadline,
that it logged no traceback, and that it still serves a good request afterwards.
"""

from __future__ import annotations

import dataclasses
import socket
import time
from collections.abc import Iterator

import pytest

from tests.corpus import (
    HttpCase,
    address,
    assert_alive,
    check_unique,
    held_open,
    run_http_case,
    serving,
)
from tests.servers import Cluster, Server

JSON = {"Content-Type": "application/json"}
GOOD = b'{"id": "u1"}'
ORDER = {"user_id": "u1", "quantity": {"amount": 2}}
# the deadlines the servers of this module get, short so that cases end soon
LIMITS = {"NANO_HEADER_TIMEOUT": "2", "NANO_BODY_TIMEOUT": "2", "NANO_HANDSHAKE_TIMEOUT": "2"}
HEAD_BOUND = "the request head is over 65536 bytes"


def raw(text: str) -> bytes:
    return text.encode("latin-1")


# -- the HTTP face

HTTP_CASES = [
    HttpCase(
        "http-half-head-held",
        raw=b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ",
        status=None,  # closed without an answer at NANO_HEADER_TIMEOUT
        deadline=6,
    ),
    HttpCase("http-silent-connection", raw=b"", status=None, deadline=6),
    HttpCase("http-request-line-only", raw=b"GET /healthz HTTP/1.1\r\n", status=None, deadline=6),
    HttpCase(
        "http-header-over-64-kib",
        headers={**JSON, "X-Pad": "a" * 70_000},
        body=GOOD,
        status=431,
        names=[HEAD_BOUND],
    ),
    HttpCase(  # httptools refuses a target over 64 KiB itself (400): keep it under
        "http-long-target-and-headers-over-64-kib",
        method="GET",
        target="/" + "a" * 60_000,
        headers={"X-Pad": "b" * 10_000},
        status=431,
        names=[HEAD_BOUND],
    ),
    HttpCase(
        "http-six-thousand-headers",
        headers={**JSON, **{f"X-H{i}": "v" * 8 for i in range(6000)}},
        body=GOOD,
        status=431,
        names=[HEAD_BOUND],
    ),
    HttpCase(
        "http-body-trickled-past-the-timeout",
        raw=b"POST /api/users/GetUser HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n{",
        status=408,
        names=["the request body did not arrive in time"],
        deadline=6,
    ),
    HttpCase(
        "http-tls-hello-on-plain-port",
        raw=b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(40),
        names=["Invalid HTTP request"],
    ),
    HttpCase("http-nul-in-a-header", headers={**JSON, "X-Nul": "a\x00b"}, body=GOOD),
    HttpCase("http-space-before-colon", headers={**JSON, "Host ": "x"}, body=GOOD),
    HttpCase("http-negative-content-length", headers={**JSON, "Content-Length": "-1"}),
    HttpCase(
        "http-content-length-over-any-integer",
        headers={**JSON, "Content-Length": "9" * 30},
        body=GOOD,
    ),
    HttpCase(
        "http-two-content-lengths",
        raw=raw(
            "POST /api/users/GetUser HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Content-Length: 2\r\nContent-Length: 5\r\nConnection: close\r\n\r\n{}"
        ),
    ),
    HttpCase(
        "http-chunk-size-not-hex",
        raw=raw(
            "POST /api/users/GetUser HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"
        ),
    ),
    HttpCase("http-control-byte-in-target", method="GET", target="/heal\x01thz"),
    HttpCase(
        "http-non-ascii-method",
        raw="GÉT /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode(),
    ),
]
check_unique(HTTP_CASES)


@pytest.fixture(scope="module", params=["asyncio", "uvloop"])
def face(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """The mini binary, fused, on each server stack, with short deadlines."""
    env = {**LIMITS, "NANO_SERVER_STACK": request.param}
    with serving(tmp_path_factory, "mini", None, **env) as cluster:
        yield cluster.front


@pytest.mark.parametrize("case", HTTP_CASES, ids=lambda c: c.name)
def test_http_case(case: HttpCase, face: Server) -> None:
    run_http_case(case, face)


def test_http_flood_of_half_heads_leaves_the_face_answering(face: Server) -> None:
    logged = face.log_path.stat().st_size
    with held_open(("127.0.0.1", face.port), 1000, b"POST /api/users/GetUser HTTP/1.1\r\n"):
        began = time.monotonic()
        assert_alive(face, "http-flood-of-half-heads")
        assert time.monotonic() - began < 1
    time.sleep(2.5)  # NANO_HEADER_TIMEOUT: every one of them is closed by now
    log = face.log()[logged:]
    assert "Traceback" not in log and len(log.encode()) < 4096, log


# -- the internal TCP port


@dataclasses.dataclass(frozen=True)
class TcpCase:
    """Bytes sent to the internal port by a stranger: the server must hang up within
    ``within`` seconds (at once for what breaks the protocol, at the handshake
    timeout for what only stalls) and send nothing a stranger could use."""

    name: str
    data: bytes
    within: float = 1.0


TCP_CASES = [
    TcpCase("tcp-http-request", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
    TcpCase("tcp-tls-hello", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(40)),
    TcpCase("tcp-length-prefix-of-4-gib", b"\xff\xff\xff\xff" + bytes(16)),
    TcpCase("tcp-length-prefix-over-the-handshake-bound", (64 * 1024).to_bytes(4, "big")),
    TcpCase("tcp-frame-of-garbage", b"\x00\x00\x00\x05hello"),
    TcpCase("tcp-frame-of-msgpack-not-a-message", b"\x00\x00\x00\x03\x93\x01\x02"),
    TcpCase("tcp-empty-frame", b"\x00\x00\x00\x00"),
    TcpCase("tcp-half-a-frame-then-nothing", b"\x00\x00\x00\x40\x93", within=4),
    TcpCase("tcp-silent-peer", b"", within=4),
    TcpCase("tcp-one-byte-then-nothing", b"\x00", within=4),
]
check_unique(TCP_CASES)


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """users and orders in two processes; orders calls users over the internal port."""
    with serving(tmp_path_factory, "mini", [["users"], ["orders"]], **LIMITS) as cluster:
        yield cluster


def hung_up(target: tuple[str, int], data: bytes, within: float) -> tuple[bool, bytes, float]:
    """Send ``data``; whether the peer closed within ``within`` s, what it sent, how long."""
    began, received = time.monotonic(), b""
    with socket.create_connection(target, timeout=within) as sock:
        if data:
            sock.sendall(data)
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except TimeoutError:
            return False, received, time.monotonic() - began
        except OSError:
            pass  # reset: hung up too
    return True, received, time.monotonic() - began


def assert_split_alive(split: Cluster, name: str) -> None:
    users, front = split.servers[0], split.front
    assert users.proc.poll() is None, f"case {name}: users died:\n{users.log()[-4000:]}"
    answer = front.call("orders", "PlaceOrder", ORDER)
    assert answer.status_code == 200, f"case {name}: {answer.status_code} {answer.text}"


@pytest.mark.parametrize("case", TCP_CASES, ids=lambda c: c.name)
def test_tcp_case(case: TcpCase, split: Cluster) -> None:
    users = split.servers[0]
    assert users.internal is not None
    logged = users.log_path.stat().st_size
    closed, received, seconds = hung_up(address(users.internal), case.data, case.within + 2)
    assert closed, f"case {case.name}: still open after {seconds:.1f} s"
    assert seconds < case.within + 1, f"case {case.name}: closed after {seconds:.1f} s"
    assert received == b"", f"case {case.name}: a stranger was sent {received[:200]!r}"
    assert_split_alive(split, case.name)
    log = users.log()[logged:]
    assert "Traceback" not in log, f"case {case.name}: users logged\n{log[-4000:]}"


def test_tcp_flood_of_strangers_leaves_the_port_serving(split: Cluster) -> None:
    users = split.servers[0]
    assert users.internal is not None
    logged = users.log_path.stat().st_size
    with held_open(address(users.internal), 500, b"\x00\x00"):
        assert_split_alive(split, "tcp-flood-of-strangers")
    time.sleep(2.5)  # NANO_HANDSHAKE_TIMEOUT: all dropped by now
    log = users.log()[logged:]
    assert "Traceback" not in log and len(log.encode()) < 4096, log
