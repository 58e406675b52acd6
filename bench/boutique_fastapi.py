"""The boutique as FastAPI microservices, and the bare ASGI floor, for ``system.py``.

One uvicorn process per service, as a team would deploy them. Each process imports
its service's own handler modules (the logic stays the repo's) and serves every
contract of that service as ``POST /<Contract>``, JSON in and out. Bodies are decoded
into the services' own contract types with msgspec and answers encoded with it, so the
payloads are those of the nanobuild systems byte for byte; a team that already has
msgspec types would not copy them into pydantic models, and msgspec is the faster of
the two, so the baseline is not handicapped.

The calls a service's handlers make to other services go through a small client
library: for every contract of every other service, a route installed with
``nanobuild.runtime.router.install`` that POSTs the request to the owner and decodes
the answer (or rebuilds its error, as the same class). Each process shares one
keep-alive client: ``httpx.AsyncClient`` or ``aiohttp.ClientSession``.

The checkout process is also the front door (``--front``): the page's calls at
``/api/<service>/<Contract>`` (the public contracts, as the nanobuild face answers
them), each decoded and made through the same client library, and the static page.

``--floor`` serves the same front-door requests from memory instead: a bare ASGI app,
no framework, whose answers were computed once at start by the real handlers.

    python bench/boutique_fastapi.py --service catalog --client httpx
    python bench/boutique_fastapi.py --service checkout --front --peer cart=http://...
    python bench/boutique_fastapi.py --floor

Each prints ``listening at http://127.0.0.1:PORT`` (a port the system picked) and then
serves until SIGTERM. Run from the repository root; PYTHONPATH must hold the services'
and libraries' folders (``import_paths()``).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import logging
import os
import pkgutil
import random
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import msgspec
import uvicorn
from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from nanobuild.runtime import router
from nanobuild.runtime.contracts import HOOK_MARK, handler_types, is_contract, is_handler
from nanobuild.runtime.contracts import response_type as answer_type
from nanobuild.runtime.errors import (
    BadRequest,
    Internal,
    NanoError,
    NotFound,
    Timeout,
    Unavailable,
)
from nanobuild.runtime.server import log_config

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

REPO = Path(__file__).resolve().parent.parent
TIMEOUT = 5.0  # seconds a call to another service may take: nanobuild's default too
JSON = "application/json"
STACKS = {"asyncio-h11": ("asyncio", "h11"), "uvloop-httptools": ("uvloop", "httptools")}

log = logging.getLogger("boutique")

Route = Callable[[Any], Awaitable[Any]]


# -- the workspace, as nano.toml describes it


@dataclass(frozen=True)
class Service:
    name: str
    package: str
    public: tuple[str, ...]


def workspace() -> tuple[list[Service], list[Path], Path]:
    """The services, every import root (services' and libraries' folders), the static folder."""
    config = tomllib.loads((REPO / "nano.toml").read_text())
    services = [
        Service(name, table.get("package", name), tuple(table.get("public", ())))
        for name, table in config["services"].items()
    ]
    roots = [
        REPO / t["path"] for t in (*config["services"].values(), *config["libraries"].values())
    ]
    return services, roots, REPO / config["ingress"]["static"]


def import_paths() -> list[str]:
    return [str(root) for root in workspace()[1]]


def contracts(package: str) -> dict[str, type]:
    """The contract classes a service's kernel defines, by name."""
    kernel = importlib.import_module(f"{package}.kernel")
    return {
        name: obj
        for name, obj in vars(kernel).items()
        if is_contract(obj) and obj.__module__ == kernel.__name__
    }


def modules(package: str) -> list[ModuleType]:
    """Every module of a service's package but its kernel: where handlers and hooks live."""
    root = importlib.import_module(package)
    names = [m.name for m in pkgutil.iter_modules(root.__path__) if m.name != "kernel"]
    return [importlib.import_module(f"{package}.{name}") for name in sorted(names)]


def handlers(package: str) -> dict[type, Route]:
    """Each contract of the service and its handler, as an async function."""
    found: dict[type, Route] = {}
    for module in modules(package):
        for obj in vars(module).values():
            if is_handler(obj) and obj.__module__ == module.__name__:
                found[handler_types(obj)[0]] = _async(obj)
    return found


def startup_hooks(package: str) -> list[Callable[[], Any]]:
    return [
        obj
        for module in modules(package)
        for obj in vars(module).values()
        if callable(obj) and getattr(obj, HOOK_MARK, None) == "startup"
    ]


