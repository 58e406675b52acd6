"""E036-E044: nano.toml's placement groups and ``[deploy]`` can be deployed.

A group is one process (one container, one Kubernetes Deployment) and its name is a
host name the other groups look it up by, so it must be a DNS label; every service
is in exactly one group (a service in none forms its own, ``own_group``); groups
must not call each other in a circle, since each starts after those it calls.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from nanobuild import codes, graph
from nanobuild.checks.context import Context
from nanobuild.diagnostics import Diagnostic, did_you_mean
from nanobuild.runtime.spec import own_group, pattern_problem
from nanobuild.workspace import Group, Workspace

# RFC 1035, as Kubernetes wants a Service's name; 58 leaves room for the front
# door's own Service, ``<group>-http``
_LABEL = re.compile(r"^[a-z]([-a-z0-9]{0,56}[a-z0-9])?$")
_LABEL_HINT = "use lowercase letters, digits and '-', starting with a letter (at most 58)"
_CPU = re.compile(r"^(\d+(\.\d+)?|\d+m)$")  # cores, or millicores
_MEMORY = re.compile(r"^\d+(Ki|Mi|Gi|Ti|k|M|G|T)?$")  # bytes, with Kubernetes' suffixes


def all_groups(ws: Workspace) -> list[Group]:
    """Every group: nano.toml's, in its order, then one of its own for each service in
    none of them, in nano.toml's order (as ``AppSpec.placement_groups`` has them)."""
    placed = {name for group in ws.groups.values() for name in group.services}
    alone = [Group(name=own_group(s), services=(s,)) for s in ws.services if s not in placed]
    return [*ws.groups.values(), *alone]


def calls(ws: Workspace) -> dict[str, set[str]]:
    """Each group and the other groups its services call."""
    where = {s: g.name for g in all_groups(ws) for s in g.services}
    edges: dict[str, set[str]] = {name: set() for name in where.values()}
    for name, deps in graph.of(ws).items():
        edges[where[name]] |= {where[d] for d in deps if where[d] != where[name]}
    return edges


def front(ws: Workspace) -> str:
    """The group whose HTTP face is published, which reaches every service and so starts
    last: ``deploy.front``, else the first group no other group calls."""
    if ws.deploy.front is not None:
        return ws.deploy.front
    edges = calls(ws)
    called = {g for targets in edges.values() for g in targets}
    return next((g for g in edges if g not in called), next(iter(edges)))


def check(ctx: Context) -> Iterator[Diagnostic]:
    ws = ctx.workspace
    yield from _members(ws)
    for group in ws.groups.values():
        yield from _group(ws, group)
    yield from _own_groups(ws)
    yield from _discovery(ws)
    yield from _cycles(ws)
    yield from _front(ws)


def _front(ws: Workspace) -> Iterator[Diagnostic]:
    """E044: ``deploy.front`` is a group, and no other group calls it (it starts last)."""
    chosen = ws.deploy.front
    if chosen is None:
        return
    edges = calls(ws)
    if chosen not in edges:
        yield ws.at(
            "deploy.front",
            codes.E044,
            f"`deploy.front` = {chosen!r} names no placement group",
            did_you_mean(chosen, edges) or f"use one of {', '.join(edges)}",
        )
        return
    callers = sorted(g for g, targets in edges.items() if chosen in targets)
    if callers:
        yield ws.at(
            "deploy.front",
            codes.E044,
            f"`deploy.front` = {chosen!r} is called by the group {', '.join(callers)}: the "
            "front door reaches every group, so it starts after them all",
            "make front a group that no other group calls (the one with the entry points)",
        )


def _members(ws: Workspace) -> Iterator[Diagnostic]:
    """E036 for a service that is not in the workspace, E037 for one in two groups."""
    first: dict[str, str] = {}
    for group in ws.groups.values():
        for name in group.services:
            if name not in ws.services:
                yield ws.at(
                    f"{group.key}.services",
                    codes.E036,
                    f"`{group.key}.services` names {name}, which is not a service of "
                    "this workspace",
                    did_you_mean(name, ws.services),
                )
            elif first.setdefault(name, group.name) != group.name:
                yield ws.at(
                    f"{group.key}.services",
                    codes.E037,
                    f"{name} is placed in two groups, {first[name]} and {group.name}",
                    "a service runs in one process: keep it in one group",
                )


