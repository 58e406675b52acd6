"""E202-E205, E209, E218, E219: every contract has exactly one handler, the handler's
annotations say what the contract says, and what is marked is a function the runtime
can wire: the one its module keeps under its name, not a class, a lambda or a cache."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from nanobuild import codes
from nanobuild.checks.context import Context
from nanobuild.diagnostics import Diagnostic, did_you_mean
from nanobuild.probe import KernelInfo
from nanobuild.source import Function, Module, marked
from nanobuild.workspace import Service

# What the runtime's ``handler`` says when it refuses what it is given, in the same words.
NOT_A_FUNCTION = "@handler marks a function (def or async def)"


def check(ctx: Context) -> Iterator[Diagnostic]:
    for name, info in ctx.kernels.items():
        if info.error is None:
            yield from _service(ctx, ctx.workspace.services[name], info)
    for svc in ctx.workspace.services.values():
        for module in ctx.modules.get(svc.name, []):
            yield from _unwirable(ctx, module)


def _unwirable(ctx: Context, module: Module) -> Iterator[Diagnostic]:
    """E218 for a handler its module binds again, E219 for what ``handler`` marks that
    is no function it can wire."""
    for fn in (*module.functions, *module.candidates):
        if fn.mark != "handler" or (fn.rebound is None and fn.wrapped is None):
            continue
        here = ctx.rel(module.path)
        if fn.rebound is not None:
            yield Diagnostic(
                here,
                codes.E218,
                f"handler {fn.name} at line {fn.line} is replaced by what line {fn.rebound} "
                f"binds to {fn.name.rpartition('.')[2]}: the module keeps only the last",
                line=fn.rebound,
                hint="give each handler a name of its own",
            )
        if fn.wrapped is not None:
            yield Diagnostic(
                here,
                codes.E219,
                f"{NOT_A_FUNCTION}, but @{fn.wrapped} makes {fn.name} something else, "
                "off which the runtime cannot read its request",
                line=fn.line,
                hint="a handler is a plain def: cache or wrap what it calls, not the handler",
            )
    for what, name, line in module.misplaced:
        message, hint = _MISPLACED[what]
        yield Diagnostic(
            ctx.rel(module.path), codes.E219, message.format(name=name), line=line, hint=hint
        )


_MISPLACED = {
    "class": (
        NOT_A_FUNCTION + ", not the class {name}",
        "mark the methods that answer contracts, each with @handler",
    ),
    "lambda": (
        NOT_A_FUNCTION + ", not a lambda: it has no name to be wired by, nor annotations",
        "write `@handler def name(req: Contract) -> Response:`",
    ),
    "call": (
        "{name} is called outside any function: check and the wiring see only "
        "functions marked with @handler (or by a decorator that calls it)",
        "write @handler on the def itself",
    ),
    "empty": (
        NOT_A_FUNCTION + ", given as itself: `@handler()` calls it with nothing",
        "write @handler, without parentheses",
    ),
}


def _service(ctx: Context, svc: Service, info: KernelInfo) -> Iterator[Diagnostic]:
    by_contract: dict[str, list[tuple[Module, Function]]] = defaultdict(list)
    shared = [m for library in svc.libraries for m in ctx.modules.get(library, [])]
    for module, fn in marked(ctx.modules[svc.name], shared):
        if fn.mark == "handler":
            here = ctx.rel(module.path)
            contract, problem = _contract_of(ctx, svc, info, fn, here)
            if problem is not None:
                yield problem
                continue
            assert contract is not None
            by_contract[contract].append((module, fn))
            expected = info.contracts[contract].response
            if expected is None:
                continue  # E210 already says the contract lacks a response type
            if fn.response is None:
                yield Diagnostic(
                    here,
                    codes.E204,
                    f"handler {fn.name} does not annotate its return type",
                    line=fn.line,
                    hint=f"{contract} answers {expected}: write `-> {expected}`",
                )
            elif fn.response != expected:
                yield Diagnostic(
                    here,
                    codes.E204,
                    f"handler {fn.name} returns {fn.response}, but {contract} answers {expected}",
                    line=fn.line,
                    hint=f"change the return annotation to `-> {expected}`",
                )
    kernel = ctx.kernel(svc)
    assert kernel is not None
    for contract in info.contracts:
        handlers = by_contract.get(contract, [])
        if not handlers:
            yield Diagnostic(
                ctx.rel(kernel.path),
                codes.E202,
                f"contract {contract} of {svc.name} has no handler",
                line=kernel.classes.get(contract),
                hint=f"add `@handler def ...(req: {contract}) -> ...` to {svc.package}/handlers.py",
            )
        for module, fn in handlers[1:]:
            first_module, first = handlers[0]
            yield Diagnostic(
                ctx.rel(module.path),
                codes.E203,
                f"contract {contract} has a second handler {fn.name}; the first is "
                f"{first.name} at {ctx.rel(first_module.path)}:{first.line}",
                line=fn.line,
                hint="a contract has exactly one handler: remove or rename one",
            )
    for public in svc.public:
        if public not in info.contracts:
            yield ctx.workspace.at(
                f"services.{svc.name}.public",
                codes.E205,
                f"services.{svc.name}.public names {public}, which is not a contract of {svc.name}",
                did_you_mean(public, info.contracts),
            )


def _contract_of(
    ctx: Context, svc: Service, info: KernelInfo, fn: Function, here: str
) -> tuple[str | None, Diagnostic | None]:
    """The own-kernel contract ``fn`` answers, or the problem that keeps us from knowing."""
    if fn.request is None:
        return None, Diagnostic(
            here,
            codes.E204,
            f"handler {fn.name} does not annotate its request parameter",
            line=fn.line,
            hint="annotate the first parameter with the contract it answers",
        )
    prefix, _, leaf = fn.request.rpartition(".")
    owner = ctx.package_owner.get(prefix.partition(".")[0]) if prefix else None
    if isinstance(owner, Service) and owner is not svc:
        return None, Diagnostic(
            here,
            codes.E209,
            f"handler {fn.name} answers {fn.request}, a contract of {owner.name}",
            line=fn.line,
            hint=f"a service handles only the contracts of its own kernel ({svc.kernel_module})",
        )
    if leaf not in info.contracts:
        return None, Diagnostic(
            here,
            codes.E209,
            f"handler {fn.name} takes {leaf}, which is not a contract of {svc.name}'s kernel",
            line=fn.line,
            hint=did_you_mean(leaf, info.contracts)
            or f"define `class {leaf}(Contract[...])` in {svc.kernel_module}",
        )
    return leaf, None
