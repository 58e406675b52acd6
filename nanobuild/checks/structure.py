"""E108, E109: every service and library has its package, and its code parses."""

from __future__ import annotations

from collections.abc import Iterator

from nanobuild import codes
from nanobuild.checks.context import Context
from nanobuild.diagnostics import Diagnostic


def check(ctx: Context) -> Iterator[Diagnostic]:
    ws = ctx.workspace
    for svc in ws.services.values():
        key = f"services.{svc.name}"
        if not svc.package_dir.is_dir():
            yield ws.at(
                key,
                codes.E108,
                f"service {svc.name} has no package: {ws.rel(svc.package_dir)}/ does not exist",
                f"create it, or set `{key}.package` to the package's name",
            )
        elif not svc.kernel_file.is_file():
            yield ws.at(
                key,
                codes.E108,
                f"service {svc.name} has no kernel: {ws.rel(svc.kernel_file)} does not exist",
                "the kernel holds the service's contracts; every service has one",
            )
    for lib in ws.libraries.values():
        if not lib.package_dir.is_dir():
            yield ws.at(
                f"libraries.{lib.name}",
                codes.E108,
                f"library {lib.name} has no package: {ws.rel(lib.package_dir)}/ does not exist",
                f"create it, or set `libraries.{lib.name}.package` to the package's name",
            )
    for modules in ctx.modules.values():
        for module in modules:
            if module.syntax_error is not None:
                line, message = module.syntax_error
                yield Diagnostic(ctx.rel(module.path), codes.E109, f"cannot parse: {message}", line)
