"""Workspace -> ``AppSpec``: the description of the services the runtime wires.

``nanobuild serve`` hands it straight to the runtime; ``nanobuild bundle`` renders it
into the generated ingress module. Either way the runtime wires the same thing.
"""

from __future__ import annotations

from nanobuild import graph
from nanobuild.runtime.wiring import AppSpec, ServiceSpec
from nanobuild.source import read_package
from nanobuild.workspace import Workspace


def spec(workspace: Workspace) -> AppSpec:
    """What to wire: each service's handler modules, its public contracts, start-up order."""
    edges = graph.of(workspace)
    services = []
    for name in graph.order(edges):
        svc = workspace.services[name]
        modules = tuple(
            module.name
            for module in read_package(svc.package_dir, svc.package)
            # a module that does not parse is kept, so wiring fails loudly on it
            if (module.functions or module.syntax_error) and module.name != svc.kernel_module
        )
        services.append(
            ServiceSpec(
                name=name,
                package=svc.package,
                modules=modules,
                public=svc.public,
                depends=edges[name],
            )
        )
    static = str(workspace.ingress.static) if workspace.ingress.static else None
    return AppSpec(name=workspace.name, services=tuple(services), static=static)
