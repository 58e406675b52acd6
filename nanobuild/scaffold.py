"""``nanobuild new`` and ``nanobuild init``: services, libraries and workspaces from templates.

A new service passes ``check`` as it stands (a kernel with one contract, its handler)
and so do its tests, which run it with ``nanobuild.runtime.testing.service`` and so
keep passing once it calls another service. nano.toml is appended to, not
rewritten, so its comments and layout stay as the user wrote them. Nothing is
half-made: every name is checked before the first file is written, and a failed
write takes back what it wrote.
"""

from __future__ import annotations

import json
import keyword
import re
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

from nanobuild import codes
from nanobuild.checks.fusion import RESERVED
from nanobuild.codegen import environment, templates_dir
from nanobuild.diagnostics import Diagnostic
from nanobuild.errors import WorkspaceError
from nanobuild.workspace import FILENAME, Workspace

# template file -> where it goes, relative to the project folder
SERVICE_FILES = {
    "__init__.py.j2": "{package}/__init__.py",
    "kernel.py.j2": "{package}/kernel.py",
    "handlers.py.j2": "{package}/handlers.py",
    "test_service.py.j2": "tests/test_{package}.py",
    "conftest.py.j2": "conftest.py",
}
LIBRARY_FILES = {
    "__init__.py.j2": "{package}/__init__.py",
    "test_library.py.j2": "tests/test_{package}.py",
    "conftest.py.j2": "conftest.py",
}
WORKSPACE_FILES = {
    "nano.toml.j2": FILENAME,
    "README.md.j2": "README.md",
    "gitignore.j2": ".gitignore",
}
KEPT_IF_THERE = ("README.md", ".gitignore")  # a project's own: kept, not refused
FIRST_SERVICE = "hello"  # the service ``init`` writes
_NOT_IN_A_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def new_service(
    ws: Workspace, name: str, path: str | None = None, package: str | None = None
) -> Path:
    """Create the service ``name`` in ``path`` (default ``services/<name>``); its folder."""
    rel = path or f"services/{name}"
    package = package or name
    folder = (ws.root / rel).resolve()
    _refuse(ws, "service", name, package, rel, folder)
    files = _render("service", SERVICE_FILES, name=name, package=package)
    table = _table("services", name, rel, package) + 'depends = []\npublic = ["Greet"]\n'
    _create(folder, files, ws.file, table)
    return folder


def new_library(
    ws: Workspace, name: str, path: str | None = None, package: str | None = None
) -> Path:
    """Create the library ``name`` in ``path`` (default ``libs/<name>``); its folder."""
    rel = path or f"libs/{name}"
    package = package or name
    folder = (ws.root / rel).resolve()
    _refuse(ws, "library", name, package, rel, folder)
    files = _render("library", LIBRARY_FILES, name=name, package=package)
    _create(folder, files, ws.file, _table("libraries", name, rel, package) + "requires = []\n")
    return folder


def init_workspace(
    folder: Path, service: str = FIRST_SERVICE
) -> tuple[str, list[Path], list[Path]]:
    """Write a workspace into ``folder`` (made if missing): nano.toml, a README and one
    service; its name, the files written and those kept (a README or .gitignore that
    was there already is left as it is). ``WorkspaceError`` (E020), with nothing
    written, if ``folder`` has a nano.toml or any other file this would write."""
    folder = folder.resolve()
    name = _NOT_IN_A_NAME.sub("-", folder.name).strip(".-") or "workspace"
    files = _render("workspace", WORKSPACE_FILES, workspace=name, service=service)
    project = f"services/{service}"
    for target, text in _render("service", SERVICE_FILES, name=service, package=service).items():
        files[f"{project}/{target}"] = text
    files[FILENAME] += _table("services", service, project, service) + (
        'depends = []\npublic = ["Greet"]\n'
    )
    kept = [target for target in KEPT_IF_THERE if (folder / target).is_file()]
    for target in kept:
        del files[target]
    taken = [target for target in files if (folder / target).exists()]
    if (folder / project).exists():
        taken.insert(0, project)
    if taken or (folder.exists() and not folder.is_dir()):
        where = f"{folder}/{taken[0]}" if taken else str(folder)
        why = "already exists" if taken else "is not a folder"
        raise WorkspaceError(
            [
                Diagnostic(
                    where,
                    codes.E020,
                    f"cannot write the workspace: {where} {why}",
                    hint="init writes only into a folder without a nano.toml and never "
                    "overwrites a file; `nanobuild new` adds a service to a workspace",
                )
            ]
        )
    _write(folder, files)
    return name, [folder / target for target in files], [folder / target for target in kept]


