"""The route table: which callable answers each contract type in this process.

The table is filled once, at wiring time, and kept on the contract classes
themselves: ``install`` makes each contract's route (its handler, in memory) a
method of the contract class named ``__nano_route__``, so ``call(req)`` is
``req.__nano_route__()``. From Python 3.11 the interpreter runs that as two inlined
calls, with no C-level function in between, and ``await call(req)`` costs little
more than awaiting the handler directly (reading a property with
``operator.attrgetter`` has no Python frame, but calls the handler from C, and costs
twice as much). A contract with no route answers through the base class's method,
which raises ``UnknownContract``.

``call_sync`` is the blocking form of ``call``, for code on a worker thread (a
``def`` handler, which runs on the node's thread pool): it runs the call on the
event loop that thread works for, and waits.
"""

from __future__ import annotations

import asyncio
import contextvars
import types
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from nanobuild.runtime.contracts import ROUTE, Contract, is_contract
from nanobuild.runtime.errors import TIMEOUT_CAVEAT, Timeout

if TYPE_CHECKING:
    from nanobuild.runtime.models import ModelContract  # pydantic's, imported only when used

R = TypeVar("R")

Route = Callable[[Any], Awaitable[Any]]

_table: dict[type, Route] = {}  # what ``install`` was last given
_installed: list[type] = []  # the classes that hold a route now, to take them back


def install(routes: Mapping[type, Route]) -> None:
    """Make ``routes`` the table every ``call`` in this process goes through."""
    for cls in _installed:
        if ROUTE in vars(cls):
            delattr(cls, ROUTE)
    _installed.clear()
    _table.clear()
    _table.update(routes)
    for cls, route in routes.items():
        setattr(cls, ROUTE, _as_method(route))
        _installed.append(cls)
    # a contract subclassing a routed one must not inherit its route: it has its own,
    # or none (UnknownContract), exactly as a table keyed by exact type would have it
    for cls in list(_installed):
        for sub in _subclasses(cls):
            if sub not in routes:
                setattr(sub, ROUTE, Contract.__dict__[ROUTE])
                _installed.append(sub)


def installed() -> dict[type, Route]:
    """The table ``install`` was last given (a copy)."""
    return dict(_table)


def _subclasses(cls: type) -> list[type]:
    found: list[type] = []
    subclasses: list[type] = cls.__subclasses__()
    for sub in subclasses:
        found += [sub, *_subclasses(sub)]
    return found


def call(request: Contract[R] | ModelContract[R]) -> Awaitable[R]:
    """Run the contract ``request`` wherever its service lives; await the response.

    In memory this returns the handler's own coroutine; across the network, the
    transport's. Either way the caller writes ``await call(Request(...))``.
    """
    try:
        return request.__nano_route__()
    except (AttributeError, TypeError):
        if is_contract(type(request)):
            raise  # a sync handler raised it
        if isinstance(request, type):
            given = f"the class {request.__qualname__}"
        else:
            given = f"a {type(request).__qualname__}"
        raise TypeError(
            f"call() takes a request, an instance of a Contract subclass, not {given}"
        ) from None


def _as_method(route: Route) -> Route:
    """``route`` as a plain function, which binds to the request like a method."""
    if isinstance(route, types.FunctionType):
        return route

    def routed(request: Any) -> Awaitable[Any]:
        return route(request)

    return routed


# the event loop a worker thread runs for: set in the copied context each ``def``
# handler runs in (``node.thread_route``), so it is there for exactly that call
_home: contextvars.ContextVar[asyncio.AbstractEventLoop] = contextvars.ContextVar("nano_loop")
bind_loop = _home.set


def call_sync(request: Contract[R], timeout: float | None = None) -> R:
    """Run ``request`` as ``call`` does, blocking this thread until the response comes.

    For a ``def`` handler (it runs on a worker thread of the node's pool) or any code
    that handler runs: the call runs on the node's event loop, with the caller's
    per-call context, and raises what ``call`` would. ``timeout`` bounds the wait
    (``Timeout`` when it runs out; the call itself is cancelled). On a thread with
    no loop of a node behind it (a script, a test) it runs the call in a loop of its
    own. On the event loop's own thread it raises ``RuntimeError`` at once: waiting
    there would stop the very loop that must run the call.
    """
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is not None:
        raise RuntimeError(
            f"call_sync({type(request).__qualname__}(...)) was called on the event loop's "
            "own thread, where it would block the loop that must answer it; "
            "use `await call(...)` in an `async def`, or make the handler a plain `def` "
            "(it then runs on a worker thread, where call_sync works)"
        )
    loop = _home.get(None)
    if loop is None or loop.is_closed():
        return asyncio.run(_wait_for(request, timeout))
    future = asyncio.run_coroutine_threadsafe(_wait_for(request, timeout), loop)
    return future.result()


async def _wait_for(request: Contract[R], timeout: float | None) -> R:
    if timeout is None:
        return await call(request)
    try:
        return await asyncio.wait_for(call(request), timeout)
    except asyncio.TimeoutError:  # TimeoutError itself from 3.11
        name = type(request).__qualname__
        raise Timeout(
            f"no answer to {name} within {timeout:g} s (call_sync); "
            f"{TIMEOUT_CAVEAT.format('its service')}"
        ) from None
