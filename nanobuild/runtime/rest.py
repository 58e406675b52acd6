"""Contracts' REST routes on the HTTP face: matching a request, and making its contract.

A contract that declares ``http: ClassVar[Route] = Route("GET /users/{id}")`` is
served at that route as well as at ``POST /api/<service>/<Contract>``. The table is
built once, at start-up: a static path is one dict lookup, a templated one is
matched against the few templates with its number of segments, the ones with more
literal segments first (``/users/me`` before ``/users/{id}``).

The request is made the way the ``/api/`` path makes it, so it is validated exactly
alike: the body (JSON or MessagePack; none for GET and DELETE) is read as an object,
each path and query parameter is converted from text to its field's type and put in
it (a bad value is a 400 naming the parameter), and the whole is decoded by the
endpoint's own strict codec.
"""

from __future__ import annotations

import reprlib
import typing
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl

import msgspec

from nanobuild.runtime.codecs import Format, decode_any, type_name
from nanobuild.runtime.contracts import Route, route_of, text_kind
from nanobuild.runtime.errors import BadRequest, SetupError
from nanobuild.runtime.node import Endpoint
from nanobuild.runtime.serving import Served
from nanobuild.runtime.spec import BODYLESS, METHODS, query_fields, route_key, route_parts


class Field:
    """A field of a contract as a route reads it: its wire name, type and text kind."""

    __slots__ = ("kind", "name", "required", "type", "wire")

    def __init__(self, name: str, wire: str, tp: Any, required: bool) -> None:
        self.name = name
        self.wire = wire
        self.type = tp
        self.required = required
        self.kind = text_kind(tp)  # "scalar", "list" or None

    def convert(self, where: str, text: str | list[str]) -> Any:
        """``text`` as a value of this field's type; ``BadRequest`` naming the parameter."""
        try:
            return msgspec.convert(text, self.type, strict=False)
        except msgspec.ValidationError:
            shown = text if isinstance(text, str) else ", ".join(text)
            raise BadRequest(
                f"{where} parameter {self.name!r}: {shown!r} is not a {type_name(self.type)}"
            ) from None


class RestRoute:
    """One contract's route, ready to make its request from an HTTP request."""

    __slots__ = ("body", "headers", "method", "path", "path_fields", "query", "served", "status")

    def __init__(self, served: Served, request: type, declared: Route) -> None:
        where = f"{served.service}.{served.name}"
        try:
            self.method, self.path, params = route_parts(declared.text)
        except ValueError as exc:
            raise SetupError(f"the route of {where}: {exc}") from None
        fields = {f.name: f for f in contract_fields(request)}
        query = query_fields(self.method, params, declared.query, fields)
        unknown = [name for name in (*params, *query) if name not in fields]
        if unknown:
            raise SetupError(f"the route of {where} names {unknown[0]}, which is not a field")
        self.served = served
        self.status = declared.status
        self.headers = [
            (k.lower().encode(), v.encode()) for k, v in (declared.headers or {}).items()
        ]
        # the parameters by the position of their segment
        segments = self.path.split("/")
        self.path_fields = [(segments.index(f"{{{name}}}"), fields[name]) for name in params]
        self.query = {fields[name].wire: fields[name] for name in query}
        self.body = self.method not in BODYLESS

    def request(self, parts: list[str], query_string: bytes, body: bytes, fmt: Format) -> Any:
        """The contract's request from the path's ``parts``, the query and the body."""
        data = self._body(body, fmt)
        for index, field in self.path_fields:
            self._put(data, field, field.convert("path", parts[index]), "path")
        if self.query:
            self._query(data, query_string)
        return self.served.codecs[fmt].decode(fmt.encode(data))

    def _body(self, body: bytes, fmt: Format) -> dict[str, Any]:
        if not body:
            return {}
        if not self.body:
            raise BadRequest(f"{self.method} {self.path} takes no body")
        data = decode_any(fmt, body)  # as plain data, before the parameters join it
        if not isinstance(data, dict):
            # reprlib: a body nested deep is shown a few levels down, not walked to its end
            shown = reprlib.repr(data)[:40]
            raise BadRequest(f"the body is an object of the contract's fields, not {shown}")
        return data

    def _query(self, data: dict[str, Any], query_string: bytes) -> None:
        given: dict[str, list[str]] = {}
        for key, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
            if key in self.query:
                given.setdefault(key, []).append(value)
        for wire, field in self.query.items():
            values = given.get(wire)
            if values is None:
                if field.required:
                    raise BadRequest(f"query parameter {wire!r} is required")
                continue
            text = values if field.kind == "list" else values[-1]
            self._put(data, field, field.convert("query", text), "query")

    def _put(self, data: dict[str, Any], field: Field, value: Any, where: str) -> None:
        if field.wire in data:
            raise BadRequest(f"{field.name} comes from the {where}; the body may not give it")
        data[field.wire] = value


