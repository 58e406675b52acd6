"""``nanobuild new NAME``: a service from ``templates/service``, added to nano.toml.

The new service passes ``check`` as it stands: a kernel with one contract, its
handler, and a unit test. nano.toml is appended to, not rewritten, so its comments
and layout stay as the user wrote them.
"""

from __future__ import annotations

import json
import keyword
import shutil
import sys
from pathlib import Path

from nanobuild import codes
from nanobuild.checks.fusion import RESERVED
from nanobuild.codegen import environment, templates_dir
from nanobuild.diagnostics import Diagnostic
from nanobuild.errors import WorkspaceError
from nanobuild.workspace import Workspace

# template file -> where it goes, relative to the service's project folder
FILES = {
    "__init__.py.j2": "{package}/__init__.py",
    "kernel.py.j2": "{package}/kernel.py",
    "handlers.py.j2": "{package}/handlers.py",
    "test_service.py.j2": "tests/test_{package}.py",
    "conftest.py.j2": "conftest.py",
}


def new_service(ws: Workspace, name: str, path: str | None = None) -> Path:
    """Create the service ``name`` in ``path`` (default ``services/<name>``); its folder."""
    rel = path or f"services/{name}"
    folder = (ws.root / rel).resolve()
    _refuse_bad_names(ws, name, rel, folder)
    env = environment(templates_dir() / "service")
    try:
        for template, target in FILES.items():
            out = folder / target.format(package=name)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(env.get_template(template).render(name=name, package=name))
        with ws.file.open("a", encoding="utf-8") as toml:
            path_literal = json.dumps(Path(rel).as_posix())  # a valid TOML basic string
            toml.write(
                f'\n[services.{name}]\npath = {path_literal}\ndepends = []\npublic = ["Greet"]\n'
            )
    except OSError:
        shutil.rmtree(folder, ignore_errors=True)  # leave nothing half-made
        raise
    return folder


def _refuse_bad_names(ws: Workspace, name: str, rel: str, folder: Path) -> None:
    problem = None
    if not name.isidentifier() or keyword.iskeyword(name):
        problem = f"{name!r} is not a Python identifier; a service name must be one"
    elif name in ws.services or name in ws.libraries:
        problem = f"the workspace already has a service or library named {name}"
    elif name in sys.stdlib_module_names or name in RESERVED:
        problem = f"a package named {name} would shadow the module {name}"
    elif not folder.is_relative_to(ws.root):
        problem = f"{rel} is outside the workspace"
    elif folder.exists():
        problem = f"{ws.rel(folder)} already exists"
    if problem:
        raise WorkspaceError(
            [Diagnostic("nano.toml", codes.E009, f"cannot create {name}: {problem}")]
        )
