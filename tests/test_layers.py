"""The runtime's layers import one way, and the build side imports only its data.

Imports are read with ``ast``, every one of them: at the top of a module, inside a
function, and under ``if TYPE_CHECKING``. A cycle held open by a function-level
import is still a cycle in the design, so it fails here too.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import REPO

PACKAGE = REPO / "nanobuild"
RUNTIME = "nanobuild.runtime"

# Bottom to top. A module may import from its own layer or any layer below it.
LAYERS = [
    ["spec", "errors"],
    ["settings", "addresses", "context", "contracts", "codecs", "models", "static", "bootstrap"],
    ["tracing"],
    ["otlp"],
    ["limits", "httpguard"],
    ["router", "seam", "faults", "shapes", "data", "exchange"],
    ["telemetry"],
    ["node", "openapi"],
    ["serving", "rest", "page"],
    ["transports", "transports.frames", "transports.base", "transports.local"],
    ["transports.replicas"],
    ["transports.tcp", "transports.http"],
    ["placement", "health"],
    ["wiring", "asgi"],
    ["app", "httpclient"],
    ["server", "testing"],
    ["binary"],
    ["__main__"],
]
# ``python -m nanobuild.probe`` is also the program ``check`` runs in a child Python,
# beside the kernels it imports; only that child side reads contracts as kernels do
CHILD_SIDE = {("probe", "describe"): {f"{RUNTIME}.contracts", f"{RUNTIME}.models"}}
CHILD_SIDE[("probe", "route_info")] = {f"{RUNTIME}.contracts"}  # a contract's REST route


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> Iterator[tuple[str, str]]:
    """Every module ``path`` imports (absolute names), with the function it is in ("" if none).

    ``from package import name`` imports the module ``package.name`` when there is
    one (``from nanobuild.runtime import router``), else ``package`` itself.
    """
    tree = ast.parse(path.read_text(), str(path))
    package = module_name(path)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    yield from _walk(tree, package, "")


def _is_module(name: str) -> bool:
    relative = Path(*name.split("."))
    return (REPO / relative).with_suffix(".py").is_file() or (REPO / relative).is_dir()


def _walk(node: ast.AST, package: str, function: str) -> Iterator[tuple[str, str]]:
    for child in ast.iter_child_nodes(node):
        inside = child.name if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) else ""
        if isinstance(child, ast.Import):
            for alias in child.names:
                yield alias.name, function
        elif isinstance(child, ast.ImportFrom):
            base = child.module or ""
            if child.level:
                parent = package.rsplit(".", child.level - 1)[0] if child.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            for alias in child.names:
                submodule = f"{base}.{alias.name}"
                yield (submodule if _is_module(submodule) else base), function
        yield from _walk(child, package, inside or function)


def runtime_modules() -> dict[str, Path]:
    paths = sorted((PACKAGE / "runtime").rglob("*.py"))
    return {module_name(p): p for p in paths}


def runtime_graph() -> dict[str, set[str]]:
    """Each runtime module -> the runtime modules it imports."""
    modules = runtime_modules()
    return {
        name: {target for target, _ in imports(path) if target in modules and target != name}
        for name, path in modules.items()
    }


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_runtime_imports_have_no_cycle() -> None:
    graph = runtime_graph()
    assert len(graph) > 20  # the walk found the runtime
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle or [])


def test_the_runtime_imports_point_down_the_layers() -> None:
    layer = {f"{RUNTIME}.{name}": i for i, names in enumerate(LAYERS) for name in names}
    graph = runtime_graph()
    unplaced = sorted(set(graph) - set(layer) - {RUNTIME})
    assert unplaced == [], "give each runtime module its place in LAYERS"
    upward = [
        f"{source} imports {target}"
        for source, targets in graph.items()
        if source != RUNTIME
        for target in targets
        if target != RUNTIME and layer[target] > layer[source]
    ]
    assert upward == []


def test_the_package_re_exports_only_the_api_service_code_uses() -> None:
    api = {"context", "contracts", "data", "errors", "exchange", "models", "router", "seam", "spec"}
    assert runtime_graph()[RUNTIME] == {f"{RUNTIME}.{name}" for name in api}


def test_the_build_side_imports_only_the_runtimes_data() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        if name.startswith(RUNTIME):
            continue
        short = name.removeprefix("nanobuild.")
        for target, function in imports(path):
            allowed = {RUNTIME, f"{RUNTIME}.spec"} | CHILD_SIDE.get((short, function), set())
            if target.startswith(RUNTIME) and target not in allowed:
                found.append(f"{name} ({function or 'module'}) imports {target}")
    assert found == []


def test_the_walk_sees_function_level_and_type_checking_imports(tmp_path: Path) -> None:
    source = tmp_path / "nanobuild" / "runtime" / "sample.py"
    source.parent.mkdir(parents=True)
    (source.parent / "wiring.py").write_text("")
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from nanobuild.runtime.node import Node\n"
        "def f():\n    from . import wiring\n    import nanobuild.runtime.app\n"
    )
    import tests.test_layers as me

    before = me.REPO
    me.REPO = tmp_path
    try:
        found = set(imports(source))
    finally:
        me.REPO = before
    assert ("nanobuild.runtime.node", "") in found
    assert ("nanobuild.runtime.wiring", "f") in found
    assert ("nanobuild.runtime.app", "f") in found
