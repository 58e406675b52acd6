"""Replicas: one remote name, several processes behind it, calls spread over them.

A ``tcp://`` remote whose host is a name (``tcp://catalog:9100``) may stand for
several processes: each address the name resolves to is a replica. ``Replicas``
keeps one transport per address (made by ``make``: the TCP transport of the name
makes them, one connection each) and

- looks the name up with the system's resolver (``loop.getaddrinfo``: the loop never
  blocks) at the first call, every ``every`` seconds after (NANO_RESOLVE_EVERY), and
  soon after a connection is lost; an address that appears is adopted, one that is
  gone is retired once its calls in flight are answered. A look-up that fails keeps
  the replicas known. A name that does not resolve at all leaves its calls failing
  at once with ``Unsent`` (``catalog has no reachable replica (catalog does not
  resolve: ...)``), never a crash, and the look-ups go on;
- sends each call to the better of two replicas drawn at random among the usable
  ones: the one with fewer calls in flight (the power of two choices). A replica
  whose connection attempts fail (refused, or a handshake that fails: another
  secret) is set aside while its back-off lasts, logged once per outage; one that
  said it is going away (GOAWAY: a drain) gets no new call;
- fails no call another replica could take: a call not sent (``Unsent``), or
  declined by a replica going away, goes to another one; a call cut off after it was
  sent goes to another only if its contract is idempotent, else it is
  ``Interrupted`` (it may have run).

With one address a call goes straight to its connection, in one coroutine, as to a
transport whose host is an address.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import socket
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import msgspec

from nanobuild.runtime.addresses import Address
from nanobuild.runtime.errors import NanoError, Unsent
from nanobuild.runtime.transports.base import ConnectionDropped, Declined, Target

log = logging.getLogger("nanobuild.tcp")

SETTLE = 0.2  # seconds: connections lost together are looked up for once


def is_ip(host: str) -> bool:
    """Whether ``host`` is an IP address (one process), not a name (maybe several)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class Connection(Protocol):
    """An open connection to one replica, as the fast path uses it."""

    loop: asyncio.AbstractEventLoop

    def call(self, target: Target, request: Any, deadline: float) -> Awaitable[Any]:
        """Send; the raw answer, or ``ConnectionDropped`` / ``Declined`` / its error."""


class Replica(Protocol):
    """One process behind the name: what ``Replicas`` needs of its transport."""

    address: Address
    on_lost: Callable[[], None] | None

    @property
    def ready(self) -> Connection | None:
        """The open connection new calls go on, if any."""

    @property
    def outstanding(self) -> int:
        """Calls in flight on it."""

    def usable(self, now: float) -> bool:
        """Connected, or free to try (no back-off pause, not going away)."""

    async def send(self, target: Target, request: Any, deadline: float) -> Any:
        """Send once: the raw answer; ``Unsent``, ``ConnectionDropped`` or ``Declined``."""

    async def reachable(self, timeout: float) -> str:
        """``""`` if calls can reach it within ``timeout``, else why not (no address)."""

    async def retire(self) -> None:
        """Let the calls in flight be answered, then close."""

    async def aclose(self) -> None:
        """Close at once."""