def _async(fn: Callable[[Any], Any]) -> Route:
    if inspect.iscoroutinefunction(fn):
        return fn

    async def run(request: Any) -> Any:  # a def handler runs inline, as nanobuild runs it
        return fn(request)

    return run


# -- the client library: contracts of other services, over HTTP


def failure(status: int, body: bytes) -> NanoError:
    """The error a service answered with, as the class it raised."""
    try:
        error = msgspec.json.decode(body)["error"]
        return NanoError.from_wire(error)
    except (msgspec.DecodeError, KeyError, TypeError):
        return Internal(f"HTTP {status} from a service")


class Client:
    """One shared keep-alive HTTP client per process; ``route`` makes a contract's route."""

    async def start(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    def route(self, base: str, contract: type) -> Route:
        raise NotImplementedError


class HttpxClient(Client):
    def __init__(self) -> None:
        import httpx

        self.httpx = httpx
        self.client = httpx.AsyncClient(timeout=TIMEOUT)

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        await self.client.aclose()

    def route(self, base: str, contract: type) -> Route:
        url, decode = f"{base}/{contract.__name__}", msgspec.json.Decoder(answer_type(contract))
        headers = {"content-type": JSON}
        httpx = self.httpx

        async def send(request: Any) -> Any:
            try:
                response = await self.client.post(
                    url, content=msgspec.json.encode(request), headers=headers
                )
            except httpx.TimeoutException as exc:
                raise Timeout(f"{url}: no answer in {TIMEOUT} s") from exc
            except httpx.TransportError as exc:
                raise Unavailable(f"{url}: {exc!r}") from exc
            if response.status_code == 200:
                return decode.decode(response.content)
            raise failure(response.status_code, response.content)

        return send


class AiohttpClient(Client):
    def __init__(self) -> None:
        import aiohttp

        self.aiohttp = aiohttp
        self.session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        timeout = self.aiohttp.ClientTimeout(total=TIMEOUT)
        self.session = self.aiohttp.ClientSession(timeout=timeout)

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()

    def route(self, base: str, contract: type) -> Route:
        url, decode = f"{base}/{contract.__name__}", msgspec.json.Decoder(answer_type(contract))
        headers = {"content-type": JSON}
        aiohttp = self.aiohttp

        async def send(request: Any) -> Any:
            assert self.session is not None, "the client starts with the app"
            try:
                async with self.session.post(
                    url, data=msgspec.json.encode(request), headers=headers
                ) as response:
                    status, body = response.status, await response.read()
            except asyncio.TimeoutError as exc:
                raise Timeout(f"{url}: no answer in {TIMEOUT} s") from exc
            except aiohttp.ClientError as exc:
                raise Unavailable(f"{url}: {exc!r}") from exc
            if status == 200:
                return decode.decode(body)
            raise failure(status, body)

        return send


CLIENTS: dict[str, Callable[[], Client]] = {"httpx": HttpxClient, "aiohttp": AiohttpClient}


def install_routes(me: str, services: list[Service], peers: dict[str, str], client: Client) -> None:
    """Route every contract: this service's to its handlers, the others' to their owners."""
    routes: dict[type, Route] = {}
    for service in services:
        if service.name in peers and service.name != me:
            for contract in contracts(service.package).values():
                routes[contract] = client.route(peers[service.name], contract)
    for service in services:
        if service.name == me:
            routes.update(handlers(service.package))
    router.install(routes)


# -- the FastAPI app of one service


def endpoint(
    service: str, contract: type, answer: Route
) -> Callable[[Request], Awaitable[Response]]:
    """A route's endpoint: decode the body as ``contract``, answer it, encode the answer."""
    decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(contract)
    name = contract.__name__

    async def answer_one(request: Request) -> Response:
        try:
            call = decoder.decode(await request.body())
        except msgspec.DecodeError as exc:
            raise BadRequest(str(exc)).located(service, name) from exc
        try:
            result = await answer(call)
        except NanoError as exc:
            raise exc.located(service, name) from None
        except Exception as exc:
            log.exception("%s.%s failed", service, name)
            message = (
                f"unexpected {type(exc).__name__} in the handler; the server log has the traceback"
            )
            raise Internal(message).located(service, name) from exc
        return Response(msgspec.json.encode(result), media_type=JSON)

    return answer_one


def build(me: str, peers: dict[str, str], client_kind: str, *, front: bool = False) -> FastAPI:
    """The FastAPI app of service ``me``; with ``front``, the front door's routes too."""
    services, _, static = workspace()
    [service] = [s for s in services if s.name == me]
    client = CLIENTS[client_kind]()
    install_routes(me, services, peers, client)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await client.start()
        for hook in startup_hooks(service.package):
            hook()
        yield
        await client.close()

    app = FastAPI(lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None)

    async def nano_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, NanoError)
        body = msgspec.json.encode({"error": exc.to_wire()})
        return Response(body, status_code=exc.status, media_type=JSON)

    app.add_exception_handler(NanoError, nano_error)
    own = handlers(service.package)
    for contract, handler in own.items():
        app.add_api_route(
            f"/{contract.__name__}", endpoint(me, contract, handler), methods=["POST"]
        )
    if front:
        for other in services:
            for name, contract in contracts(other.package).items():
                if name in other.public:
                    path = f"/api/{other.name}/{name}"
                    app.add_api_route(
                        path, endpoint(other.name, contract, router.call), methods=["POST"]
                    )
        app.mount("/", PageFiles(directory=static))
    return app


