"""The HTTP transport: calls through a remote process's HTTP face, for ``http://`` remotes.

Each call is ``POST /api/<service>/<Contract>`` with a MessagePack body and
``nano-secret: <NANO_SECRET>`` (when a secret is set; a header of nanobuild's own, so
``Authorization`` stays the app's), the very request any HTTP client would send (see
the README's "The HTTP face"), so the remote may be anything that speaks it; the
per-call context goes as the ``nano-context`` header.
An error answer's body names its kind, and the caller raises the same
``NanoError`` class; an answer without one is mapped by its status code.

HTTP/1.1 is spoken with h11 (already shipped, as uvicorn's) over asyncio streams,
through a small pool of keep-alive connections: one call per connection at a time,
idle connections reused, and retired before the server's keep-alive timeout.
Reachability, timeouts and retries follow the TCP transport's rules: ``Unsent``
when the remote cannot be reached, ``Timeout`` after the call's timeout, and a call
whose connection drops mid-call is sent again once if it is idempotent, and is
otherwise ``Interrupted``.
"""

from __future__ import annotations

import asyncio
import logging
import select
from typing import Any

import h11
import msgspec

from nanobuild.runtime import context
from nanobuild.runtime.addresses import Address, parse_address
from nanobuild.runtime.codecs import MSGPACK
from nanobuild.runtime.errors import (
    ERROR_KINDS,
    BadRequest,
    Internal,
    NanoError,
)
from nanobuild.runtime.exchange import SECRET_HEADER
from nanobuild.runtime.settings import Settings
from nanobuild.runtime.transports.base import (
    Backoff,
    ConnectionDropped,
    Deadline,
    NotSent,
    Target,
    Transport,
    unreachable,
)
from nanobuild.runtime.transports.frames import DEFAULT_MAX_FRAME

log = logging.getLogger("nanobuild.transport.http")

DEFAULT_CONNECT_TIMEOUT = 3.0
DEFAULT_IDLE_TIMEOUT = 4.0  # under uvicorn's 5 s keep-alive: we retire first, no stale sends
DEFAULT_MAX_IDLE = 16  # idle connections kept per remote
READ_SIZE = 65536

MEDIA_TYPE = b"application/msgpack"
STATUS_KINDS = {cls.status: cls for cls in reversed(ERROR_KINDS.values())}


class _ErrorBody(msgspec.Struct):
    error: dict[str, str]


_decode_error = msgspec.msgpack.Decoder(_ErrorBody).decode


