"""The internal protocol between nanobuild processes: frames, handshake, calls.

Frames. Every message is one frame: a 4-byte big-endian length, then that many
bytes of MessagePack. The body is an array whose first element names its kind::

    +--------------------+---------------------------------------------+
    | length: u32 (BE)   | MessagePack array [kind, field, field, ...] |
    +--------------------+---------------------------------------------+

A frame longer than the receiver's limit (16 MiB unless configured) ends the
connection before its body is read.

Handshake. Both sides prove they hold NANO_SECRET; the secret never crosses the
wire, and neither side sends a call or an answer before the proofs are checked.
The client proves first: the server sends nothing derived from the secret to a
peer that has not proved it holds it, so a stranger who connects learns nothing
to guess the secret from offline::

    client                                               server
      |  HELLO      [0, version, client_nonce]              |
      |---------------------------------------------------->|
      |  CHALLENGE  [1, server_nonce]                       |
      |<----------------------------------------------------|
      |  AUTH       [2, client_proof]                       |
      |---------------------------------------------------->|
      |  (the server checks client_proof, or denies)        |
      |  WELCOME    [3, server_proof, build, fingerprints]  |
      |             or    DENIED [4, reason], close         |
      |<----------------------------------------------------|
      |  (the client checks server_proof, or hangs up)      |
      |  (only if a fingerprint differs from the client's:) |
      |  DESCRIBE   [8, build, [contract, ...]]             |
      |---------------------------------------------------->|
      |  SHAPES     [9, {contract: shape}]                  |
      |<----------------------------------------------------|

    client_proof = HMAC-SHA256(secret, "nanobuild/3 client" 0x00 client_nonce server_nonce)
    server_proof = HMAC-SHA256(secret, "nanobuild/3 server" 0x00 client_nonce server_nonce)

Nonces are 32 random bytes from each side, fresh for each connection, so a proof
recorded on one connection proves nothing on another (the server's nonce binds the
client's proof, the client's nonce the server's); the role label keeps a proof from
being reflected back as the other side's. A peer gets one AUTH per connection: a
wrong one is denied and the connection closed.

What no order of proofs prevents: whoever a client connects to gets its proof, so
a process that can pose as a server's address (its port while the server is down),
like one that records a handshake on the wire, gets a proof to test guesses of the
secret against offline. That is why the secret must be strong (the settings refuse
a weak one): 128 random bits are past guessing.

Contract shapes. WELCOME names the server's build (``mini sha256:3f2a9c0d1b2e
(nanobuild 0.1.0)``) and maps every contract it serves (``service.Contract``) to
the fingerprint of its shape (``spec.fingerprint``). The client compares them with
its own for the contracts it reaches there; where one differs it sends DESCRIBE,
naming its build and those contracts, and the server answers SHAPES with its shape
of each (``spec.ContractShape``, as MessagePack). Only then is the client ready for
calls: a contract the server does not serve, or whose shapes disagree in a way
that breaks calls (``spec.compare``), is refused in the client before any call of
it is sent. Two processes of one build send no DESCRIBE, and the handshake keeps
its two round trips.

Calls. Once welcomed, the client sends calls and the server answers each one,
in any order, matched by the id the client chose (many calls share one connection)::

    client -> server   CALL     [5, id, service, contract, context, request]
    server -> client   REPLY    [6, id, response]
    server -> client   FAILURE  [7, id, {kind, message, service, contract}]

Going away. A server that stops (SIGTERM: a drain) tells each trusted peer so, once,
and answers no call it has not taken yet::

    server -> client   GOAWAY   [10, last_id]

``last_id`` is the highest call id it took on this connection (0: none): those run to
their answers; any call above it did not run, and is answered ``unavailable`` if it
arrives, so the client may send it elsewhere, idempotent or not. The client sends no
new call on that connection and lets the server close it once its answers are out.

``request`` and ``response`` are the contract's own MessagePack encodings, nested
as they are; ``context`` is the per-call context, a map of strings (at most 32
entries, keys up to 64 characters, values up to 1024). FAILURE carries
``NanoError.to_wire()``, so the caller raises the same error class the handler did.

Versions. HELLO names the version the client speaks; a server that speaks another
answers DENIED naming both, so two builds of different protocols never misread each
other's frames. Version 2 added CALL's context, and WELCOME's build and
fingerprints, DESCRIBE and SHAPES; version 3 moved the server's proof from
CHALLENGE to WELCOME, after the client's.

Nesting. A frame's MessagePack is decoded recursively, so one nested thousands
deep cannot be read (``RecursionError``): it is a ``ProtocolError`` like any other
frame that is not this protocol.
"""

from __future__ import annotations

import hmac
import os
import struct
from collections.abc import Mapping
from hashlib import sha256
from typing import Annotated, Any, Union

import msgspec

from nanobuild.runtime.codecs import MSGPACK
from nanobuild.runtime.spec import ContractShape

