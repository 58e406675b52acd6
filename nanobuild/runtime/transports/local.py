"""A node's endpoints served from their wire form, and the transport that does it in-process.

``Served`` is the part of a server that does not care how the bytes arrive: decode
the request strictly, run the handler, encode the response, or turn what it raised
into the error's wire form. The TCP server runs it for each CALL frame.

``LocalTransport`` runs it with no network in between: a call is encoded, served
and decoded exactly as if it had crossed the wire, in the caller's own loop. It is
to a remote process what httpx's ``ASGITransport`` is to a remote app — the test
double of a split deployment, and a way to see what crossing the wire does to a call.
"""

from __future__ import annotations

import contextvars
import dis
import inspect
import logging
from collections.abc import Callable
from typing import Any

import msgspec

from nanobuild.runtime.codecs import MSGPACK, Codec
from nanobuild.runtime.errors import NanoError
from nanobuild.runtime.faults import as_nano_error, log_failure, unknown_contract
from nanobuild.runtime.transports.base import Address, Deadline, Target, Transport
from nanobuild.runtime.wiring import Endpoint, Node, strict_mode

log = logging.getLogger("nanobuild.transport")


class Served:
    """One endpoint as served from MessagePack: its codec and handler.

    ``waits`` says whether the handler may suspend: an ``async def`` with an await
    (or ``async for``/``async with``) in its body. One without is a plain function
    in disguise, and ``respond`` runs it to its end like a ``def`` handler, with
    no task; a server runs the others as tasks.
    """

    __slots__ = ("codec", "handler", "is_async", "name", "service", "waits")

    def __init__(self, endpoint: Endpoint, *, thorough: bool) -> None:
        self.service = endpoint.service
        self.name = endpoint.name
        self.handler = endpoint.handler
        self.is_async = inspect.iscoroutinefunction(endpoint.handler)
        self.waits = self.is_async and may_suspend(endpoint.handler)
        self.codec = Codec(MSGPACK, endpoint.request, endpoint.response, thorough=thorough)

    def respond(self, body: bytes | msgspec.Raw) -> bytes:
        """The encoded response to ``body``, for a handler that does not wait.

        Decoded, run to its end at once (no task), encoded; raises what the call
        raised. It runs in a copy of the current context, as it would in a task of
        its own: a context variable it sets does not leak into the next call.
        """
        codec = self.codec
        request = codec.decode(body)
        if not self.is_async:
            return codec.encode(contextvars.copy_context().run(self.handler, request))
        running = self.handler(request)
        try:
            contextvars.copy_context().run(running.send, None)
        except StopIteration as done:
            return codec.encode(done.value)
        running.close()  # cannot happen without an await: say so rather than lose the call
        raise RuntimeError("a handler without an await suspended")

    async def answer(self, body: bytes | msgspec.Raw) -> bytes:
        """The encoded response to the encoded request ``body``; raises what the call raised."""
        result = self.handler(self.codec.decode(body))
        if self.is_async:
            result = await result
        return self.codec.encode(result)

    def wire_error(self, exc: Exception) -> dict[str, str]:
        """What the caller is told about ``exc``; the server's log is told the rest."""
        error = as_nano_error(exc).located(self.service, self.name)
        log_failure(log, error)
        return error.to_wire()


_SUSPENDING = {"YIELD_VALUE", "YIELD_FROM", "SEND", "GET_AWAITABLE", "BEFORE_ASYNC_WITH"}
_SUSPENDING |= {"GET_AITER", "GET_ANEXT"}


def may_suspend(fn: Callable[..., Any]) -> bool:
    """Whether the coroutine function ``fn`` has a suspension point in its own body.

    Without one its coroutine finishes on the first ``send``. Anything that is not a
    plain function (a callable object, say) is assumed to wait.
    """
    code = getattr(fn, "__code__", None)
    if code is None:
        return True
    return any(instruction.opname in _SUSPENDING for instruction in dis.get_instructions(code))


def served_endpoints(node: Node) -> dict[tuple[str, str], Served]:
    """Every endpoint of ``node``, by (service, contract name)."""
    thorough = strict_mode()  # NANO_STRICT also checks every field of Struct responses
    return {key: Served(e, thorough=thorough) for key, e in node.endpoints.items()}


class LocalTransport(Transport):
    """Serve calls from ``node`` in this process, through the same wire form as TCP."""

    def __init__(self, node: Node) -> None:
        self.address = Address("local", "localhost", 0)
        self._served = served_endpoints(node)
        self._encode = msgspec.msgpack.encode

    async def handle_call(self, target: Target, request: Any) -> Any:
        served = self._served.get((target.service, target.name))
        if served is None:
            raise unknown_contract(target.service, target.name)
        body = self._encode(request)
        async with Deadline(target.timeout, lambda: target.timed_out(target.timeout)):
            try:
                payload = await served.answer(body)
            except Exception as exc:
                raise NanoError.from_wire(served.wire_error(exc)) from exc
        return target.decode(payload)
