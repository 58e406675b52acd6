"""The HTTP face of a node, as one ASGI app (the README's "The HTTP face").

    POST /api/<service>/<Contract>    the fast path, answered here at the ASGI level
    GET  /healthz, /readyz            alive and ready (health.py), before any other path
    GET  /_nano/, /docs               the built-in page and the API docs (page.py), next
    GET /users/{id}, ...              contracts' REST routes (rest.py), also at the ASGI level
    GET  /openapi.json, /             a small Starlette app (openapi.py, static.py)
    lifespan                          the services' start-up and shutdown hooks

Contract calls skip Starlette on purpose: each endpoint's codecs are built once, the
endpoint is one dict lookup on the path, and no Request or Response object is made.
That is most of the difference between a framework route and a raw ASGI callable,
and contract calls are the traffic that matters.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Protocol

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from nanobuild.runtime import context, health, openapi, rest, telemetry
from nanobuild.runtime.codecs import JSON, MSGPACK, Format, format_of
from nanobuild.runtime.errors import (
    BadRequest,
    MethodNotAllowed,
    NanoError,
    PayloadTooLarge,
    SetupError,
    UnknownContract,
    UnsupportedMediaType,
)
from nanobuild.runtime.exchange import SECRET_HEADER, Exchange, bind, unbind
from nanobuild.runtime.faults import log_failure, unknown_contract
from nanobuild.runtime.node import Node
from nanobuild.runtime.page import DOCS, Page
from nanobuild.runtime.rest import RestRoute
from nanobuild.runtime.serving import Served, served_endpoints
from nanobuild.runtime.settings import Settings
from nanobuild.runtime.spec import __version__
from nanobuild.runtime.static import Frontend

log = logging.getLogger("nanobuild.http")
_CONTEXT_HEADER = context.HEADER  # read for every header of every call: a plain global
_SECRET_HEADER = SECRET_HEADER  # as is this one


class Companion(Protocol):
    """Something that serves beside the HTTP face, on the same loop (the TCP server)."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...


# an adopted app under its mount: (prefix, app, its lifespan state)
Mounted = tuple[str, ASGIApp, dict[str, Any]]


class _Failed(Exception):
    """A call failed; ``error`` is what its caller is told (and the log was told already)."""

    def __init__(self, error: NanoError) -> None:
        self.error = error


class _ClientGone(Exception):
    """The client disconnected before its request body arrived: nobody to answer."""


