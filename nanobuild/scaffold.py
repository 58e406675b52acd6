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
from typing import NamedTuple

from nanobuild import codes
from nanobuild.checks.fusion import RESERVED
from nanobuild.codegen import environment, templates_dir
from nanobuild.diagnostics import Diagnostic
from nanobuild.errors import WorkspaceError
from nanobuild.workspace import FILENAME, Workspace


class Kind(NamedTuple):
    """What ``new`` makes: a service or a library."""

    word: str  # "service": its templates' folder, and how messages name it
    section: str  # its tables in nano.toml: ``[services.NAME]``
    parent: str  # the folder it goes in by default: ``services/NAME``
    files: Mapping[str, str]  # template file -> where it goes, relative to its folder
    keys: str  # the keys of its new table after ``path`` (and ``package``)
    code: codes.Code  # why it cannot be created


SERVICE = Kind(
    "service",
    "services",
    "services",
    {
        "__init__.py.j2": "{package}/__init__.py",
        "kernel.py.j2": "{package}/kernel.py",
        "handlers.py.j2": "{package}/handlers.py",
        "test_service.py.j2": "tests/test_{package}.py",
        "conftest.py.j2": "conftest.py",
    },
    'depends = []\npublic = ["Greet"]\n',
    codes.E009,
)
LIBRARY = Kind(
    "library",
    "libraries",
    "libs",
    {
        "__init__.py.j2": "{package}/__init__.py",
        "test_library.py.j2": "tests/test_{package}.py",
        "conftest.py.j2": "conftest.py",
    },
    "requires = []\n",
    codes.E021,
)
WORKSPACE_FILES = {
    "nano.toml.j2": FILENAME,
    "README.md.j2": "README.md",
    "gitignore.j2": ".gitignore",
}
KEPT_IF_THERE = ("README.md", ".gitignore")  # a project's own: kept, not refused
FIRST_SERVICE = "hello"  # the service ``init`` writes
_NOT_IN_A_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def new(
    ws: Workspace, kind: Kind, name: str, path: str | None = None, package: str | None = None
) -> Path:
    """Create the service or library ``name`` in ``path`` (default ``services/<name>``,
    ``libs/<name>``) and its table at the end of nano.toml; its folder."""
    rel = path or f"{kind.parent}/{name}"
    package = package or name
    folder = (ws.root / rel).resolve()
    _refuse(ws, kind, name, package, rel, folder)
    files, table = _project(kind, name, rel, package)
    _write(folder, files)  # takes back what it wrote if it fails
    try:
        with ws.file.open("a", encoding="utf-8") as out:
            out.write(table)
    except OSError:
        shutil.rmtree(folder, ignore_errors=True)  # leave nothing half-made
        raise
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
    project = f"{SERVICE.parent}/{service}"
    made, table = _project(SERVICE, service, project, service)
    files |= {f"{project}/{target}": text for target, text in made.items()}
    files[FILENAME] += table
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


def _project(kind: Kind, name: str, rel: str, package: str) -> tuple[dict[str, str], str]:
    """The files of a new service or library (relative to its folder, ``rel``) and the
    table that adds it to nano.toml."""
    files = _render(kind.word, kind.files, name=name, package=package)
    table = f"\n[{kind.section}.{name}]\npath = {json.dumps(Path(rel).as_posix())}\n"  # TOML
    if package != name:
        table += f"package = {json.dumps(package)}\n"
    return files, table + kind.keys


def _render(kind: str, files: Mapping[str, str], **values: str) -> dict[str, str]:
    """Each of ``files``' templates rendered: target path (relative) -> text."""
    env = environment(templates_dir() / kind)
    package = values.get("package", "")
    return {
        target.format(package=package): env.get_template(template).render(**values)
        for template, target in files.items()
    }


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


def _refuse(ws: Workspace, kind: Kind, name: str, package: str, rel: str, folder: Path) -> None:
    """Stop, before anything is written, if ``name``, ``package`` or ``rel`` cannot be used."""
    problem = _name_problem(ws, name) or _folder_problem(ws, rel, folder)
    if problem:
        raise WorkspaceError(
            [Diagnostic("nano.toml", kind.code, f"cannot create {name}: {problem}")]
        )
    problem = _package_problem(ws, package)
    if problem and package == name:
        hint = f"name its package with --package, e.g. --package {name}_{kind.word}"
        raise WorkspaceError(
            [Diagnostic("nano.toml", kind.code, f"cannot create {name}: {problem}", hint=hint)]
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
