"""The call seam: the one place every call passes, where interceptors may be installed.

Every call passes it once in each process it touches: where ``call()`` is made
(``outbound``, to a service here or elsewhere) and, when it arrived from outside —
the HTTP face, another process over TCP — where it is served (``inbound``). An
interceptor is an async function of the call and the rest of the chain::

    async def timed(call: CallInfo, proceed: Proceed) -> object:
        call.context["caller"] = "checkout"        # travels with the call
        try:
            return await proceed()
        finally:
            log.info("%s.%s %s in %.3f ms", call.service, call.contract,
                     call.outcome, call.duration * 1000)

    node = wire(spec, interceptors=[timed])          # or NANO_INTERCEPTORS=module:timed

``proceed()`` runs the next interceptor, or the call itself; when it returns (or
raises), ``outcome`` and ``duration`` describe the call as it ran. What an
interceptor puts in ``call.context`` is the per-call context of the callee.

The seam may also have one observer (``telemetry``'s, while telemetry is on), which
wraps the whole chain: an ``Observer`` is given the seam and the run of its
interceptors (None when there are none) and returns its ``Watch`` on the seam,
whose ``run`` takes their place. It sees what interceptors see, at a fraction of
their cost per call: no ``CallInfo``, no chain of closures, which matters once per
call on every hop. A face that is a coroutine already (the HTTP face) observes an
inbound call inline instead, with no coroutine more: ``watch.arrived()`` before it
runs ``chain`` (or the route), ``close()`` after.

With no interceptor and no observer the seam is not there at all: an in-memory
route stays the handler's own coroutine, and the faces skip it with one test of a
list.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Literal, Protocol

from nanobuild.runtime import context
from nanobuild.runtime.errors import NanoError

Placement = Literal["local", "remote"]
Direction = Literal["outbound", "inbound"]
Route = Callable[[object], Awaitable[object]]
Proceed = Callable[[], Awaitable[object]]


class CallInfo:
    """One call as interceptors see it.

    ``via`` says how the call travels: ``memory``, ``strict`` (in memory, through the
    wire form), ``tcp`` or ``http``. ``outcome`` is ``None`` until the call is done,
    then ``"ok"`` or the error's kind (``"internal"`` for an exception that is not a
    ``NanoError``); ``duration`` is its time in seconds, interceptors not counted.
    """

    __slots__ = (
        "context",
        "contract",
        "direction",
        "duration",
        "error",
        "outcome",
        "placement",
        "request",
        "service",
        "via",
    )

    def __init__(
        self,
        service: str,
        contract: str,
        placement: Placement,
        direction: Direction,
        via: str,
        request: object,
        values: context.Context,
    ) -> None:
        self.service = service
        self.contract = contract
        self.placement: Placement = placement
        self.direction: Direction = direction
        self.via = via
        self.request = request
        self.context: dict[str, str] = dict(values)
        self.outcome: str | None = None
        self.error: BaseException | None = None
        self.duration: float | None = None

    def __repr__(self) -> str:
        return (
            f"CallInfo({self.direction} {self.service}.{self.contract}, {self.placement} "
            f"via {self.via}, outcome={self.outcome!r})"
        )


Interceptor = Callable[[CallInfo, Proceed], Awaitable[object]]
# a seam's run: the route, the request, the direction and how an inbound call arrived
Run = Callable[[Route, object, Direction, "str | None"], Awaitable[object]]


class Arrival(Protocol):
    """An inbound call a face observes inline, from before it runs until ``close``."""

    def close(self, error: BaseException | None) -> None:
        """The call ended, having raised ``error`` (None: it returned)."""


class Watch(Protocol):
    """An observer's hold on one seam."""

    def run(
        self, route: Route, request: object, direction: Direction, via: str | None = None
    ) -> Awaitable[object]:
        """The seam's run: ``route(request)`` observed, through the interceptors' chain."""

    def arrived(self, via: str, given: context.Context) -> Arrival:
        """An inbound call arrived ``via`` a face with the context ``given``, observed from
        now until its ``close``: the face runs the chain (or the route) in between."""


Observer = Callable[["Seam", "Run | None"], Watch]


class Seam:
    """Where calls of one endpoint pass: its identity, and the interceptors to run."""

    __slots__ = ("chain", "contract", "interceptors", "placement", "run", "service", "via", "watch")

    def __init__(
        self,
        service: str,
        contract: str,
        placement: Placement,
        via: str,
        interceptors: Sequence[Interceptor],
        observer: Observer | None = None,
    ) -> None:
        self.service = service
        self.contract = contract
        self.placement: Placement = placement
        self.via = via
        self.interceptors = tuple(interceptors)
        # ``run(route, request, direction, via=None)``: ``route(request)`` through the
        # observer and every interceptor, in order. ``via`` is how an inbound call
        # arrived (``http``, ``tcp``); an outbound one travels the endpoint's own way.
        # ``chain`` is the same through the interceptors alone (None: there are none).
        self.chain: Run | None = self._chain if self.interceptors else None
        self.watch: Watch | None = None if observer is None else observer(self, self.chain)
        self.run: Run = self._chain if self.watch is None else self.watch.run

    async def _chain(
        self, route: Route, request: object, direction: Direction, via: str | None = None
    ) -> object:
        """``route(request)`` through every interceptor, in order."""
        call = CallInfo(
            self.service,
            self.contract,
            self.placement,
            direction,
            via or self.via,
            request,
            context.current(),
        )

        async def innermost() -> object:
            context.check(call.context)  # an interceptor's additions must cross the wire too
            token = context.bind(dict(call.context))
            started = time.perf_counter()
            try:
                result = await route(request)
            except BaseException as exc:
                call.outcome = exc.kind if isinstance(exc, NanoError) else "internal"
                call.error = exc
                raise
            else:
                call.outcome = "ok"
                return result
            finally:
                call.duration = time.perf_counter() - started
                context.unbind(token)

        proceed: Proceed = innermost
        for interceptor in reversed(self.interceptors):
            proceed = _link(interceptor, call, proceed)
        return await proceed()

    def route(self, route: Route) -> Route:
        """``route`` as the outbound route ``call()`` takes: through the interceptors."""
        run = self.run

        def intercepted(request: object) -> Awaitable[object]:  # the run's own awaitable
            return run(route, request, "outbound", None)

        intercepted.__qualname__ = f"intercepted.<{self.service}.{self.contract}>"
        return intercepted


def _link(interceptor: Interceptor, call: CallInfo, proceed: Proceed) -> Proceed:
    def next_link() -> Awaitable[object]:
        return interceptor(call, proceed)

    return next_link