class HttpTransport(Transport):
    """Calls to one remote process through its HTTP face (``http://host:port``).

    ``secret`` defaults to NANO_SECRET; without one, only public contracts answer.
    """

    def __init__(
        self,
        address: str | Address,
        *,
        secret: str | None = None,
        max_body: int = DEFAULT_MAX_FRAME,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        max_idle: int = DEFAULT_MAX_IDLE,
        backoff: Backoff | None = None,
    ) -> None:
        self.address = parse_address(address, ("http",)) if isinstance(address, str) else address
        self.max_body = max_body
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self.max_idle = max_idle
        self.backoff = backoff or Backoff()
        self.connections = 0  # connections opened so far
        secret = secret if secret is not None else Settings.from_env().secret
        self._headers = [(b"host", f"{self.address.host}:{self.address.port}".encode())]
        self._headers.append((b"content-type", MEDIA_TYPE))
        if secret:
            self._headers.append((SECRET_HEADER, secret.encode()))
        self._idle: list[_HttpConnection] = []
        self._closed = False

    async def handle_call(self, target: Target, request: Any) -> Any:
        body = _encode(target, request)
        path = f"/api/{target.service}/{target.name}".encode()
        headers = [*self._headers, (b"content-length", str(len(body)).encode())]
        if values := context.current():
            headers.append((context.HEADER, context.to_header(values)))
        message = h11.Request(method=b"POST", target=path, headers=headers)
        async with Deadline(target.timeout, lambda: target.timed_out(target.timeout)):
            try:
                status, answer = await self._exchange(target, message, body)
            except NotSent as exc:
                raise target.failed(exc) from None
            except ConnectionDropped as exc:
                if not target.idempotent:
                    raise target.interrupted(
                        f"the connection to {self.address} dropped mid-call ({exc}; "
                        "not idempotent, so not sent again)"
                    ) from None
                try:
                    status, answer = await self._exchange(target, message, body, retry=True)
                except NotSent as again:  # the first attempt was sent: it may have run
                    raise target.interrupted(
                        f"the connection to {self.address} dropped mid-call ({exc}), and "
                        f"sending it again failed: {again}"
                    ) from None
        if status == 200:
            return target.decode(answer)
        raise _error(target, status, answer, self.address)

    async def _exchange(
        self, target: Target, message: h11.Request, body: bytes, *, retry: bool = False
    ) -> tuple[int, bytes]:
        """One request and its answer; a retry goes on a new connection, and only once."""
        connection = None if retry else self._reusable()
        if connection is None:
            connection = await self._open(target)
        try:
            status, answer = await connection.post(message, body)
        except ConnectionDropped:
            connection.close()
            if retry:
                raise target.interrupted(
                    f"the connection to {self.address} dropped mid-call, twice"
                ) from None
            raise
        except BaseException as exc:  # cancelled (a timeout), too large: the answer is cut off
            connection.close()
            if isinstance(exc, NanoError):
                exc.located(target.service, target.name)
            raise
        self._release(connection)
        return status, answer

    def _reusable(self) -> _HttpConnection | None:
        """An idle connection the server has not closed and will not close soon."""
        now = asyncio.get_running_loop().time()
        while self._idle:
            connection = self._idle.pop()
            if connection.reusable(now, self.idle_timeout):
                return connection
            connection.close()
        return None

    def _release(self, connection: _HttpConnection) -> None:
        if self._closed or not connection.ready() or len(self._idle) >= self.max_idle:
            connection.close()
            return
        connection.idle_since = asyncio.get_running_loop().time()
        self._idle.append(connection)

    async def _open(self, target: Target) -> _HttpConnection:
        """A new connection, or ``NotSent`` (failed attempts back off, as over TCP)."""
        if self._closed:
            raise NotSent(f"the transport to {self.address} is closed")
        loop = asyncio.get_running_loop()
        if self.backoff.next_attempt > loop.time() + target.timeout:
            raise NotSent(f"cannot reach {self.address}: {self.backoff.reason}")
        await self.backoff.pause(loop)
        try:
            connection = await asyncio.wait_for(
                _HttpConnection.open(self.address, self.max_body), self.connect_timeout
            )
        except (OSError, asyncio.TimeoutError) as exc:
            reason = "connection refused" if isinstance(exc, ConnectionRefusedError) else str(exc)
            reason = reason or f"no connection within {self.connect_timeout:g} s"
            self.backoff.failed(reason, loop.time())
            raise NotSent(f"cannot reach {self.address}: {reason}") from None
        self.backoff.succeeded()
        self.connections += 1
        return connection

    async def reachable(self, timeout: float) -> str:
        """Whether the remote's ``/healthz`` answers 200 within ``timeout``, on a
        connection of the check's own (no secret is sent)."""
        if self._closed:
            return "its transport is closed"
        try:
            return await asyncio.wait_for(self._healthz(), timeout)
        except asyncio.TimeoutError:
            return f"no answer within {timeout:g} s"
        except ConnectionDropped:
            return "its HTTP face closed the connection"
        except (OSError, NanoError) as exc:
            return unreachable(exc)

    async def _healthz(self) -> str:
        connection = await _HttpConnection.open(self.address, self.max_body)
        headers = [self._headers[0], (b"content-length", b"0")]
        try:
            status, _ = await connection.post(
                h11.Request(method=b"GET", target=b"/healthz", headers=headers), b""
            )
        finally:
            connection.close()
        return "" if status == 200 else f"its /healthz answered HTTP {status}"

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()


