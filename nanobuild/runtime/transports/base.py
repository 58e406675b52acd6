"""The one seam between ``call`` and the network: ``Transport.handle_call``.

In the spirit of httpx's ``BaseTransport.handle_request``: a transport takes a call
and gives back the response or raises a ``NanoError``; the caller never knows
which transport it was. In memory there is no transport at all (a route is the
handler itself). For a remote service, wiring installs routes made here::

    transport = TcpTransport("tcp://10.0.0.7:9100")
    routes[GetProduct] = remote_route(transport, "catalog", GetProduct, timeout=2.0)
    ...
    product = await call(GetProduct(id="x"))   # the same line either way

The pieces transports share live here too: addresses, the secret, the call's
``Target``, the reconnection ``Backoff``, and timeouts without a task per call —
``Deadlines`` for the many calls in flight on one connection, ``Deadline`` for a
call that holds a connection of its own.
"""

from __future__ import annotations

import abc
import asyncio
import heapq
import os
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType
from typing import Any

import msgspec

from nanobuild.runtime.addresses import Address
from nanobuild.runtime.codecs import MSGPACK, type_name
from nanobuild.runtime.contracts import response_type as declared_response
from nanobuild.runtime.errors import (
    TIMEOUT_CAVEAT,
    Internal,
    Interrupted,
    SettingsError,
    Timeout,
    Unsent,
)
from nanobuild.runtime.settings import DEFAULT_TIMEOUT, Settings, check_secret


class NotSent(Exception):
    """Nothing of the call left this process: no connection, or none in time."""


class ConnectionDropped(Exception):
    """The connection a call was sent on closed before its answer came."""


class Declined(Exception):
    """The remote is going away (draining) and said it did not run the call: it may be
    sent again, to another replica, whether or not it is idempotent."""


# -- the secret


def secret_from(secret: str | None) -> bytes:
    """The shared secret: ``secret`` if given, else NANO_SECRET's; never empty, never weak."""
    value = secret if secret is not None else Settings.from_env().secret
    if not value:
        raise SettingsError(
            "calls between nanobuild processes need NANO_SECRET: "
            "set it to the same value in every process"
        )
    return check_secret(value, "the secret").encode()  # NANO_SECRET's was checked as read


# -- the seam


class Target:
    """One remote contract as a transport sends it; built once per route, not per call."""

    __slots__ = ("idempotent", "name", "read", "response", "service", "timeout")

    def __init__(
        self,
        service: str,
        contract: type,
        response: Any,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        idempotent: bool = False,
    ) -> None:
        if not timeout > 0:
            raise SettingsError(f"the timeout of {service}.{contract.__name__} must be positive")
        self.service = service
        self.name = contract.__name__
        self.response = response
        self.timeout = timeout
        self.idempotent = idempotent
        self.read = MSGPACK.decoder(response).decode  # raises msgspec.DecodeError

    def __repr__(self) -> str:
        return f"Target({self.service}.{self.name})"

    def decode(self, body: Any) -> Any:
        """The response in ``body`` (MessagePack), or ``Internal`` if it is not one."""
        try:
            return self.read(body)
        except msgspec.DecodeError as exc:
            raise self.wrong_answer(exc) from exc

    def wrong_answer(self, exc: msgspec.DecodeError) -> Internal:
        """``Internal`` for an answer that ``read`` could not decode."""
        return Internal(
            f"the answer is not a {type_name(self.response)}: {exc}",
            service=self.service,
            contract=self.name,
        )

    # The one mapping from what went wrong in a transport to what the caller catches,
    # as httpx's ``map_httpcore_exceptions``: every transport raises through these.

    def unsent(self, reason: str) -> Unsent:
        """``Unsent``: the call did not leave this process, for ``reason``."""
        return Unsent(
            f"{reason}; {self.name} was not sent (it did not run)",
            service=self.service,
            contract=self.name,
        )

    def interrupted(self, reason: str) -> Interrupted:
        """``Interrupted``: the call was sent, then cut off for ``reason``."""
        return Interrupted(
            f"{reason}; {self.name} was sent and may have run",
            service=self.service,
            contract=self.name,
        )

    def timed_out(self, timeout: float) -> Timeout:
        """``Timeout`` for this contract, after ``timeout`` seconds."""
        return Timeout(
            f"{self.service} did not answer {self.name} within {timeout:g} s; "
            f"{TIMEOUT_CAVEAT.format(self.service)}",
            service=self.service,
            contract=self.name,
        )

    def failed(self, exc: NotSent | ConnectionDropped) -> Unsent | Interrupted:
        """The caller's error for a transport's own failure ``exc``."""
        if isinstance(exc, NotSent):
            return self.unsent(str(exc))
        return self.interrupted(str(exc))