VERSION = 3
DEFAULT_MAX_FRAME = 16 * 1024 * 1024
NONCE_SIZE = 32
HEADER = struct.Struct(">I")

Nonce = Annotated[bytes, msgspec.Meta(min_length=NONCE_SIZE, max_length=NONCE_SIZE)]
Proof = Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]
Name = Annotated[str, msgspec.Meta(max_length=255)]
ContextKey = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
ContextValue = Annotated[str, msgspec.Meta(max_length=1024)]
CallContext = Annotated[dict[ContextKey, ContextValue], msgspec.Meta(max_length=32)]
Build = Annotated[str, msgspec.Meta(max_length=1024)]
Fingerprint = Annotated[str, msgspec.Meta(max_length=64)]


class ProtocolError(Exception):
    """The peer sent bytes that are not this protocol: the connection must end."""


class FrameTooLarge(ProtocolError):
    """A frame's declared length is over the receiver's limit."""


# -- the messages (decoded; each is an array whose first element is its tag)


class Hello(msgspec.Struct, array_like=True, tag=0, frozen=True):
    """Client, first: the protocol version it speaks and its nonce."""

    version: int
    nonce: Nonce


class Challenge(msgspec.Struct, array_like=True, tag=1, frozen=True):
    """Server: its nonce, which the client's proof must cover (no proof of its own yet)."""

    nonce: Nonce


class Auth(msgspec.Struct, array_like=True, tag=2, frozen=True):
    """Client: its proof of the secret."""

    proof: Proof


class Welcome(msgspec.Struct, array_like=True, tag=3, frozen=True):
    """Server: the client is trusted; the server's own proof of the secret, its build,
    and the fingerprint of each contract it serves."""

    proof: Proof
    build: Build = ""
    contracts: dict[Name, Fingerprint] = {}


class Denied(msgspec.Struct, array_like=True, tag=4, frozen=True):
    """Server: the handshake failed, and why; the server closes next."""

    reason: str


class Call(msgspec.Struct, array_like=True, tag=5, frozen=True):
    """Client: run ``service.contract`` on ``body`` in ``context``, answer under ``id``."""

    id: int
    service: Name
    contract: Name
    context: CallContext
    body: msgspec.Raw  # decoded later, with the endpoint's own request type


class Reply(msgspec.Struct, array_like=True, tag=6, frozen=True):
    """Server: the handler's response to call ``id``."""

    id: int
    body: msgspec.Raw  # decoded by the caller, with the contract's response type


class Failure(msgspec.Struct, array_like=True, tag=7, frozen=True):
    """Server: call ``id`` raised; ``error`` is its wire form."""

    id: int
    error: dict[str, str]


class Describe(msgspec.Struct, array_like=True, tag=8, frozen=True):
    """Client, once welcomed: its build, and the contracts whose fingerprints differ here."""

    build: Build
    contracts: list[Name]


class Shapes(msgspec.Struct, array_like=True, tag=9, frozen=True):
    """Server: its shape of each contract DESCRIBE named that it serves."""

    shapes: dict[Name, ContractShape]


class GoAway(msgspec.Struct, array_like=True, tag=10, frozen=True):
    """Server: it is stopping; calls up to ``last`` run, any later one did not."""

    last: int


Message = Union[  # noqa: UP007
    Hello, Challenge, Auth, Welcome, Denied, Call, Reply, Failure, Describe, Shapes, GoAway
]

HELLO, CHALLENGE, AUTH, WELCOME, DENIED, CALL, REPLY, FAILURE, DESCRIBE, SHAPES = range(10)
GOAWAY = 10

_encode = MSGPACK.encode  # msgspec's, which writes a request that is a pydantic model too
_decode = msgspec.msgpack.Decoder(Message).decode
_pack_length = HEADER.pack
_unpack_length = HEADER.unpack_from
_REPLY_HEAD = bytes((0x93, REPLY))  # a MessagePack array of 3, then the REPLY tag
READ_SIZE = 256 * 1024  # bytes a connection reads at most at once (asyncio's own figure)


# -- encoding


def frame(message: Any) -> bytes:
    """``message`` (a Struct above, or the same array as a tuple) as one frame."""
    body = _encode(message)
    return _pack_length(len(body)) + body


def call_frame(
    call_id: int, service: str, contract: str, context: Mapping[str, str], request: Any
) -> bytes:
    """A CALL frame; the request is encoded in place, with no intermediate bytes."""
    body = _encode((CALL, call_id, service, contract, context, request))
    return _pack_length(len(body)) + body


def reply_frame(call_id: int, response: bytes) -> bytes:
    """A REPLY frame around a response already encoded as MessagePack.

    The same bytes as ``frame((REPLY, call_id, msgspec.Raw(response)))``, joined by
    hand: the array's header and tag are constant, so only the id is encoded.
    """
    body = _REPLY_HEAD + _encode(call_id) + response
    return _pack_length(len(body)) + body


