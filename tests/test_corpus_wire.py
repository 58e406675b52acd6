"""The corpus's wire cases: bodies nested too deep, wrong content types, bad
MessagePack, weak secrets, the handshake's replays and guesses, and what a timeout
says (see tests/corpus.py for the harness).

One binary of ``tests/samples/wire`` serves them, split in two processes (notes, and
front, which calls it over TCP with a 0.5 s timeout), so the HTTP cases reach the face
and the TCP cases the internal port of a real process. After every TCP case the
server still runs, logged no traceback, and a real client still gets its answers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import socket
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from nanobuild.runtime import BadRequest, Contract, Timeout, call_sync, handler
from nanobuild.runtime.codecs import JSON, MSGPACK, Codec
from nanobuild.runtime.settings import check_secret
from nanobuild.runtime.spec import AppSpec, ServiceSpec
from nanobuild.runtime.transports import frames
from nanobuild.runtime.transports.base import remote_route
from nanobuild.runtime.transports.tcp import TcpTransport
from nanobuild.runtime.wiring import wire
from tests.corpus import (
    SECRET,
    BinaryCase,
    Case,
    HttpCase,
    address,
    binary,
    check_unique,
    run_binary_case,
    run_case,
    run_http_case,
    serving,
)
from tests.servers import Cluster

DEEP = 5000  # levels: far past what any decoder's stack allows
TOO_DEEP = "nested deeper than 500 levels"
PROBE = ("/api/notes/Keep", b'{"payload": [1, {"a": "b"}]}', 200)
MSGPACK_TYPE = {"Content-Type": "application/msgpack"}


def nested_json(depth: int, opening: bytes = b"[", closing: bytes = b"]") -> bytes:
    return opening * depth + closing * depth


def nested_msgpack(depth: int) -> bytes:
    """A value ``depth`` arrays deep (each an array of one), around a nil."""
    return b"\x91" * depth + b"\xc0"


def keep_msgpack(payload: bytes) -> bytes:
    """Keep's body as MessagePack, ``payload`` already encoded."""
    return b"\x81\xa7payload" + payload


def case(name: str, body: bytes, status: int = 400, **fields: Any) -> HttpCase:
    """A request to notes.Keep (unless ``target`` says), probed with a good one after."""
    fields.setdefault("target", "/api/notes/Keep")
    return HttpCase(name, body=body, status=status, probe=PROBE, **fields)


HTTP_CASES = [
    # bodies that a recursive decoder cannot walk: a 400 naming the problem, not a 500
    case("deep-json-arrays", b'{"payload": ' + nested_json(DEEP) + b"}", names=[TOO_DEEP]),
    case(
        "deep-json-objects",
        b'{"payload": ' + b'{"a": ' * DEEP + b"1" + b"}" * DEEP + b"}",
        names=[TOO_DEEP],
    ),
    case(
        "deep-json-never-closed",
        b'{"payload": ' + b"[" * DEEP,
        names=["bad_request", "notes"],
    ),
    case(
        "deep-msgpack-arrays",
        keep_msgpack(nested_msgpack(DEEP)),
        headers=MSGPACK_TYPE,
        names=[TOO_DEEP],
    ),
    case(
        "deep-msgpack-maps",
        keep_msgpack(b"\x81\xa1a" * DEEP + b"\xc0"),
        headers=MSGPACK_TYPE,
        names=[TOO_DEEP],
    ),
    case(
        "deep-json-at-a-rest-route",
        b'{"payload": ' + nested_json(DEEP) + b"}",
        target="/notes",
        names=[TOO_DEEP],
    ),
    case(
        "deep-json-rest-body-not-an-object",
        nested_json(DEEP),
        target="/notes",
        names=[TOO_DEEP],
    ),
    case(
        "deep-msgpack-at-a-rest-route",
        keep_msgpack(nested_msgpack(DEEP)),
        target="/notes",
        headers=MSGPACK_TYPE,
        names=[TOO_DEEP],
    ),
    # the limit refuses only what cannot be decoded: ordinary nesting is served
    case("nesting-of-200-is-served", b'{"payload": ' + nested_json(200) + b"}", 200),
    # bodies in the wrong format, or wrongly labelled
    case(
        "msgpack-labelled-json",
        keep_msgpack(b"\x01"),
        names=["bad_request", "malformed"],
    ),
    case("json-labelled-msgpack", b'{"payload": 1}', headers=MSGPACK_TYPE, names=["Expected"]),
    case(
        "content-type-with-parameters",
        keep_msgpack(b"\x01"),
        200,
        headers={"Content-Type": "application/msgpack; charset=binary"},
    ),
    case(
        "content-type-in-capitals",
        b'{"payload": 1}',
        200,
        headers={"Content-Type": "APPLICATION/JSON"},
    ),
    case(
        "content-type-json-seq",
        b'{"payload": 1}',
        415,
        headers={"Content-Type": "application/json-seq"},
        names=["unsupported_media_type"],
    ),
    # MessagePack that lies about its lengths, or carries odd types
    case(
        "msgpack-array-of-four-billion",
        keep_msgpack(b"\xdd\xff\xff\xff\xff"),
        headers=MSGPACK_TYPE,
        names=["truncated"],
    ),
    case(
        "msgpack-map-of-four-billion",
        keep_msgpack(b"\xdf\xff\xff\xff\xff"),
        headers=MSGPACK_TYPE,
        names=["truncated"],
    ),
    case(
        "msgpack-string-of-four-gigabytes",
        keep_msgpack(b"\xdb\xff\xff\xff\xff" + b"x" * 10),
        headers=MSGPACK_TYPE,
        names=["truncated"],
    ),
    case(
        "msgpack-string-not-utf8",
        keep_msgpack(b"\xa2\xff\xfe"),
        headers=MSGPACK_TYPE,
        names=["UTF-8"],
    ),
    case(
        "msgpack-ext-value",
        keep_msgpack(b"\xd4\x01\x00"),
        200,
        headers=MSGPACK_TYPE,
        names=["Ext"],
    ),
    case("json-number-past-float", b'{"payload": 1e400}', names=["out of range"]),
    case(
        "json-integer-of-5000-digits", b'{"payload": ' + b"9" * 5000 + b"}", names=["out of range"]
    ),
    # a timeout says the call may still run where it was sent
    case(
        "timeout-says-the-call-may-still-run",
        b'{"seconds": 3}',
        504,
        target="/api/front/Relay",
        names=["did not answer Nap within 0.5 s", "may still be running on notes", "idempotent"],
    ),
]

