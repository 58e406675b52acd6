"""The TCP transport: calls between nanobuild processes (the protocol is in ``frames``).

Client. ``TcpTransport("tcp://host:port")`` keeps one connection to the remote
process, opened on first use and shared by every caller: calls are multiplexed by
id, and answers may come back in any order. A call costs one frame each way, a
future and an entry in the connection's heap of deadlines (``Deadlines``: one loop
timer for all the calls in flight) — no task, no lock. When the connection
drops, the calls in flight fail at once (an idempotent one is sent again, once,
on a fresh connection; any other gets ``Interrupted``, as it may have run), and
the next call reconnects. Failed connection attempts back off (``Backoff``), so a
dead remote is not hammered, and callers get ``Unsent`` within their timeout.
Each CALL frame carries the caller's per-call context (``runtime.context``).

Names. A remote whose host is a name, not an IP address (``tcp://catalog:9100``),
may stand for several processes: its transport hands its calls to ``Replicas``,
which looks the name up and keeps a transport like this one per address it
resolves to (see ``replicas``). A server going away says GOAWAY: no new call goes
on that connection, the calls it took are answered there, and any it declined are
sent again (elsewhere, where there are replicas).

Builds. Wiring tells the transport which contracts it reaches there (``expect``).
At each handshake the two processes compare the fingerprints of their shapes (see
``frames``); for a contract whose shapes differ in a way that breaks calls, this
connection refuses every call at once with ``Incompatible``, naming both builds,
before anything is sent. The verdicts are made once per connection, logged once,
and kept in ``disagreements`` (which ``/healthz`` shows); a connection whose
builds agree costs its calls nothing more.

Server. ``TcpServer(node)`` serves a wired node's endpoints on the internal port, in
the event loop that starts it — uvicorn's, next to the HTTP face::

    tcp = TcpServer(node, host="0.0.0.0", port=9100)   # secret: NANO_SECRET
    await tcp.start()     # after the services' start-up hooks
    ...
    await tcp.close()     # before their shutdown hooks: calls in flight may finish

A peer that sends anything but the protocol — garbage, a frame over the limit, a
wrong proof of the secret, a call before the handshake, no handshake in time, half
a frame — loses its connection, and the log gets one line; everyone else is served
on. A call to an unknown contract is answered ``unknown_contract``.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import logging
import socket
import sys
from collections.abc import Awaitable, Callable
from typing import Any, cast

import msgspec

from nanobuild.runtime import context
from nanobuild.runtime.addresses import Address, parse_address
from nanobuild.runtime.errors import (
    BadRequest,
    Incompatible,
    Internal,
    NanoError,
    PayloadTooLarge,
    Unavailable,
)
from nanobuild.runtime.faults import unknown_contract
from nanobuild.runtime.limits import Gate, guarded_listener
from nanobuild.runtime.node import Node
from nanobuild.runtime.serving import Served, served_endpoints
from nanobuild.runtime.settings import DEFAULT_MAX_CONNECTIONS, Settings
from nanobuild.runtime.shapes import (
    Disagreement,
    disagreements,
    refusal,
    shape_of,
    this_build,
)
from nanobuild.runtime.spec import ContractShape, fingerprint
from nanobuild.runtime.transports import frames
from nanobuild.runtime.transports.base import (
    Backoff,
    ConnectionDropped,
    Deadlines,
    Declined,
    Target,
    Transport,
    secret_from,
    unreachable,
)
from nanobuild.runtime.transports.frames import (
    DEFAULT_MAX_FRAME,
    VERSION,
    Auth,
    Call,
    Challenge,
    Denied,
    Describe,
    Failure,
    FrameDecoder,
    GoAway,
    Hello,
    Message,
    ProtocolError,
    Reply,
    Shapes,
    Welcome,
)
from nanobuild.runtime.transports.replicas import Replicas, is_ip

log = logging.getLogger("nanobuild.tcp")
Future = asyncio.Future
_context = context.current

DEFAULT_CONNECT_TIMEOUT = 3.0  # seconds to connect and shake hands, at most
DEFAULT_HANDSHAKE_TIMEOUT = 5.0  # seconds a server waits for a new peer to prove itself
DEFAULT_GRACE = 5.0  # seconds a closing server lets calls in flight finish


HANDSHAKE_FRAME = 1024  # bytes: plenty for HELLO and AUTH, nothing to hoard


class HandshakeFailed(Exception):
    """The two sides did not establish trust (or the connection closed before they did)."""


class Outbox:
    """A connection's outgoing frames: written at once, or gathered into few writes.

    A frame sent while other calls are in flight on the connection waits for the
    end of this turn of the event loop, so the frames of many concurrent calls
    leave in few system calls; a lone call's frame is written at once, unbatched.
    A gathering leaves as soon as it holds ``SLICE_FRAMES`` frames (or
    ``SLICE_BYTES``): the peer starts on them while the rest are gathered, so the
    two processes work side by side rather than taking turns. (With 64 callers on
    one connection, that doubles the calls per second.)
    """

    SLICE_FRAMES = 16
    SLICE_BYTES = 64 * 1024

    __slots__ = ("_frames", "_loop", "_scheduled", "_size", "transport")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._frames: list[bytes] = []
        self._size = 0  # bytes gathered
        self._scheduled = False  # a flush at the end of this turn is due
        self.transport: asyncio.Transport | None = None  # set once connected

    def send(self, data: bytes, *, batch: bool = False) -> None:
        """Write ``data`` now, or with the others of this turn if ``batch``."""
        frames = self._frames
        if batch or frames:
            frames.append(data)
            self._size += len(data)
            if len(frames) >= self.SLICE_FRAMES or self._size >= self.SLICE_BYTES:
                self.flush()
            elif not self._scheduled:
                self._scheduled = True
                self._loop.call_soon(self._end_of_turn)
        elif self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def flush(self) -> None:
        """Write every gathered frame, in one go."""
        gathered = self._frames
        if gathered and self.transport is not None and not self.transport.is_closing():
            self.transport.write(gathered[0] if len(gathered) == 1 else b"".join(gathered))
        gathered.clear()
        self._size = 0

    def _end_of_turn(self) -> None:
        self._scheduled = False
        self.flush()


class _FramedProtocol(asyncio.BufferedProtocol):
    """A connection whose reads land in its frame decoder's buffer.

    A plain ``asyncio.Protocol`` is handed a fresh 256 KiB bytes object for every
    read, which the allocator maps and unmaps each time: on the path every call
    takes, that costs more than the rest of the transport. Here each read goes into
    the decoder's buffer, allocated once, and ``received`` gets the messages.
    """

    _frames: FrameDecoder

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._frames.get_buffer()

    def buffer_updated(self, nbytes: int) -> None:
        try:
            messages = self._frames.filled(nbytes)
        except ProtocolError as exc:
            self._drop(str(exc))
            return
        self.received(messages)

    def received(self, messages: list[Message]) -> None:
        """Act on the messages that just arrived, in order."""
        raise NotImplementedError

    def _drop(self, reason: str) -> None:
        """Hang up on a peer that broke the protocol, saying ``reason``."""
        raise NotImplementedError


# -- client


class TcpTransport(Transport):
    """Calls to one remote nanobuild process, over one persistent TCP connection.

    ``secret`` defaults to NANO_SECRET. A transport belongs to the event loop it
    first connects in. Share one per remote address (see ``Transports``).
    """

    def __init__(
        self,
        address: str | Address,
        *,
        secret: str | None = None,
        max_frame: int = DEFAULT_MAX_FRAME,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        backoff: Backoff | None = None,
        resolve_every: float | None = None,
    ) -> None:
        self.address = parse_address(address, ("tcp",)) if isinstance(address, str) else address
        self.max_frame = max_frame
        self.connect_timeout = connect_timeout
        self.backoff = backoff or Backoff()
        self.connections = 0  # connections established so far
        self._secret = secret_from(secret)
        self._connection: _ClientConnection | None = None
        self._opening: asyncio.Task[_ClientConnection] | None = None
        self._closed = False
        self._expected: dict[str, tuple[type, Any]] = {}  # service.Contract -> its types
        self._shapes: dict[str, ContractShape] | None = None  # of _expected, once computed
        self._fingerprints: dict[str, str] = {}
        self.disagreements: list[Disagreement] = []  # found at the latest handshake
        self._going: set[_ClientConnection] = set()  # said GOAWAY; their answers still come
        self.on_lost: Callable[[], None] | None = None  # a connection of it closed
        # a host name may stand for several processes: a replica per address (``replicas``)
        self.replicas = None if is_ip(self.address.host) else self._pool(resolve_every)

    def _pool(self, every: float | None) -> Replicas:
        """The replicas behind this transport's host name, each a transport of its own."""
        if every is None:
            every = Settings.from_env().resolve_every
        secret = self._secret.decode()

        def replica(address: Address) -> TcpTransport:
            made = TcpTransport(
                address,
                secret=secret,
                max_frame=self.max_frame,
                connect_timeout=self.connect_timeout,
            )
            made._expected = self._expected  # one table of expectations for them all
            made.parent = self
            return made

        return Replicas(self.address, replica, every=every)

    parent: TcpTransport | None = None  # the transport of the name, for a replica

    def expect(self, service: str, request: type, response: Any) -> None:
        """Check, at each handshake, that the remote's shape of this contract agrees."""
        self._expected[f"{service}.{request.__name__}"] = (request, response)
        self._shapes = None

    def shapes(self) -> dict[str, ContractShape]:
        """This process's shape of each contract it expects there (computed once)."""
        if self._shapes is None:
            self._shapes = {name: shape_of(*types) for name, types in self._expected.items()}
            self._fingerprints = {name: fingerprint(s) for name, s in self._shapes.items()}
        return self._shapes

    def fingerprints(self) -> dict[str, str]:
        self.shapes()
        return self._fingerprints

    async def handle_call(self, target: Target, request: Any) -> Any:
        if self.replicas is not None:
            return await self.replicas.handle_call(target, request)
        deadline = asyncio.get_running_loop().time() + target.timeout
        connection = self._connection
        if connection is None:
            connection = await self._connect(target, deadline)
        try:
            body = await connection.call(target, request, deadline)
        except ConnectionDropped:
            body = await self._call_again(target, request, deadline)
        except Declined:
            body = await self._send_again(target, request, deadline)
        return target.decode(body)

    def route(self, target: Target) -> Callable[[Any], Awaitable[Any]]:
        """``handle_call`` for ``target``, inlined: one coroutine per call, not two."""
        if self.replicas is not None:
            return self.replicas.route(target)
        handle_call = self.handle_call
        send_again = self._send_again
        call_again = self._call_again
        read = target.read

        async def route(request: Any) -> Any:
            connection = self._connection
            if connection is None:  # the first call, or the first after a drop
                return await handle_call(target, request)
            deadline = connection.loop.time() + target.timeout
            try:
                body = await connection.call(target, request, deadline)
            except ConnectionDropped:
                body = await call_again(target, request, deadline)
            except Declined:
                body = await send_again(target, request, deadline)
            try:
                return read(body)
            except msgspec.DecodeError as exc:
                raise target.wrong_answer(exc) from exc

        return route

    async def _call_again(self, target: Target, request: Any, deadline: float) -> Any:
        """After a drop: send an idempotent call once more, on a fresh connection."""
        dropped = f"the connection to {self.address} dropped mid-call"
        if not target.idempotent:
            raise target.interrupted(f"{dropped} (not idempotent, so not sent again)")
        try:
            connection = await self._connect(target, deadline)
            return await connection.call(target, request, deadline)
        except NanoError as exc:  # the first attempt was sent: it may have run all the same
            raise target.interrupted(f"{dropped}, and sending it again failed: {exc}") from None
        except ConnectionDropped:
            raise target.interrupted(f"{dropped}, twice") from None
        except Declined:  # the first attempt may have run; this one did not
            raise target.interrupted(f"{dropped}, and {self.address} is going away") from None

    async def _send_again(self, target: Target, request: Any, deadline: float) -> Any:
        """After a GOAWAY that declined the call (it did not run): once more, afresh."""
        connection = await self._connect(target, deadline)  # Unsent if there is none
        try:
            return await connection.call(target, request, deadline)
        except ConnectionDropped:
            raise target.interrupted(f"the connection to {self.address} dropped mid-call") from None
        except Declined:
            raise target.unsent(f"{self.address} is going away and did not take it") from None

    # -- as one of the replicas behind a name (``replicas.Replica``)

    async def send(self, target: Target, request: Any, deadline: float) -> Any:
        """Send once, on this address's connection: the raw answer; ``Unsent`` if it
        was not sent, ``ConnectionDropped`` or ``Declined`` as the connection says."""
        connection = self._connection
        if connection is None:
            connection = await self._connect(target, deadline)
        return await connection.call(target, request, deadline)

    @property
    def ready(self) -> _ClientConnection | None:
        """The connection calls go on now, if one is open (and not going away)."""
        return self._connection

    @property
    def outstanding(self) -> int:
        """Calls in flight on the open connection."""
        connection = self._connection
        return 0 if connection is None else len(connection._pending)

    def usable(self, now: float) -> bool:
        """Connected, or free to try connecting (not closed, no back-off pause)."""
        return self._connection is not None or (
            not self._closed and self.backoff.next_attempt <= now
        )

    async def retire(self) -> None:
        """Open no new connection, let the calls in flight be answered, then close."""
        self._closed = True
        while self.outstanding or any(c._pending for c in self._going):
            await asyncio.sleep(0.05)  # each call in flight has a deadline: this ends
        await self.aclose()

    async def _connect(self, target: Target, deadline: float) -> _ClientConnection:
        """The connection, once open; every caller waiting meanwhile shares one attempt."""
        if self._closed:
            raise target.unsent(f"the transport to {self.address} is closed")
        loop = asyncio.get_running_loop()
        if self.backoff.next_attempt > deadline:
            raise target.unsent(self._unreachable(self.backoff.reason))
        opening = self._attempt(loop)
        try:
            connection = await asyncio.wait_for(asyncio.shield(opening), deadline - loop.time())
        except asyncio.CancelledError:
            if opening.cancelled() and not _cancelling():  # the attempt, not this caller
                closed = f"the transport to {self.address} closed as it connected"
                raise target.unsent(closed) from None
            raise
        except asyncio.TimeoutError:
            raise target.unsent(
                f"{self.address} did not accept a connection within {target.timeout:g} s"
            ) from None
        except HandshakeFailed as exc:
            raise target.unsent(self._unreachable(str(exc))) from None
        if connection.lost:  # between the handshake and this caller's turn
            raise target.unsent(f"the connection to {self.address} closed as it opened")
        return connection

    def _attempt(self, loop: asyncio.AbstractEventLoop) -> asyncio.Task[_ClientConnection]:
        """The connection attempt under way, started if there is none: callers and
        readiness checks that come meanwhile share it."""
        if self._opening is None:
            self._opening = loop.create_task(self._open())
            self._opening.add_done_callback(_retrieve)
        return self._opening

    async def _open(self) -> _ClientConnection:
        """Connect and shake hands, after the back-off pause; ``HandshakeFailed`` if not."""
        loop = asyncio.get_running_loop()
        try:
            await self.backoff.pause(loop)
            connection = await asyncio.wait_for(self._dial(loop), self.connect_timeout)
        except (OSError, asyncio.TimeoutError, HandshakeFailed) as exc:
            reason = _describe(exc, self.connect_timeout)
            if not self.backoff.failures:  # one line per outage, not one per attempt
                log.warning(
                    "tcp: cannot reach %s: %s (retrying as calls come)", self.address, reason
                )
            self.backoff.failed(reason, loop.time())
            raise HandshakeFailed(reason) from None
        finally:
            self._opening = None
        if self.backoff.failures:
            log.info("tcp: reached %s again", self.address)
        self.backoff.succeeded()
        self.connections += 1
        self._connection = connection
        return connection

    async def _dial(self, loop: asyncio.AbstractEventLoop) -> _ClientConnection:
        host, port = self.address.host, self.address.port
        _, connection = await loop.create_connection(
            lambda: _ClientConnection(self, loop), host, port
        )
        try:
            await connection.welcomed
        except BaseException:
            connection.close()
            raise
        return connection

    def _unreachable(self, reason: str) -> str:
        return f"cannot reach {self.address}: {reason}"

    _why_not = "not connected yet"  # the reason the latest readiness check found

    async def reachable(self, timeout: float) -> str:
        """Connected and welcomed, or a connection (handshake included) made within
        ``timeout``: the one attempt calls waiting meanwhile share, so probes add no
        connections. While the back-off holds the next attempt past ``timeout``, the
        reason the latest check found."""
        if self.replicas is not None:  # a name: reachable if one of its replicas is
            return await self.replicas.reachable(timeout)
        if self._connection is not None:
            return ""
        loop = asyncio.get_running_loop()
        if self._closed:
            return "its transport is closed"
        if self.backoff.next_attempt > loop.time() + timeout:
            return self._why_not
        try:
            await asyncio.wait_for(asyncio.shield(self._attempt(loop)), timeout)
        except asyncio.TimeoutError:
            return f"no connection within {timeout:g} s"
        except HandshakeFailed as exc:  # its context is what failed (see _open)
            cause = exc.__context__
            failed = isinstance(cause, HandshakeFailed)
            self._why_not = "the handshake failed" if failed else unreachable(cause)
            return self._why_not
        return ""

    def lost(self, connection: _ClientConnection) -> None:
        """Called by a connection that closed: the next call opens a new one."""
        if self._connection is connection:
            self._connection = None
        self._going.discard(connection)
        if self.on_lost is not None:
            self.on_lost()

    def going(self, connection: _ClientConnection) -> None:
        """Called by a connection whose server said GOAWAY: no new call goes on it, and
        for a while no new connection is tried (a draining process listens no more)."""
        if self._connection is connection:
            self._connection = None
        self._going.add(connection)
        backoff = self.backoff
        backoff.next_attempt = max(backoff.next_attempt, connection.loop.time() + backoff.cap)
        backoff.reason = "it is going away (it said so: a drain)"
        log.info("tcp: %s is going away: its calls in flight finish, none goes there", self.address)

    async def aclose(self) -> None:
        self._closed = True
        if self._opening is not None:
            self._opening.cancel()
        if self.replicas is not None:
            await self.replicas.aclose()
        connection, self._connection = self._connection, None
        for each in [connection, *self._going]:
            if each is not None:
                each.close()
                await each.closed