def failure_frame(call_id: int, error: dict[str, str]) -> bytes:
    """A FAILURE frame carrying an error's wire form."""
    return frame((FAILURE, call_id, error))


# -- decoding


class FrameDecoder:
    """Turns a byte stream, cut anywhere, into messages; it owns the buffer read into.

    For ``asyncio.BufferedProtocol``: ``get_buffer()`` is where the next read goes,
    and ``filled(n)`` takes the ``n`` bytes written there and returns every message
    they complete, keeping the rest. ``feed(data)`` does both for bytes in hand.
    Anything that is not this protocol raises ``ProtocolError`` (``FrameTooLarge``
    as soon as a header declares too much); the decoder is then unusable.

    The buffer holds ``min(READ_SIZE, max_frame + 4)`` bytes, so a decoder with a
    small limit (a peer still shaking hands) holds little. A frame larger than the
    buffer gets one of its own size, and the next read goes straight into it. A
    buffer is never resized, only replaced: the reader may still hold a view of it.
    Each message is decoded from a copy of its frame, so nothing decoded (such as a
    ``Raw`` body) shares the buffer that the next read overwrites.
    """

    __slots__ = ("_end", "_size", "_start", "_view", "max_frame")

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._size = min(READ_SIZE, max_frame + 4)
        self._view = memoryview(bytearray(self._size))
        self._start = self._end = 0  # the bytes not yet decoded: _view[_start:_end]

    @property
    def buffered(self) -> int:
        """Bytes received that do not yet form a whole frame (non-zero: a half frame)."""
        return self._end - self._start

    def limit(self, max_frame: int) -> None:
        """Accept frames of up to ``max_frame`` bytes from now on."""
        self.max_frame = max_frame
        self._size = min(READ_SIZE, max_frame + 4)
        self._make_room(self._size)

    def get_buffer(self, sizehint: int = -1) -> memoryview:
        """Where the next bytes go (never empty)."""
        return self._view[self._end :] if self._end else self._view

    def filled(self, nbytes: int) -> list[Message]:
        """The messages completed by the ``nbytes`` just written into ``get_buffer()``."""
        view = self._view
        start, end = self._start, self._end + nbytes
        messages: list[Message] = []
        try:
            while end - start >= 4:
                (size,) = _unpack_length(view, start)
                if size > self.max_frame:
                    raise FrameTooLarge(
                        f"a frame of {size} bytes is over the limit of {self.max_frame}"
                    )
                stop = start + 4 + size
                if stop > end:
                    break
                messages.append(_decode(view[start + 4 : stop].tobytes()))
                start = stop
        except msgspec.DecodeError as exc:  # includes ValidationError
            raise ProtocolError(f"not a nanobuild message: {exc}") from None
        except RecursionError:
            raise ProtocolError("not a nanobuild message: a frame nested too deeply") from None
        if start == end:  # the usual case: every byte decoded, the next read starts afresh
            self._start = self._end = 0
            if len(view) != self._size:  # a large frame's own buffer: let it go
                self._view = memoryview(bytearray(self._size))
            return messages
        self._start, self._end = start, end
        # room for the frame under way: its size once its header is in, else the header
        size = 4 + _unpack_length(view, start)[0] if end - start >= 4 else 4
        if start + size > len(view):
            self._make_room(size)
        return messages

    def feed(self, data: bytes) -> list[Message]:
        """The messages completed by ``data``, in order."""
        messages: list[Message] = []
        offset, total = 0, len(data)
        while offset < total:
            room = self.get_buffer()
            n = min(len(room), total - offset)
            room[:n] = data[offset : offset + n]
            offset += n
            messages += self.filled(n)
        return messages

    def _make_room(self, size: int) -> None:
        """A fresh buffer of at least ``size`` bytes, starting with the bytes not yet decoded."""
        kept = self._view[self._start : self._end]
        view = memoryview(bytearray(max(size, self._size, len(kept) + 1)))
        view[: len(kept)] = kept
        self._view, self._start, self._end = view, 0, len(kept)


# -- the handshake's proofs


def nonce() -> bytes:
    """A fresh random nonce for one handshake."""
    return os.urandom(NONCE_SIZE)


def proof(secret: bytes, role: str, client_nonce: bytes, server_nonce: bytes) -> bytes:
    """What ``role`` ("client" or "server") sends to prove it holds ``secret``."""
    label = f"nanobuild/{VERSION} {role}".encode() + b"\0"
    return hmac.new(secret, label + client_nonce + server_nonce, sha256).digest()


def proves(secret: bytes, role: str, client_nonce: bytes, server_nonce: bytes, sent: bytes) -> bool:
    """Whether ``sent`` is ``role``'s proof for these nonces (compared in constant time)."""
    return hmac.compare_digest(sent, proof(secret, role, client_nonce, server_nonce))