class PageFiles(StaticFiles):
    """The static page: its files, and ``index.html`` for any other path (the app routes)."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        try:
            return await super().get_response(path, scope)
        except HTTPException as exc:
            if exc.status_code != 404:
                raise
        return await super().get_response("index.html", scope)


# -- the floor: the same front-door requests, answered from memory


class Floor:
    """A bare ASGI app: each ``/api/`` path gets the answer the real handlers gave once;
    any other GET gets the page."""

    def __init__(self, answers: dict[str, bytes], page: bytes) -> None:
        self.answers = answers
        self.page = page
        self.missing = msgspec.json.encode({"error": NotFound("no such contract").to_wire()})

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].rsplit(".", 1)[-1]
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        more = True
        while more:  # the body is read in full, as any server of these requests must
            more = (await receive()).get("more_body", False)
        path: str = scope["path"]
        if path.startswith("/api/"):
            body = self.answers.get(path)
            status, kind, body = (200, JSON, body) if body else (404, JSON, self.missing)
        else:
            status, kind, body = 200, "text/html; charset=utf-8", self.page
        headers = [(b"content-type", kind.encode()), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


async def floor_answers(actions: int = 200) -> dict[str, bytes]:
    """Every front-door path's answer, from the real handlers run in this process."""
    import mix

    services, _, _ = workspace()
    routes: dict[type, Route] = {}
    for service in services:
        routes.update(handlers(service.package))
        for hook in startup_hooks(service.package):
            hook()
    router.install(routes)
    found = {s.name: contracts(s.package) for s in services}
    answers: dict[str, bytes] = {}
    shopper = mix.Shopper("floor", random.Random(7))
    for call in (c for _ in range(actions) for c in shopper.next().calls()):
        if call.method == "POST":
            owner, name = call.contract.split("/")
            request: Any = msgspec.json.decode(call.body, type=found[owner][name])
            answers[call.path] = msgspec.json.encode(await router.call(request))
    return answers


def floor() -> Floor:
    _, _, static = workspace()
    return Floor(asyncio.run(floor_answers()), (static / "index.html").read_bytes())


# -- the process


def serve(app: Any, stack: str) -> None:
    """Serve ``app`` under uvicorn on the ``stack``, on a port the system picks."""
    loop, http = STACKS[stack]
    # the protocol named, as getaddrinfo would give it: asyncio sets TCP_NODELAY on the
    # connections of a TCP socket only, and with proto 0 every answer written in two
    # parts (head, body) would wait out the client's delayed ACK (~40 ms)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    print(f"listening at http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(
        app,
        loop=loop,
        http=http,
        lifespan="on",
        access_log=False,
        log_level="info",
        log_config=log_config(),  # the nanobuild binary's logging: services log at INFO
    )
    uvicorn.Server(config).run(sockets=[sock])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--service", help="the service this process runs")
    parser.add_argument("--floor", action="store_true", help="serve the bare ASGI floor")
    parser.add_argument("--front", action="store_true", help="also be the front door")
    parser.add_argument("--client", choices=sorted(CLIENTS), default="httpx")
    parser.add_argument("--peer", action="append", default=[], metavar="NAME=URL")
    parser.add_argument("--stack", choices=sorted(STACKS), default="asyncio-h11")
    args = parser.parse_args()
    if args.floor:
        serve(floor(), args.stack)
        return
    if not args.service:
        parser.error("--service or --floor is required")
    peers = dict(peer.split("=", 1) for peer in args.peer)
    os.environ.setdefault("NANO_STRICT", "0")
    serve(build(args.service, peers, args.client, front=args.front), args.stack)


if __name__ == "__main__":
    main()
