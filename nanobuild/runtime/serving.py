"""One endpoint served from its wire form, whichever face the call came in by.

``Served`` is the part of a server that does not care how the bytes arrive: decode
the request strictly, run the handler (or, for a service elsewhere, its route),
encode the response — or turn what was raised into the error the caller is told
(``failure``). The HTTP face, the TCP server and strict mode's in-memory round trip
all serve through it, so a call gets the same answer by any of them.
"""

from __future__ import annotations

import contextvars
import dis
import logging
from collections.abc import Callable
from typing import Any

import msgspec

from nanobuild.runtime import context
from nanobuild.runtime.codecs import JSON, MSGPACK, Codec, Format
from nanobuild.runtime.errors import NanoError
from nanobuild.runtime.faults import as_nano_error, log_failure
from nanobuild.runtime.node import Endpoint, Node, local_route

log = logging.getLogger("nanobuild.serving")
_copy_context = contextvars.copy_context

Body = bytes | msgspec.Raw


class Served:
    """One endpoint as served from its wire form: a codec per format, and what runs it.

    ``run`` takes the decoded request: the handler itself for a service of this
    process, the transport's route for one that runs elsewhere, or — with
    interceptors or an observer installed — the seam around either, which sees an
    inbound call arrived by ``face``; ``inner`` is the same but the observer, for a
    face that observes the call itself (``watch``). ``waits`` says whether it may
    suspend: a ``def`` handler (it runs on the worker pool) or an ``async def`` with
    an await (or ``async for``/``async with``) in its body. One without is a plain
    function in disguise, and ``respond`` runs it to its end with no task; a server
    runs the others as tasks.
    """

    __slots__ = ("codecs", "inner", "msgpack", "name", "public", "run", "service", "waits", "watch")

    def __init__(self, endpoint: Endpoint, *, thorough: bool, face: str = "memory") -> None:
        self.service = endpoint.service
        self.name = endpoint.name
        self.public = endpoint.public
        self.codecs = {
            fmt: Codec(fmt, endpoint.request, endpoint.response, thorough=thorough)
            for fmt in (JSON, MSGPACK)
        }
        self.msgpack = self.codecs[MSGPACK]
        handler = endpoint.handler
        target = local_route(handler) if handler is not None else endpoint.target
        seam = endpoint.seam
        # an observed seam's watch, and the run inside it (the interceptors', or the
        # target): what a face that observes its calls inline (``watch.arrived``) runs
        self.watch = None if seam is None else seam.watch
        self.inner: Callable[[object], Any] = target
        if seam is not None:

            def run(request: object) -> object:
                return seam.run(target, request, "inbound", face)

            self.run: Callable[[object], Any] = run  # Any: an awaitable of the response
            self.waits = True
            chain = seam.chain
            if chain is not None:

                def inner(request: object) -> object:
                    return chain(target, request, "inbound", face)

                self.inner = inner
        elif handler is not None:
            self.run = target  # the handler itself, or a ``def`` one on the worker pool
            self.waits = target is not handler or may_suspend(handler)
        else:
            self.run = target
            self.waits = True

    def codec(self, fmt: Format) -> Codec:
        return self.codecs[fmt]

    async def answer(self, body: Body, fmt: Format = MSGPACK) -> bytes:
        """The encoded response to the encoded request ``body``; raises what the call raised."""
        codec = self.codecs[fmt]
        return codec.encode(await self.run(codec.decode(body)))

    def respond(self, body: Body, values: context.Context = context.EMPTY) -> bytes:
        """The encoded (MessagePack) response to ``body``, for a ``run`` that does not wait.

        Decoded, run to its end at once (no task), encoded; raises what the call
        raised. It runs in a copy of the current context, as it would in a task of
        its own, with ``values`` as the call's context: what it sets does not leak
        into the next call.
        """
        codec = self.msgpack
        request = codec.decode(body)
        scope = _copy_context()
        if values:
            scope.run(context.bind, values)
        running = self.run(request)
        try:
            scope.run(running.send, None)
        except StopIteration as done:
            return codec.encode(done.value)
        running.close()  # cannot happen without an await: say so rather than lose the call
        raise RuntimeError("a handler without an await suspended")

    def failure(self, exc: BaseException) -> NanoError:
        """What the caller is told about ``exc`` (located here); the log is told the rest."""
        error = as_nano_error(exc).located(self.service, self.name)
        log_failure(log, error)
        return error


_SUSPENDING = {"YIELD_VALUE", "YIELD_FROM", "SEND", "GET_AWAITABLE", "BEFORE_ASYNC_WITH"}
_SUSPENDING |= {"GET_AITER", "GET_ANEXT"}


def may_suspend(fn: Callable[..., object]) -> bool:
    """Whether the coroutine function ``fn`` has a suspension point in its own body.

    Without one its coroutine finishes on the first ``send``. Anything that is not a
    plain function (a callable object, say) is assumed to wait.
    """
    code = getattr(fn, "__code__", None)
    if code is None:
        return True
    return any(instruction.opname in _SUSPENDING for instruction in dis.get_instructions(code))


def served_endpoints(node: Node, face: str) -> dict[tuple[str, str], Served]:
    """Every endpoint of ``node`` the ``face`` serves, by (service, contract name).

    The TCP server (``tcp``) serves the services of this process; the HTTP face
    (``http``) also those it reaches elsewhere.
    """
    thorough = node.settings.strict  # NANO_STRICT also checks every field of Struct responses
    endpoints = node.every_endpoint() if face == "http" else list(node.endpoints.values())
    return {(e.service, e.name): Served(e, thorough=thorough, face=face) for e in endpoints}
