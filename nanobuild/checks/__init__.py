"""Everything ``nanobuild check`` proves, one module per family of checks. The README's
table under "``nanobuild check``" lists every problem they report, by its code.

``run`` reads the workspace's code once (``Context``) and hands it to each family in
turn; each family yields ``Diagnostic``s and never stops at the first problem.

    E1xx  structure.py  dependencies.py  imports.py   packages, the graph, who imports whom
          declared.py                                  third-party imports are declared
    E2xx  kernels.py    handlers.py    calls.py        contracts, kernels, handlers, call sites
    E23x  routes.py                                    contracts' REST routes
    E13x  asgi.py                                      adopted ASGI apps: the app is there
    E3xx  fusion.py                                    can the services share one process
    E036-E044  placement.py                            placement groups and [deploy]
"""

from __future__ import annotations

from nanobuild.checks import (
    asgi,
    calls,
    declared,
    dependencies,
    fusion,
    handlers,
    imports,
    kernels,
    placement,
    routes,
    structure,
)
from nanobuild.checks.context import Context
from nanobuild.diagnostics import Diagnostic, sorted_diagnostics
from nanobuild.workspace import Workspace

FAMILIES = (
    structure,
    dependencies,
    imports,
    declared,
    kernels,
    handlers,
    calls,
    fusion,
    asgi,
    routes,
    placement,
)


def run(workspace: Workspace) -> list[Diagnostic]:
    """Every problem found in ``workspace``, sorted by place."""
    return check(Context.read(workspace))


def check(context: Context) -> list[Diagnostic]:
    """Every problem found in the workspace ``context`` has read, sorted by place.

    ``bundle`` keeps the context afterwards, to generate the ingress from the same
    reading of the code.
    """
    found: list[Diagnostic] = []
    for family in FAMILIES:
        found += family.check(context)
    return sorted_diagnostics(found)


__all__ = ["Context", "check", "run"]