def _cancelling() -> bool:
    """Whether the running task is being cancelled (known from Python 3.11 on)."""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)
    return bool(cancelling()) if cancelling is not None else False


class _ClientConnection(_FramedProtocol):
    """One connection to a remote process: the handshake, then calls matched to answers."""

    def __init__(self, owner: TcpTransport, loop: asyncio.AbstractEventLoop) -> None:
        self._owner = owner
        self._loop = self.loop = loop
        self._secret = owner._secret
        self._max_frame = owner.max_frame
        self._frames = FrameDecoder(owner.max_frame)
        self._pending: dict[int, tuple[asyncio.Future[Any], Target]] = {}
        self._deadlines = Deadlines(loop, self._expire)
        self._ids = itertools.count(1)
        self._nonce = frames.nonce()
        self._server_nonce = b""
        self._transport: asyncio.Transport | None = None
        self._outbox = Outbox(loop)
        self._there: str | None = None  # the server's build, once welcomed
        self._absent: list[str] = []  # contracts expected there that it does not serve
        self._refused: dict[str, str] = {}  # service.Contract -> why its calls are refused
        self.lost = False
        self.going = False  # the server said GOAWAY
        self.welcomed: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()

    # -- calls

    def call(self, target: Target, request: Any, deadline: float) -> asyncio.Future[Any]:
        """Send ``request``; the future gets the raw answer, its error, or ``Timeout``."""
        call_id = next(self._ids)
        try:
            data = frames.call_frame(call_id, target.service, target.name, _context(), request)
        except (TypeError, ValueError, OverflowError, RecursionError) as exc:  # nested too deep
            raise BadRequest(
                f"the request cannot be encoded: {exc}",
                service=target.service,
                contract=target.name,
            ) from exc
        if len(data) - 4 > self._max_frame:  # the server would drop the connection, for everyone
            raise PayloadTooLarge(
                f"the request is {len(data) - 4} bytes, over the frame limit of {self._max_frame}",
                service=target.service,
                contract=target.name,
            )
        future: asyncio.Future[Any] = Future(loop=self._loop)  # as loop.create_future(), sooner
        pending = self._pending
        pending[call_id] = (future, target)
        self._deadlines.add(call_id, deadline)
        self._outbox.send(data, batch=len(pending) > 1)
        return future

    def _refusing(self, target: Target, request: Any, deadline: float) -> asyncio.Future[Any]:
        """``call``, on a connection whose remote breaks some contracts: those are refused."""
        reason = self._refused.get(f"{target.service}.{target.name}")
        if reason is not None:
            raise Incompatible(
                f"{reason}; {target.name} was not sent (it did not run)",
                service=target.service,
                contract=target.name,
            )
        return _ClientConnection.call(self, target, request, deadline)

    def _expire(self, call_id: int) -> None:
        entry = self._pending.pop(call_id, None)
        if entry is not None:  # a late answer finds no entry and is dropped
            future, target = entry
            if not future.done():
                future.set_exception(target.timed_out(target.timeout))

    def _answer(self, call_id: int) -> asyncio.Future[Any] | None:
        """The future waiting for call ``call_id``, if any still does."""
        entry = self._pending.pop(call_id, None)
        if entry is None:
            return None  # the call timed out already
        self._deadlines.discard(call_id)
        future = entry[0]
        return None if future.done() else future  # done: its caller was cancelled

    # -- asyncio.BufferedProtocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a stream transport, though not always asyncio's own class (uvloop's is not)
        transport = cast(asyncio.Transport, transport)
        self._transport = self._outbox.transport = transport
        transport.write(frames.frame(Hello(VERSION, self._nonce)))

    def received(self, messages: list[Message]) -> None:
        for message in messages:
            if type(message) is Reply:  # _answer, inlined on the path every call takes
                entry = self._pending.pop(message.id, None)
                if entry is not None:  # else the call timed out already
                    self._deadlines.discard(message.id)
                    future = entry[0]
                    if not future.done():  # done: its caller was cancelled
                        future.set_result(message.body)
            elif isinstance(message, Failure):
                failed = self._answer(message.id)
                if failed is not None:
                    failed.set_exception(NanoError.from_wire(message.error))
            else:
                self._handshake(message)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._owner.lost(self)
        self._fail_handshake("the remote closed the connection during the handshake")
        pending, self._pending = self._pending, {}
        self._deadlines.clear()
        dropped = ConnectionDropped()
        for future, _ in pending.values():
            if not future.done():
                future.set_exception(dropped)
        if pending:
            log.info(
                "tcp: the connection to %s closed with %d calls in flight",
                self._owner.address,
                len(pending),
            )
        self.closed.set_result(None)

    # -- handshake

    def _handshake(self, message: Message) -> None:
        if isinstance(message, GoAway) and self.welcomed.done() and not self.going:
            self._go_away(message.last)
        elif isinstance(message, Challenge) and not self._server_nonce:
            # the client proves first: the server says nothing of the secret to a stranger
            self._server_nonce = message.nonce
            client_proof = frames.proof(self._secret, "client", self._nonce, message.nonce)
            self._outbox.send(frames.frame(Auth(client_proof)))
        elif isinstance(message, Welcome) and self._server_nonce and self._there is None:
            if not frames.proves(
                self._secret, "server", self._nonce, self._server_nonce, message.proof
            ):
                self._fail_handshake(
                    "it could not prove it holds NANO_SECRET (the processes have different secrets)"
                )
                self.close()
                return
            self._compare(message)
        elif isinstance(message, Shapes) and self._there is not None and not self.welcomed.done():
            self._ready(message.shapes)
        elif isinstance(message, Denied):
            self._fail_handshake(f"it refused the connection: {message.reason}")
            self.close()
        else:
            self._drop(f"unexpected {type(message).__name__} message")

    def _compare(self, welcome: Welcome) -> None:
        """Compare fingerprints; ask for the server's shapes where they differ."""
        self._there = welcome.build or "unnamed"
        theirs = welcome.contracts
        mine = self._owner.fingerprints()
        self._absent = [name for name in mine if name not in theirs]
        differ = [name for name, mark in mine.items() if theirs.get(name, mark) != mark]
        if differ:
            self._outbox.send(frames.frame(Describe(this_build(), differ)))
        else:
            self._ready({})

    def _ready(self, shapes: dict[str, ContractShape]) -> None:
        """The verdicts, from the server's shapes of the contracts that differ: calls may flow."""
        owner = self._owner
        theirs: dict[str, ContractShape | None] = {**dict.fromkeys(self._absent), **shapes}
        found = disagreements(
            owner.shapes(), theirs, remote=str(owner.address), there=self._there or ""
        )
        owner.disagreements = found
        if owner.parent is not None:  # a replica's: its name shows them
            owner.parent.disagreements = found
        self._refused = {d.contract: refusal(d) for d in found if d.breaking}
        if self._refused:  # only this connection's calls pay for the check
            self.__dict__["call"] = self._refusing
        if found:
            log.warning(
                "tcp: %s runs build %s, this process %s: %s",
                owner.address,
                self._there,
                this_build(),
                "; ".join(_verdict(d) for d in found),
            )
        if not self.welcomed.done():
            self.welcomed.set_result(None)

    def _go_away(self, last: int) -> None:
        """The server is draining: calls up to ``last`` run on, later ones it declined."""
        self.going = True
        self._owner.going(self)
        declined = [call_id for call_id in self._pending if call_id > last]
        for call_id in declined:
            future, _ = self._pending.pop(call_id)
            self._deadlines.discard(call_id)
            if not future.done():
                future.set_exception(Declined())

    def _fail_handshake(self, reason: str) -> bool:
        """End a handshake still under way; whether there was one (it reports the reason)."""
        if self.welcomed.done():
            return False
        self.welcomed.set_exception(HandshakeFailed(reason))
        return True

    # -- closing

    def _drop(self, reason: str) -> None:
        """The remote broke the protocol: hang up, and say so once."""
        if not self._fail_handshake(reason):  # else whoever is connecting logs it
            log.warning("tcp: hanging up on %s: %s", self._owner.address, reason)
        if self._transport is not None:
            self._transport.abort()

    def close(self) -> None:
        """Hang up; calls in flight fail with ``ConnectionDropped``."""
        if self._transport is not None:
            self._transport.close()