def _group(ws: Workspace, group: Group) -> Iterator[Diagnostic]:
    """E039, E042, E038 and E040 for one group as nano.toml writes it."""
    if not _LABEL.match(group.name):
        yield ws.at(
            group.key,
            codes.E039,
            f"placement group name {group.name!r} is not a DNS label: it names the "
            "host the other groups reach it at",
            _LABEL_HINT,
        )
    if not group.services:
        yield ws.at(
            f"{group.key}.services",
            codes.E042,
            f"`{group.key}.services` is empty: a group runs at least one service",
        )
    if group.replicas < 1:
        yield ws.at(
            f"{group.key}.replicas",
            codes.E038,
            f"`{group.key}.replicas` = {group.replicas}: a group runs at least 1 replica",
        )
    if not 0 < group.internal_port <= 65535:
        yield ws.at(
            f"{group.key}.internal_port",
            codes.E038,
            f"`{group.key}.internal_port` = {group.internal_port} is not a TCP port",
        )
    for field, value, form, example in (
        ("cpu", group.cpu, _CPU, '"500m" (half a core) or "2"'),
        ("memory", group.memory, _MEMORY, '"256Mi" or "1Gi"'),
    ):
        if value is not None and (
            not form.match(value) or not any(c in "123456789" for c in value)
        ):
            yield ws.at(
                f"{group.key}.resources.{field}",
                codes.E040,
                f"`{group.key}.resources.{field}` = {value!r} is not a positive "
                f"Kubernetes quantity",
                f"write it as {example}",
            )


def _own_groups(ws: Workspace) -> Iterator[Diagnostic]:
    """E039 and E042 for the groups services in no group form alone."""
    named = set(ws.groups)
    for group in all_groups(ws)[len(ws.groups) :]:
        [service] = group.services
        key = f"services.{service}"
        if not _LABEL.match(group.name):
            yield ws.at(
                key,
                codes.E039,
                f"{service} is in no placement group, so it runs in one of its own, "
                f"{group.name!r}, which is not a DNS label",
                f"put {service} in a [placement.<group>] table",
            )
        elif group.name in named:
            yield ws.at(
                f"placement.{group.name}",
                codes.E042,
                f"placement group {group.name} is named like the group {service} forms "
                f"alone ({service} is in no group): both would be the host {group.name}",
                f"put {service} in placement.{group.name}, or give the group another name",
            )
        named.add(group.name)


def _discovery(ws: Workspace) -> Iterator[Diagnostic]:
    """E041: the pattern is an address, and tells every group apart."""
    pattern = ws.deploy.discovery
    why = pattern_problem(pattern)
    if why:
        yield ws.at(
            "deploy.discovery",
            codes.E041,
            f"`deploy.discovery` = {pattern!r} {why}",
            'the default is "tcp://{group}:{port}": {port} is the group\'s internal_port',
        )
        return
    if "{group}" in pattern:
        return
    seen: dict[int, str] = {}
    for group in all_groups(ws):
        other = seen.setdefault(group.internal_port, group.name)
        if other != group.name:
            yield ws.at(
                "deploy.discovery",
                codes.E041,
                f"`deploy.discovery` = {pattern!r} gives groups {other} and {group.name} "
                f"one address: both have internal_port {group.internal_port}",
                "give each group an internal_port of its own, or put {group} in the pattern",
            )


def _cycles(ws: Workspace) -> Iterator[Diagnostic]:
    """E043: each group starts after the groups it calls, so they cannot call in a circle."""
    edges = calls(ws)
    for cycle in graph.cycles({g: tuple(sorted(d)) for g, d in edges.items()}):
        yield ws.at(
            f"placement.{cycle[0]}",
            codes.E043,
            f"placement groups call each other in a cycle: {' -> '.join(cycle)}",
            "each group starts after the groups it calls: move the services that "
            "close the circle into one group",
        )
