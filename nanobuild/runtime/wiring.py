"""Wiring: from a plain description of the services (``AppSpec``) to a running route table.

The build side describes the workspace as an ``AppSpec`` — which function handles
each contract, which hooks each service has, which contracts are public, in which
order services start.
``nanobuild serve`` builds that description at run time; the bundled binary carries
it as a literal in its generated ingress module. Both then call ``wire``, so there is
one implementation of wiring, and the ingress stays a readable table.
"""

from __future__ import annotations

import importlib
import inspect
import os
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

import msgspec

from nanobuild.runtime import router
from nanobuild.runtime.contracts import (
    HOOK_MARK,
    handler_types,
    is_contract,
    is_handler,
    response_type,
)
from nanobuild.runtime.errors import Internal, NanoError
from nanobuild.runtime.spec import AppSpec, ServiceSpec

if TYPE_CHECKING:
    from nanobuild.runtime.placement import Placement


class WiringError(Exception):
    """The services cannot be wired: a handler is missing, doubled or mistyped."""


class Endpoint:
    """One contract of one service, and everything needed to serve it."""

    __slots__ = ("contract", "handler", "name", "public", "request", "response", "route", "service")

    def __init__(
        self,
        service: str,
        request: type,
        response: Any,
        handler: Callable[..., Any],
        public: bool,
        route: router.Route | None = None,
    ) -> None:
        self.service = service
        self.name = request.__name__
        self.contract = f"{service}.{self.name}"
        self.request = request
        self.response = response
        self.handler = handler  # for a service that runs elsewhere: its route
        self.public = public
        self.route: router.Route = route or local_route(self, strict=strict_mode())


class Hook(msgspec.Struct, frozen=True):
    service: str
    kind: str  # "startup" or "shutdown"
    fn: Callable[[], Any]


class Node:
    """The services wired into this process: endpoints, hooks and the installed routes."""

    def __init__(
        self,
        spec: AppSpec,
        endpoints: list[Endpoint],
        hooks: list[Hook],
        remote: list[Endpoint] = (),  # type: ignore[assignment]
        transports: Any = None,
    ) -> None:
        self.spec = spec
        self.endpoints = {(e.service, e.name): e for e in endpoints}  # run here
        self.remote = {(e.service, e.name): e for e in remote}  # run elsewhere
        self.hooks = hooks
        self.transports = transports  # the connections to other processes, if any
        self.started: list[str] = []

    def install(self) -> None:
        """Route every ``call`` in this process through this node."""
        endpoints = [*self.endpoints.values(), *self.remote.values()]
        router.install({e.request: e.route for e in endpoints})

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
        if self.transports is not None:
            await self.transports.aclose()
        if failures:
            raise failures[0]

    def _hooks(self, service: str, kind: str) -> Iterator[Hook]:
        return (h for h in self.hooks if h.service == service and h.kind == kind)


class StartupFailed(Exception):
    """A service's start-up hook raised; the process must not serve."""

    def __init__(self, service: str, cause: BaseException) -> None:
        super().__init__(f"service {service} failed to start: {type(cause).__name__}: {cause}")
        self.service = service


def wire(spec: AppSpec, placement: Placement | None = None) -> Node:
    """Import the handlers and hooks of the services placed here, route the others to
    where they run, and build the node. Without a placement, every packed service is here.
    """
    local = placement.local if placement else (spec.packed or [s.name for s in spec.services])
    endpoints: list[Endpoint] = []
    hooks: list[Hook] = []
    for service in spec.services:
        if service.name in local:
            endpoints += _local_endpoints(service)
            hooks += _hooks(service)
    remote: list[Endpoint] = []
    transports = None
    if placement and placement.remotes:
        from nanobuild.runtime.transports import Transports  # only split processes need it

        transports = Transports(secret=os.environ.get("NANO_SECRET"))
        for name, address in placement.remotes.items():
            connection = transports.get(address)
            timeout = placement.timeout(name)
            remote += _remote_endpoints(spec.service(name), connection, timeout)
    node = Node(spec, endpoints, hooks, remote, transports)
    node.install()
    return node


