"""``templates/ingress.py.j2`` -> the ingress module: the readable table a binary runs.

The ingress is plain Python: a header saying what generated it and from what, a
check that it runs on the runtime version that generated it, the build's metadata,
and the ``AppSpec`` literal — every contract next to the function that answers it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from functools import cache
from pathlib import Path

import jinja2

from nanobuild import __version__
from nanobuild.pack import STATIC, source_date_epoch
from nanobuild.runtime.spec import AppSpec
from nanobuild.workspace import Workspace


def render(
    spec: AppSpec,
    workspace: Workspace,
    *,
    inputs_hash: str,
    only: Sequence[str] = (),
    distributions: tuple[tuple[str, str], ...] = (),
) -> str:
    """The ingress module's source for ``spec`` (the services of this binary);
    ``distributions`` are the third-party packages it carries, (name, version)."""
    return _template().render(
        version=__version__,
        name=spec.name,
        inputs_hash=inputs_hash,
        rebuild_options=f" --only {','.join(only)}" if only else "",
        built_at=source_date_epoch(),  # refuses a value that is not a number (E405)
        host=workspace.ingress.host,
        port=workspace.ingress.port,
        static=STATIC if spec.static else None,  # packed next to the ingress module
        services=spec.services,
        packed=spec.packed,
        distributions=distributions,
        groups=spec.groups,
        discovery=spec.discovery,
        front=spec.front,
    )


def inputs_hash(workspace: Workspace, files: Iterable[Path]) -> str:
    """A hash of nano.toml and ``files``, with their paths in the workspace."""
    digest = hashlib.sha256(__version__.encode())
    for path in [workspace.file, *sorted(files)]:
        if not path.is_file():  # a FIFO would block, a dangling link fail: packing says so
            continue
        try:
            data = path.read_bytes()
        except OSError:
            continue  # packing names the file it cannot read; the hash need not
        digest.update(workspace.rel(path).encode() + b"\0")
        digest.update(data)
    return digest.hexdigest()


@cache
def _template() -> jinja2.Template:
    return environment(templates_dir()).get_template("ingress.py.j2")


def environment(folder: Path) -> jinja2.Environment:
    """The Jinja environment for the templates in ``folder``; every template of
    nanobuild (the ingress, ``nanobuild new``'s service) is rendered through one.

    A misspelt variable fails the render rather than writing an empty string into
    the generated code, and nothing is HTML-escaped: the output is Python.
    """
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(folder),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["py"] = literal
    return env


def literal(value: object) -> str:
    """``value`` as Python source, quoted the way the rest of the file is."""
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid Python string literal
    if isinstance(value, tuple):
        items = ", ".join(literal(item) for item in value)
        return f"({items},)" if len(value) == 1 else f"({items})"
    if value is None or isinstance(value, bool | int):
        return repr(value)
    if isinstance(value, dict):
        items = ", ".join(f"{literal(k)}: {literal(v)}" for k, v in value.items())
        return f"{{{items}}}"
    raise TypeError(f"no literal for {value!r}")


def templates_dir() -> Path:
    """``templates/``: inside the installed package, or beside it in a source checkout."""
    here = Path(__file__).parent
    for candidate in (here / "templates", here.parent / "templates"):
        if (candidate / "ingress.py.j2").is_file():
            return candidate
    raise FileNotFoundError("nanobuild's templates/ folder is missing from this installation")
