"""Workspace -> ``AppSpec``: the description of the services the runtime wires.

``nanobuild serve`` hands it straight to the runtime; ``nanobuild bundle`` renders it
into the generated ingress module (``codegen``). Either way the runtime wires the
same thing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nanobuild import codes, graph
from nanobuild.checks import placement
from nanobuild.diagnostics import Diagnostic
from nanobuild.errors import CheckFailed
from nanobuild.runtime.spec import AppSpec, GroupSpec, ServiceSpec
from nanobuild.source import Module, marked, read_package, top_modules
from nanobuild.workspace import Service, Workspace


def describe(workspace: Workspace, modules: Mapping[str, list[Module]] | None = None) -> AppSpec:
    """What to wire: each contract's handler, each service's hooks, public contracts, order.

    It reads the code with ``ast``, as ``check`` does — or takes ``modules``, what
    ``check`` read, per service — and trusts a workspace that ``check`` passed: a
    module that does not even parse is refused here too.
    """
    edges = graph.of(workspace)
    services = []
    libraries = {name: modules[name] for name in workspace.libraries if modules and name in modules}
    for name in graph.order(edges):
        svc = workspace.services[name]
        handlers: dict[str, str] = {}
        hooks: list[str] = []
        read = modules[name] if modules is not None else None
        if read is None:
            read = read_package(svc.package_dir, svc.package)
        for module in read:
            if module.syntax_error is not None:
                raise CheckFailed([_unparsable(workspace, module)])
        for module, fn in marked(read, _libraries(workspace, svc, libraries)):
            target = f"{module.name}:{fn.name}"  # a method: ``module:Class.method``
            if fn.mark == "handler" and fn.request:
                handlers[fn.request.rpartition(".")[2]] = target
            elif fn.mark != "handler":
                hooks.append(target)
        services.append(
            ServiceSpec(
                name=name,
                package=svc.package,
                handlers=dict(sorted(handlers.items())),
                hooks=tuple(hooks),
                public=svc.public,
                depends=edges[name],
                errors=dict(svc.errors),
                **(_adopted(svc, read) if svc.adopted else {"port": svc.port}),
            )
        )
    static = str(workspace.ingress.static) if workspace.ingress.static else None
    groups = tuple(
        GroupSpec(g.name, g.services, replicas=g.replicas, internal_port=g.internal_port)
        for g in workspace.groups.values()
    )
    return AppSpec(
        name=workspace.name,
        services=tuple(services),
        static=static,
        groups=groups,
        discovery=workspace.deploy.discovery,
        front=placement.front(workspace) if workspace.services else None,
    )


def _adopted(svc: Service, read: list[Module]) -> dict[str, Any]:
    """What the runtime needs of an adopted ASGI service: its app, where it is served,
    its ``urls``, its folder's top-level module names, and the folder (for ``serve``)."""
    return {
        "asgi": svc.asgi,
        "port": svc.port,
        "mount": svc.mount,
        "urls": dict(sorted(svc.urls.items())),
        "modules": tuple(sorted(top_modules(read, svc.package))),
        "folder": str(svc.root),
    }


def _libraries(workspace: Workspace, svc: Service, read: dict[str, list[Module]]) -> list[Module]:
    """The modules of the libraries ``svc`` uses, where its decorators may come from;
    each library not in ``read`` yet is read into it, once for all its services."""
    found: list[Module] = []
    for name in svc.libraries:
        library = workspace.libraries.get(name)
        if name not in read and library is not None:
            read[name] = read_package(library.package_dir, library.package)
        found += read.get(name, [])
    return found


def _unparsable(workspace: Workspace, module: Module) -> Diagnostic:
    assert module.syntax_error is not None
    line, message = module.syntax_error
    return Diagnostic(workspace.rel(module.path), codes.E109, f"cannot parse: {message}", line)
