"""OpenAPI 3.1 for the public contracts, built from their msgspec JSON Schemas.

Only public contracts appear: the others answer only to the workspace secret, and to
everyone else look absent (see the README's "The HTTP face"), so the document does
not name them either.
"""

from __future__ import annotations

import sys
from collections.abc import Collection, Iterable
from typing import Any

import msgspec

from nanobuild.runtime.contracts import Route, route_of
from nanobuild.runtime.node import Endpoint
from nanobuild.runtime.spec import BODYLESS, query_fields, route_parts

REF = "#/components/schemas/{name}"
MEDIA_TYPES = ("application/json", "application/msgpack")

# the answers the HTTP face itself gives; a handler may raise others (see "default")
ERRORS = {
    "400": "The request does not validate against the contract.",
    "404": "No such contract here, or the thing it names does not exist.",
    "413": "The request body is over the size limit.",
    "415": "The body is neither JSON nor MessagePack.",
    "500": "The handler failed unexpectedly.",
    "default": "Any other error the handler raises (409 conflict, 503 unavailable, ...).",
}


class ErrorDetail(msgspec.Struct):
    """What went wrong, and in which service and contract."""

    kind: str
    message: str
    service: str
    contract: str


class Error(msgspec.Struct):
    """The body of every error answer."""

    error: ErrorDetail


def document(
    title: str, version: str, endpoints: Iterable[Endpoint], *, elsewhere: Collection[str] = ()
) -> dict[str, Any]:
    """The OpenAPI document: one ``POST /api/<service>/<Contract>`` per public contract,
    and its REST route beside it where it declares one, unless its service is one of
    ``elsewhere`` (those that serve their routes on a port of their own)."""
    public = sorted((e for e in endpoints if e.public), key=lambda e: (e.service, e.name))
    types = [Error] + [e.request for e in public] + [e.response for e in public]
    schemas, components = schema_components(types)
    error, requests, responses = (
        schemas[0],
        schemas[1 : len(public) + 1],
        schemas[len(public) + 1 :],
    )
    paths = {
        f"/api/{e.service}/{e.name}": {"post": _operation(e, request, response, error)}
        for e, request, response in zip(public, requests, responses, strict=True)
    }
    for e, request, response in zip(public, requests, responses, strict=True):
        if e.service in elsewhere:
            continue
        routed = _rest_operation(e, request, response, error, components)
        if routed is not None:
            path, method, operation = routed
            paths.setdefault(path, {})[method] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {"schemas": components},
    }


def schema_components(types: list[Any]) -> tuple[tuple[dict[str, Any], ...], dict[str, Any]]:
    """msgspec's JSON Schemas of ``types`` and their components, pydantic models'
    written by pydantic (each its own component, by alias)."""
    if "pydantic" not in sys.modules:
        return msgspec.json.schema_components(types, ref_template=REF)
    from nanobuild.runtime import models

    written: dict[str, Any] = {}

    def model_schema(tp: Any) -> dict[str, Any]:
        if not models.is_model(tp):
            raise NotImplementedError  # msgspec's own error for a type it cannot describe
        return models.json_schema(tp, REF, written)

    schemas, components = msgspec.json.schema_components(
        types, ref_template=REF, schema_hook=model_schema
    )
    return schemas, {**components, **dict(sorted(written.items()))}


def _operation(
    endpoint: Endpoint, request: dict[str, Any], response: dict[str, Any], error: dict[str, Any]
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": f"{endpoint.service}.{endpoint.name}",
        "tags": [endpoint.service],
        "requestBody": {"required": True, "content": _content(request)},
        "responses": {
            "200": {"description": "The contract's response.", "content": _content(response)},
            **{
                status: {"description": text, "content": _content(error)}
                for status, text in ERRORS.items()
            },
        },
    }
    summary = _summary(endpoint.request)
    if summary:
        operation["summary"] = summary
    return operation


def _rest_operation(
    endpoint: Endpoint,
    request: dict[str, Any],
    response: dict[str, Any],
    error: dict[str, Any],
    components: dict[str, Any],
) -> tuple[str, str, dict[str, Any]] | None:
    """(path, method, operation) of the contract's REST route, or None if it has none."""
    declared = route_of(endpoint.request)
    if not isinstance(declared, Route):
        return None
    try:
        method, path, params = route_parts(declared.text)
    except ValueError:  # check refuses it (E230), and the face does not start with it
        return None
    whole = components.get(request.get("$ref", "").rpartition("/")[2], {})
    properties, required = whole.get("properties", {}), set(whole.get("required", ()))
    wire = _wire_names(endpoint.request)
    query = query_fields(method, params, declared.query, wire)
    parameters = [_parameter(wire[p], "path", True, properties) for p in params] + [
        _parameter(wire[q], "query", wire[q] in required, properties) for q in query
    ]
    operation = _operation(endpoint, request, response, error)
    operation["operationId"] += ".route"
    taken = {wire[name] for name in (*params, *query)}
    if method in BODYLESS:
        del operation["requestBody"]
    elif taken:  # the body holds the fields the URL does not
        body = {**whole, "properties": {k: v for k, v in properties.items() if k not in taken}}
        body["required"] = [k for k in whole.get("required", ()) if k not in taken]
        operation["requestBody"]["content"] = _content(body)
    if parameters:
        operation["parameters"] = parameters
    success = operation["responses"].pop("200")
    if declared.status == 204:
        del success["content"]
    if declared.headers:
        success["headers"] = {
            name: {"schema": {"type": "string", "const": value}}
            for name, value in declared.headers.items()
        }
    operation["responses"] = {str(declared.status): success, **operation["responses"]}
    return path, method.lower(), operation


def _parameter(name: str, where: str, required: bool, properties: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": where, "required": required, "schema": properties.get(name, {})}


def _wire_names(request: type) -> dict[str, str]:
    """Each field of a contract -> its name on the wire (a Struct's, or a pydantic model's)."""
    if isinstance(request, type) and issubclass(request, msgspec.Struct):
        return {f.name: f.encode_name for f in msgspec.structs.fields(request)}
    fields: dict[str, Any] = getattr(request, "model_fields", {})
    return {name: info.alias or name for name, info in fields.items()}


def _content(schema: dict[str, Any]) -> dict[str, Any]:
    return {media_type: {"schema": schema} for media_type in MEDIA_TYPES}


def _summary(request: type) -> str:
    """The first line of the contract's own docstring (not one it inherits)."""
    doc = request.__dict__.get("__doc__") or ""
    return doc.strip().split("\n", 1)[0]