def _verdict(disagreement: Disagreement) -> str:
    """One contract's disagreement, for the log."""
    what = "calls to it are refused" if disagreement.breaking else "compatible"
    return f"{disagreement.contract} {what} ({'; '.join(disagreement.changes)})"


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Consume a connection attempt's failure, which every waiting caller already got."""
    if not task.cancelled():
        task.exception()


def _describe(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, asyncio.TimeoutError):
        return f"no connection within {timeout:g} s"
    return str(exc) or type(exc).__name__


# -- server


class TcpServer:
    """Serves a wired node's endpoints to other nanobuild processes, on one TCP port.

    ``start()`` listens in the running event loop; ``close()`` stops listening, gives
    calls in flight ``grace`` seconds to finish, then hangs up. ``secret`` defaults
    to NANO_SECRET and is required; ``port=0`` lets the system choose (``address``
    tells which once started).
    """

    def __init__(
        self,
        node: Node,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        secret: str | None = None,
        max_frame: int = DEFAULT_MAX_FRAME,
        handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
        grace: float = DEFAULT_GRACE,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        self.host = host
        self.port = port
        # at most max_connections peers; one that has not proved itself gives way first
        self.gate = Gate(max_connections, "tcp internal port")
        self.max_frame = max_frame
        self.handshake_timeout = handshake_timeout
        self.grace = grace
        self.accepted = 0  # connections accepted so far
        self.secret = secret_from(secret)
        self.endpoints = served_endpoints(node, "tcp")
        self.peers: set[_ServerConnection] = set()
        self.closing = False
        self.draining_since: float | None = None  # loop time of ``drain``
        self._server: asyncio.Server | None = None
        local = node.endpoints.values()
        self.shapes = {e.contract: shape_of(e.request, e.response) for e in local}
        self.build = this_build()
        self.fingerprints = {name: fingerprint(shape) for name, shape in self.shapes.items()}

    def welcome(self, proof: bytes) -> bytes:
        """The WELCOME frame for a peer that proved itself: this side's proof, then the build."""
        return frames.frame(Welcome(proof, self.build, self.fingerprints))

    @property
    def address(self) -> Address:
        """Where the server listens (with the real port, once started)."""
        return Address("tcp", self.host, self.port)

    async def start(self) -> None:
        """Listen; raises ``OSError`` if the port cannot be bound."""
        if self._server is not None:
            raise RuntimeError(f"the TCP server at {self.address} is already started")
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _ServerConnection(self, loop), sock=self._listener()
        )
        self.port = self._server.sockets[0].getsockname()[1]  # the system's choice, for port 0
        log.info("tcp: serving %s internally at %s", _names(self.endpoints), self.address)

    def _listener(self) -> socket.socket:
        """The bound socket, whose failed accepts (no descriptor left) come once per pause
        (``limits.guarded_listener``)."""
        return guarded_listener(socket.create_server((self.host, self.port)))

    def drain(self) -> None:
        """Take no new call: stop listening, and tell each peer (GOAWAY) which of its
        calls run here; those finish, within ``grace`` s of this, as ``close`` waits."""
        if self._server is None or self.draining_since is not None:
            return
        self.draining_since = asyncio.get_running_loop().time()
        self.closing = True  # a call that comes after the GOAWAY is declined
        self._server.close()  # listen no more; the connections stay
        for peer in list(self.peers):
            peer.go_away()
        log.info("tcp: draining: %d peers told to send no new calls here", len(self.peers))

    async def close(self) -> None:
        """Drain, let calls in flight finish (up to ``grace`` s from the drain), hang up."""
        if self._server is None:
            return
        self.drain()
        server, self._server = self._server, None
        loop = asyncio.get_running_loop()
        left = self.grace - (loop.time() - (self.draining_since or loop.time()))
        running = [task for peer in self.peers for task in peer.tasks]
        if running and left > 0:
            await asyncio.wait(running, timeout=left)
        for peer in list(self.peers):
            peer.hang_up()
        await server.wait_closed()

    async def __aenter__(self) -> TcpServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


