"""E101, E102, E107: every dependency and library named exists, and nothing depends on itself."""

from __future__ import annotations

from collections.abc import Iterator

from nanobuild import codes, graph
from nanobuild.checks.context import Context
from nanobuild.diagnostics import Diagnostic, did_you_mean


def check(ctx: Context) -> Iterator[Diagnostic]:
    ws = ctx.workspace
    for svc in ws.services.values():
        for dep in svc.depends:
            if dep not in ws.services:
                yield ws.at(
                    f"services.{svc.name}.depends",
                    codes.E101,
                    f"{svc.name} depends on {dep}, which is not a service of this workspace",
                    did_you_mean(dep, ws.services) or f"add a [services.{dep}] table",
                )
        for lib in svc.libraries:
            if lib not in ws.libraries:
                yield ws.at(
                    f"services.{svc.name}.libraries",
                    codes.E107,
                    f"{svc.name} uses library {lib}, which is not a library of this workspace",
                    did_you_mean(lib, ws.libraries) or f"add a [libraries.{lib}] table",
                )
    for cycle in graph.cycles(graph.of(ws)):
        yield ws.at(
            f"services.{cycle[0]}.depends",
            codes.E102,
            f"dependency cycle: {' -> '.join(cycle)}",
            "services cannot depend on each other in a circle; move the shared contracts "
            "into one of them, or into a new service both depend on",
        )
