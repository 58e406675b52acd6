"""The internal protocol's frames: encoding, decoding a stream cut anywhere, proofs, fuzzing."""

from __future__ import annotations

import itertools
import struct
from typing import Any
from unittest import mock

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nanobuild.runtime.transports import frames
from nanobuild.runtime.transports.frames import (
    Auth,
    Call,
    Challenge,
    Denied,
    Failure,
    FrameDecoder,
    FrameTooLarge,
    Hello,
    ProtocolError,
    Reply,
    Welcome,
)


class Point(msgspec.Struct, frozen=True):
    x: int
    y: int


NONCE = b"n" * frames.NONCE_SIZE
PROOF = b"p" * 32


def raw(value: object) -> msgspec.Raw:
    return msgspec.Raw(msgspec.msgpack.encode(value))


def same(a: object, b: object) -> bool:
    """Equality that looks inside Raw bodies (Raw compares by identity)."""
    fields = msgspec.structs.astuple
    norm = [bytes(v) if isinstance(v, msgspec.Raw) else v for v in fields(a)]  # type: ignore[arg-type]
    other = [bytes(v) if isinstance(v, msgspec.Raw) else v for v in fields(b)]  # type: ignore[arg-type]
    return type(a) is type(b) and norm == other


def decode_all(data: bytes, max_frame: int = frames.DEFAULT_MAX_FRAME) -> list[frames.Message]:
    return FrameDecoder(max_frame).feed(data)


# -- encoding and decoding


def test_a_frame_is_a_length_then_msgpack() -> None:
    data = frames.frame(Welcome(PROOF))
    (length,) = struct.unpack(">I", data[:4])
    assert length == len(data) - 4
    assert msgspec.msgpack.decode(data[4:]) == [frames.WELCOME, PROOF, "", {}]  # no build


def test_call_frames_carry_the_request_inline() -> None:
    data = frames.call_frame(7, "geo", "Locate", {"trace": "t1"}, Point(1, 2))
    [call] = decode_all(data)
    assert isinstance(call, Call)
    assert (call.id, call.service, call.contract) == (7, "geo", "Locate")
    assert call.context == {"trace": "t1"}
    assert msgspec.msgpack.decode(call.body, type=Point) == Point(1, 2)


@pytest.mark.parametrize(
    ("context", "why"),
    [
        ({f"k{i}": "v" for i in range(33)}, "length <= 32"),
        ({"": "v"}, "length >= 1"),
        ({"k" * 65: "v"}, "length <= 64"),
        ({"k": "v" * 1025}, "length <= 1024"),
        ({"k": 1}, "Expected `str`"),
    ],
)
def test_a_call_context_over_the_limits_is_a_protocol_error(context: Any, why: str) -> None:
    with pytest.raises(ProtocolError, match=why):
        decode_all(frames.call_frame(1, "s", "C", context, Point(1, 2)))


def test_a_version_1_call_frame_is_not_misread_as_a_version_2_one() -> None:
    # version 1's CALL had no context: its request would be read as the context
    old = frames.frame((frames.CALL, 1, "s", "C", Point(1, 2)))
    with pytest.raises(ProtocolError):
        decode_all(old)


def test_reply_and_failure_frames() -> None:
    body = msgspec.msgpack.encode(Point(3, 4))
    error = {"kind": "not_found", "message": "gone", "service": "geo", "contract": "Locate"}
    reply, failure = decode_all(frames.reply_frame(1, body) + frames.failure_frame(2, error))
    assert isinstance(reply, Reply) and bytes(reply.body) == body
    assert failure == Failure(2, error)


@pytest.mark.parametrize("call_id", [0, 1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32])
def test_reply_frames_are_the_reply_array_joined_by_hand(call_id: int) -> None:
    body = msgspec.msgpack.encode(Point(3, 4))
    by_hand = frames.reply_frame(call_id, body)
    assert by_hand == frames.frame((frames.REPLY, call_id, msgspec.Raw(body)))
    (reply,) = frames.FrameDecoder().feed(by_hand)
    assert isinstance(reply, Reply) and (reply.id, bytes(reply.body)) == (call_id, body)


def test_handshake_messages_round_trip() -> None:
    messages = [Hello(1, NONCE), Challenge(NONCE), Auth(PROOF), Welcome(PROOF), Denied("no")]
    data = b"".join(frames.frame(m) for m in messages)
    assert decode_all(data) == messages