WEAK = secrets.token_hex(8)  # 64 random bits: random, and still too few

BINARY_CASES = [
    BinaryCase(
        "weak-secret-a-word",
        ["serve", "--port", "0"],
        env={"NANO_SECRET": "sunshine"},
        names=["NANO_SECRET is too weak", "38 bits", "at least 128", "secret"],
        absent=["sunshine"],  # the message never shows the secret
    ),
    BinaryCase(
        "weak-secret-16-hex-digits",
        ["serve", "--port", "0"],
        env={"NANO_SECRET": WEAK},
        names=["NANO_SECRET is too weak", "16 characters of hex digits", "64 bits"],
        absent=[WEAK],
    ),
    BinaryCase(
        "weak-secret-split",
        ["serve", "--port", "0", "--only", "notes", "--internal-port", "0"],
        env={"NANO_SECRET": "s3cret"},
        names=["NANO_SECRET is too weak"],
    ),
    BinaryCase(
        "no-secret-split",
        ["serve", "--port", "0", "--only", "notes", "--internal-port", "0"],
        env={"NANO_SECRET": ""},
        names=["NANO_SECRET", "same value, in every process"],
    ),
    BinaryCase(
        "secret-command-under-a-weak-secret",  # the way out must not be barred by the problem
        ["secret"],
        exit=0,
        env={"NANO_SECRET": "sunshine"},
    ),
]

CLI_CASES = [
    Case(
        "serve-weak-secret",
        sample="wire",
        args=["serve", "--port", "0"],
        env={"NANO_SECRET": "password1234"},
        exit=2,
        names=["NANO_SECRET is too weak", "at least 128"],
        absent=["password1234"],
    ),
    Case("nanobuild-secret-command", args=["secret"], workspace=False, exit=0),
]


# -- the internal port, by hand


@dataclasses.dataclass(frozen=True)
class TcpCase:
    """A peer of the internal port that misbehaves; ``expect`` judges what came back."""

    name: str
    talk: Callable[[socket.socket], bytes]  # sends, and returns what it read
    expect: Callable[[list[frames.Message], bytes], None]


def receive(sock: socket.socket) -> frames.Message | None:
    """The next message, or None if the server closed first."""
    header = _exactly(sock, 4)
    if len(header) < 4:
        return None
    body = _exactly(sock, struct.unpack(">I", header)[0])
    (message,) = frames.FrameDecoder().feed(header + body)
    return message


def _exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def rest(sock: socket.socket) -> bytes:
    """What the server sends until it closes (or is quiet for a second)."""
    sock.settimeout(1.0)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return data


def hello(nonce: bytes | None = None, version: int = frames.VERSION) -> bytes:
    return frames.frame(frames.Hello(version, nonce or frames.nonce()))


