"""``nanobuild bundle``: check, generate the ingress, pack ``dist/<name>.pyz``.

The steps read top to bottom: the checks must pass, the services to pack are chosen
(all, or ``--only``), the ingress is rendered for them, and ``pack`` writes the
binary. Each step reports its duration to ``progress``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from nanobuild import checks, codegen, codes, describe, lock, pack
from nanobuild.diagnostics import Diagnostic, did_you_mean, errors
from nanobuild.errors import CheckFailed, WorkspaceError
from nanobuild.runtime.spec import AppSpec
from nanobuild.workspace import Workspace

Progress = Callable[[str, float], None]


def bundle(
    ws: Workspace,
    *,
    only: Sequence[str] = (),
    find_links: Sequence[Path] = (),
    offline: bool = False,
    verbose: bool = False,
    progress: Progress | None = None,
) -> Path:
    """Build the binary for ``ws`` (or the ``only`` services of it); its path.

    Every binary of a workspace carries exactly the packages of its ``nano.lock``
    (E501-E504 when it has none, or one that does not fit), staged first so that
    ``check`` can read which package provides which module.
    """
    report = progress or (lambda step, seconds: None)
    names = chosen(ws, only)
    pack.sweep(target(ws, only))  # what a killed build left, even if this one stops early
    with _timed_step(report) as step:
        made = lock.require(ws)
        staged = lock.stage_of(made, find_links=find_links, offline=offline, verbose=verbose)
        step("stage (cached)" if staged.reused else "stage")
    with _timed("check", report):
        context = checks.Context.read(ws)
        found = checks.check(context)
        if errors(found):  # the warnings come along, to be shown with the errors
            raise CheckFailed(found)
    with _timed("generate", report):
        spec = subset(describe.describe(ws, context.modules), names)
        contents = pack.plan(ws, names, context.modules)
        digest = codegen.inputs_hash(ws, pack.sources(ws, contents))
        source = codegen.render(
            spec, ws, inputs_hash=digest, only=only, distributions=made.distributions()
        )
    return pack.build(
        ws,
        names,
        source,
        target(ws, only),
        find_links=find_links,
        offline=offline,
        verbose=verbose,
        progress=report,
        contents=contents,
        staged=staged,
    )


def chosen(ws: Workspace, only: Sequence[str]) -> list[str]:
    """The services to pack, in the workspace's order; unknown names are refused."""
    unknown = [name for name in only if name not in ws.services]
    if unknown:
        raise WorkspaceError(
            [
                Diagnostic(
                    "--only",
                    codes.E008,
                    f"--only names {name}, which is not a service of this workspace",
                    hint=did_you_mean(name, ws.services),
                )
                for name in unknown
            ]
        )
    return [name for name in ws.services if not only or name in only]


def subset(spec: AppSpec, names: Sequence[str]) -> AppSpec:
    """``spec`` for a binary that carries only the services ``names``.

    Every service stays in the table — the binary must know the contracts of the
    services it calls in order to route them to where they run — but only ``names``
    are packed, so only they can run here.
    """
    if len(names) == len(spec.services):
        return spec
    return AppSpec(name=spec.name, services=spec.services, static=spec.static, packed=tuple(names))


def target(ws: Workspace, only: Sequence[str]) -> Path:
    """``dist/<name>.pyz``, or ``dist/<name>-<a>-<b>.pyz`` for ``--only a,b``."""
    stem = "-".join([ws.name, *only])
    return ws.root / "dist" / f"{stem}.pyz"


@contextmanager
def _timed_step(report: Progress) -> Iterator[Callable[[str], None]]:
    """Like ``_timed``, for a step whose name is known once it is done."""
    start = time.perf_counter()
    yield lambda step: report(step, time.perf_counter() - start)


@contextmanager
def _timed(step: str, report: Progress) -> Iterator[None]:
    start = time.perf_counter()
    yield
    report(step, time.perf_counter() - start)