def test_a_stream_split_anywhere_gives_the_same_messages() -> None:
    data = b"".join(frames.call_frame(i, "s", "C", {}, Point(i, i)) for i in range(5))
    for cut in range(len(data) + 1):
        decoder = FrameDecoder()
        got = decoder.feed(data[:cut]) + decoder.feed(data[cut:])
        assert [m.id for m in got] == list(range(5))  # type: ignore[union-attr]
        assert decoder.buffered == 0


def test_byte_by_byte() -> None:
    data = frames.call_frame(1, "s", "C", {}, Point(1, 2))
    decoder = FrameDecoder()
    got = [m for byte in data for m in decoder.feed(bytes([byte]))]
    assert len(got) == 1
    assert decoder.buffered == 0


def test_a_half_frame_is_kept_and_counted() -> None:
    data = frames.call_frame(1, "s", "C", {}, Point(1, 2))
    decoder = FrameDecoder()
    assert decoder.feed(data[:-3]) == []
    assert decoder.buffered == len(data) - 3


def test_a_frame_larger_than_the_buffer_gets_one_of_its_own_then_lets_it_go() -> None:
    body = msgspec.msgpack.encode(b"x" * (3 * frames.READ_SIZE))
    data = frames.reply_frame(9, body)
    decoder = FrameDecoder()
    got = [m for i in range(0, len(data), 100_000) for m in decoder.feed(data[i : i + 100_000])]
    assert [(m.id, bytes(m.body)) for m in got] == [(9, body)]  # type: ignore[union-attr]
    assert len(decoder.get_buffer()) == frames.READ_SIZE


def test_decoded_bodies_do_not_share_the_buffer_the_next_read_overwrites() -> None:
    decoder = FrameDecoder()
    (first,) = decoder.feed(frames.reply_frame(1, msgspec.msgpack.encode("first")))
    decoder.feed(frames.reply_frame(2, msgspec.msgpack.encode("other")))
    assert isinstance(first, Reply) and msgspec.msgpack.decode(first.body) == "first"


def test_frames_straddling_a_small_buffer() -> None:
    sent = [Reply(i, raw("v" * (i % 40))) for i in range(200)]
    decoder = FrameDecoder(max_frame=64)  # a 68-byte buffer: most frames straddle its end
    got = decoder.feed(b"".join(frames.frame(m) for m in sent))
    assert all(same(a, b) for a, b in zip(got, sent, strict=True))
    assert decoder.buffered == 0


def test_raising_the_limit_keeps_a_frame_under_way() -> None:
    decoder = FrameDecoder(max_frame=1024)
    assert len(decoder.get_buffer()) == 1028  # a peer still shaking hands gets little room
    data = frames.frame(Denied("x" * 5000))
    assert decoder.feed(data[:3]) == []
    decoder.limit(frames.DEFAULT_MAX_FRAME)
    assert len(decoder.get_buffer()) == frames.READ_SIZE - 3
    assert decoder.feed(data[3:]) == [Denied("x" * 5000)]


# -- what is not the protocol


def test_a_frame_over_the_limit_is_refused_from_its_header() -> None:
    with pytest.raises(FrameTooLarge, match="1000 bytes is over the limit of 999"):
        FrameDecoder(max_frame=999).feed(struct.pack(">I", 1000))


def test_http_on_the_internal_port_is_refused_at_once() -> None:
    with pytest.raises(FrameTooLarge):
        decode_all(b"POST /api/users/GetUser HTTP/1.1\r\n")


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"", "truncated"),
        (b"\xc1", "malformed"),
        (msgspec.msgpack.encode([99, 1]), "Invalid value 99"),
        (msgspec.msgpack.encode({"kind": 5}), "Expected `array`"),
        (msgspec.msgpack.encode([frames.CALL, 1, "s"]), "at least length"),
        (msgspec.msgpack.encode([frames.HELLO, 1, b"short"]), "length >= 32"),
        (msgspec.msgpack.encode([frames.CALL, "id", "s", "C", {}, {}]), "Expected `int`"),
    ],
)
def test_garbage_is_a_protocol_error(body: bytes, why: str) -> None:
    with pytest.raises(ProtocolError, match=why):
        decode_all(struct.pack(">I", len(body)) + body)


# -- proofs


def test_proofs_depend_on_secret_role_and_both_nonces() -> None:
    client, server = b"c" * 32, b"s" * 32
    base = frames.proof(b"secret", "client", client, server)
    assert frames.proves(b"secret", "client", client, server, base)
    assert not frames.proves(b"other", "client", client, server, base)
    assert not frames.proves(b"secret", "server", client, server, base)  # no reflection
    assert not frames.proves(b"secret", "client", server, client, base)
    assert frames.nonce() != frames.nonce()


