"""uvicorn's HTTP/1.1 protocols (h11's and httptools'), with the limits a public port
needs and uvicorn lacks: a deadline for each request head and body, a bound on a
head's size, and a place in the port's ``Gate``.

uvicorn bounds only the idle time between requests (``timeout_keep_alive``): a peer
that opens a connection and sends nothing, or half a head, or a body a byte at a
time, holds its place for ever (slowloris). ``protocol`` gives the class uvicorn
serves each connection with, its parser's own plus ``Guard``:

- a new connection has ``header_timeout`` seconds to send a whole request head, and
  so has a kept-alive one from the first byte of its next head; past it, closed;
- a head longer than ``MAX_HEAD`` bytes is answered 431 and the connection closed;
- a body has ``body_timeout`` seconds after its head to arrive in full; past it, the
  answer is 408 (unless the app has begun its own) and the connection is closed;
- each connection holds a place in the gate: one that waits for its first head (or
  has half of a later one), else one kept alive between requests, is evicted when a
  newcomer needs the place; a newcomer that finds every place busy with a request is
  answered 503 and closed.

What is closed is logged in bursts (``limits.Burst``), never a line per connection.
A request whose head arrives in one read, as nearly every one does, starts no timer.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar

from nanobuild.runtime.limits import Burst, Gate
from nanobuild.runtime.settings import Limits

log = logging.getLogger("nanobuild.http")

MAX_HEAD = 64 * 1024  # bytes of a request head (line and headers): h11's default is 16 KiB
# h11 refuses (400) an event larger than this; ours, below it, answers 431 first
H11_MAX_EVENT = 2 * MAX_HEAD


def _answer(status: str, text: str) -> bytes:
    body = text.encode()
    head = (
        f"HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


class Guard(asyncio.Protocol):
    """Mixed in before a uvicorn protocol class: the deadlines, the head's bound, the
    gate. ``protocol`` binds ``limits`` and ``gate`` (one gate per listening port)."""

    limits: ClassVar[Limits]
    gate: ClassVar[Gate]
    # uvicorn's own, set by its __init__ and connection_made
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    cycle: Any  # the request under way (uvicorn's RequestResponseCycle), None before one
    # this class's: defaults here, since uvicorn's __init__ is the one that runs
    _seen: Any = None  # the cycle whose head came in full last
    _head = 0  # bytes of the head under way
    _timer: asyncio.TimerHandle | None = None  # the head's or the body's deadline

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if not self.gate.admit(self):
            self.transport.write(BUSY)
            self.transport.close()
            return
        self._timer = self.loop.call_later(self.limits.header_timeout, self._head_late)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.transport.is_closing():
            return
        if self.transport.get_protocol() is not self:  # upgraded (a WebSocket): not ours now
            self._cancel()
            self.gate.leave(self)
            return
        self._track(len(data))

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        self.gate.leave(self)
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]  # uvicorn's: after Guard in the MRO
        cycle = self.cycle
        if self.transport.is_closing():
            return
        if cycle is self._seen and cycle.response_complete and not cycle.more_body:
            self.gate.rest(self)  # kept alive, between requests
        else:
            self._track(0)  # a pipelined request began (h11 starts it here)

    def evict(self) -> None:
        """Close: a newcomer takes this connection's place (it had no request under way)."""
        self._cancel()
        self.transport.close()

    def _track(self, received: int) -> None:
        """After a read: start, stop or check the deadline of the head or body under way."""
        cycle = self.cycle
        if cycle is not self._seen:  # a head came in full: a request is under way
            # only a read this large can have held a head over the bound: measure it then
            if self._head + received > MAX_HEAD and _head_size(cycle.scope) > MAX_HEAD:
                self._too_large(cycle)
                return
            self._seen, self._head = cycle, 0
            self.gate.busy(self)
            self._cancel()
            if cycle.more_body:
                self._timer = self.loop.call_later(self.limits.body_timeout, self._body_late)
        elif cycle is None or (cycle.response_complete and not cycle.more_body):
            self._head_part(received)  # bytes of the next head
        elif self._timer is not None and not cycle.more_body:
            self._cancel()  # the body is in

    def _head_part(self, received: int) -> None:
        self._head += received
        if self._head > MAX_HEAD:
            self._too_large(None)
        elif self._timer is None and received:  # the first bytes of a kept-alive one's head
            self._timer = self.loop.call_later(self.limits.header_timeout, self._head_late)
            self.gate.wait(self)

    def _too_large(self, cycle: Any) -> None:
        """Answer 431 and close; the app of a request already begun (``cycle``) finds
        its client gone."""
        _large_heads(f"over {MAX_HEAD} bytes")
        self._cancel()
        if cycle is not None:
            _gone(cycle)
        self.transport.write(TOO_LARGE)
        self.transport.close()

    def _head_late(self) -> None:
        self._timer = None
        _late_heads(f"none within {self.limits.header_timeout:g} s (NANO_HEADER_TIMEOUT)")
        self.transport.close()

    def _body_late(self) -> None:
        self._timer = None
        cycle = self.cycle
        _late_bodies(f"not in full within {self.limits.body_timeout:g} s (NANO_BODY_TIMEOUT)")
        if cycle is not None:
            if not cycle.response_started:
                self.transport.write(LATE)
            _gone(cycle)
        self.transport.close()

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _gone(cycle: Any) -> None:
    """Tell the app of ``cycle`` its client is gone: its reads get ``http.disconnect``,
    its writes go nowhere (as after a real disconnection)."""
    cycle.disconnected = True
    cycle.message_event.set()


def _head_size(scope: Any) -> int:
    """About the bytes of a request's head: its target and its headers, as sent."""
    size = len(scope.get("raw_path", b"")) + len(scope.get("query_string", b"")) + 16
    return size + sum(len(name) + len(value) + 4 for name, value in scope["headers"])


# what was closed, in bursts for every port of the process
_late_heads = Burst(log, "http: closed connections that sent no whole request head")
_large_heads = Burst(log, "http: answered 431 to request heads")
_late_bodies = Burst(log, "http: answered 408 to request bodies")

BUSY = _answer("503 Service Unavailable", "every connection of this server is busy; try again")
TOO_LARGE = _answer(
    "431 Request Header Fields Too Large", f"the request head is over {MAX_HEAD} bytes"
)
LATE = _answer("408 Request Timeout", "the request body did not arrive in time")


def protocol(http: str, limits: Limits, gate: Gate) -> type[asyncio.Protocol]:
    """The protocol class uvicorn serves one port's connections with: its ``http``
    parser's (``h11`` or ``httptools``), guarded by ``limits`` and ``gate``."""
    base: type[asyncio.Protocol]
    if http == "httptools":
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as base
    else:
        from uvicorn.protocols.http.h11_impl import H11Protocol as base
    guarded = type(f"Guarded{base.__name__}", (Guard, base), {"limits": limits, "gate": gate})
    return guarded


def guarded(http: str, limits: Limits, where: str) -> dict[str, Any]:
    """The ``uvicorn.Config`` options that guard one port (``where``, as its gate's log
    lines name it) with ``limits``: the guarded protocol with a gate of its own, the
    keep-alive bound, and h11's event bound above ``MAX_HEAD``."""
    gate = Gate(limits.max_connections, where)
    return {
        "http": protocol(http, limits, gate),
        "timeout_keep_alive": limits.keep_alive,  # uvicorn annotates an int; a float works
        "h11_max_incomplete_event_size": H11_MAX_EVENT,
    }
