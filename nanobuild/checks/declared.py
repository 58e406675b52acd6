"""E120, E121: every third-party package a service or library imports is declared;
E304: no package of the workspace takes the name of a module the runtime or a
requirement brings (``h11``, ``anyio``: the whole closure, which ``fusion`` alone,
knowing only the runtime's direct requirements, cannot see).

An import (a literal dynamic one included: ``source`` reads both as ``Import``) of a
module that is not the standard library's, nanobuild's, or a workspace package's
must be provided by a distribution its owner lists in ``requires`` — a service may
also use what the libraries it lists in ``libraries`` declare, and everyone may use
the runtime's own requirements (msgspec, starlette, uvicorn). A distribution that
only a sibling service declares does not count: the two may be packed apart.

Which distribution provides a module is first guessed from its name (``msgspec``
is ``msgspec``); only the imports that guess does not settle need the staged
packages' own records (``top_level.txt``/``RECORD``, as ``stage.top_level_modules``
reads them), taken from the stage of ``nano.lock`` in the build cache. ``lock``,
``bundle`` and ``serve`` build that stage; ``check`` builds it once if it is
missing, and says so once (E121) if it cannot.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from nanobuild import codes, lock, stage
from nanobuild.checks.context import Context
from nanobuild.checks.fusion import RESERVED
from nanobuild.diagnostics import Diagnostic
from nanobuild.errors import PackError
from nanobuild.requirements import RUNTIME_REQUIRES, distribution
from nanobuild.source import Import, Module
from nanobuild.workspace import Library, Service, Workspace

if TYPE_CHECKING:
    from importlib.metadata import Distribution

_OURS = frozenset({"nanobuild", "__future__"})


@dataclass(frozen=True)
class _Use:
    """One import the names alone do not settle."""

    owner: Service | Library
    module: Module
    imported: Import


def check(ctx: Context) -> Iterator[Diagnostic]:
    ws = ctx.workspace
    pending = list(_unsettled(ctx))
    try:
        made: lock.Lock | str | None = lock.read(ws)
    except PackError as exc:  # bundle and serve refuse it (E504): check says so too
        yield from exc.diagnostics
        made = exc.diagnostics[0].message
    provided = _staged_modules(ws, made, build=bool(pending))
    yield from _shadowing(ws, provided)
    if not pending:
        return
    if isinstance(provided, str):
        yield _cannot_tell(ctx, pending, provided)
        return
    declarers = _declarers(ws)
    for use in pending:
        label = provided.get(use.imported.top, "")
        dist = None if label.startswith("an unrecorded") else label.partition(" ")[0] or None
        if dist is not None and dist in _declared(ws, use.owner):
            continue
        yield _undeclared(ctx, use, dist, declarers.get(dist or "", []))


def _unsettled(ctx: Context) -> Iterator[_Use]:
    """Third-party imports whose module name is not a distribution the owner may use."""
    ws = ctx.workspace
    workspace_packages = set(ctx.package_owner)
    owners: list[Service | Library] = [*ws.services.values(), *ws.libraries.values()]
    for owner in owners:
        allowed = _declared(ws, owner)
        seen: set[tuple[str, str]] = set()  # one report per module per file
        for module in ctx.modules.get(owner.name, []):
            if isinstance(owner, Service) and module.name == owner.kernel_module:
                continue  # a kernel may import no third-party package at all: E207 says so
            for imported in module.imports:
                top = imported.top
                if imported.relative or not top or (str(module.path), top) in seen:
                    continue
                if top in sys.stdlib_module_names or top in _OURS or top in workspace_packages:
                    continue
                seen.add((str(module.path), top))
                if canonicalize_name(top) not in allowed:
                    yield _Use(owner, module, imported)


def _declared(ws: Workspace, owner: Service | Library) -> set[str]:
    """The distributions ``owner``'s code may import: its own, its libraries', the runtime's."""
    texts = [*RUNTIME_REQUIRES, *owner.requires]
    if isinstance(owner, Service):
        for name in owner.libraries:
            if name in ws.libraries:
                texts += ws.libraries[name].requires
    return {distribution(text) for text in texts}


def _declarers(ws: Workspace) -> dict[str, list[str]]:
    """Each distribution -> the services and libraries that declare it."""
    found: dict[str, list[str]] = {}
    owners: list[Service | Library] = [*ws.services.values(), *ws.libraries.values()]
    for owner in owners:
        for text in owner.requires:
            found.setdefault(distribution(text), []).append(owner.label)
    return found


