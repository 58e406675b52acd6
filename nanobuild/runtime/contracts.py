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

import sys
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Generic, TypeVar

import msgspec

from nanobuild.runtime.errors import UnknownContract

R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])

HANDLER_MARK = "__nano_handler__"
ROUTE = "__nano_route__"
HOOK_MARK = "__nano_hook__"


class Route:
    """A contract's REST route, beside ``POST /api/<service>/<Contract>``::

        class GetUser(Contract[User], frozen=True):
            http: ClassVar[Route] = Route("GET /users/{id}")
            id: int

    ``{id}`` binds a path segment to the field ``id``, converted from text to the
    field's type; ``query`` names fields read from the query string (for GET and
    DELETE, every field not in the path is); the body (JSON or MessagePack) gives the
    rest. ``status`` is the success status (a 204 sends no body, and takes a ``None``
    response); ``headers`` are sent with every success. Nothing is checked here: a
    kernel with a bad route still imports, and ``nanobuild check`` names the problem.
    """

    __slots__ = ("headers", "line", "query", "status", "text")

    def __init__(
        self,
        route: str,
        *,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        query: Sequence[str] | str = (),
    ) -> None:
        self.text = route
        self.status = status
        self.headers = dict(headers) if isinstance(headers, Mapping) else headers
        self.query = (query,) if isinstance(query, str) else tuple(query)
        # where it was written (the class body), for check's messages; costs nothing later
        self.line: int = sys._getframe(1).f_lineno

    def __repr__(self) -> str:
        return f"Route({self.text!r}, status={self.status!r})"


ROUTE_ATTRIBUTE = "http"  # the class variable a contract declares its Route in


def route_of(contract: type) -> object:
    """What ``contract`` declares as its REST route (a ``Route``, if well written), or None."""
    if ROUTE_ATTRIBUTE in getattr(contract, "__struct_fields__", ()):
        return None  # a field of that name: the contract has no route
    return getattr(contract, ROUTE_ATTRIBUTE, None)


def text_kind(tp: Any) -> str | None:
    """How a field of type ``tp`` can come from a URL: ``"scalar"`` from one piece of text
    (a path segment, a query value), ``"list"`` from a query parameter given again and
    again (``?tag=a&tag=b``), None not at all (a Struct, a dict, ...)."""
    if _from_text(tp):
        return "scalar"
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        return text_kind(args[0])
    if origin in (list, set, frozenset) or (origin is tuple and args[1:] == (...,)):
        return "list" if args and _from_text(args[0]) else None
    if _is_union(origin):
        kinds = {text_kind(arg) for arg in args if arg is not type(None)}
        return kinds.pop() if len(kinds) == 1 else None
    return None


def _from_text(tp: Any) -> bool:
    import datetime
    import decimal
    import enum
    import uuid

    plain = (str, int, float, bool, bytes, decimal.Decimal, uuid.UUID)
    times = (datetime.datetime, datetime.date, datetime.time, datetime.timedelta)
    if tp in plain or tp in times or (isinstance(tp, type) and issubclass(tp, enum.Enum)):
        return True
    if hasattr(tp, "__supertype__"):  # a NewType
        return _from_text(tp.__supertype__)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        return _from_text(args[0])
    if origin is typing.Literal:
        return all(isinstance(arg, str | int) for arg in args)
    if _is_union(origin):
        rest = [arg for arg in args if arg is not type(None)]
        return bool(rest) and all(_from_text(arg) for arg in rest)
    return False


def _is_union(origin: Any) -> bool:
    return origin is typing.Union or origin is types.UnionType


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
    # its REST route, if it has one (``Route``); every contract answers at /api/ too
    http: ClassVar[Route | None] = None

    # where ``call`` finds the route to this contract's handler: ``router.install``
    # makes each routed contract's route a method of its class; here, for any
    # other, it refuses
    __nano_route__ = _no_route


def handler(fn: F) -> F:
    """Mark ``fn`` as the handler of the contract its first parameter is annotated with.

    ``fn`` is a function (``def`` or ``async def``), as ``nanobuild check`` requires
    (E219): anything else (a class, a lambda, a ``functools.lru_cache`` wrapper) is a
    ``TypeError`` here, in check's words, rather than a handler that cannot be wired.
    """
    refusal = _not_a_function(fn)
    if refusal:
        raise TypeError(refusal)
    setattr(fn, HANDLER_MARK, True)
    return fn


_NOT_A_FUNCTION = "@handler marks a function (def or async def)"  # as check says it


def _not_a_function(fn: object) -> str:
    """Why ``fn`` cannot be a handler ('' if it can)."""
    if isinstance(fn, type):
        return f"{_NOT_A_FUNCTION}, not the class {fn.__qualname__}"
    if not isinstance(fn, types.FunctionType):
        kind = type(fn)
        return (
            f"{_NOT_A_FUNCTION}, but {getattr(fn, '__qualname__', repr(fn))} is a "
            f"{kind.__module__}.{kind.__qualname__} object, off which the runtime cannot "
            "read its request"
        )
    if fn.__name__ == "<lambda>":
        return f"{_NOT_A_FUNCTION}, not a lambda: it has no name to be wired by, nor annotations"
    return ""


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


# the classes whose subclasses are contracts: ``Contract``, and ``ModelContract`` once
# ``nanobuild.runtime.models`` is imported (so that pydantic is loaded only when used)
_bases: tuple[type, ...] = (Contract,)


def add_base(base: type) -> None:
    """Make the subclasses of ``base`` contracts too (``models.ModelContract``)."""
    global _bases
    _bases = (*_bases, base)


def is_contract(obj: object) -> bool:
    """Whether ``obj`` is a contract class (a strict subclass of ``Contract`` or of
    ``ModelContract``; not ``ModelContract[User]``, the class pydantic makes of it)."""
    return (
        isinstance(obj, type)
        and issubclass(obj, _bases)
        and obj not in _bases
        and not (obj.__dict__.get("__pydantic_generic_metadata__") or {}).get("origin")
    )


class MissingResponseType(TypeError):
    """A contract subclassed bare ``Contract`` instead of ``Contract[Response]``."""


def response_type(contract: type) -> Any:
    """The response type a contract class declares through ``Contract[Response]``
    (or ``ModelContract[Response]``)."""
    declared = getattr(contract, "__nano_response_type__", None)
    if declared is not None:
        return declared()
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
    if not hasattr(fn, "__code__"):  # wrapped after it was marked: @lru_cache over @handler
        raise TypeError(_not_a_function(fn) or f"{fn!r} is not a function")
    hints = typing.get_type_hints(fn)
    params = [name for name in fn.__code__.co_varnames[: fn.__code__.co_argcount]]
    if isinstance(fn, types.MethodType):
        params = params[1:]  # a bound method of a handler class: ``self`` is given
    if not params or params[0] not in hints:
        raise TypeError(f"handler {fn.__qualname__} must annotate its request parameter")
    if "return" not in hints:
        raise TypeError(f"handler {fn.__qualname__} must annotate its return type")
    return hints[params[0]], hints["return"]
