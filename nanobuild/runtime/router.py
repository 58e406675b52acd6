"""The route table: which callable answers each contract type in this process.

The table is filled once, at wiring time. A call is then one dict lookup plus the
route itself, so ``await call(req)`` costs about what awaiting the handler costs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from nanobuild.runtime.contracts import Contract
from nanobuild.runtime.errors import UnknownContract

R = TypeVar("R")

Route = Callable[[Any], Awaitable[Any]]

_routes: dict[type, Route] = {}


def install(routes: Mapping[type, Route]) -> None:
    """Make ``routes`` the table every ``call`` in this process goes through."""
    _routes.clear()
    _routes.update(routes)


def _make_call(routes: dict[type, Route]) -> Callable[[Contract[R]], Awaitable[R]]:
    # The table is a closure cell rather than a global: on this path every
    # nanosecond is a visible share of an in-memory call.
    def call(request: Contract[R]) -> Awaitable[R]:
        """Run the contract ``request`` wherever its service lives; await the response.

        In memory this returns the handler's own awaitable; across the network, the
        transport's. Either way the caller writes ``await call(Request(...))``.
        """
        try:
            route = routes[request.__class__]
        except KeyError:
            return _unknown(request)
        return route(request)

    return call


call = _make_call(_routes)


async def _unknown(request: Contract[Any]) -> Any:
    raise UnknownContract(
        f"no service in this process answers {type(request).__qualname__}; "
        "is the workspace wired (nanobuild serve, or the bundled binary)?",
        contract=type(request).__qualname__,
    )