class Transport(abc.ABC):
    """Carries calls to the services of one remote process."""

    address: Address
    # the services reached through it, as ``remote_route`` finds them: what /readyz names
    services: tuple[str, ...] = ()

    @abc.abstractmethod
    async def handle_call(self, target: Target, request: Any) -> Any:
        """Run ``request`` remotely and return the response, decoded.

        Raises what the remote handler raised (the same ``NanoError`` class, located
        at its service and contract); ``Unsent`` if the remote cannot be reached (the
        call did not run); ``Interrupted`` if the connection dropped mid-call and
        ``target`` is not idempotent (it may have run); ``Timeout`` if no answer came
        within ``target.timeout`` seconds. Never hangs.
        """

    def route(self, target: Target) -> Callable[[Any], Awaitable[Any]]:
        """The route for ``target``: ``handle_call(target, request)`` as a one-argument call.

        A transport may return a function of its own that does what ``handle_call``
        does without the extra coroutine in between (it runs for every call).
        """
        handle_call = self.handle_call

        async def route(request: Any) -> Any:
            return await handle_call(target, request)

        return route

    async def reachable(self, timeout: float) -> str:
        """Whether calls can reach the remote now: ``""`` if so, else a short reason.

        The readiness hook (``runtime.health``, ``/readyz``): answered within about
        ``timeout`` seconds, never hanging. The reason is shown to the public, so it
        never names an address (``unreachable`` words one from what went wrong); the
        transport's log line names it.
        """
        return ""  # a transport without connections reaches its remote whenever asked

    async def aclose(self) -> None:
        """Close connections; calls still in flight get ``Interrupted``."""
        return None  # a transport without connections has nothing to close

    async def __aenter__(self) -> Transport:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def remote_route(
    transport: Transport,
    service: str,
    contract: type,
    response: Any = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    idempotent: bool | None = None,
) -> Callable[[Any], Awaitable[Any]]:
    """The route ``call`` uses for ``contract`` when ``service`` runs behind ``transport``.

    ``response`` defaults to the type the contract declares (``Contract[Response]``);
    ``idempotent`` to the contract's own ``idempotent`` class variable.
    """
    target = Target(
        service,
        contract,
        declared_response(contract) if response is None else response,
        timeout=timeout,
        idempotent=getattr(contract, "idempotent", False) if idempotent is None else idempotent,
    )
    if service not in transport.services:
        transport.services = (*transport.services, service)
    route = transport.route(target)
    route.__qualname__ = f"remote_route.<{service}.{target.name} via {transport.address}>"
    return route


def remote_routes(
    transport: Transport,
    service: str,
    contracts: Iterable[type],
    *,
    timeout: float = DEFAULT_TIMEOUT,
) -> dict[type, Callable[[Any], Awaitable[Any]]]:
    """A route for each of ``service``'s ``contracts``, all through ``transport``.

    The table wiring merges into the route table for a service placed elsewhere.
    """
    return {c: remote_route(transport, service, c, timeout=timeout) for c in contracts}


def unreachable(exc: BaseException | None) -> str:
    """Why a connection attempt failed, in a few words that name no address.

    asyncio's own messages name the address (``Connect call failed ('10.0.0.7',
    9100)``), so the reason is worded from the exception's class and errno alone.
    """
    if isinstance(exc, socket.gaierror):
        return "its host name does not resolve"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return "no connection in time"
    if isinstance(exc, OSError) and exc.errno:
        return f"cannot connect: {os.strerror(exc.errno)}"
    return "cannot connect"


# -- shared machinery