class App:
    """The ASGI app serving one wired ``Node``; ``build_app`` makes one."""

    def __init__(
        self,
        node: Node,
        companions: Sequence[Companion] = (),
        mounts: Sequence[Mounted] = (),
        only: str | None = None,
    ) -> None:
        self.node = node
        self.settings: Settings = node.settings
        self.companions = list(companions)
        served = served_endpoints(node, "http")
        if only is not None:  # the face of one service's own port: its contracts alone
            served = {key: s for key, s in served.items() if key[0] == only}
        self.routes = {f"/api/{service}/{name}": s for (service, name), s in served.items()}
        self._secret = self.settings.secret.encode() if self.settings.secret else None
        self._site = site(node) if only is None else _not_found  # a port: routes alone
        # the front door's own paths, which no route or mounted app shadows
        self.health = health.Health(node) if only is None else None
        # the built-in page and the API docs; /docs stays an app's that is mounted over it
        self.page = Page(node, docs=not _covers(mounts, DOCS)) if only is None else None
        # contracts' own routes; those of a service with a port of its own are there only
        if only is None:
            ported = own_ports(node)
            routed = [e for e in node.every_endpoint() if e.service not in ported]
        else:
            routed = [e for e in node.every_endpoint() if e.service == only]
        self.rest = rest.table(routed, served)
        # adopted apps mounted on the front door take every path but the contracts'
        self._contracts_only = not mounts
        if mounts:
            from nanobuild.runtime.asgi import Front

            self._site = Front(mounts, self._site)
        # observed (telemetry on when the app is built), each request gets its request id
        # and trace context at the door: a contract call's in ``api`` (``telemetry.door``),
        # with its span made inline; any other request's by ``telemetry.Edge``
        self._edge = telemetry.Edge(self._beyond_api) if telemetry.enabled() else None
        self._rest_at_api = self.rest_call if self._edge is None else telemetry.Edge(self.rest_call)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["path"].startswith("/api/")
            and (self._contracts_only or scope["path"] in self.routes)
        ):
            await self.api(scope, receive, send)
        elif self._edge is not None:
            await self._edge(scope, receive, send)
        else:
            await self._beyond_api(scope, receive, send)

    async def _beyond_api(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Every request but a contract call's at ``/api/``."""
        if scope["type"] == "lifespan":
            await self.lifespan(receive, send)
        elif self.health is not None and scope["path"] in health.PATHS and scope["type"] == "http":
            await self.health(scope, receive, send)
        elif self.page is not None and scope["type"] == "http" and self.page.claims(scope["path"]):
            await self.page(scope, receive, send)
        elif not (
            self.rest and scope["type"] == "http" and await self.rest_call(scope, receive, send)
        ):
            await self._site(scope, receive, send)

    # -- contract calls

    async def api(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one ``/api/`` request: find, check, decode, run, encode."""
        content_type = content_length = secret = values = None
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value
            elif name == b"content-length":
                content_length = value
            elif name == _SECRET_HEADER:
                secret = value
            elif name == _CONTEXT_HEADER:
                values = value
        fmt = None if content_type is None else format_of(content_type)
        path: str = scope["path"]
        served = self.routes.get(path)
        if served is None and self.rest and await self._rest_at_api(scope, receive, send):
            return  # a contract's REST route under /api/
        door = None if self._edge is None else telemetry.door(scope["headers"])
        try:
            if served is None or not (served.public or self._authorized(secret)):
                raise _unknown(path)  # a contract kept from this caller looks absent
            if scope["method"] != "POST":
                raise MethodNotAllowed(f"call {served.service}.{served.name} with POST")
            if fmt is None:
                raise UnsupportedMediaType(_media_type_message(content_type))
            body = await self._body(receive, content_length)
            payload, exchange = await self._answer(served, body, fmt, values, secret, scope, door)
        except (_Failed, NanoError) as exc:
            if isinstance(exc, _Failed):
                error = exc.error
            else:  # refused before it ran
                error = exc.located(served.service, served.name) if served is not None else exc
                log_failure(log, error)
            if door is not None:
                send = telemetry.answering(send, door)
            await _fail(send, error, fmt or JSON, trusted=self._authorized(secret))
            return
        except _ClientGone:
            return
        headers = exchange.encoded_headers()
        if door is not None:
            headers.append(telemetry.answered(door, 200))
        await _respond(send, 200, fmt.media_type, payload, headers)

    async def _answer(
        self,
        served: Served,
        body: bytes,
        fmt: Format,
        values: bytes | None,
        secret: bytes | None,
        scope: Scope,
        door: context.Context | None,
    ) -> tuple[bytes, Exchange]:
        """The encoded answer and its exchange; ``_Failed`` with what the caller is told if
        the call failed. ``door``: the context the door gave the request, when observed."""
        token = None
        given = door
        if values is not None and self._authorized(secret):
            # only a trusted caller (another nanobuild process) sets the call's context
            # over what the door gave it (request id, trace context): the caller's own wins
            given = {**(door or context.current()), **context.from_header(values)}
        # observed, the call arrives with ``given`` (see ``_run``); else it is bound here
        arrived = given if door is not None and served.watch is not None else None
        if given is not None and arrived is None:
            token = context.bind(given)
        try:
            codec = served.codecs[fmt]
            request = codec.decode(body)
            exchange = Exchange(scope["headers"], "POST", scope["path"])
            return codec.encode(await _run(served, request, exchange, arrived)), exchange
        except Exception as exc:
            raise _Failed(served.failure(exc)) from exc
        finally:
            if token is not None:
                context.unbind(token)

    # -- contracts' REST routes

    async def rest_call(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """Answer a contract's REST route; False if none this caller may see is at the path."""
        found = self.rest.match(scope["path"])
        if found is None:
            return False
        head = _Head(scope["headers"])
        trusted = self._authorized(head.secret)
        visible, parts = found
        if not trusted:  # a route of a contract kept from this caller looks absent, as at /api/
            visible = {m: r for m, r in visible.items() if r.served.public}
        if not visible:
            return False
        route = visible.get(scope["method"])
        fmt = head.answer_format()
        try:
            if route is None:
                raise MethodNotAllowed(f"{scope['path']} answers {', '.join(visible)}")
            body = await self._body(receive, head.content_length)
            answer = await self._rest_answer(route, scope, parts, body, head, trusted)
        except _Failed as failed:
            await _fail(send, failed.error, fmt, visible, trusted=trusted)
        except NanoError as exc:  # refused before it ran
            if route is not None:
                exc.located(route.served.service, route.served.name)
            log_failure(log, exc)
            await _fail(send, exc, fmt, visible, trusted=trusted)
        except _ClientGone:
            pass
        else:
            await send(answer[0])
            await send(answer[1])
        return True

    async def _rest_answer(
        self,
        route: RestRoute,
        scope: Scope,
        parts: list[str],
        body: bytes,
        head: _Head,
        trusted: bool,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The answer's two ASGI messages; ``_Failed`` with what the caller is told if the
        call failed."""
        served = route.served
        token = None
        if head.values is not None and trusted:
            token = context.bind({**context.current(), **context.from_header(head.values)})
        try:
            given = head.body_format(body)
            fmt = head.answer_format(given)
            # no body: the fields from the URL go through the MessagePack codec
            request = route.request(parts, scope["query_string"], body, given or MSGPACK)
            exchange = Exchange(scope["headers"], scope["method"], scope["path"])
            result = await _run(served, request, exchange)
            status = exchange.status or route.status
            payload = b"" if status == 204 else served.codecs[fmt].encode(result)
        except Exception as exc:
            raise _Failed(served.failure(exc)) from exc
        finally:
            if token is not None:
                context.unbind(token)
        headers = [*route.headers, *exchange.encoded_headers()]
        if status != 204:
            headers += [(b"content-type", fmt.media_type)]
        headers.append((b"content-length", str(len(payload)).encode()))
        start = {"type": "http.response.start", "status": status, "headers": headers}
        return start, {"type": "http.response.body", "body": payload}

    def _authorized(self, secret: bytes | None) -> bool:
        """Whether the call's ``nano-secret`` header is NANO_SECRET (compared in constant time).

        A header of nanobuild's own, so that ``Authorization`` stays the app's.
        """
        if self._secret is None or secret is None:
            return False
        return hmac.compare_digest(secret, self._secret)

    async def _body(self, receive: Receive, content_length: bytes | None) -> bytes:
        """The request body, refused as soon as it is known to be over the limit."""
        limit = self.settings.max_body
        if content_length is not None and _declared(content_length) > limit:
            raise _too_large(limit)
        chunks: list[bytes] = []
        size = 0
        while True:  # count what arrives too: a chunked body declares no length
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _ClientGone
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    # -- start-up and shutdown

    async def lifespan(self, receive: Receive, send: Send) -> None:
        """Run the services' hooks; a failed start-up is one line, not a traceback."""
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                failure = await self._start()
                if failure:
                    await send({"type": "lifespan.startup.failed", "message": failure})
                    return
                if self.health is not None:
                    self.health.started()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.health is not None:
                    self.health.stopping()
                failure = await self._stop()
                if failure:
                    await send({"type": "lifespan.shutdown.failed", "message": failure})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                return

    async def _start(self) -> str:
        """Start the services; what went wrong, in one line, or ``""``."""
        try:
            self.node.install()
            await self.node.startup()
            for companion in self.companions:
                await companion.start()
        except SetupError as exc:
            await self._stop()  # the services that did start release what they hold
            return str(exc)
        except OSError as exc:  # a companion's port is taken
            await self._stop()
            return f"cannot listen: {exc.strerror or exc}"
        return ""

    async def _stop(self) -> str:
        """Stop the started services; what went wrong, in one line, or ``""``."""
        try:
            for companion in self.companions:
                await companion.close()
            await self.node.shutdown()
        except Exception as exc:
            log.exception("a shutdown hook failed")
            return f"a shutdown hook failed: {type(exc).__name__}: {exc}"
        return ""


def build_app(
    node: Node, companions: Sequence[Companion] = (), mounts: Sequence[Mounted] = ()
) -> App:
    """The ASGI app for an already wired ``node``, with the node's settings.

    ``companions`` start after the services and stop before them (the internal TCP
    server, the adopted apps); ``mounts`` are the adopted apps served under a prefix.
    """
    return App(node, companions, mounts)


async def _not_found(scope: Scope, receive: Receive, send: Send) -> None:
    """What a service's own port answers where none of its routes is."""
    if scope["type"] == "http":
        await _respond(send, 404, b"text/plain; charset=utf-8", b"Not Found")


def own_ports(node: Node) -> dict[str, int]:
    """The contract services whose REST routes are served on a port of their own
    (nano.toml's ``port``), wherever they run: never on a front door."""
    return {s.name: s.port for s in node.spec.services if s.port is not None and s.asgi is None}


def port_faces(node: Node) -> list[tuple[str, int, App]]:
    """Each contract service of this process with a port of its own, that port, and the
    app serving its REST routes (and its ``/api/`` paths) there."""
    local = {e.service for e in node.endpoints.values()}
    ported = own_ports(node)
    return [(name, port, App(node, only=name)) for name, port in ported.items() if name in local]


def _covers(mounts: Sequence[Mounted], path: str) -> bool:
    """Whether an adopted app mounted on the front door takes ``path``."""
    return any(p == "/" or path == p or path.startswith(p + "/") for p, _, _ in mounts)


def _declared(content_length: bytes) -> int:
    try:
        return int(content_length)
    except ValueError:
        raise BadRequest("the Content-Length header is not a number") from None


def _unknown(path: str) -> UnknownContract:
    service, _, contract = path[len("/api/") :].partition("/")
    return unknown_contract(service, contract)


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"the request body is over the limit of {limit} bytes")


def _media_type_message(content_type: bytes | None) -> str:
    sent = (
        "no Content-Type"
        if content_type is None
        else f"Content-Type {content_type.decode('latin-1')!r}"
    )
    return f"send application/json or application/msgpack, not {sent}"


async def _run(
    served: Served, request: object, exchange: Exchange, given: context.Context | None = None
) -> object:
    """Run the call with ``exchange`` as what ``this_call(request)`` gives its handler.

    ``given``, when the door gave the call its context and the endpoint is watched: the
    call is observed here, inline, with ``given`` as the context it arrived with."""
    token = bind(request, exchange)
    try:
        if given is None or served.watch is None:
            return await served.run(request)  # every route returns an awaitable (see Served)
        call = served.watch.arrived("http", given)
        try:
            result = await served.inner(request)
        except BaseException as exc:
            call.close(exc)
            raise
        call.close(None)
        return result
    finally:
        unbind(token)


class _Head:
    """What the HTTP face reads of a REST request's headers, in one pass."""

    __slots__ = ("accept", "content_length", "content_type", "secret", "values")

    def __init__(self, headers: list[tuple[bytes, bytes]]) -> None:
        self.content_type = self.content_length = self.secret = self.values = None
        self.accept = b""
        for name, value in headers:
            if name == b"content-type":
                self.content_type = value
            elif name == b"content-length":
                self.content_length = value
            elif name == _SECRET_HEADER:
                self.secret = value
            elif name == _CONTEXT_HEADER:
                self.values = value
            elif name == b"accept":
                self.accept = value

    def body_format(self, body: bytes) -> Format | None:
        """The body's format; None for no body."""
        if not body:
            return None
        found = None if self.content_type is None else format_of(self.content_type)
        if found is None:
            raise UnsupportedMediaType(_media_type_message(self.content_type))
        return found

    def answer_format(self, given: Format | None = None) -> Format:
        """The format ``Accept`` asks for; else the body's; else JSON."""
        if b"msgpack" in self.accept:
            return MSGPACK
        return JSON if given is None or b"json" in self.accept else given


async def _fail(
    send: Send,
    exc: NanoError,
    fmt: Format,
    allowed: Iterable[str] = ("POST",),
    *,
    trusted: bool,
) -> None:
    """Answer with ``exc`` in the request's format (what the log is told is told already):
    its whole message to a caller with the secret, its public form to anyone else (an
    ``Unavailable``'s message names where the other process runs)."""
    extra = [(b"allow", ", ".join(allowed).encode())] if exc.status == 405 else []
    error = exc.to_wire() if trusted else exc.public()
    await _respond(send, exc.status, fmt.media_type, fmt.encode({"error": error}), extra)


async def _respond(
    send: Send,
    status: int,
    media_type: bytes,
    body: bytes,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [(b"content-type", media_type), (b"content-length", str(len(body)).encode())]
    await send(
        {"type": "http.response.start", "status": status, "headers": headers + (extra or [])}
    )
    await send({"type": "http.response.body", "body": body})


# -- everything but contract calls


def site(node: Node) -> ASGIApp:
    """The OpenAPI document and the static frontend, as a Starlette app."""
    document: list[bytes] = []  # built on first request: most processes never serve it

    async def openapi_json(request: Request) -> Response:
        if not document:
            endpoints = node.every_endpoint()
            spec = openapi.document(
                node.spec.name, __version__, endpoints, elsewhere=own_ports(node)
            )
            document.append(msgspec.json.encode(spec))
        return Response(document[0], media_type="application/json")

    routes: list[BaseRoute] = [Route("/openapi.json", openapi_json, methods=["GET"])]
    routes.append(Route("/metrics", metrics_endpoint(node), methods=["GET"]))
    if node.spec.static is not None:
        routes.append(Mount("/", app=Frontend(node.spec.static)))
    return Starlette(routes=routes)


def metrics_endpoint(node: Node) -> Callable[[Request], Awaitable[Response]]:
    """``GET /metrics``: Prometheus' text format, for a caller with the workspace secret
    (the ``nano-secret`` header, or ``Authorization: Bearer <secret>`` as Prometheus'
    ``authorization`` setting sends it), while telemetry is on."""
    secret = (node.settings.secret or "").encode()

    async def metrics(request: Request) -> Response:
        if not telemetry.enabled():
            return Response(_METRICS_OFF, 404, media_type="text/plain; charset=utf-8")
        given = request.headers.get(SECRET_HEADER.decode(), "").encode()
        bearer = request.headers.get("authorization", "")
        if bearer[:7].lower() == "bearer ":
            given = given or bearer[7:].strip().encode()
        if not (secret and given and hmac.compare_digest(given, secret)):
            return Response(_METRICS_CLOSED, 401, media_type="text/plain; charset=utf-8")
        body = telemetry.prometheus()
        return Response(body, headers={"content-type": telemetry.CONTENT_TYPE.decode()})

    return metrics


_METRICS_OFF = "metrics are off in this process: NANO_METRICS=1 records them\n"
_METRICS_CLOSED = (
    "GET /metrics needs the workspace secret: send it as the nano-secret header "
    "or as Authorization: Bearer <secret>\n"
)