def _table(kind: str, name: str, rel: str, package: str) -> str:
    """The start of a new ``[kind.name]`` table, for the end of nano.toml."""
    text = f"\n[{kind}.{name}]\npath = {json.dumps(Path(rel).as_posix())}\n"  # TOML strings
    if package != name:
        text += f"package = {json.dumps(package)}\n"
    return text


def _render(kind: str, files: Mapping[str, str], **values: str) -> dict[str, str]:
    """Each of ``files``' templates rendered: target path (relative) -> text."""
    env = environment(templates_dir() / kind)
    package = values.get("package", "")
    return {
        target.format(package=package): env.get_template(template).render(**values)
        for template, target in files.items()
    }


def _create(folder: Path, files: Mapping[str, str], toml: Path, table: str) -> None:
    """Write ``files`` under the new ``folder``, then ``table`` at the end of nano.toml."""
    try:
        _write(folder, files)
        with toml.open("a", encoding="utf-8") as out:
            out.write(table)
    except OSError:
        shutil.rmtree(folder, ignore_errors=True)  # leave nothing half-made
        raise


def _write(folder: Path, files: Mapping[str, str]) -> None:
    """Write ``files`` under ``folder``; on failure remove every file and folder it made."""
    made: list[Path] = []
    try:
        for parent in (folder, *{(folder / t).parent for t in files}):
            for missing in reversed([p for p in (parent, *parent.parents) if not p.exists()]):
                missing.mkdir()
                made.append(missing)
        for target, text in files.items():
            with (folder / target).open("x", encoding="utf-8") as out:  # never overwrite
                made.append(folder / target)
                out.write(text)
    except OSError:
        for path in reversed(made):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        raise


def _refuse(ws: Workspace, kind: str, name: str, package: str, rel: str, folder: Path) -> None:
    """Stop, before anything is written, if ``name``, ``package`` or ``rel`` cannot be used."""
    code = codes.E009 if kind == "service" else codes.E021
    problem = _name_problem(ws, name) or _folder_problem(ws, rel, folder)
    if problem:
        raise WorkspaceError([Diagnostic("nano.toml", code, f"cannot create {name}: {problem}")])
    problem = _package_problem(ws, package)
    if problem and package == name:
        hint = f"name its package with --package, e.g. --package {name}_{kind}"
        raise WorkspaceError(
            [Diagnostic("nano.toml", code, f"cannot create {name}: {problem}", hint=hint)]
        )
    if problem:
        message = f"--package {package!r} cannot be used for {name}: {problem}"
        raise WorkspaceError([Diagnostic("nano.toml", codes.E022, message)])


def _name_problem(ws: Workspace, name: str) -> str:
    if not name.isidentifier() or keyword.iskeyword(name):
        return f"{name!r} is not a Python identifier; a service or library name must be one"
    if name in ws.services or name in ws.libraries:
        return f"the workspace already has a service or library named {name}"
    return ""


def _folder_problem(ws: Workspace, rel: str, folder: Path) -> str:
    if not folder.is_relative_to(ws.root):
        return f"{rel} is outside the workspace"
    if folder.exists():
        return f"{ws.rel(folder)} already exists"
    return ""


def _package_problem(ws: Workspace, package: str) -> str:
    if not package.isidentifier() or keyword.iskeyword(package):
        return f"{package!r} is not a Python identifier; a package name must be one"
    if package in sys.stdlib_module_names or package in RESERVED:
        return f"a package named {package} would shadow the module {package}"
    owners = {s.key: s.package for s in ws.services.values()}
    owners |= {lib.key: lib.package for lib in ws.libraries.values()}
    owner = next((key for key, taken in owners.items() if taken == package), None)
    if owner is not None:
        return f"{owner} already has the package {package}"
    return ""