class Replicas:
    """The replicas behind ``address``'s host name, and the choice of one per call."""

    def __init__(
        self, address: Address, make: Callable[[Address], Replica], *, every: float
    ) -> None:
        self.address = address
        self.every = every
        self._make = make
        self.replicas: dict[str, Replica] = {}  # by the address the name resolved to
        self._live: list[Replica] = []  # the same, in the resolver's order
        self.problem = ""  # why the latest look-up failed ("" if it did not)
        self.lookups = 0  # look-ups done so far
        self._looked_up: asyncio.Event | None = None  # set once the first one is done
        self._wake: asyncio.Event | None = None  # set when a connection is lost
        self._keeper: asyncio.Task[None] | None = None
        self._retiring: set[asyncio.Task[None]] = set()
        self._closed = False

    # -- calls

    def route(self, target: Target) -> Callable[[Any], Awaitable[Any]]:
        """The route for ``target``: one replica's open connection straight away, if
        there is one replica; else (or before the first look-up) ``handle_call``."""
        read = target.read
        handle_call = self.handle_call
        again = self._again

        async def route(request: Any) -> Any:
            live = self._live
            connection = live[0].ready if len(live) == 1 else None
            if connection is None:
                return await handle_call(target, request)
            deadline = connection.loop.time() + target.timeout
            try:
                body = await connection.call(target, request, deadline)
            except (ConnectionDropped, Declined) as exc:
                body = await again(target, request, deadline, live[0], exc)
            try:
                return read(body)
            except msgspec.DecodeError as exc:
                raise target.wrong_answer(exc) from exc

        return route

    async def handle_call(self, target: Target, request: Any) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + target.timeout
        await self._first_look_up(target, deadline)
        return target.decode(await self._send(target, request, deadline, []))

    async def _again(
        self,
        target: Target,
        request: Any,
        deadline: float,
        replica: Replica,
        exc: Exception,
    ) -> Any:
        """After the fast path's one replica dropped or declined the call."""
        if isinstance(exc, ConnectionDropped) and not target.idempotent:
            raise self._cut_off(target, replica)
        return await self._send(target, request, deadline, [replica], exc)

    async def _send(
        self,
        target: Target,
        request: Any,
        deadline: float,
        tried: list[Replica],
        failed: Exception | None = None,
    ) -> Any:
        """Send to one replica after another until one answers: each is tried once
        first, then one more round; the last failure if none answers."""
        error: NanoError | None = None
        may_have_run = isinstance(failed, ConnectionDropped)
        loop = asyncio.get_running_loop()
        for _ in range(len(self._live) + 1):
            replica = self._pick(loop.time(), tried)
            if replica is None:
                break
            tried.append(replica)
            try:
                return await replica.send(target, request, deadline)
            except Unsent as exc:  # nothing left: another replica may take it
                error = exc
            except Declined:  # it is draining, and said it did not run this one
                error = target.unsent(f"{replica.address} is going away and did not take it")
            except ConnectionDropped:
                if not target.idempotent:
                    raise self._cut_off(target, replica) from None
                may_have_run = True
        if may_have_run:
            why = f": {error.message}" if error is not None else ""
            raise target.interrupted(f"{self.address} dropped it, no replica took it again{why}")
        raise error if error is not None else target.unsent(self._none(target))

    def _cut_off(self, target: Target, replica: Replica) -> NanoError:
        return target.interrupted(
            f"the connection to {replica.address} (of {self.address}) dropped mid-call "
            "(not idempotent, so not sent again)"
        )

    def _none(self, target: Target) -> str:
        """Why no replica can take a call: ``catalog has no reachable replica (...)``."""
        why = self.problem or f"{self.address.host} resolves to no address"
        return f"{target.service} has no reachable replica ({why})"

    def _pick(self, now: float, tried: list[Replica]) -> Replica | None:
        """The replica for the next attempt: one not tried yet, usable if any is (of
        two, the one with fewer calls in flight); else a usable one tried already."""
        fresh = [r for r in self._live if r not in tried]
        choice = [r for r in fresh if r.usable(now)] or fresh
        if not choice:
            choice = [r for r in self._live if r.usable(now)]
        if len(choice) < 2:
            return choice[0] if choice else None
        first, second = random.sample(choice, 2)
        return first if first.outstanding <= second.outstanding else second

    # -- looking the name up

    async def reachable(self, timeout: float) -> str:
        """The readiness hook (``Transport.reachable``): ``""`` once one replica is
        reachable within ``timeout``, else why none is, in words naming no address."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if self._closed:
            return "its transport is closed"
        try:
            await asyncio.wait_for(self._started().wait(), timeout)
        except asyncio.TimeoutError:
            return "its host name was not resolved in time"
        if not self._live:
            return "its host name does not resolve"
        left = max(deadline - loop.time(), 0.01)
        reasons = await asyncio.gather(*(r.reachable(left) for r in self._live))
        return "" if "" in reasons else f"no replica is reachable ({reasons[0]})"

    def _started(self) -> asyncio.Event:
        """Start looking up, once; the event set when the first look-up is done."""
        if self._looked_up is None:
            self._looked_up, self._wake = asyncio.Event(), asyncio.Event()
            self._keeper = asyncio.get_running_loop().create_task(self._keep())
        return self._looked_up

    async def _first_look_up(self, target: Target, deadline: float) -> None:
        """Start looking up (once), and wait for the first look-up, within ``deadline``."""
        if self._closed:
            raise target.unsent(f"the transport to {self.address} is closed")
        looked_up = self._started()
        if looked_up.is_set():
            return
        left = deadline - asyncio.get_running_loop().time()
        try:
            await asyncio.wait_for(looked_up.wait(), left)
        except asyncio.TimeoutError:
            raise target.unsent(
                f"{target.service} has no reachable replica "
                f"({self.address.host} was not resolved within {target.timeout:g} s)"
            ) from None

    async def _keep(self) -> None:
        """Look the name up now, then every ``every`` s, and soon after a loss."""
        assert self._looked_up is not None and self._wake is not None
        while not self._closed:
            await self.look_up()
            self._looked_up.set()
            try:
                await asyncio.wait_for(self._wake.wait(), self.every)
                await asyncio.sleep(SETTLE)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()

    def lost(self) -> None:
        """A replica's connection closed: look the name up again soon."""
        if self._wake is not None:
            self._wake.set()

    async def look_up(self) -> None:
        """Resolve the name; adopt the addresses that appeared, retire those gone."""
        loop = asyncio.get_running_loop()
        host, port = self.address.host, self.address.port
        self.lookups += 1
        try:
            found = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            self._failed(exc)
            return
        if self.problem:
            log.info("tcp: %s resolves again", host)
            self.problem = ""
        self._adopt(list(dict.fromkeys(str(info[4][0]) for info in found)))

    def _failed(self, exc: BaseException) -> None:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        if not self.problem:  # one line per outage, not one per look-up
            kept = f"keeping its {len(self._live)} replicas" if self._live else "no call is sent"
            log.warning(
                "tcp: %s (%s) does not resolve: %s (%s; looking again every %g s)",
                self.address.host,
                self.address,
                why,
                kept,
                self.every,
            )
        self.problem = f"{self.address.host} does not resolve: {why}"

    def _adopt(self, hosts: list[str]) -> None:
        known = self.replicas
        came = [h for h in hosts if h not in known]
        gone = [h for h in known if h not in hosts]
        for host in came:
            replica = known[host] = self._make(Address("tcp", host, self.address.port))
            replica.on_lost = self.lost
        for host in gone:
            task = asyncio.get_running_loop().create_task(known.pop(host).retire())
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)
        self._live = [known[h] for h in hosts]
        if came or gone:
            log.info(
                "tcp: %s resolves to %s%s%s",
                self.address,
                ", ".join(hosts),
                f" (new: {', '.join(came)})" if self.lookups > 1 and came else "",
                f" (gone: {', '.join(gone)})" if gone else "",
            )

    async def aclose(self) -> None:
        """Stop looking up; close every replica (calls in flight get ``Interrupted``)."""
        self._closed = True
        if self._keeper is not None:
            self._keeper.cancel()
        for task in list(self._retiring):
            task.cancel()
        replicas, self.replicas, self._live = list(self.replicas.values()), {}, []
        for replica in replicas:
            await replica.aclose()