# -- fuzzing

ints = st.integers(-(2**63), 2**63 - 1)
messages = st.one_of(
    st.builds(Hello, st.integers(0, 2**32), st.binary(min_size=32, max_size=32)),
    st.builds(Challenge, st.binary(min_size=32, max_size=32)),
    st.builds(Auth, st.binary(min_size=32, max_size=32)),
    st.builds(Welcome, st.binary(min_size=32, max_size=32)),
    st.builds(Denied, st.text()),
    st.builds(
        Call,
        st.integers(0, 2**63),
        st.text(max_size=20),
        st.text(max_size=20),
        st.dictionaries(st.text(min_size=1, max_size=64), st.text(max_size=50), max_size=32),
        st.builds(raw, st.dictionaries(st.text(max_size=5), ints)),
    ),
    st.builds(Reply, st.integers(0, 2**63), st.builds(raw, st.lists(ints))),
    st.builds(Failure, st.integers(0, 2**63), st.dictionaries(st.text(), st.text())),
)


def cuts(data: bytes, points: list[int]) -> list[bytes]:
    bounds = sorted({p % (len(data) + 1) for p in points})
    edges = [0, *bounds, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


# a read buffer of 8 bytes: every frame straddles or outgrows it
@pytest.mark.parametrize("read_size", [frames.READ_SIZE, 8], ids=["buffer", "tiny-buffer"])
@settings(max_examples=300, deadline=None)
@given(st.lists(messages, max_size=8), st.lists(st.integers(0, 10_000), max_size=10))
def test_valid_frames_round_trip_however_the_stream_is_cut(
    read_size: int, sent: list[frames.Message], points: list[int]
) -> None:
    data = b"".join(frames.frame(m) for m in sent)
    with mock.patch.object(frames, "READ_SIZE", read_size):
        decoder = FrameDecoder()
    got = [m for piece in cuts(data, points) for m in decoder.feed(piece)]
    assert all(same(a, b) for a, b in zip(got, sent, strict=True))
    assert decoder.buffered == 0


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300), st.lists(st.integers(0, 10_000), max_size=10))
def test_arbitrary_bytes_give_messages_or_a_protocol_error(data: bytes, points: list[int]) -> None:
    decoder = FrameDecoder(max_frame=256)
    try:
        for piece in cuts(data, points):
            decoder.feed(piece)
    except ProtocolError:
        pass  # the clean way out; anything else fails the test


@settings(max_examples=300, deadline=None)
@given(
    st.lists(messages, min_size=1, max_size=4),
    st.binary(min_size=1, max_size=64),
    st.lists(st.integers(0, 10_000), max_size=6),
)
def test_frames_before_garbage_decode_as_themselves(
    sent: list[frames.Message], junk: bytes, points: list[int]
) -> None:
    data = b"".join(frames.frame(m) for m in sent) + struct.pack(">I", len(junk)) + junk
    decoder = FrameDecoder()
    got: list[frames.Message] = []
    try:
        for piece in cuts(data, points):
            got += decoder.feed(piece)
    except ProtocolError:
        pass
    assert all(same(a, b) for a, b in zip(got, sent, strict=False))  # got may stop short


def test_the_handshake_carries_builds_fingerprints_and_shapes() -> None:
    from nanobuild.runtime.spec import ContractShape, RecordShape, TypeShape

    shape = ContractShape(
        request=TypeShape("record", ref="m.Get"),
        response=TypeShape("list", (TypeShape("str"),)),
        records={"m.Get": RecordShape("struct")},
    )
    sent = [
        frames.Welcome(
            PROOF, "mini sha256:abc (nanobuild 0.1.0)", {"users.Get": "0123456789abcdef"}
        ),
        frames.Describe("mini source (nanobuild 0.1.0)", ["users.Get"]),
        frames.Shapes({"users.Get": shape}),
    ]
    assert decode_all(b"".join(frames.frame(m) for m in sent)) == sent
    body = msgspec.msgpack.decode(frames.frame(sent[1])[4:])
    assert body == [frames.DESCRIBE, "mini source (nanobuild 0.1.0)", ["users.Get"]]
    with pytest.raises(ProtocolError):  # a fingerprint is short text, not anything at all
        decode_all(frames.frame((frames.WELCOME, PROOF, "b", {"users.Get": "x" * 65})))
