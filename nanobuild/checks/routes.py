"""E230-E235: contracts' REST routes are well formed, bind real fields, and never collide.

A contract declares its route as ``http: ClassVar[Route] = Route("GET /users/{id}")``;
the kernel probe reports it as plain data (``probe.RouteInfo``: the text, where it is
written, its status and query names, and how each field of the contract can come from
a URL), and the text is read by the very function the binary serves it with
(``spec.route_parts``). Routes are compared across every service served on one face:
the front door's, or the port of a service that has one of its own.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator

from nanobuild import codes
from nanobuild.checks.context import Context
from nanobuild.diagnostics import Diagnostic, did_you_mean
from nanobuild.probe import ContractInfo, RouteInfo
from nanobuild.runtime.spec import BODYLESS, query_fields, route_key, route_parts

Place = tuple[str, int | None]  # path, line


def check(ctx: Context) -> Iterator[Diagnostic]:
    # (where it is served, route key) -> the contract holding it, and where it is written:
    # a service with a port of its own serves its routes there, beside no other's
    taken: dict[tuple[int | None, str], tuple[str, Place]] = {}
    for name in ctx.workspace.services:
        info = ctx.kernels.get(name)
        if info is None or info.error is not None:
            continue  # E208 (or an earlier problem) says why it was not read
        kernel = ctx.kernel(ctx.workspace.services[name])
        assert kernel is not None  # only parsed kernels are probed
        here = ctx.rel(kernel.path)
        for contract, route in info.routes.items():
            described = info.contracts[contract]
            place = (here, route.line or kernel.classes.get(contract))
            key = yield from _route(f"{name}.{contract}", described, route, place)
            if key is None:
                continue
            served = (ctx.workspace.services[name].port, key)
            if served in taken:
                other, (path, line) = taken[served]
                yield _at(
                    place,
                    codes.E233,
                    f"{name}.{contract} and {other} are both on the route {key}",
                    hint=f"{other} is at {path}:{line}; give one of them another path or method",
                )
            else:
                taken[served] = (f"{name}.{contract}", place)


def _at(place: Place, code: codes.Code, message: str, hint: str | None = None) -> Diagnostic:
    return Diagnostic(place[0], code, message, line=place[1], hint=hint)


def _route(
    label: str, described: ContractInfo, route: RouteInfo, place: Place
) -> Generator[Diagnostic, None, str | None]:
    """The route's problems; returns its key (for E233) when it is well formed."""
    if route.problem is not None:
        yield _at(place, codes.E230, f"the route of {label} is malformed: {route.problem}")
        return None
    try:
        method, path, params = route_parts(route.text)
    except ValueError as exc:
        yield _at(
            place,
            codes.E230,
            f"the route of {label} is malformed: {exc}",
            hint='write it as Route("GET /users/{id}"), methods GET POST PUT PATCH DELETE',
        )
        return None
    if not 200 <= route.status <= 299:
        yield _at(
            place,
            codes.E234,
            f"the route {method} {path} of {label} answers {route.status}, "
            "which is not a success status (200-299)",
            hint="raise a NanoError (NotFound, Conflict, ...) for an error answer",
        )
    if route.status == 204 and described.response != "None":
        yield _at(
            place,
            codes.E235,
            f"the route {method} {path} of {label} answers 204, which has no body, "
            f"but its response type is {described.response}",
            hint="declare Contract[None], or answer 200",
        )
    yield from _fields(label, method, path, params, route, place)
    return route_key(method, path)


def _fields(
    label: str,
    method: str,
    path: str,
    params: tuple[str, ...],
    route: RouteInfo,
    place: Place,
) -> Iterator[Diagnostic]:
    """E231 and E232: every parameter names a field that can come from text."""
    fields = route.fields
    query = query_fields(method, params, route.query, fields)
    for name, where, needs in [(p, "path", "scalar") for p in params] + [
        (q, "query string", "") for q in query
    ]:
        field = fields.get(name)
        if field is None:
            yield _at(
                place,
                codes.E231,
                f"the route {method} {path} of {label} binds {name}, which is not a field of it",
                hint=did_you_mean(name, fields),
            )
        elif not field.kind or (needs and field.kind != needs):
            yield _at(
                place,
                codes.E232,
                f"the route {method} {path} of {label} reads field {name} ({field.type}) "
                f"from the {where}, which cannot carry a {field.type}",
                hint="only str, int, float, bool, dates, UUIDs, enums (and, in the query, "
                "lists of them) come from text"
                + ("; use POST, PUT or PATCH to send it in the body" if method in BODYLESS else ""),
            )