def authenticated(sock: socket.socket) -> None:
    """Shake hands as a real client would (this test holds the cluster's secret)."""
    mine = frames.nonce()
    sock.sendall(hello(mine))
    challenge = receive(sock)
    assert isinstance(challenge, frames.Challenge)
    proof = frames.proof(SECRET.encode(), "client", mine, challenge.nonce)
    sock.sendall(frames.frame(frames.Auth(proof)))
    assert isinstance(receive(sock), frames.Welcome)


def say_hello(sock: socket.socket) -> bytes:
    sock.sendall(hello())
    return rest(sock)


def guess(sock: socket.socket) -> bytes:
    sock.sendall(hello())
    challenge = receive(sock)
    assert isinstance(challenge, frames.Challenge)
    sock.sendall(frames.frame(frames.Auth(b"\0" * 32)))
    return rest(sock)


def replay(sock: socket.socket) -> bytes:
    """A real client's AUTH, recorded on one connection, replayed on the next."""
    mine = frames.nonce()
    with socket.create_connection(sock.getpeername(), timeout=5) as first:
        first.sendall(hello(mine))
        challenge = receive(first)
        assert isinstance(challenge, frames.Challenge)
        recorded = frames.frame(
            frames.Auth(frames.proof(SECRET.encode(), "client", mine, challenge.nonce))
        )
    sock.sendall(hello(mine))  # the same client nonce: only the server's is new
    assert isinstance(receive(sock), frames.Challenge)
    sock.sendall(recorded)
    return rest(sock)


def sends(data: bytes, *, after_handshake: bool = False) -> Callable[[socket.socket], bytes]:
    def talk(sock: socket.socket) -> bytes:
        if after_handshake:
            authenticated(sock)
        sock.sendall(data)
        return rest(sock)

    return talk


def deep_call(depth: int) -> bytes:
    """A CALL frame of notes.Keep whose request nests ``depth`` arrays deep."""
    head = msgspec.msgpack.encode([frames.CALL, 1, "notes", "Keep", {}])
    body = b"\x96" + head[1:] + keep_msgpack(nested_msgpack(depth))  # a sixth element: the request
    return struct.pack(">I", len(body)) + body


def denied(why: str) -> Callable[[list[frames.Message], bytes], None]:
    def expect(messages: list[frames.Message], data: bytes) -> None:
        assert [type(m) for m in messages] == [frames.Denied], messages
        assert why in messages[0].reason

    return expect


def hung_up(messages: list[frames.Message], data: bytes) -> None:
    assert not any(isinstance(m, frames.Reply | frames.Welcome) for m in messages), messages


def only_a_nonce(messages: list[frames.Message], data: bytes) -> None:
    """The server's first answer is a CHALLENGE that holds a nonce and nothing else."""
    assert [type(m) for m in messages] == [frames.Challenge], messages
    size = struct.unpack(">I", data[:4])[0]
    assert msgspec.msgpack.decode(data[4 : 4 + size]) == [frames.CHALLENGE, messages[0].nonce]


TCP_CASES = [
    TcpCase("tcp-hello-gets-no-proof", say_hello, only_a_nonce),
    TcpCase("tcp-guessed-proof", guess, denied("did not prove it holds NANO_SECRET")),
    TcpCase("tcp-replayed-auth", replay, denied("did not prove it holds NANO_SECRET")),
    TcpCase(
        "tcp-old-protocol",
        sends(hello(version=2)),
        denied("protocol version 2 is not spoken here (only 3)"),
    ),
    TcpCase("tcp-garbage", sends(b"\x00\x00\x00\x05hello"), hung_up),
    TcpCase("tcp-huge-length-prefix", sends(b"\xff\xff\xff\xff"), hung_up),
    TcpCase("tcp-truncated-hello", sends(hello()[:10]), hung_up),
    TcpCase(
        "tcp-call-before-handshake", sends(frames.call_frame(1, "notes", "Keep", {}, {})), hung_up
    ),
    TcpCase("tcp-deep-frame-before-handshake", sends(deep_call(1000)), hung_up),
    TcpCase("tcp-deep-call-after-handshake", sends(deep_call(DEEP), after_handshake=True), hung_up),
    TcpCase(
        "tcp-garbage-after-handshake",
        sends(b"\x00\x00\x00\x03\xc1\xc1\xc1", after_handshake=True),
        hung_up,
    ),
    TcpCase(
        "tcp-huge-frame-after-handshake",
        sends(b"\x7f\xff\xff\xff" + b"x" * 100, after_handshake=True),
        hung_up,
    ),
]

check_unique([*HTTP_CASES, *BINARY_CASES, *CLI_CASES, *TCP_CASES])


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with serving(
        tmp_path_factory, "wire", [["notes"], ["front"]], "--timeout", "notes=0.5"
    ) as running:
        yield running


