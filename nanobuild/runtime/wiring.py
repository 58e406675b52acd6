"""Wiring: from a plain description of the services (``AppSpec``) to a running ``Node``.

The build side describes the workspace as an ``AppSpec`` — which function handles
each contract, which hooks each service has, which contracts are public, in which
order services start. ``nanobuild serve`` builds that description at run time; the
bundled binary carries it as a literal in its generated ingress module. Both then
call ``wire``, so there is one implementation of wiring, and the ingress stays a
readable table.

This is the top of the runtime's layers: it alone knows every piece — the spec,
the placement, the settings, the transports and the seam — and puts them together.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

from nanobuild.runtime import data, telemetry
from nanobuild.runtime.addresses import Address, parse_address
from nanobuild.runtime.contracts import (
    HOOK_MARK,
    handler_types,
    is_contract,
    is_handler,
    response_type,
)
from nanobuild.runtime.errors import WiringError
from nanobuild.runtime.faults import exception_map, mapping_handler
from nanobuild.runtime.node import Endpoint, Handler, Hook, Node, local_route
from nanobuild.runtime.placement import Placement
from nanobuild.runtime.seam import Interceptor, Observer
from nanobuild.runtime.settings import Settings
from nanobuild.runtime.spec import AppSpec, ServiceSpec

if TYPE_CHECKING:
    from nanobuild.runtime.transports.base import Transport


def wire(
    spec: AppSpec,
    placement: Placement | None = None,
    *,
    settings: Settings | None = None,
    interceptors: Sequence[Interceptor] = (),
) -> Node:
    """Import the handlers and hooks of the services placed here, route the others to
    where they run, and build the node; ``WiringError`` if the code does not match.

    Without a placement, every service the spec carries runs here. ``settings``
    default to the environment's; ``interceptors`` run, in order, around every call
    (after those ``NANO_INTERCEPTORS`` names).
    """
    settings = Settings.from_env() if settings is None else settings
    data.configure(spec, settings)  # data_dir() of the services wired here
    _instances.clear()  # a new node makes its handler classes anew
    local = placement.local if placement is not None else spec.carried
    endpoints: list[Endpoint] = []
    hooks: list[Hook] = []
    for service in spec.services:
        if service.name in local:
            endpoints += _local_endpoints(service, strict=settings.strict)
            hooks += _hooks(service)
    transports: dict[Address, Transport] = {}  # one per remote process, shared
    if placement is not None:
        for name, text in placement.remotes.items():
            if spec.service(name).asgi is not None:
                continue  # an adopted app has no contracts: its callers use its URL
            address = parse_address(text)
            transport = transports.get(address) or _transport(address, settings)
            transports[address] = transport
            endpoints += _remote_endpoints(spec.service(name), transport, placement.timeout(name))
    observer = _observer(spec, placement, settings, local, endpoints, transports)
    node = Node(
        spec,
        endpoints,
        hooks,
        settings=settings,
        interceptors=[*load_interceptors(settings.interceptors), *interceptors],
        observer=observer,
        closables=list(transports.values()),
    )
    node.install()
    return node


def _observer(
    spec: AppSpec,
    placement: Placement | None,
    settings: Settings,
    local: Sequence[str],
    endpoints: Sequence[Endpoint],
    transports: dict[Address, Transport],
) -> Observer | None:
    """Telemetry's observer for this node (None when it is off), its record made anew."""
    remotes: dict[str, object] = {}
    if placement is not None:
        for endpoint in endpoints:
            text = placement.remotes.get(endpoint.service)
            transport = transports.get(parse_address(text)) if text else None
            if endpoint.placement == "remote" and transport is not None:
                remotes[endpoint.service] = transport
    group = getattr(placement, "group", None)
    return telemetry.configure(
        metrics=settings.metrics,
        environ=settings.otel,
        name=group or spec.name,
        workspace=spec.name,
        group=group,
        services=[s.name for s in spec.services if s.name in local],
        remotes=remotes,
    )