def _names(endpoints: dict[tuple[str, str], Served]) -> str:
    return ", ".join(sorted({service for service, _ in endpoints})) or "no services"


class _ServerConnection(_FramedProtocol):
    """One peer: the handshake under a deadline, then its calls, each answered by id."""

    def __init__(self, server: TcpServer, loop: asyncio.AbstractEventLoop) -> None:
        self._server = server
        self._loop = loop
        self._endpoints = server.endpoints
        # a peer that has not proved itself gets room for the handshake only, so that
        # strangers cannot make the server hold max_frame bytes each
        self._frames = FrameDecoder(HANDSHAKE_FRAME)
        self._client_nonce = b""
        self._server_nonce = b""
        self._trusted = False
        self._described = False  # the peer asked for shapes (once per connection)
        self._done = False  # hung up on purpose: the reason is logged already
        self._transport: asyncio.Transport | None = None
        self._outbox = Outbox(loop)
        self._timer: asyncio.TimerHandle | None = None
        self._last = 0  # the id of the latest call taken: what a GOAWAY names
        self.peer = "?"
        self.tasks: set[asyncio.Task[None]] = set()

    # -- asyncio.BufferedProtocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a stream transport, though not always asyncio's own class (uvloop's is not)
        transport = cast(asyncio.Transport, transport)
        self._transport = self._outbox.transport = transport
        self.peer = _peer_name(transport)
        if not self._admitted():
            return
        self._server.accepted += 1
        self._server.peers.add(self)
        self._timer = self._loop.call_later(self._server.handshake_timeout, self._stalled)

    def received(self, messages: list[Message]) -> None:
        batch = len(messages) > 1  # answers to calls that came together leave together
        for message in messages:
            if self._done:
                return
            if self._trusted and type(message) is Call:
                self._on_call(message, batch)
            else:
                self._handshake(message)

    def pause_writing(self) -> None:
        # the peer reads its answers slower than it sends calls: stop taking calls
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        if self._transport is not None:
            self._transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._server.peers.discard(self)
        self._server.gate.leave(self)
        if self._done:
            return
        if self._frames.buffered:
            log.warning(
                "tcp: %s hung up in the middle of a frame (%d bytes of it received)",
                self.peer,
                self._frames.buffered,
            )
        elif not self._trusted and self._client_nonce:
            log.warning("tcp: %s hung up during the handshake", self.peer)

    # -- calls

    def _on_call(self, call: Call, batch: bool) -> None:
        served = self._endpoints.get((call.service, call.contract))
        if served is None or self._server.closing:
            self._refuse(call)
            return
        self._last = call.id
        try:
            if served.waits:
                request = served.msgpack.decode(call.body)
                self._start(call, served, request)
                return
            data = self._reply(call.id, served, served.respond(call.body, call.context))
        except Exception as exc:
            data = frames.failure_frame(call.id, served.failure(exc).to_wire())
        self._outbox.send(data, batch=batch or bool(self.tasks))

    def _start(self, call: Call, served: Served, request: object) -> None:
        """Run a handler that may wait to its answer, in a task of its own."""
        scope = contextvars.copy_context()  # the task's: the call's context is set in it
        if call.context:
            scope.run(context.bind, call.context)
        finish = self._finish(call.id, served, served.run(request))
        if sys.version_info >= (3, 12):
            # runs at once, up to the handler's first real wait; if it does not have to
            # wait this time, it is answered here and no task is ever scheduled
            task = scope.run(asyncio.eager_task_factory, self._loop, finish)
            if task.done():
                return
        else:
            task = scope.run(self._loop.create_task, finish)
        self.tasks.add(task)

    async def _finish(self, call_id: int, served: Served, pending: Any) -> None:
        """Await an async handler's result and send the answer."""
        try:
            payload = served.msgpack.encode(await pending)
        except Exception as exc:
            data = frames.failure_frame(call_id, served.failure(exc).to_wire())
        else:
            data = self._reply(call_id, served, payload)
        # no done-callback for this: it would cost every call another turn of the loop
        self.tasks.discard(asyncio.current_task())  # type: ignore[arg-type,unused-ignore]
        self._outbox.send(data, batch=bool(self.tasks))

    def _reply(self, call_id: int, served: Served, payload: bytes) -> bytes:
        """The REPLY frame, or a FAILURE if the answer would break the caller's frame limit."""
        data = frames.reply_frame(call_id, payload)
        if len(data) - 4 <= self._server.max_frame:
            return data
        limit = self._server.max_frame
        error = Internal(f"the answer is {len(payload)} bytes, over the frame limit of {limit}")
        return frames.failure_frame(call_id, served.failure(error).to_wire())

    def _refuse(self, call: Call) -> None:
        """Answer a call that will not run here (the connection stays)."""
        if self._server.closing:
            error: NanoError = Unavailable("the server is shutting down")
            error.located(call.service, call.contract)
        else:
            log.warning(
                "tcp: %s called %s.%s, which is not served here",
                self.peer,
                call.service,
                call.contract,
            )
            error = unknown_contract(call.service, call.contract)
        self._outbox.send(frames.failure_frame(call.id, error.to_wire()))

    # -- handshake

    def _handshake(self, message: Message) -> None:
        if isinstance(message, Hello) and not self._client_nonce:
            self._greet(message)
        elif isinstance(message, Auth) and self._server_nonce and not self._trusted:
            self._check(message)
        elif isinstance(message, Describe) and self._trusted and not self._described:
            self._describe(message)
        elif isinstance(message, Call):
            self._drop("it sent a call before completing the handshake")
        else:
            self._drop(f"unexpected {type(message).__name__} message")

    def _greet(self, hello: Hello) -> None:
        if hello.version != VERSION:
            self._deny(
                f"protocol version {hello.version} is not spoken here (only {VERSION}): "
                "the two processes come from different nanobuild releases; run one build"
            )
            return
        self._client_nonce = hello.nonce
        self._server_nonce = frames.nonce()
        # nothing derived from the secret yet: the peer proves it holds it first
        self._outbox.send(frames.frame(Challenge(self._server_nonce)))

    def _check(self, auth: Auth) -> None:
        secret = self._server.secret
        if not frames.proves(secret, "client", self._client_nonce, self._server_nonce, auth.proof):
            self._deny(
                "the client did not prove it holds NANO_SECRET "
                "(the processes have different secrets)"
            )
            return
        self._trusted = True
        self._server.gate.busy(self)  # a proven peer keeps its place
        self._frames.limit(self._server.max_frame)
        if self._timer is not None:
            self._timer.cancel()
        server_proof = frames.proof(secret, "server", self._client_nonce, self._server_nonce)
        self._outbox.send(self._server.welcome(server_proof))

    def _describe(self, describe: Describe) -> None:
        """Send the shapes the peer asked for: its build differs from this one on them."""
        self._described = True
        mine = self._server.shapes
        shapes = {name: mine[name] for name in describe.contracts if name in mine}
        log.warning(
            "tcp: %s runs build %s, this process %s: their shapes of %s differ "
            "(it checks them, and refuses the calls that would break)",
            self.peer,
            describe.build,
            self._server.build,
            ", ".join(shapes) or "no contract served here",
        )
        self._outbox.send(frames.frame(Shapes(shapes)))

    def _stalled(self) -> None:
        self._drop(f"no handshake within {self._server.handshake_timeout:g} s")

    # -- the port's gate (limits.Gate): a place per peer, strangers the first to give way

    def _admitted(self) -> bool:
        """Whether the gate has a place for this new peer; if not, hang up at once
        (the gate logs it, in bursts)."""
        if self._server.gate.admit(self):
            return True
        self._done = True
        if self._transport is not None:
            self._transport.abort()
        return False

    def evict(self) -> None:
        """Hang up: a newcomer takes the place of this peer, which has not proved itself."""
        self._done = True
        if self._timer is not None:
            self._timer.cancel()
        if self._transport is not None:
            self._transport.abort()

    # -- writing and hanging up

    def _deny(self, reason: str) -> None:
        """Tell the peer why it is refused, then close: one log line."""
        log.warning("tcp: refused %s: %s", self.peer, reason)
        self._outbox.send(frames.frame(Denied(reason)))
        self._outbox.flush()  # before the close, which would drop a frame still gathered
        self._done = True
        if self._transport is not None:
            self._transport.close()

    def _drop(self, reason: str) -> None:
        """Hang up on a peer that broke the protocol: one log line."""
        log.warning("tcp: dropped %s: %s", self.peer, reason)
        self._done = True
        if self._transport is not None:
            self._transport.abort()

    def go_away(self) -> None:
        """Say GOAWAY to a trusted peer (a stranger still shaking hands is hung up on):
        its calls taken so far run on, a later one is declined and may go elsewhere."""
        if self._done:
            return
        if not self._trusted:
            self.hang_up()
            return
        self._outbox.send(frames.frame(GoAway(self._last)))

    def hang_up(self) -> None:
        """Close for shutdown; handlers still running are cancelled."""
        self._done = True
        for task in self.tasks:
            task.cancel()
        self._outbox.flush()  # answers gathered this turn leave before the close
        if self._transport is not None:
            self._transport.close()


def _peer_name(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)