def _shadowing(ws: Workspace, provided: dict[str, str] | str) -> Iterator[Diagnostic]:
    """E304 for a package named like a module the binary brings from its packages (or,
    with no stage to read, like one of the runtime's closure), or like the standard
    library's ``test`` (which ``sys.stdlib_module_names`` leaves out)."""
    staged = provided if isinstance(provided, dict) else runtime_modules()
    owners: list[Service | Library] = [*ws.services.values(), *ws.libraries.values()]
    for owner in owners:
        name = owner.package
        if isinstance(owner, Service) and owner.adopted:
            continue  # an adopted app's modules live in a namespace of their own
        if name in sys.stdlib_module_names or name in RESERVED:
            continue  # fusion says so already
        what = "the standard library's test package" if name == "test" else staged.get(name)
        if what is None:
            continue
        if name != "test":
            what = f"the module {name} of {what}, which the runtime or a requirement needs"
        yield ws.at(
            f"{owner.key}.package" if f"{owner.key}.package" in ws.lines else owner.key,
            codes.E304,
            f"{owner.label}'s package {name} would shadow {what}",
            f'set `{owner.key}.package` to another name, e.g. "{name}_{owner.label.split()[0]}"',
        )


@functools.cache
def runtime_modules() -> dict[str, str]:
    """Each top-level module of the runtime's dependency closure -> its distribution
    (``h11`` -> ``h11 0.16.0``), from the installed metadata of this Python: the
    distributions ``RUNTIME_REQUIRES`` name, and what each requires in turn here."""
    import importlib.metadata  # only without a stage to read: it costs a check ~10 ms

    found: dict[str, str] = {}
    queue = [Requirement(text) for text in RUNTIME_REQUIRES]
    seen: set[str] = set()
    while queue:
        req = queue.pop()
        name = canonicalize_name(req.name)
        if name in seen or (req.marker is not None and not req.marker.evaluate({"extra": ""})):
            continue
        seen.add(name)
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:  # not here: its name is its module
            found.setdefault(name.replace("-", "_"), name)
            continue
        label = f"{name} {dist.version}"
        for module in _top_level(dist):
            found.setdefault(module, label)
        for text in dist.requires or ():
            try:
                queue.append(Requirement(text))
            except InvalidRequirement:
                continue
    return found


def _top_level(dist: Distribution) -> set[str]:
    """The top-level modules a distribution installs."""
    listed = dist.read_text("top_level.txt")
    if listed:
        return {line.strip() for line in listed.splitlines() if line.strip()}
    tops = set()
    for path in dist.files or ():
        top = path.parts[0]
        if top.endswith((".dist-info", ".data", ".pth")) or top in ("..", "__pycache__"):
            continue
        tops.add(top.removesuffix(".py").partition(".")[0])
    return tops


def _staged_modules(
    ws: Workspace, made: lock.Lock | str | None, *, build: bool
) -> dict[str, str] | str:
    """Module -> distribution label from the stage of ``made``, the lock (or why it
    cannot be read); else why there is none. Unless ``build``, a stage that is not
    built already is not made here."""
    if isinstance(made, str):
        return made
    if made is None:
        return f"there is no {lock.FILENAME} to tell which packages are installed"
    try:
        lock.check_current(ws, made)
    except PackError as exc:
        return exc.diagnostics[0].message
    modules = stage.staged_modules(made.package)
    if modules is None and not build:
        return "the locked packages are not installed here"
    if modules is None:
        try:  # built once here; every later check reads it
            lock.stage_of(made)
        except PackError as exc:
            return f"the locked packages are not installed here and cannot be: {exc}"
        modules = stage.staged_modules(made.package)
    return modules if modules is not None else "the locked packages cannot be read"


def _cannot_tell(ctx: Context, pending: list[_Use], why: str) -> Diagnostic:
    first = pending[0]
    others = sorted({use.imported.top for use in pending} - {first.imported.top})
    more = f" (nor {', '.join(others)})" if others else ""
    return Diagnostic(
        ctx.rel(first.module.path),
        codes.E121,
        f"cannot tell which package provides {first.imported.top}{more}: {why}",
        line=first.imported.line,
        hint="run `nanobuild lock` (it installs the locked packages into the build cache), "
        "then check again",
    )


def _undeclared(ctx: Context, use: _Use, dist: str | None, declarers: list[str]) -> Diagnostic:
    top, key = use.imported.top, f"{use.owner.key}.requires"
    if dist is None:
        what = "which no declared or locked package provides"
        hint = f"add the distribution that provides {top} to `{key}`, then run `nanobuild lock`"
    else:
        what = f"from the distribution {dist}, which `{key}` does not declare"
        others = [label for label in declarers if label != use.owner.label]
        if others:
            what += f" ({' and '.join(others)} declares it, for itself only)"
        hint = f'{key}: add "{dist}", then run `nanobuild lock`'
    return Diagnostic(
        ctx.rel(use.module.path),
        codes.E120,
        f"{use.owner.name} imports {top}, {what}",
        line=use.imported.line,
        hint=hint,
    )
