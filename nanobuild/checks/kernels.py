"""E201, E206, E208, E210: kernels import, their contracts can cross a network, and
every name a service takes from another's kernel is there."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from nanobuild.checks.context import Context
from nanobuild.diagnostics import Diagnostic, did_you_mean
from nanobuild.workspace import Service


def check(ctx: Context) -> Iterator[Diagnostic]:
    for name, info in ctx.kernels.items():
        svc = ctx.workspace.services[name]
        kernel = ctx.kernel(svc)
        assert kernel is not None  # only parsed kernels are probed
        here = ctx.rel(kernel.path)
        if info.error is not None:
            where = ctx.rel(Path(info.error.path)) if info.error.path else here
            yield Diagnostic(
                where,
                "E208",
                f"the kernel of {name} fails to import: {info.error.message}",
                line=info.error.line,
            )
            continue
        for contract, described in info.contracts.items():
            line = kernel.classes.get(contract)
            if described.response is None:
                yield Diagnostic(
                    here,
                    "E210",
                    f"contract {contract} does not declare its response type",
                    line=line,
                    hint=f"subclass Contract[Response], e.g. class {contract}(Contract[None])",
                )
            elif described.wire_error is not None:
                yield Diagnostic(
                    here,
                    "E206",
                    f"contract {contract} cannot cross the network: {described.wire_error}",
                    line=line,
                    hint="use msgspec Structs, builtin types, datetime, uuid, decimal, enums",
                )
    for svc in ctx.workspace.services.values():
        yield from _references(ctx, svc)


def _references(ctx: Context, svc: Service) -> Iterator[Diagnostic]:
    """E201: each ``dep.kernel.Name`` a service uses must be defined by that kernel."""
    kernels = {
        other.kernel_module: other
        for other in ctx.workspace.services.values()
        if other is not svc and other.name in ctx.kernels and ctx.kernels[other.name].error is None
    }
    for module in ctx.modules[svc.name]:
        used = [(t, imp.line) for imp in module.imports for t in imp.targets()]
        for dotted, line in sorted({*used, *module.references}):
            kernel_module, _, rest = dotted.rpartition(".")
            while kernel_module and kernel_module not in kernels:
                kernel_module, _, rest = kernel_module.rpartition(".")
            if not kernel_module or not rest:
                continue
            owner = kernels[kernel_module]
            info = ctx.kernels[owner.name]
            if rest not in info.names:
                yield Diagnostic(
                    ctx.rel(module.path),
                    "E201",
                    f"{svc.name} uses {kernel_module}.{rest}, which the kernel of {owner.name} "
                    "does not define",
                    line=line,
                    hint=did_you_mean(rest, info.contracts) or did_you_mean(rest, info.names),
                )