Methods = dict[str, RestRoute]  # method -> route, for one path, in METHODS order
Match = tuple[Methods, list[str]]  # the routes of the path, and the path's segments


class Table:
    """Every REST route of the face: static paths by dict, templated ones by shape."""

    def __init__(self, routes: Iterable[RestRoute]) -> None:
        self.static: dict[str, Methods] = {}
        templated: dict[tuple[str | None, ...], Methods] = {}
        # each path's methods in METHODS order, as a 405's Allow names them
        for route in sorted(routes, key=lambda r: METHODS.index(r.method)):
            if "{" in route.path:
                shape = tuple(None if s.startswith("{") else s for s in route.path.split("/"))
                templated.setdefault(shape, {})[route.method] = route
            else:
                self.static.setdefault(route.path, {})[route.method] = route
        # segment count -> [(literal segments by position, routes)], most literal first
        self.templated: dict[int, list[tuple[list[tuple[int, str]], Methods]]] = {}
        for shape, methods in sorted(templated.items(), key=lambda kv: _specificity(kv[0])):
            literal = [(i, s) for i, s in enumerate(shape) if s is not None]
            self.templated.setdefault(len(shape), []).append((literal, methods))

    def __bool__(self) -> bool:
        return bool(self.static or self.templated)

    def match(self, path: str) -> Match | None:
        """The routes at ``path`` and its segments, or None."""
        methods = self.static.get(path)
        if methods is not None:
            return methods, []
        candidates = self.templated.get(path.count("/") + 1)
        if candidates is None:
            return None
        parts = path.split("/")
        for literal, methods in candidates:
            if all(parts[i] == s for i, s in literal) and all(parts[1:]):
                return methods, parts
        return None


def _specificity(shape: tuple[str | None, ...]) -> tuple[int, tuple[bool, ...]]:
    # more literal segments first; among equals, literals earlier in the path first
    return (-sum(s is not None for s in shape), tuple(s is None for s in shape))


def table(endpoints: Iterable[Endpoint], served: Mapping[tuple[str, str], Served]) -> Table:
    """The face's table of every endpoint that declares a route; ``SetupError`` if one is bad.

    ``nanobuild check`` proves the routes first (E230-E235): this refuses only what
    was built without it.
    """
    routes: dict[str, RestRoute] = {}
    for endpoint in endpoints:
        declared = route_of(endpoint.request)
        if declared is None:
            continue
        where = endpoint.contract
        if not isinstance(declared, Route):
            raise SetupError(f"the route of {where} is not a Route: {declared!r}")
        route = RestRoute(served[(endpoint.service, endpoint.name)], endpoint.request, declared)
        key = route_key(route.method, route.path)
        if key in routes:
            other = routes[key].served
            raise SetupError(f"{where} and {other.service}.{other.name} share the route {key}")
        routes[key] = route
    return Table(routes.values())


def contract_fields(request: type) -> list[Field]:
    """A contract's fields: a msgspec Struct's, or a pydantic model's."""
    if isinstance(request, type) and issubclass(request, msgspec.Struct):
        return [
            Field(f.name, f.encode_name, f.type, f.required)
            for f in msgspec.structs.fields(request)
        ]
    model_fields: dict[str, Any] = getattr(request, "model_fields", {})
    resolved = typing.get_type_hints(request) if model_fields else {}
    return [
        Field(name, info.alias or name, resolved.get(name, info.annotation), info.is_required())
        for name, info in model_fields.items()
    ]