class Backoff:
    """When the next connection attempt may start, after attempts that failed.

    The first attempt after a success is immediate; each failure doubles the pause
    (``first`` .. ``cap`` seconds), so a dead remote is probed a few times a second
    at most, and one that comes back is found within ``cap``.
    """

    def __init__(self, *, first: float = 0.05, cap: float = 1.0) -> None:
        self.first = first
        self.cap = cap
        self.failures = 0
        self.reason = ""  # why the last attempt failed
        self.next_attempt = 0.0  # loop time

    def failed(self, reason: str, now: float) -> None:
        self.failures += 1
        self.reason = reason
        self.next_attempt = now + min(self.cap, self.first * 2 ** (self.failures - 1))

    def succeeded(self) -> None:
        self.failures = 0
        self.reason = ""
        self.next_attempt = 0.0

    async def pause(self, loop: asyncio.AbstractEventLoop) -> None:
        """Sleep until the next attempt is allowed."""
        delay = self.next_attempt - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)


class Deadlines:
    """When each call in flight times out, kept with a single loop timer.

    A loop timer per call would cost a handle (and a context copy) per call and a
    cancel per answer, on the path every call takes. Here a call costs a push onto
    a heap of (deadline, key); an answered call is just forgotten (``discard``), and
    the heap drops it when it reaches the top, or is rebuilt from the live calls
    once it holds mostly answered ones. ``expire(key)`` runs for each live call
    whose deadline has passed; the one timer is set for the earliest deadline.
    """

    # the loop runs a timer up to one clock tick early; a deadline that close has passed
    TICK = time.get_clock_info("monotonic").resolution

    def __init__(self, loop: asyncio.AbstractEventLoop, expire: Callable[[int], None]) -> None:
        self._loop = loop
        self._expire = expire
        self._live: dict[int, float] = {}
        self._heap: list[tuple[float, int]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")

    def add(self, key: int, deadline: float) -> None:
        """Call ``expire(key)`` at ``deadline`` (loop time), unless discarded before."""
        self._live[key] = deadline
        heap = self._heap
        heapq.heappush(heap, (deadline, key))
        if deadline < self._timer_at:
            self._set_timer(deadline)
        elif len(heap) > 2 * len(self._live) + 64:
            self._heap = [(when, k) for k, when in self._live.items()]
            heapq.heapify(self._heap)

    def discard(self, key: int) -> None:
        """Forget ``key`` (its call was answered)."""
        self._live.pop(key, None)

    def clear(self) -> None:
        """Forget every call and stop the timer."""
        self._live.clear()
        self._heap.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer, self._timer_at = None, float("inf")

    def _set_timer(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = self._loop.call_at(when, self._ring)

    def _ring(self) -> None:
        self._timer, self._timer_at = None, float("inf")
        now = self._loop.time() + self.TICK
        heap, live = self._heap, self._live
        while heap and heap[0][0] <= now:
            deadline, key = heapq.heappop(heap)
            if live.get(key) == deadline:
                del live[key]
                self._expire(key)
        while heap and heap[0][1] not in live:
            heapq.heappop(heap)
        if heap:
            self._set_timer(heap[0][0])


class Deadline:
    """``async with Deadline(t, on_timeout)``: cancel the body after ``t`` seconds.

    The current task is cancelled from a loop timer, so no task is spawned per call;
    the cancellation becomes ``on_timeout()``'s exception. (``asyncio.timeout`` does
    the same from Python 3.11 on; this one runs on 3.10 too.)
    """

    __slots__ = ("_fired", "_handle", "_on_timeout", "_task", "_timeout")

    def __init__(self, timeout: float, on_timeout: Callable[[], BaseException]) -> None:
        self._timeout = timeout
        self._on_timeout = on_timeout
        self._fired = False

    async def __aenter__(self) -> Deadline:
        task = asyncio.current_task()
        assert task is not None, "a Deadline runs inside a task"
        self._task = task
        self._handle = asyncio.get_running_loop().call_later(self._timeout, self._fire)
        return self

    def _fire(self) -> None:
        self._fired = True
        self._task.cancel()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._handle.cancel()
        if self._fired and exc_type is asyncio.CancelledError:
            if sys.version_info >= (3, 11):
                self._task.uncancel()
            raise self._on_timeout() from None
