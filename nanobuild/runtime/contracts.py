"""Contracts and handlers: the vocabulary services are written in.

A contract is a msgspec Struct naming one request; its generic parameter is the
response type::

    class GetProduct(Contract[Product], frozen=True):
        id: str

A handler is a plain function (``def`` or ``async def``) that takes the request and
returns the response, marked with ``@handler``. The decorator only marks the
function: calling it directly costs exactly what it cost before.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from typing import Any, ClassVar, Generic, TypeVar

import msgspec

from nanobuild.runtime.errors import UnknownContract

R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])

HANDLER_MARK = "__nano_handler__"
ROUTE = "__nano_route__"
HOOK_MARK = "__nano_hook__"


async def _no_route(request: Any) -> Any:
    raise UnknownContract(
        f"no service in this process answers {type(request).__qualname__}; "
        "is the workspace wired (nanobuild serve, or the bundled binary)?",
        contract=type(request).__qualname__,
    )


class Contract(msgspec.Struct, Generic[R], frozen=True):
    """A request whose response type is ``R``. Subclass as ``Contract[Response]``.

    Contracts are frozen: a request cannot be changed once made, so a caller and a
    handler in one process share it as safely as if it had crossed the network.
    Subclasses inherit that; say ``frozen=True`` on each anyway, as type checkers
    (which read Structs as dataclasses) expect.

    A contract whose handler may safely run twice for one call (a read, or a write
    keyed by the request) says ``idempotent: ClassVar[bool] = True``; a remote call
    to it is then retried once if its connection drops mid-call. Other contracts
    are never run twice for one call.
    """

    idempotent: ClassVar[bool] = False

    # where ``call`` finds the route to this contract's handler: ``router.install``
    # makes each routed contract's route a method of its class; here, for any
    # other, it refuses
    __nano_route__ = _no_route


def handler(fn: F) -> F:
    """Mark ``fn`` as the handler of the contract its first parameter is annotated with."""
    setattr(fn, HANDLER_MARK, True)
    return fn


def on_startup(fn: F) -> F:
    """Mark ``fn`` to run when the service starts (in dependency order), e.g. to load data."""
    setattr(fn, HOOK_MARK, "startup")
    return fn


def on_shutdown(fn: F) -> F:
    """Mark ``fn`` to run when the service stops (in reverse dependency order)."""
    setattr(fn, HOOK_MARK, "shutdown")
    return fn


def is_handler(obj: object) -> bool:
    """Whether ``obj`` was marked with ``@handler``."""
    return callable(obj) and getattr(obj, HANDLER_MARK, False) is True


def is_contract(obj: object) -> bool:
    """Whether ``obj`` is a contract class (a strict subclass of ``Contract``)."""
    return isinstance(obj, type) and issubclass(obj, Contract) and obj is not Contract


class MissingResponseType(TypeError):
    """A contract subclassed bare ``Contract`` instead of ``Contract[Response]``."""


def response_type(contract: type[Contract[Any]]) -> Any:
    """The response type a contract class declares through ``Contract[Response]``."""
    for klass in contract.__mro__:
        for base in getattr(klass, "__orig_bases__", ()):
            if typing.get_origin(base) is Contract:
                return typing.get_args(base)[0]
    raise MissingResponseType(
        f"contract {contract.__qualname__} has no response type: "
        f"subclass Contract[Response], not bare Contract"
    )


def handler_types(fn: Callable[..., Any]) -> tuple[Any, Any]:
    """The (request, response) types a handler's annotations declare."""
    hints = typing.get_type_hints(fn)
    params = [name for name in fn.__code__.co_varnames[: fn.__code__.co_argcount]]
    if not params or params[0] not in hints:
        raise TypeError(f"handler {fn.__qualname__} must annotate its request parameter")
    if "return" not in hints:
        raise TypeError(f"handler {fn.__qualname__} must annotate its return type")
    return hints[params[0]], hints["return"]
