"""Fuzzing the boutique's binary: its HTTP face never answers 5xx, its internal port
never falls over.

Bodies. Every contract the boutique serves (``python boutique.pyz contracts --json``,
public or not: the requests carry the secret) gets bodies hypothesis makes: JSON
values of every kind, bodies shaped like the contract's request with any field of
any type (huge numbers, wrong types, missing and extra fields), values nested
thousands deep, bytes that are not UTF-8, MessagePack values and MessagePack bytes.
Whatever comes in, the answer is a 2xx or a 4xx, and the log holds no traceback.

Frames. The internal port of a split process gets random bytes, cut frames, huge
length prefixes, and garbage after a valid handshake; each peer half-closes, and the
server must answer or close within a few seconds, stay up, and still serve a good
client afterwards.

One binary per module, started once per test: hypothesis runs with a fixed seed
(``derandomize``) and at most ~200 examples a test, so a run takes tens of seconds.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nanobuild.runtime.spec import ContractShape, ContractTable, TypeShape
from nanobuild.runtime.transports import frames
from tests.corpus import address
from tests.servers import Binary, Server, start

SECRET = secrets.token_urlsafe(32)
FUZZ = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# -- the served binary and its contracts


@pytest.fixture(scope="module")
def face(boutique_binary: Binary, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The boutique, every service fused, strict (every call crosses the wire form)."""
    log = tmp_path_factory.mktemp("fuzz") / "face.log"
    server = start(
        boutique_binary.serve(),
        log,
        boutique_binary.env,
        cwd=boutique_binary.pyz.parent,
        NANO_SECRET=SECRET,
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def contracts(boutique_binary: Binary) -> ContractTable:
    import subprocess

    done = subprocess.run(
        boutique_binary.command("contracts", "--json"),
        capture_output=True,
        env={**os.environ, **boutique_binary.env},
        timeout=60,
        check=True,
    )
    table = msgspec.json.decode(done.stdout, type=ContractTable)
    assert len(table.contracts) >= 15, table.contracts.keys()  # every boutique contract
    return table


def post(face: Server, name: str, body: bytes, media: str = "application/json") -> httpx.Response:
    service, contract = name.split(".")
    return face.http.post(
        f"/api/{service}/{contract}",
        content=body,
        headers={"content-type": media, "nano-secret": SECRET},
    )


def assert_no_fault(face: Server, name: str, body: bytes, answer: httpx.Response) -> None:
    shown = f"{name} <- {body[:300]!r}: {answer.status_code} {answer.text[:500]}"
    assert answer.status_code < 500, shown
    assert face.proc.poll() is None, face.log()[-4000:]


@pytest.fixture(autouse=True)
def log_has_no_traceback(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each test: the servers it used logged no traceback meanwhile."""
    servers = [
        request.getfixturevalue(n) for n in ("face", "internal") if n in request.fixturenames
    ]
    sizes = [s.log_path.stat().st_size for s in servers]
    yield
    for server, size in zip(servers, sizes, strict=True):
        grown = server.log()[size:]
        assert "Traceback" not in grown, grown[-4000:]


# -- bodies


KNOWN = ["OLJCESPC7Z", "66VCHSJNUP", "USD", "EUR", "JPY", "someone@example.com", "u1"]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),  # unbounded: beyond 64 bits too
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(),  # nan and infinities are not JSON: the encoder writes NaN, Infinity
    st.text(),
    st.sampled_from(["", "\0", "\u202e", "\ud7ff", "9" * 5000, "OLJCESPC7Z", "USD", "EUR"]),
)
any_value = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=20,
)


def shaped(shape: TypeShape, table: ContractShape, depth: int = 0) -> st.SearchStrategy[Any]:
    """Values of ``shape``'s type, one in ten swapped for a value of any type at all (so
    that most bodies get past decoding to the handlers, with odd values in them)."""
    return st.integers(0, 9).flatmap(lambda n: any_value if n == 0 else _typed(shape, table, depth))


def _typed(shape: TypeShape, table: ContractShape, depth: int) -> st.SearchStrategy[Any]:
    kind, args = shape.kind, shape.args
    if kind == "record" and depth < 4:
        record = table.records[shape.ref]
        fields = {f.wire: shaped(f.type, table, depth + 1) for f in record.fields}
        required = {f.wire for f in record.fields if f.required}
        return st.fixed_dictionaries(
            {k: v for k, v in fields.items() if k in required},
            optional={k: v for k, v in fields.items() if k not in required},
        )
    if kind in ("list", "set", "frozenset", "vartuple") and args:
        return st.lists(shaped(args[0], table, depth + 1), max_size=4)
    if kind == "dict" and len(args) == 2:
        return st.dictionaries(st.text(max_size=8), shaped(args[1], table, depth + 1), max_size=4)
    if kind == "union" and args:
        return st.one_of([_typed(arg, table, depth) for arg in args])
    if kind in ("literal", "enum") and shape.values:
        return st.sampled_from(shape.values)
    words = st.text() | st.sampled_from(KNOWN)  # the boutique's own ids, so calls find things
    simple = {"str": words, "int": st.integers(), "float": st.floats(), "bool": st.booleans()}
    return simple.get(kind, scalars)


@st.composite
def contract_bodies(draw: st.DrawFn, table: ContractTable) -> tuple[str, Any]:
    name = draw(st.sampled_from(sorted(table.contracts)))
    shape = table.contracts[name]
    body = draw(shaped(shape.request, shape))
    if isinstance(body, dict) and draw(st.integers(0, 3)) == 0:
        body[draw(st.text(max_size=8))] = draw(any_value)  # an extra field, or one replaced
    return name, body


def to_json(value: Any) -> bytes:
    """``value`` as JSON text; non-finite floats as the tokens JSON does not have."""
    return json.dumps(value, allow_nan=True).encode()


def nested(depth: int, kind: str) -> bytes:
    if kind == "array":
        return b"[" * depth + b"1" + b"]" * depth
    if kind == "object":
        return b'{"a":' * depth + b"1" + b"}" * depth
    return b"[" * depth  # never closed


def test_any_json_value_to_any_contract(face: Server, contracts: ContractTable) -> None:
    @FUZZ
    @given(st.sampled_from(sorted(contracts.contracts)), any_value)
    def check(name: str, value: Any) -> None:
        body = to_json(value)
        assert_no_fault(face, name, body, post(face, name, body))

    check()


def test_bodies_shaped_like_the_request_with_wrong_fields(
    face: Server, contracts: ContractTable
) -> None:
    @FUZZ
    @given(contract_bodies(contracts), st.booleans())
    def check(drawn: tuple[str, Any], as_msgpack: bool) -> None:
        name, value = drawn
        if as_msgpack:
            body = msgspec.msgpack.encode(_msgpack_safe(value))
            answer = post(face, name, body, "application/msgpack")
        else:
            body = to_json(value)
            answer = post(face, name, body)
        assert_no_fault(face, name, body, answer)

    check()


def _msgpack_safe(value: Any) -> Any:
    """``value`` with what MessagePack cannot hold (ints past 64 bits) as floats or text."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**64 else str(value)
    if isinstance(value, list):
        return [_msgpack_safe(v) for v in value]
    if isinstance(value, dict):
        return {k: _msgpack_safe(v) for k, v in value.items()}
    return value


def test_bodies_nested_deep_anywhere(face: Server, contracts: ContractTable) -> None:
    @FUZZ
    @given(
        contract_bodies(contracts),
        st.integers(1, 20_000),
        st.sampled_from(["array", "object", "open"]),
        st.booleans(),
    )
    def check(drawn: tuple[str, Any], depth: int, kind: str, at_top: bool) -> None:
        name, value = drawn
        deep = nested(depth, kind)
        if at_top or not isinstance(value, dict) or not value:
            body = deep
        else:  # in place of one of the fields the contract has
            field = sorted(value)[0]
            body = to_json({**value, field: 0}).replace(b'": 0', b'": ' + deep, 1)
        assert_no_fault(face, name, body, post(face, name, body))

    check()


def test_deep_msgpack_and_msgpack_bytes(face: Server, contracts: ContractTable) -> None:
    @FUZZ
    @given(
        st.sampled_from(sorted(contracts.contracts)),
        st.one_of(
            st.binary(max_size=512),
            st.builds(
                lambda d, head: head * d + b"\xc0",
                st.integers(1, 20_000),
                st.sampled_from([b"\x91", b"\x81\xa1a", b"\xdc\x00\x01"]),
            ),
            st.builds(
                lambda prefix: prefix + b"\xff\xff\xff\xff",
                st.sampled_from([b"\xdb", b"\xdd", b"\xdf", b"\xc6", b"\xc9\x00"]),
            ),
        ),
    )
    def check(name: str, body: bytes) -> None:
        assert_no_fault(face, name, body, post(face, name, body, "application/msgpack"))

    check()


def test_bytes_that_are_not_utf8_json(face: Server, contracts: ContractTable) -> None:
    @FUZZ
    @given(
        st.sampled_from(sorted(contracts.contracts)),
        st.one_of(
            st.binary(max_size=512),
            st.builds(lambda junk: b'{"id": "' + junk + b'"}', st.binary(min_size=1, max_size=16)),
        ),
        st.sampled_from(["application/json", "application/json; charset=latin-1", "text/plain"]),
    )
    def check(name: str, body: bytes, media: str) -> None:
        assert_no_fault(face, name, body, post(face, name, body, media))

    check()


# -- frames on the internal port


@pytest.fixture(scope="module")
def internal(boutique_binary: Binary, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The catalog alone, split: its internal port is what the frames go to."""
    log = tmp_path_factory.mktemp("fuzz") / "internal.log"
    command = boutique_binary.command(
        "serve", "--port", "0", "--only", "catalog", "--internal-port", "0"
    )
    server = start(
        command, log, boutique_binary.env, cwd=boutique_binary.pyz.parent, NANO_SECRET=SECRET
    )
    assert server.internal is not None
    yield server
    server.stop()


def exchange(server: Server, data: bytes, *, shake_hands: bool = False) -> tuple[bytes, float]:
    """Send ``data`` (after a real handshake, if asked), half-close, and read to the end:
    what came back, and how long the server took to close."""
    assert server.internal is not None
    started = time.monotonic()
    with socket.create_connection(address(server.internal), timeout=5) as sock:
        if shake_hands:
            handshake(sock)
        with contextlib.suppress(OSError):
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        received = b""
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                received += chunk
    return received, time.monotonic() - started


def handshake(sock: socket.socket) -> None:
    mine = frames.nonce()
    sock.sendall(frames.frame(frames.Hello(frames.VERSION, mine)))
    challenge = read_message(sock)
    assert isinstance(challenge, frames.Challenge), challenge
    proof = frames.proof(SECRET.encode(), "client", mine, challenge.nonce)
    sock.sendall(frames.frame(frames.Auth(proof)))
    welcome = read_message(sock)
    assert isinstance(welcome, frames.Welcome), welcome


def read_message(sock: socket.socket) -> frames.Message:
    header = sock.recv(4, socket.MSG_WAITALL)
    body = sock.recv(struct.unpack(">I", header)[0], socket.MSG_WAITALL)
    (message,) = frames.FrameDecoder().feed(header + body)
    return message


def assert_serves(server: Server, tried: bytes, took: float) -> None:
    """The server closed in time, still runs, and answers a good client's call."""
    assert took < 5.0, f"no answer nor close within 5 s after {tried[:200]!r}"
    assert server.proc.poll() is None, server.log()[-4000:]
    assert server.internal is not None
    with socket.create_connection(address(server.internal), timeout=5) as sock:
        handshake(sock)
        sock.sendall(frames.call_frame(1, "catalog", "GetProduct", {}, {"id": "OLJCESPC7Z"}))
        reply = read_message(sock)
    assert isinstance(reply, frames.Reply) and reply.id == 1, reply


hello = frames.frame(frames.Hello(frames.VERSION, b"n" * 32))
stranger_bytes = st.one_of(
    st.binary(max_size=2048),
    st.builds(lambda cut: hello[:cut], st.integers(0, len(hello) - 1)),  # a cut HELLO
    st.builds(lambda junk: hello + junk, st.binary(max_size=256)),  # HELLO, then anything
    st.builds(  # a length prefix far over the limit, then a little
        lambda size, tail: struct.pack(">I", size) + tail,
        st.integers(1025, 2**32 - 1),
        st.binary(max_size=64),
    ),
    st.builds(lambda value: frames.frame(_msgpack_safe(value)), any_value),  # framed, any value
)


def test_strangers_bytes_on_the_internal_port(internal: Server) -> None:
    @FUZZ
    @given(stranger_bytes)
    def check(data: bytes) -> None:
        _, took = exchange(internal, data)
        assert_serves(internal, data, took)

    check()


call_frames = st.builds(
    lambda call_id, service, contract, context, body: frames.call_frame(
        call_id, service, contract, context, body
    ),
    st.integers(0, 2**64 - 1),
    st.sampled_from(["catalog", "cart", "", "x" * 300]),
    st.sampled_from(["GetProduct", "ListProducts", "SearchProducts", "Nope", ""]),
    st.dictionaries(st.text(max_size=70), st.text(max_size=30), max_size=3),
    any_value.map(_msgpack_safe),
)
trusted_garbage = st.one_of(
    st.binary(max_size=2048),
    call_frames,
    st.builds(lambda frame, cut: frame[:cut], call_frames, st.integers(0, 40)),  # cut calls
    st.builds(lambda size: struct.pack(">I", size), st.integers(16 * 1024 * 1024 + 1, 2**32 - 1)),
    st.builds(lambda depth: deep_call(depth), st.integers(1, 5000)),
)


def deep_call(depth: int) -> bytes:
    """A CALL frame of catalog.GetProduct whose request nests ``depth`` arrays deep."""
    body = bytes((0x96, frames.CALL, 1)) + b"\xa7catalog\xaaGetProduct\x80"
    body += b"\x91" * depth + b"\xc0"
    return struct.pack(">I", len(body)) + body


def test_garbage_after_a_valid_handshake(internal: Server) -> None:
    @FUZZ
    @given(trusted_garbage)
    def check(data: bytes) -> None:
        _, took = exchange(internal, data, shake_hands=True)
        assert_serves(internal, data, took)

    check()


def test_the_fuzzed_servers_are_still_whole(face: Server, internal: Server, tmp_path: Path) -> None:
    """After all of it, both processes answer as at first."""
    answer = face.http.post("/api/catalog/GetProduct", json={"id": "OLJCESPC7Z"})
    assert answer.status_code == 200 and answer.json()["id"] == "OLJCESPC7Z"
    assert_serves(internal, b"", 0.0)
