"""The services wired into one process: its endpoints, its hooks, and the routes ``call`` takes.

An ``Endpoint`` is one contract of one service as this process knows it: run here
(``local``), with its handler, or elsewhere (``remote``), with the transport's route.
``target`` is what serves a call of it; ``route`` is what ``call()`` takes, which is
``target`` itself unless interceptors are installed (see ``seam``). The ``Node``
holds them all, installs the routes, and runs the services' hooks in order.

Building endpoints from an ``AppSpec`` — importing handlers, reaching transports —
is ``wiring``'s job; this module knows nothing of either.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from nanobuild.runtime import router
from nanobuild.runtime.errors import StartupFailed
from nanobuild.runtime.seam import Interceptor, Observer, Placement, Route, Seam
from nanobuild.runtime.settings import DEFAULT_THREADS, Settings
from nanobuild.runtime.spec import AppSpec

Handler = Callable[..., object]  # a @handler function: takes its contract, returns its response
HookFunction = Callable[[], object]


class Closable(Protocol):
    """Something the node closes at shutdown, after the hooks (the transports)."""

    async def aclose(self) -> None: ...


class Endpoint:
    """One contract of one service, and everything needed to serve or reach it."""

    __slots__ = (
        "contract",
        "handler",
        "name",
        "placement",
        "public",
        "request",
        "response",
        "route",
        "seam",
        "service",
        "target",
        "via",
    )

    def __init__(
        self,
        service: str,
        request: type,
        response: object,
        *,
        public: bool,
        target: Route,
        handler: Handler | None = None,
        via: str = "memory",
    ) -> None:
        self.service = service
        self.name = request.__name__
        self.contract = f"{service}.{self.name}"
        self.request = request
        self.response = response  # a type expression: Product, list[Product], None
        self.public = public
        self.handler = handler  # None for a service that runs elsewhere
        self.placement: Placement = "local" if handler is not None else "remote"
        self.via = via  # how a call of it travels: memory, strict, tcp, http
        self.target = target
        self.route = target
        self.seam: Seam | None = None

    def intercept(
        self, interceptors: Sequence[Interceptor], observer: Observer | None = None
    ) -> None:
        """Send calls of this endpoint through ``observer`` and ``interceptors`` (neither:
        straight to target)."""
        if not interceptors and observer is None:
            self.seam, self.route = None, self.target
            return
        self.seam = Seam(self.service, self.name, self.placement, self.via, interceptors, observer)
        self.route = self.seam.route(self.target)


def local_route(handler: Handler) -> Route:
    """The route that runs ``handler`` in this process: for ``async def``, itself.

    A ``def`` handler runs on the worker pool (``THREADS``), so one that blocks
    stalls only its own thread, never the event loop; there it may ``call_sync``.
    """
    if inspect.iscoroutinefunction(handler):
        return handler  # ``call`` returns the handler's own coroutine: nothing in between
    return thread_route(handler)


class Threads:
    """The bounded pool ``def`` handlers run on: ``size`` workers, made on first use."""

    def __init__(self, size: int = DEFAULT_THREADS) -> None:
        self.size = size
        self._pool: ThreadPoolExecutor | None = None

    def resize(self, size: int) -> None:
        """Use ``size`` workers from now on (``NANO_THREADS``); a running pool is replaced."""
        if size != self.size:
            self.close()
            self.size = size

    def pool(self) -> ThreadPoolExecutor:
        pool = self._pool
        if pool is None:
            pool = self._pool = ThreadPoolExecutor(self.size, thread_name_prefix="nano-handler")
        return pool

    def close(self) -> None:
        """Let the pool's threads end once their calls are done; a new one is made on use."""
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None


THREADS = Threads()


def thread_route(handler: Handler) -> Route:
    """The route that runs the ``def`` ``handler`` on a worker thread, and awaits it there.

    It runs in a copy of the caller's context (the per-call context included), which
    also tells ``call_sync`` the loop to run its calls on.
    """

    async def in_thread(request: object) -> object:
        loop = asyncio.get_running_loop()
        scope = contextvars.copy_context()
        scope.run(router.bind_loop, loop)
        return await loop.run_in_executor(THREADS.pool(), scope.run, handler, request)

    return in_thread


class Hook:
    """One start-up or shutdown function of a service."""

    __slots__ = ("fn", "kind", "service")

    def __init__(self, service: str, kind: str, fn: HookFunction) -> None:
        self.service = service
        self.kind = kind  # "startup" or "shutdown"
        self.fn = fn


class Node:
    """The services wired into this process: endpoints, hooks and the installed routes."""

    def __init__(
        self,
        spec: AppSpec,
        endpoints: Sequence[Endpoint],
        hooks: Sequence[Hook],
        *,
        settings: Settings,
        interceptors: Sequence[Interceptor] = (),
        observer: Observer | None = None,
        closables: Sequence[Closable] = (),
    ) -> None:
        self.spec = spec
        self.settings = settings
        self.interceptors = tuple(interceptors)
        local = [e for e in endpoints if e.placement == "local"]
        self.endpoints = {(e.service, e.name): e for e in local}  # run here
        self.remote = {(e.service, e.name): e for e in endpoints if e.placement == "remote"}
        self.hooks = list(hooks)
        self.closables = list(closables)  # the connections to other processes, if any
        self.started: list[str] = []
        THREADS.resize(settings.threads)
        for endpoint in endpoints:
            endpoint.intercept(self.interceptors, observer)

    def every_endpoint(self) -> list[Endpoint]:
        """Every endpoint this process answers for: its own, then those it reaches."""
        return [*self.endpoints.values(), *self.remote.values()]

    def install(self) -> None:
        """Route every ``call`` in this process through this node."""
        router.install({e.request: e.route for e in self.every_endpoint()})

    async def startup(self) -> None:
        """Run the services' start-up hooks, dependencies first."""
        for service in self.spec.services:
            for hook in self._hooks(service.name, "startup"):
                try:
                    await _run(hook.fn)
                except Exception as exc:
                    raise StartupFailed(service.name, exc) from exc
            self.started.append(service.name)

    async def shutdown(self) -> None:
        """Run the shutdown hooks of the started services, in reverse order.

        Every hook runs even when one before it fails; the first failure is raised
        once all have run.
        """
        failures: list[Exception] = []
        while self.started:
            service = self.started.pop()
            for hook in self._hooks(service, "shutdown"):
                try:
                    await _run(hook.fn)
                except Exception as exc:
                    failures.append(exc)
        for closable in self.closables:
            await closable.aclose()
        THREADS.close()
        if failures:
            raise failures[0]

    def _hooks(self, service: str, kind: str) -> Iterator[Hook]:
        return (h for h in self.hooks if h.service == service and h.kind == kind)


async def _run(fn: HookFunction) -> None:
    result = fn()
    if isinstance(result, Awaitable):
        await result