def _encode(target: Target, request: Any) -> bytes:
    try:
        return MSGPACK.encode(request)  # pydantic models too
    except (TypeError, ValueError, OverflowError) as exc:
        raise BadRequest(
            f"the request cannot be encoded: {exc}", service=target.service, contract=target.name
        ) from exc


def _error(target: Target, status: int, answer: bytes, address: Address) -> NanoError:
    """The error an answer other than 200 stands for, as the class the remote raised."""
    try:
        wire = _decode_error(answer).error
    except msgspec.DecodeError:
        # a proxy's own page, say: its address goes to the log, not to the caller's body
        log.warning(
            "%s answered %s.%s with HTTP %d and no nanobuild error body",
            address,
            target.service,
            target.name,
            status,
        )
        cls = STATUS_KINDS.get(status, Internal)
        return cls(
            f"the HTTP face of {target.service} answered HTTP {status} without a nanobuild "
            "error body",
            service=target.service,
            contract=target.name,
        )
    return NanoError.from_wire(wire)


class _HttpConnection:
    """One HTTP/1.1 keep-alive connection, one exchange at a time."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, max_body: int
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._max_body = max_body
        self._h11 = h11.Connection(h11.CLIENT)
        self.idle_since = 0.0

    @classmethod
    async def open(cls, address: Address, max_body: int) -> _HttpConnection:
        reader, writer = await asyncio.open_connection(address.host, address.port)
        return cls(reader, writer, max_body)

    async def post(self, message: h11.Request, body: bytes) -> tuple[int, bytes]:
        """Send one request and read its whole answer: (status, body)."""
        conn = self._h11
        try:
            parts = (
                conn.send(message),
                conn.send(h11.Data(data=body)),
                conn.send(h11.EndOfMessage()),
            )
            self._writer.write(b"".join(part for part in parts if part))
            await self._writer.drain()
            status, answer = await self._read()
        except (OSError, h11.ProtocolError) as exc:
            raise ConnectionDropped(str(exc) or type(exc).__name__) from None
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
        return status, answer

    async def _read(self) -> tuple[int, bytes]:
        conn = self._h11
        status, chunks, size = 0, [], 0
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await self._reader.read(READ_SIZE)
                if not data:
                    raise ConnectionDropped("the server closed the connection before answering")
                conn.receive_data(data)
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                size += len(event.data)
                if size > self._max_body:
                    raise Internal(f"the answer is over the limit of {self._max_body} bytes")
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return status, b"".join(chunks)
            elif isinstance(event, h11.ConnectionClosed):
                raise ConnectionDropped("the server closed the connection")

    def ready(self) -> bool:
        """Whether another request may be sent on this connection."""
        return self._h11.our_state is h11.IDLE and not self._writer.is_closing()

    def reusable(self, now: float, idle_timeout: float) -> bool:
        """Ready, not closed by the server meanwhile, and not idle for too long."""
        fresh = now - self.idle_since < idle_timeout
        return fresh and self.ready() and not self._reader.at_eof() and not self._readable()

    def close(self) -> None:
        self._writer.close()

    def _readable(self) -> bool:
        """Whether the socket has something to read: on an idle connection, that is the
        server hanging up (or an answer nobody asked for), which the loop may not have
        seen yet. Asking the kernel directly closes the window where a call would be
        sent down a connection already closed."""
        sock = self._writer.get_extra_info("socket")
        return sock is None or _readable_now(sock.fileno())


def _readable_now(fd: int) -> bool:
    if hasattr(select, "poll"):  # select.select cannot watch descriptors past FD_SETSIZE
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))
    return bool(select.select([fd], [], [], 0)[0])