def _local_endpoints(service: ServiceSpec, *, strict: bool) -> list[Endpoint]:
    endpoints = []
    # found at start-up, so a class that is not there stops the process before it serves
    errors = exception_map(service.name, service.errors) if service.errors else None
    for contract, target in service.handlers.items():
        fn = resolve(target)
        if not is_handler(fn) or not callable(fn):
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
        if errors:
            fn = mapping_handler(fn, errors)
        public = contract in service.public
        endpoint = Endpoint(
            service.name, request, response, public=public, target=local_route(fn), handler=fn
        )
        if strict:  # every call crosses the wire form, as it would to another process
            _strictly(endpoint)
        endpoints.append(endpoint)
    return endpoints


def _strictly(endpoint: Endpoint) -> None:
    """Route ``endpoint`` through its wire form, in memory (``NANO_STRICT``)."""
    from nanobuild.runtime.serving import Served
    from nanobuild.runtime.transports.base import Target
    from nanobuild.runtime.transports.local import strict_route

    served = Served(endpoint, thorough=True)
    target = Target(endpoint.service, endpoint.request, endpoint.response)
    endpoint.target = strict_route(served, target)
    endpoint.via = "strict"


def _hooks(service: ServiceSpec) -> list[Hook]:
    hooks = []
    for target in service.hooks:
        fn = resolve(target)
        kind = getattr(fn, HOOK_MARK, None)
        if kind is None or not callable(fn):
            raise WiringError(f"{target} is not marked @on_startup or @on_shutdown")
        hooks.append(Hook(service.name, kind, fn))
    return hooks


def _transport(address: Address, settings: Settings) -> Transport:
    """A new transport for ``address``, chosen by its scheme; it connects on its first call."""
    # fused processes never load a transport: only a split one pays for it
    parsed = address
    if parsed.scheme == "tcp":
        from nanobuild.runtime.transports.tcp import TcpTransport  # what a process uses, only

        return TcpTransport(parsed, secret=settings.secret, resolve_every=settings.resolve_every)
    from nanobuild.runtime.transports.http import HttpTransport

    return HttpTransport(parsed, secret=settings.secret or "")


def _remote_endpoints(service: ServiceSpec, transport: Transport, timeout: float) -> list[Endpoint]:
    """The contracts of ``service``, each routed over ``transport`` to where it runs."""
    from nanobuild.runtime.transports.base import remote_route

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
        expect = getattr(transport, "expect", None)  # TCP compares shapes as it connects
        if expect is not None:
            expect(service.name, request, response_type(request))
        endpoints.append(
            Endpoint(
                service.name,
                request,
                response_type(request),
                public=contract in service.public,
                target=route,
                via=transport.address.scheme,
            )
        )
    return endpoints


def load_interceptors(targets: Sequence[str]) -> list[Interceptor]:
    """The interceptors named ``module:name`` (``NANO_INTERCEPTORS``), imported."""
    found = []
    for target in targets:
        interceptor = resolve(target)
        if not callable(interceptor):
            raise WiringError(f"the interceptor {target} is not callable")
        found.append(cast(Interceptor, interceptor))
    return found


def resolve(target: str) -> Handler:
    """The object a ``module:name`` name stands for; ``module:Class.method`` is the
    method of the one instance of ``Class`` this process makes (with no arguments)."""
    module_name, _, name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # a handler module may fail to import in any way at all
        raise WiringError(f"cannot import {module_name}: {type(exc).__name__}: {exc}") from exc
    owner, _, method = name.rpartition(".")
    try:
        found: Handler = getattr(module, owner or name)
        if owner:
            found = getattr(_instance(found, f"{module_name}:{owner}"), method)
    except AttributeError:
        raise WiringError(
            f"{module_name} has no {name}: the wiring is older than the code"
        ) from None
    return found


_instances: dict[type, object] = {}  # each handler class's one instance, made at wiring


def _instance(cls: object, where: str) -> object:
    """The one instance of the handler class ``cls``, made on first use."""
    if not isinstance(cls, type):
        raise WiringError(f"{where} is not a class: its methods cannot be handlers")
    made = _instances.get(cls)
    if made is None:
        try:
            made = _instances[cls] = cls()
        except Exception as exc:  # its __init__ is the service's own code
            raise WiringError(
                f"cannot make the handler class {where}: {type(exc).__name__}: {exc} "
                "(a class whose methods are handlers is made once, with no arguments)"
            ) from exc
    return made