@pytest.mark.parametrize("case", HTTP_CASES, ids=lambda c: c.name)
def test_http_case(case: HttpCase, cluster: Cluster) -> None:
    run_http_case(case, cluster.front)


@pytest.mark.parametrize("case", BINARY_CASES, ids=lambda c: c.name)
def test_binary_case(
    case: BinaryCase, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    run_binary_case(case, binary(tmp_path_factory, "wire"), tmp_path)


@pytest.mark.parametrize("case", CLI_CASES, ids=lambda c: c.name)
def test_cli_case(case: Case, tmp_path: Path) -> None:
    run_case(case, tmp_path)


@pytest.mark.parametrize("case", TCP_CASES, ids=lambda c: c.name)
def test_tcp_case(case: TcpCase, cluster: Cluster) -> None:
    notes = cluster.servers[0]
    assert notes.internal is not None
    logged = notes.log_path.stat().st_size
    with socket.create_connection(address(notes.internal), timeout=5) as sock:
        data = case.talk(sock)
    case.expect(frames_in(data), data)
    assert notes.proc.poll() is None, notes.log()
    assert_served(notes.internal)
    grown = notes.log()[logged:]
    assert "Traceback" not in grown, grown


def frames_in(data: bytes) -> list[frames.Message]:
    """The whole frames at the start of ``data`` (a stream may end mid-frame)."""
    decoder = frames.FrameDecoder()
    try:
        return decoder.feed(data)
    except frames.ProtocolError:
        return []


class Kept(msgspec.Struct, frozen=True):
    kind: str


class Keep(Contract[Kept], frozen=True):  # notes.Keep's shape, as a caller of it sees it
    payload: Any = None


def assert_served(internal: str) -> None:
    """A real client, holding the secret, still gets its answer there."""

    async def scenario() -> Kept:
        transport = TcpTransport(internal, secret=SECRET)
        try:
            answer: Kept = await remote_route(transport, "notes", Keep)(Keep(payload=[1]))
            return answer
        finally:
            await transport.aclose()

    assert asyncio.run(scenario()) == Kept("list")


# -- the same rules, in process


def test_the_secret_commands_print_strong_secrets(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    built = binary(tmp_path_factory, "wire")
    printed = set()
    for result in (
        run_case(
            Case("print-a-secret", args=["secret"], workspace=False, exit=0), tmp_path / "cli"
        ),
        run_binary_case(BinaryCase("print-a-secret", ["secret"], exit=0), built, tmp_path),
    ):
        secret = result.stdout.strip()
        assert len(secret) == 43 and check_secret(secret, "it") == secret
        printed.add(secret)
    assert len(printed) == 2  # random, not a constant


class Note(msgspec.Struct, frozen=True):
    body: Any = None


@pytest.mark.parametrize("fmt", [JSON, MSGPACK], ids=["json", "msgpack"])
def test_a_codec_refuses_deep_bodies_and_keeps_decoding(fmt: Any) -> None:
    codec = Codec(fmt, Note, None, thorough=False)
    value: Any = None
    for _ in range(DEEP):
        value = [value]
    deep = (
        b'{"body": ' + nested_json(DEEP) + b"}"
        if fmt is JSON
        else b"\x81\xa4body" + nested_msgpack(DEEP)
    )
    with pytest.raises(BadRequest, match=TOO_DEEP):
        codec.decode(deep)
    assert codec.decode(fmt.encode(Note([[1]]))) == Note([[1]])  # the same codec, after


def test_a_model_contract_refuses_deep_bodies_in_both_formats() -> None:
    from pydantic import BaseModel

    from nanobuild.runtime import ModelContract

    class Answer(BaseModel):
        ok: bool

    class Store(ModelContract[Answer]):
        body: Any = None

    for fmt, deep in (
        (JSON, b'{"body": ' + nested_json(DEEP) + b"}"),
        (MSGPACK, b"\x81\xa4body" + nested_msgpack(DEEP)),
    ):
        with pytest.raises(BadRequest, match=r"nested|recursion"):
            Codec(fmt, Store, Answer, thorough=False).decode(deep)


class Slow(Contract[None], frozen=True):
    seconds: float


@handler
async def slow(req: Slow) -> None:
    await asyncio.sleep(req.seconds)


def test_call_sync_timeout_says_the_call_may_still_run() -> None:
    wire(AppSpec("slow", (ServiceSpec("slow", "slow", {"Slow": f"{__name__}:slow"}),)))
    with pytest.raises(Timeout, match="may still be running on its service, or have run"):
        call_sync(Slow(seconds=1.0), timeout=0.05)