def _local_endpoints(service: ServiceSpec) -> list[Endpoint]:
    endpoints = []
    for contract, target in service.handlers.items():
        fn = resolve(target)
        if not is_handler(fn):
            raise WiringError(f"{target} is not marked @handler")
        try:
            request, response = handler_types(fn)
        except (NameError, TypeError) as exc:  # an annotation that does not resolve
            raise WiringError(f"{target}: {exc}") from exc
        if not is_contract(request) or request.__name__ != contract:
            raise WiringError(
                f"{target} should handle {service.name}.{contract} but takes {request!r}: "
                "the wiring is older than the code; rebuild it"
            )
        public = contract in service.public
        endpoints.append(Endpoint(service.name, request, response, fn, public))
    return endpoints


def _hooks(service: ServiceSpec) -> list[Hook]:
    hooks = []
    for target in service.hooks:
        fn = resolve(target)
        kind = getattr(fn, HOOK_MARK, None)
        if kind is None:
            raise WiringError(f"{target} is not marked @on_startup or @on_shutdown")
        hooks.append(Hook(service.name, kind, fn))
    return hooks


def _remote_endpoints(service: ServiceSpec, transport: Any, timeout: float) -> list[Endpoint]:
    """The contracts of ``service``, each routed over ``transport`` to where it runs."""
    from nanobuild.runtime.transports import remote_route

    kernel = f"{service.package}.kernel"
    try:
        module = importlib.import_module(kernel)
    except ImportError:
        raise WiringError(
            f"this binary does not carry {kernel}: {service.name} cannot be reached from here"
        ) from None
    endpoints = []
    for contract in service.handlers:
        request = getattr(module, contract, None)
        if not isinstance(request, type) or not is_contract(request):
            raise WiringError(
                f"{kernel} has no contract {contract}: the wiring is older than the code"
            )
        route = remote_route(transport, service.name, request, timeout=timeout)
        public = contract in service.public
        endpoints.append(
            Endpoint(service.name, request, response_type(request), route, public, route=route)
        )
    return endpoints


def resolve(target: str) -> Any:
    """The function a ``module:function`` name stands for."""
    module_name, _, name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # a handler module may fail to import in any way at all
        raise WiringError(f"cannot import {module_name}: {type(exc).__name__}: {exc}") from exc
    try:
        return getattr(module, name)
    except AttributeError:
        raise WiringError(
            f"{module_name} has no {name}: the wiring is older than the code"
        ) from None


def strict_mode() -> bool:
    """``NANO_STRICT=1``: every in-memory call crosses the wire encoding, as if split."""
    return os.environ.get("NANO_STRICT", "") not in ("", "0", "false", "no")


def local_route(endpoint: Endpoint, *, strict: bool) -> router.Route:
    """The callable ``call`` uses to run ``endpoint`` in this process."""
    fn = endpoint.handler
    if strict:
        return _strict_route(endpoint)
    if inspect.iscoroutinefunction(fn):
        return fn  # ``call`` returns the handler's own coroutine: nothing in between

    async def run_sync(request: Any) -> Any:
        # sync handlers run inline on the loop: they cost a call, and must not block
        return fn(request)

    return run_sync


def _strict_route(endpoint: Endpoint) -> router.Route:
    """Round-trip request, response and error through MessagePack, as a remote call would."""
    fn = endpoint.handler
    is_async = inspect.iscoroutinefunction(fn)
    request_decoder: msgspec.msgpack.Decoder[Any] = msgspec.msgpack.Decoder(endpoint.request)
    response_decoder: msgspec.msgpack.Decoder[Any] = msgspec.msgpack.Decoder(endpoint.response)
    encode = msgspec.msgpack.encode

    async def strict(request: Any) -> Any:
        request = request_decoder.decode(encode(request))
        try:
            result = await fn(request) if is_async else fn(request)
        except NanoError as exc:
            exc.located(endpoint.service, endpoint.name)
            raise NanoError.from_wire(exc.to_wire()) from exc
        except Exception as exc:
            raise Internal(
                f"{type(exc).__name__}: {exc}", service=endpoint.service, contract=endpoint.name
            ) from exc
        try:
            return response_decoder.decode(encode(result))
        except (msgspec.ValidationError, TypeError) as exc:
            raise Internal(
                f"handler {fn.__qualname__} returned a value that is not a "
                f"{_type_name(endpoint.response)}: {exc}",
                service=endpoint.service,
                contract=endpoint.name,
            ) from exc

    return strict


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or repr(tp)


async def _run(fn: Callable[[], Any]) -> None:
    result = fn()
    if isinstance(result, Awaitable):
        await result
