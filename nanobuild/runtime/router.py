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
"""

from __future__ import annotations

import types
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from nanobuild.runtime.contracts import ROUTE, Contract

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


def call(request: Contract[R]) -> Awaitable[R]:
    """Run the contract ``request`` wherever its service lives; await the response.

    In memory this returns the handler's own coroutine; across the network, the
    transport's. Either way the caller writes ``await call(Request(...))``.
    """
    try:
        return request.__nano_route__()
    except (AttributeError, TypeError):
        if isinstance(request, Contract):
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
