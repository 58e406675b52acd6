"""The service dependency graph: its order, its cycles, and how it is drawn."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from nanobuild.workspace import Workspace

Graph = Mapping[str, tuple[str, ...]]


def of(workspace: Workspace) -> dict[str, tuple[str, ...]]:
    """Each service and the services it depends on (unknown names left out)."""
    services = workspace.services
    return {
        name: tuple(dep for dep in service.depends if dep in services)
        for name, service in sorted(services.items())
    }


def cycles(graph: Graph) -> list[list[str]]:
    """Every elementary cycle found by depth-first search, each as ``[a, b, a]``.

    Each cycle is reported once, rotated to start at its smallest name.
    """
    found: dict[tuple[str, ...], list[str]] = {}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for dep in graph.get(node, ()):
            if state.get(dep) == 1:
                loop = path[path.index(dep) :]
                start = loop.index(min(loop))
                key = tuple(loop[start:] + loop[:start])
                found.setdefault(key, [*key, key[0]])
            elif dep not in state:
                visit(dep)
        path.pop()
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node)
    return [found[key] for key in sorted(found)]


def order(graph: Graph) -> list[str]:
    """Services with every dependency before its dependents (startup order).

    Ties are broken by name so the order is stable. Raises ``ValueError`` on a cycle.
    """
    remaining = {node: set(deps) for node, deps in graph.items()}
    ordered: list[str] = []
    while remaining:
        ready = sorted(node for node, deps in remaining.items() if not deps)
        if not ready:
            raise ValueError(f"dependency cycle among {', '.join(sorted(remaining))}")
        for node in ready:
            del remaining[node]
        for deps in remaining.values():
            deps.difference_update(ready)
        ordered += ready
    return ordered


def render_text(graph: Graph, title: str) -> str:
    """An indented tree from the services nobody depends on; a repeat is marked ``(*)``."""
    lines = [title]
    roots = _roots(graph)
    shown: set[str] = set()
    for i, root in enumerate(roots):
        lines += _tree(graph, root, "", i == len(roots) - 1, shown, ())
    return "\n".join(lines)


def _roots(graph: Graph) -> list[str]:
    depended = {dep for deps in graph.values() for dep in deps}
    roots = [node for node in graph if node not in depended]
    reached = set(roots)
    stack = list(roots)
    while stack:
        for dep in graph.get(stack.pop(), ()):
            if dep not in reached:
                reached.add(dep)
                stack.append(dep)
    # services reachable only through a cycle have no root above them: show them too
    return roots + [node for node in graph if node not in reached]


def _tree(
    graph: Graph, node: str, indent: str, last: bool, shown: set[str], path: tuple[str, ...]
) -> Iterator[str]:
    branch = "└── " if last else "├── "
    deps = graph.get(node, ())
    if node in path:
        yield f"{indent}{branch}{node} (cycle)"
        return
    if node in shown and deps:
        yield f"{indent}{branch}{node} (*)"
        return
    shown.add(node)
    yield f"{indent}{branch}{node}"
    child_indent = indent + ("    " if last else "│   ")
    for i, dep in enumerate(deps):
        yield from _tree(graph, dep, child_indent, i == len(deps) - 1, shown, (*path, node))


def render_mermaid(graph: Graph) -> str:
    """A Mermaid flowchart; an edge points from a service to what it calls."""
    lines = ["graph TD"]
    for node, deps in graph.items():
        lines.append(f"    {node}")
        lines += [f"    {node} --> {dep}" for dep in deps]
    return "\n".join(lines)


def render_dot(graph: Graph, title: str) -> str:
    """A Graphviz digraph; an edge points from a service to what it calls."""
    lines = [f'digraph "{title}" {{', "    rankdir=LR;", "    node [shape=box];"]
    for node, deps in graph.items():
        lines.append(f'    "{node}";')
        lines += [f'    "{node}" -> "{dep}";' for dep in deps]
    lines.append("}")
    return "\n".join(lines)
