"""E108, E109, E113, E114: every service and library has its package, its code
parses, and its package holds its own files only, every one readable.

``bundle`` packs what ``check`` reads, from one walk (``nanobuild.source.walk``), so
a link in a package folder that leads out of it would bring another package's code
in, unchecked under this package's name (E113); a file or folder that cannot be read
would be left out of the checking, or stop the packing (E114).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from nanobuild import codes
from nanobuild.checks.context import Context
from nanobuild.diagnostics import Diagnostic
from nanobuild.workspace import Library, Service

OWN_FILES_HINT = (
    "keep a package's files in its own folder: to share code, make it a library "
    "(`[libraries.NAME]` in nano.toml) and list it in `libraries`"
)


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
        elif not svc.adopted and not svc.kernel_file.is_file():
            kernel = ws.rel(svc.kernel_file)
            folder = svc.kernel_file.is_dir()
            yield ws.at(
                key,
                codes.E108,
                f"service {svc.name} has no kernel: {kernel} "
                + ("is a folder, not a module file" if folder else "does not exist"),
                f"make {kernel} one file holding the contracts (check reads that file alone)"
                if folder
                else "the kernel holds the service's contracts; every service has one",
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
    owners: list[Service | Library] = [*ws.services.values(), *ws.libraries.values()]
    for owner in owners:
        yield from _package_files(ctx, owner)


def _package_files(ctx: Context, owner: Service | Library) -> Iterator[Diagnostic]:
    """E113 for links out of ``owner``'s package (the folder itself included), E114 for
    what in it cannot be read."""
    tree = ctx.trees.get(owner.name)
    if tree is None:
        return  # no package folder: E108
    where = ctx.rel(owner.package_dir)
    real = Path(os.path.realpath(owner.package_dir))
    if not real.is_relative_to(owner.root):
        yield Diagnostic(
            where,
            codes.E113,
            f"the package of {owner.label}, {where}, is a link to {ctx.rel(real)}, "
            f"outside its project folder {ctx.rel(owner.root)}",
            hint=OWN_FILES_HINT,
        )
    for link, target in tree.outside:
        yield Diagnostic(
            ctx.rel(link),
            codes.E113,
            f"{ctx.rel(link)} links to {ctx.rel(target)}, outside the package of {owner.label}",
            hint=OWN_FILES_HINT,
        )
    for path, why in tree.unreadable:
        yield Diagnostic(
            ctx.rel(path),
            codes.E114,
            f"cannot read {ctx.rel(path)}: {why}",
            hint="bundle packs every file of a package: make it readable, or remove it",
        )
