"""E103-E106, E110-E112, E207, W101: who may import whom.

A service imports another service only through that service's kernel, and only if
it declares the dependency; it imports a workspace library only if it lists it. A
library never imports a service. A kernel stays light enough for any caller to load:
the standard library, msgspec, ``nanobuild.runtime``, other kernels, and libraries
that need no third-party package.

The rules hold however a module is reached: a dynamic import by a literal name is
judged as the import statement it stands for (``nanobuild.source``), an attribute
chain through a package (``users.store.CARTS`` after ``import users.kernel``) as an
import of what it names. What no rule can follow is refused: changing ``sys.path``
(E111), loading a module from a file path (E112). A dynamic import whose name is
not a literal is a warning (W101): ``check`` cannot see what it imports.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

from nanobuild import codes
from nanobuild.diagnostics import Diagnostic
from nanobuild.requirements import distribution
from nanobuild.source import CHAIN, FILE_LOAD, IMPORT_PATH, RUNTIME_PACKAGE, UNSEEN, Bypass, Import
from nanobuild.workspace import Library, Service

if TYPE_CHECKING:
    from nanobuild.checks.context import Context

ALWAYS_AVAILABLE = frozenset({*sys.stdlib_module_names, "msgspec"})
BYPASS_HINT = (
    "import with import statements: a library in `libraries`, a service's kernel, "
    "a package in `requires`"
)
KERNEL_RULE = (
    "a kernel imports only the standard library, msgspec, pydantic (when its service "
    "requires it), nanobuild.runtime, other services' kernels and libraries that need "
    "no third-party package"
)
# what a kernel of pydantic models (``ModelContract``) imports, once its service requires pydantic
PYDANTIC_MODULES = frozenset({"pydantic", "pydantic_core", "annotated_types"})


def check(ctx: Context) -> Iterator[Diagnostic]:
    for svc in ctx.workspace.services.values():
        for module in ctx.modules[svc.name]:
            here = ctx.rel(module.path)
            for imp in module.imports:
                yield from _service_import(ctx, svc, here, imp)
            for bypass in module.bypasses:
                yield from _bypass(ctx, svc, here, bypass)
        yield from ctx.kernel_import_problems[svc.name]
    for lib in ctx.workspace.libraries.values():
        for module in ctx.modules[lib.name]:
            here = ctx.rel(module.path)
            for imp in module.imports:
                yield from _library_import(ctx, lib, here, imp)
            for bypass in module.bypasses:
                yield from _bypass(ctx, lib, here, bypass)


def _service_import(ctx: Context, svc: Service, here: str, imp: Import) -> Iterator[Diagnostic]:
    owner = ctx.package_owner.get(imp.top)
    if imp.top == "nanobuild":
        yield from _runtime_only(here, svc.name, imp)
    elif isinstance(owner, Service) and owner is not svc:
        if owner.name not in svc.depends:
            yield Diagnostic(
                here,
                codes.E103,
                f"{svc.name} imports {imp.module}, but {owner.name} is not in "
                f"services.{svc.name}.depends",
                line=imp.line,
                hint=f'add "{owner.name}" to services.{svc.name}.depends in nano.toml',
            )
            return
        for target in imp.targets():
            if not _within(target, owner.kernel_module):
                yield _internals(here, svc, owner, f"imports {target}", imp.line)
    elif isinstance(owner, Library) and owner.name not in svc.libraries:
        yield Diagnostic(
            here,
            codes.E105,
            f"{svc.name} imports library {owner.name}, but it is not in "
            f"services.{svc.name}.libraries",
            line=imp.line,
            hint=f'add "{owner.name}" to services.{svc.name}.libraries in nano.toml',
        )


def _internals(here: str, svc: Service, owner: Service, what: str, line: int) -> Diagnostic:
    return Diagnostic(
        here,
        codes.E104,
        f"{svc.name} {what}, which is not the kernel of {owner.name}",
        line=line,
        hint=f"use only what {owner.kernel_module} offers; ask {owner.name} to "
        "add a contract for what you need",
    )


def _bypass(
    ctx: Context, who: Service | Library, here: str, bypass: Bypass
) -> Iterator[Diagnostic]:
    """What a way around the import statements reaches, judged as an import would be."""
    name = who.name if isinstance(who, Service) else f"library {who.name}"
    if bypass.kind == CHAIN:
        yield from _chain(ctx, who, here, bypass)
    elif bypass.kind == IMPORT_PATH:
        yield Diagnostic(
            here,
            codes.E111,
            f"{name} changes where imports come from ({bypass.name}): code can import "
            "anything that way, past every import rule",
            line=bypass.line,
            hint=BYPASS_HINT,
        )
    elif bypass.kind == FILE_LOAD:
        yield Diagnostic(
            here,
            codes.E112,
            f"{name} loads a module from a file path ({bypass.name}): no import rule can follow it",
            line=bypass.line,
            hint=BYPASS_HINT,
        )
    elif bypass.kind == UNSEEN:
        yield Diagnostic(
            here,
            codes.W101,
            f"{name} imports a module by a name that is not a literal ({bypass.name}): "
            "check cannot see what it imports",
            line=bypass.line,
            hint="import it with an import statement, or name it with a string literal, "
            "so that check can judge it",
        )


def _chain(ctx: Context, who: Service | Library, here: str, bypass: Bypass) -> Iterator[Diagnostic]:
    """``users.store.CARTS`` after ``import users.kernel``: an import of ``users.store``."""
    top = bypass.name.partition(".")[0]
    owner = ctx.package_owner.get(top)
    if top == "nanobuild" and not _within(bypass.name, RUNTIME_PACKAGE):
        name = who.name if isinstance(who, Service) else f"library {who.name}"
        yield Diagnostic(
            here,
            codes.E110,
            f"{name} uses {bypass.name}: service code may use only {RUNTIME_PACKAGE}",
            line=bypass.line,
            hint="the build side of nanobuild does not ship inside the binary",
        )
    elif (
        isinstance(who, Service)
        and isinstance(owner, Service)
        and owner is not who
        and owner.name in who.depends  # else the import is E103 already
        and not _within(bypass.name, owner.kernel_module)
    ):
        yield _internals(here, who, owner, f"uses {bypass.name}", bypass.line)


def _library_import(ctx: Context, lib: Library, here: str, imp: Import) -> Iterator[Diagnostic]:
    owner = ctx.package_owner.get(imp.top)
    if imp.top == "nanobuild":
        yield from _runtime_only(here, f"library {lib.name}", imp)
    elif isinstance(owner, Service):
        yield Diagnostic(
            here,
            codes.E106,
            f"library {lib.name} imports service {owner.name} ({imp.module})",
            line=imp.line,
            hint="a library is plain shared code: it may not depend on any service",
        )


def _runtime_only(here: str, who: str, imp: Import) -> Iterator[Diagnostic]:
    for target in imp.targets():
        if not _within(target, RUNTIME_PACKAGE):
            yield Diagnostic(
                here,
                codes.E110,
                f"{who} imports {target}: service code may use only {RUNTIME_PACKAGE}",
                line=imp.line,
                hint="the build side of nanobuild does not ship inside the binary",
            )


def kernel_import_problems(ctx: Context, svc: Service) -> list[Diagnostic]:
    """E207: the imports ``svc``'s kernel may not make."""
    kernel = ctx.kernel(svc)
    if kernel is None:
        return []
    here = ctx.rel(kernel.path)
    problems = []
    for imp in kernel.imports:
        owner = ctx.package_owner.get(imp.top)
        if imp.relative or owner is svc:
            why = f"the kernel of {svc.name} imports {imp.module}, its own service's internals"
        elif imp.top in ALWAYS_AVAILABLE or imp.top == "nanobuild" or isinstance(owner, Service):
            continue  # the standard library, msgspec; nanobuild and services: E110, E103/E104
        elif imp.top in PYDANTIC_MODULES and owner is None:
            if any(distribution(text) == "pydantic" for text in svc.requires):
                continue
            why = (
                f"the kernel of {svc.name} imports {imp.module}, but {svc.key}.requires "
                "does not declare pydantic"
            )
        elif isinstance(owner, Library):
            if not owner.requires:
                continue
            why = (
                f"the kernel of {svc.name} imports library {owner.name}, which needs "
                f"third-party packages ({', '.join(owner.requires)})"
            )
        else:
            why = (
                f"the kernel of {svc.name} imports {imp.module}, "
                "which is not in the standard library"
            )
        problems.append(Diagnostic(here, codes.E207, why, line=imp.line, hint=KERNEL_RULE))
    return problems


def _within(name: str, module: str) -> bool:
    return name == module or name.startswith(module + ".")
