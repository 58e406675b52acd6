"""OpenAPI 3.1 for the public contracts, built from their msgspec JSON Schemas.

Only public contracts appear: the others answer only to the workspace secret, and to
everyone else look absent (see the README's "The HTTP face"), so the document does
not name them either.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from nanobuild.runtime.node import Endpoint

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


def document(title: str, version: str, endpoints: Iterable[Endpoint]) -> dict[str, Any]:
    """The OpenAPI document: one ``POST /api/<service>/<Contract>`` per public contract."""
    public = sorted((e for e in endpoints if e.public), key=lambda e: (e.service, e.name))
    types = [Error] + [e.request for e in public] + [e.response for e in public]
    schemas, components = msgspec.json.schema_components(types, ref_template=REF)
    error, requests, responses = (
        schemas[0],
        schemas[1 : len(public) + 1],
        schemas[len(public) + 1 :],
    )
    paths = {
        f"/api/{e.service}/{e.name}": {"post": _operation(e, request, response, error)}
        for e, request, response in zip(public, requests, responses, strict=True)
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {"schemas": components},
    }


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


def _content(schema: dict[str, Any]) -> dict[str, Any]:
    return {media_type: {"schema": schema} for media_type in MEDIA_TYPES}


def _summary(request: type) -> str:
    """The first line of the contract's own docstring (not one it inherits)."""
    doc = request.__dict__.get("__doc__") or ""
    return doc.strip().split("\n", 1)[0]
