"""E201, E206, E208, E210, E220, E240: kernels import, their contracts can cross a
network and have names that mean one thing, and every name a service takes from
another's kernel is there."""

from __future__ import annotations

import builtins
from collections import defaultdict
from collections.abc import Iterator, Mapping
from pathlib import Path

from nanobuild import codes
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
                codes.E208,
                f"the kernel of {name} fails to import: {info.error.message}",
                line=info.error.line,
            )
            continue
        for contract, described in info.contracts.items():
            line = kernel.classes.get(contract)
            why = _name_problem(contract)
            if why:
                yield Diagnostic(
                    here,
                    codes.E220,
                    f"contract {contract} of {name} {why}",
                    line=line,
                    hint="rename the class: ASCII letters, digits and '_', like GetUser",
                )
            if described.response is None:
                yield Diagnostic(
                    here,
                    codes.E210,
                    f"contract {contract} does not declare its response type",
                    line=line,
                    hint=f"subclass Contract[Response], e.g. class {contract}(Contract[None])",
                )
            elif described.wire_error is not None:
                yield Diagnostic(
                    here,
                    codes.E206,
                    f"contract {contract} cannot cross the network: {described.wire_error}",
                    line=line,
                    hint="use msgspec Structs, builtin types, datetime, uuid, decimal, enums",
                )
            elif described.model_error is not None:
                yield Diagnostic(
                    here,
                    codes.E240,
                    f"contract {contract} cannot cross the network: {described.model_error}",
                    line=kernel.classes.get(described.model or "") or line,
                    hint="give the field a type pydantic can write as JSON (no arbitrary "
                    "classes, no callables)",
                )
    # kernel module -> the services whose kernel it is and imported: one service,
    # unless several claim one package (E301)
    imported: dict[str, list[Service]] = defaultdict(list)
    for svc in ctx.workspace.services.values():
        if svc.name in ctx.kernels and ctx.kernels[svc.name].error is None:
            imported[svc.kernel_module].append(svc)
    for svc in ctx.workspace.services.values():
        yield from _references(ctx, svc, imported)


def _name_problem(contract: str) -> str:
    """Why a contract's class name cannot be used ('' if it can): it is a URL's last part
    (``/api/users/GetUser``), matched byte for byte, and a name annotations are read by."""
    if not contract.isascii():
        return "is not an ASCII name: URLs and callers would have to spell it in one Unicode form"
    if contract in vars(builtins):
        return (
            f"is named like the builtin {contract}: an annotation meaning the builtin "
            "would name the contract in its kernel"
        )
    return ""


def _references(
    ctx: Context, svc: Service, imported: Mapping[str, list[Service]]
) -> Iterator[Diagnostic]:
    """E201: each ``dep.kernel.Name`` a service uses must be defined by that kernel."""

    def owner_of(kernel_module: str) -> Service | None:
        """The (last) other service whose imported kernel is ``kernel_module``."""
        others = [other for other in imported.get(kernel_module, ()) if other is not svc]
        return others[-1] if others else None

    for module in ctx.modules[svc.name]:
        used = [(t, imp.line) for imp in module.imports for t in imp.targets()]
        for dotted, line in sorted({*used, *module.references}):
            kernel_module, _, rest = dotted.rpartition(".")
            while kernel_module and owner_of(kernel_module) is None:
                kernel_module, _, rest = kernel_module.rpartition(".")
            owner = owner_of(kernel_module)
            if owner is None or not rest:
                continue
            info = ctx.kernels[owner.name]
            if rest not in info.names:
                yield Diagnostic(
                    ctx.rel(module.path),
                    codes.E201,
                    f"{svc.name} uses {kernel_module}.{rest}, which the kernel of {owner.name} "
                    "does not define",
                    line=line,
                    hint=did_you_mean(rest, info.contracts) or did_you_mean(rest, info.names),
                )
