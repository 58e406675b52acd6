"""The route table: which callable answers each contract type in this process.

The table is filled once, at wiring time, and kept on the contract classes
themselves: ``install`` gives each contract class a ``__nano_route__`` property
whose getter is the route, so reading it off a request *is* the call. ``call`` is
then ``operator.attrgetter("__nano_route__")``, C all the way down to the handler:
``await call(req)`` runs no Python frame of ours between the caller and the
handler's coroutine, and costs about what awaiting the handler directly costs. A
contract with no route answers through the base class's property, which raises
``UnknownContract``.
"""

from __future__ import annotations

import operator
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from nanobuild.runtime.contracts import ROUTE, Contract

R = TypeVar("R")

Route = Callable[[Any], Awaitable[Any]]

_installed: list[type] = []  # the classes that hold a route now, to take them back


def install(routes: Mapping[type, Route]) -> None:
    """Make ``routes`` the table every ``call`` in this process goes through."""
    for cls in _installed:
        if ROUTE in vars(cls):
            delattr(cls, ROUTE)
    _installed.clear()
    for cls, route in routes.items():
        setattr(cls, ROUTE, property(route))
        _installed.append(cls)
    # a contract subclassing a routed one must not inherit its route: it has its own,
    # or none (UnknownContract), exactly as a table keyed by exact type would have it
    for cls in list(_installed):
        for sub in _subclasses(cls):
            if sub not in routes:
                setattr(sub, ROUTE, Contract.__dict__[ROUTE])
                _installed.append(sub)


def _subclasses(cls: type) -> list[type]:
    found: list[type] = []
    subclasses: list[type] = cls.__subclasses__()
    for sub in subclasses:
        found += [sub, *_subclasses(sub)]
    return found


if TYPE_CHECKING:

    def call(request: Contract[R]) -> Awaitable[R]:
        """Run the contract ``request`` wherever its service lives; await the response."""

else:
    # In memory this returns the handler's own coroutine; across the network, the
    # transport's. Either way the caller writes ``await call(Request(...))``.
    call = operator.attrgetter(ROUTE)
