"""E130, E131: an adopted ASGI service's app is where nano.toml says it is.

An adopted service is a folder of flat modules (``main.py``, ``models.py``) that
uvicorn ran from; the binary loads them under the service's private namespace
(``_nanoasgi.users.main``: ``nanobuild.runtime.asgi``). Its modules are all its own
code, checked like any service's: an ``import models`` of a module of its folder is
an import of its own (``own_imports`` rewrites it so every other check reads it so),
and any other import is judged against ``requires`` and the boundaries as usual.

``check`` imports no handler, so the app is found with ``ast``: the module its
``asgi`` names must be in the folder (E130), and must bind the attribute at its top
level, by assignment, definition or import (E131).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from typing import TYPE_CHECKING

import msgspec

from nanobuild import codes
from nanobuild.diagnostics import Diagnostic, did_you_mean
from nanobuild.source import Module, top_modules
from nanobuild.workspace import Service, Workspace

if TYPE_CHECKING:
    from nanobuild.checks.context import Context


def own_imports(workspace: Workspace, modules: dict[str, list[Module]]) -> dict[str, list[Module]]:
    """``modules``, with each adopted service's imports of its folder's own top-level
    modules made imports of its namespace (and marked relative: they are its own)."""
    for svc in workspace.services.values():
        if svc.adopted and svc.name in modules:
            modules[svc.name] = _namespaced(svc, modules[svc.name])
    return modules


def _namespaced(svc: Service, read: list[Module]) -> list[Module]:
    local = top_modules(read, svc.package)
    found = []
    for module in read:
        imports = tuple(
            msgspec.structs.replace(imp, module=f"{svc.package}.{imp.module}", relative=True)
            if not imp.relative and imp.top in local
            else imp
            for imp in module.imports
        )
        found.append(msgspec.structs.replace(module, imports=imports))
    return found


def check(ctx: Context) -> Iterator[Diagnostic]:
    for svc in ctx.workspace.services.values():
        if svc.asgi is not None:
            yield from _app(ctx, svc, ctx.modules.get(svc.name, []))


def _app(ctx: Context, svc: Service, read: list[Module]) -> Iterator[Diagnostic]:
    assert svc.asgi is not None
    module_name, _, attribute = svc.asgi.partition(":")
    key = f"{svc.key}.asgi"
    by_name = {m.name[len(svc.package) + 1 :]: m for m in read}
    module = by_name.get(module_name)
    folder = ctx.rel(svc.root)
    if module is None:
        yield ctx.workspace.at(
            key,
            codes.E130,
            f"`{key}` = {svc.asgi!r}: there is no module {module_name} in {folder}",
            did_you_mean(module_name, by_name)
            or f"name a module of {folder}, as `uvicorn MODULE:APP` run there would",
        )
        return
    if module.syntax_error is not None:
        return  # E109 says so
    first = attribute.partition(".")[0]
    bound = _top_level_names(module)
    if bound is not None and first not in bound:
        yield ctx.workspace.at(
            key,
            codes.E131,
            f"`{key}` = {svc.asgi!r}: {ctx.rel(module.path)} does not define {first}",
            did_you_mean(first, bound) or f"assign the app at the top of it: {first} = FastAPI()",
        )


def _top_level_names(module: Module) -> set[str] | None:
    """The names ``module`` binds at its top level; None if a ``*`` import may bind any."""
    try:
        tree = ast.parse(module.path.read_bytes(), filename=str(module.path))
    except (SyntaxError, OSError, ValueError):
        return None
    names: set[str] = set()
    for node in _top_statements(tree.body):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            if any(alias.name == "*" for alias in node.names):
                return None
            names.update((a.asname or a.name).partition(".")[0] for a in node.names)
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
    return names


def _top_statements(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """The module's statements, and those inside its top-level ``if``/``try``/``with``."""
    for node in body:
        yield node
        for field in ("body", "orelse", "finalbody"):
            inner = getattr(node, field, None)
            if isinstance(node, ast.If | ast.Try | ast.With) and isinstance(inner, list):
                yield from _top_statements(inner)
        for handler in getattr(node, "handlers", []):
            yield from _top_statements(handler.body)
