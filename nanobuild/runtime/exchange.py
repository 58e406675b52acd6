"""The request context: what a handler may know of the HTTP request it answers, and say back.

    from nanobuild.runtime import this_call

    @handler
    async def create_user(req: CreateUser) -> User:
        call = this_call(req)
        token = call.headers.get("Authorization")     # case-insensitive; "" never, None if absent
        tenant = call.context.get("tenant")           # the caller's per-call context
        call.status = 201                             # the success status of this answer
        call.set_header("Location", f"/users/{user.id}")

``this_call(req)`` is the exchange of the HTTP request ``req`` came in by, on the HTTP
face of this process: a REST route or ``POST /api/<service>/<Contract>``. Any other
request — one made by ``call()`` in memory, or one that arrived over the TCP
transport from another nanobuild process — has no HTTP request: its headers are
empty, and a status or header set on it goes nowhere. What does cross every call, in
memory and between processes, is the per-call context (``context``): to hand a header
on to the services a handler calls, put it there (``context.extended``).

The face binds the exchange to the decoded request object (by identity) for as long
as the handler runs, in a context variable of the call's task (copied into a ``def``
handler's thread): a handler that never asks costs one set and one reset per HTTP
request, and ``call()`` in memory costs nothing more at all.
The headers are parsed only when read. nanobuild's own headers (``nano-secret``,
``nano-context``) are never shown to the app.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from nanobuild.runtime import context

SECRET_HEADER = b"nano-secret"  # the workspace secret, on the HTTP face and its transport
OWN_HEADERS = frozenset({SECRET_HEADER, context.HEADER})  # nanobuild's, never the app's

RawHeaders = Sequence[tuple[bytes, bytes]]  # as ASGI gives them: lowercase names


class Headers(Mapping[str, str]):
    """A request's headers, read-only, by case-insensitive name.

    A header sent more than once reads as its values joined by ``", "``, as HTTP
    allows; ``get_all`` gives them one by one.
    """

    __slots__ = ("_raw", "_values")

    def __init__(self, raw: RawHeaders = ()) -> None:
        self._raw = raw
        self._values: dict[str, list[str]] | None = None

    def _parsed(self) -> dict[str, list[str]]:
        values = self._values
        if values is None:
            values = self._values = {}
            for name, value in self._raw:
                if name.lower() not in OWN_HEADERS:
                    key = name.decode("latin-1").lower()
                    values.setdefault(key, []).append(value.decode("latin-1"))
        return values

    def __getitem__(self, name: str) -> str:
        return ", ".join(self._parsed()[name.lower()])

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._parsed()

    def __iter__(self) -> Iterator[str]:
        return iter(self._parsed())

    def __len__(self) -> int:
        return len(self._parsed())

    def get_all(self, name: str) -> list[str]:
        """Every value of the header ``name``, in the order sent (``[]`` if absent)."""
        return list(self._parsed().get(name.lower(), ()))

    def __repr__(self) -> str:
        return f"Headers({dict(self)!r})"


class Exchange:
    """One HTTP request as its handler sees it, and what the handler adds to the answer.

    ``headers``: the request's headers (``Headers``); ``method`` and ``path``: its
    method and path (``""`` when there was no HTTP request); ``context``: the caller's
    per-call context; ``status``: the success status to answer with (None: the
    route's own, 200 by default); ``set_header``/``add_header``: response headers.

    The status applies to a REST route's answer; ``POST /api/...`` is the call
    protocol, whose success is always 200 (its headers are sent, though).
    """

    __slots__ = ("_status", "headers", "http", "method", "path", "response_headers")

    def __init__(self, raw: RawHeaders = (), method: str = "", path: str = "") -> None:
        self.headers = Headers(raw)
        self.method = method
        self.path = path
        self.http = bool(method)  # whether an HTTP request of this process is behind it
        self._status: int | None = None
        self.response_headers: list[tuple[str, str]] = []

    @property
    def context(self) -> context.Context:
        """The caller's per-call context (``nanobuild.runtime.context``)."""
        return context.current()

    @property
    def status(self) -> int | None:
        return self._status

    @status.setter
    def status(self, status: int) -> None:
        # errors are raised as NanoErrors, which carry their own status
        if not isinstance(status, int) or isinstance(status, bool) or not 200 <= status < 400:
            raise ValueError(f"a success status is 200-399, not {status!r}; raise a NanoError")
        self._status = status

    def set_header(self, name: str, value: str) -> None:
        """Send ``name: value`` with the answer, in place of any value set before."""
        _check_header(name, value)
        lowered = name.lower()
        kept = [(n, v) for n, v in self.response_headers if n.lower() != lowered]
        self.response_headers = [*kept, (name, value)]

    def add_header(self, name: str, value: str) -> None:
        """Send ``name: value`` with the answer, beside any value set before (Set-Cookie)."""
        _check_header(name, value)
        self.response_headers.append((name, value))

    def encoded_headers(self) -> list[tuple[bytes, bytes]]:
        """The response headers set, as ASGI sends them."""
        return [
            (n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in self.response_headers
        ]


def _check_header(name: Any, value: Any) -> None:
    if not isinstance(name, str) or not isinstance(value, str):
        raise TypeError(f"a header's name and value are text, not {name!r}: {value!r}")
    if not name or any(c in name for c in ":\r\n ") or any(c in value for c in "\r\n"):
        raise ValueError(f"{name!r}: {value!r} is not a header")
    if name.lower().encode("latin-1", "replace") in OWN_HEADERS:
        raise ValueError(f"{name} is nanobuild's own header")


# (the decoded request, its exchange), while its handler runs: a context variable, not
# a table keyed by id(), which would raise an audit event per call in a binary
_bound: contextvars.ContextVar[tuple[object, Exchange] | None] = contextvars.ContextVar(
    "nanobuild.exchange", default=None
)


def this_call(request: object) -> Exchange:
    """The exchange of the HTTP request ``request`` came in by; an empty one if none.

    Pass the request the handler was given: a request made by ``call()`` in memory
    is another object, and has no HTTP request behind it.
    """
    found = _bound.get()
    if found is not None and found[0] is request:
        return found[1]
    return Exchange()


def bind(request: object, exchange: Exchange) -> contextvars.Token[tuple[object, Exchange] | None]:
    """Make ``exchange`` the one ``this_call(request)`` returns (the HTTP face, per call)."""
    return _bound.set((request, exchange))


def unbind(token: contextvars.Token[tuple[object, Exchange] | None]) -> None:
    _bound.reset(token)
