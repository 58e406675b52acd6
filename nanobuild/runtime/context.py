"""The per-call context: a small mapping of strings that travels with every call.

Trace ids, a caller's name, a deadline: whatever an interceptor (or a handler)
puts there reaches the services called in turn, in this process or another::

    from nanobuild.runtime import context

    with context.extended({"tenant": "acme"}):
        await call(PlaceOrder(...))          # every call below it sees tenant=acme

    context.current()                        # in a handler: the caller's context

In memory the callee runs in the caller's task and reads the same context variable.
Across processes the TCP transport carries the mapping in each CALL frame, and the
HTTP transport as one ``nano-context`` header (``key=value`` pairs, comma-separated
and percent-encoded, as W3C baggage is). A serving process takes it only from its
trusted peers: the TCP handshake, or the secret on the HTTP face.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from urllib.parse import quote, unquote

from nanobuild.runtime.errors import BadRequest

HEADER = b"nano-context"
MAX_ENTRIES = 32
MAX_KEY = 64  # characters
MAX_VALUE = 1024  # characters

Context = Mapping[str, str]  # a plain dict underneath, which every wire format encodes
EMPTY: Context = {}  # shared: a context is never changed in place, only replaced

_current: contextvars.ContextVar[Context] = contextvars.ContextVar(
    "nanobuild.context", default=EMPTY
)


# ``current()``: the context of the call this code runs in (empty outside any call).
# The variable's own method, with no Python frame around it: every remote call reads it.
current: Callable[[], Context] = _current.get


@contextmanager
def extended(values: Mapping[str, str]) -> Iterator[Context]:
    """Add ``values`` to the context for the calls made inside the ``with`` block."""
    merged = {**_current.get(), **values}
    check(merged)
    token = _current.set(merged)
    try:
        yield _current.get()
    finally:
        _current.reset(token)


def bind(values: Context) -> contextvars.Token[Context]:
    """Make ``values`` the current context (a server, before it runs a call)."""
    return _current.set(values)


def unbind(token: contextvars.Token[Context]) -> None:
    _current.reset(token)


def check(values: Mapping[str, str]) -> None:
    """``BadRequest`` unless ``values`` keeps within the context's limits."""
    if len(values) > MAX_ENTRIES:
        raise BadRequest(f"the call context has {len(values)} entries, over {MAX_ENTRIES}")
    for key, value in values.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise BadRequest("the call context maps strings to strings")
        if not key or len(key) > MAX_KEY or len(value) > MAX_VALUE:
            raise BadRequest(
                f"the call context entry {key[:MAX_KEY]!r} is empty or too long "
                f"(keys up to {MAX_KEY} characters, values up to {MAX_VALUE})"
            )


def to_header(values: Context) -> bytes:
    """``values`` as the ``nano-context`` header's value."""
    return ",".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in values.items()).encode()


def from_header(header: bytes) -> Context:
    """The context a ``nano-context`` header carries; ``BadRequest`` if it is not one."""
    values: dict[str, str] = {}
    text = header.decode("latin-1")
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise BadRequest(f"the nano-context header's entry {item[:MAX_KEY]!r} has no '='")
        values[unquote(key.strip())] = unquote(value.strip())
    check(values)
    return values
