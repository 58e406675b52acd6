"""E301, E302, E304: the services can share one process.

No two packages claim one top-level module name, no package shadows the standard
library or the runtime, and every fused party's requirements can be met together.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from nanobuild import codes
from nanobuild.checks.context import Context
from nanobuild.diagnostics import Diagnostic
from nanobuild.requirements import RUNTIME_PARTY, RUNTIME_REQUIRES, clashes
from nanobuild.workspace import Library, Service

RESERVED = {"nanobuild": "nanobuild itself"} | {
    str(canonicalize_name(Requirement(r).name)).replace("-", "_"): "the nanobuild runtime"
    for r in RUNTIME_REQUIRES
}


def check(ctx: Context) -> Iterator[Diagnostic]:
    ws = ctx.workspace
    owners: list[Service | Library] = [*ws.services.values(), *ws.libraries.values()]
    claimed: dict[str, Service | Library] = {}
    for owner in owners:
        key = owner.key
        if owner.package in claimed:
            first = claimed[owner.package]
            yield ws.at(
                key,
                codes.E301,
                f"{owner.label} and {first.label} both claim the module name {owner.package}",
                f"set `{key}.package` to a name of its own",
            )
            continue
        claimed[owner.package] = owner
        shadowed = (
            "the standard library"
            if owner.package in sys.stdlib_module_names
            else RESERVED.get(owner.package)
        )
        if shadowed:
            yield ws.at(
                key,
                codes.E304,
                f"{owner.label}'s package {owner.package} would shadow {shadowed}'s "
                f"module {owner.package}",
                f'set `{key}.package` to another name, e.g. "{owner.package}_service"',
            )
    parties: list[tuple[str, tuple[str, ...]]] = [(RUNTIME_PARTY, RUNTIME_REQUIRES)]
    parties += [(owner.label, owner.requires) for owner in owners]
    for clash in clashes(parties):
        last = clash.needs[-1]
        blamed = next((o for o in owners if o.label == last.who), None)
        yield ws.at(
            f"{blamed.key}.requires" if blamed else "services",
            codes.E302,
            f"no version of {clash.distribution} satisfies "
            + " and ".join(f"{n.who} ({n.text})" for n in clash.needs),
            "fused services share one copy of each package: agree on a version range",
        )
