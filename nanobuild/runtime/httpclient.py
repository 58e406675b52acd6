"""An httpx client that reaches the ASGI services of this process in memory.

``AsyncClient`` and ``Client`` are ``httpx.AsyncClient`` and ``httpx.Client``, with
one difference: a request to the origin of an app served by this process (an adopted
service on its port, or the front door and every app mounted on it) is handed to
that app itself, in memory, with no socket; any other request goes over the network
through httpx's own transport. So switching a service's
``httpx.AsyncClient(base_url=os.environ["USERS_URL"])`` to
``nanobuild.runtime.httpclient.AsyncClient(...)`` is the whole change: fused, its
calls to users no longer leave the process; split, they go over the network as before.

httpx is imported only when this module is: it stays the app's own requirement.
Outside a nanobuild process (under plain uvicorn, in a test) no app is registered,
and every request goes over the network.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import unquote

import httpx

from nanobuild.runtime.asgi import ORIGINS

log = logging.getLogger("nanobuild.http")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_ASGI = {"version": "3.0", "spec_version": "2.3"}


async def _in_memory(app: Any, state: dict[str, Any], request: httpx.Request) -> httpx.Response:
    """``request`` answered by ``app`` itself, as a server would call it."""
    url = request.url
    body = await request.aread()
    raw_path, _, _ = url.raw_path.partition(b"?")
    scope = {
        "type": "http",
        "asgi": _ASGI,
        "http_version": "1.1",
        "method": request.method,
        "scheme": url.scheme,
        "path": unquote(raw_path.decode("latin-1")),
        "raw_path": raw_path,
        "query_string": url.query,
        "root_path": "",
        "headers": [(name.lower(), value) for name, value in request.headers.raw],
        "client": ("127.0.0.1", 0),
        "server": (url.host, url.port or _DEFAULT_PORTS.get(url.scheme, 80)),
        "state": state.copy(),
    }
    sent = False
    chunks: list[bytes] = []
    start: dict[str, Any] = {}

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:  # the app waits for a disconnect (a streaming response): never comes
            await asyncio.Event().wait()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    try:
        await app(scope, receive, send)
    except Exception:  # as a server does: a 500, or what the app sent before it failed
        log.exception("the app failed answering %s %s in memory", request.method, url)
        if not start:
            return httpx.Response(500, content=b"Internal Server Error", request=request)
    return httpx.Response(
        start.get("status", 500),
        headers=start.get("headers", []),
        content=b"".join(chunks),
        request=request,
    )


def _origin(url: httpx.URL) -> tuple[str, str, int]:
    return (url.scheme, url.host, url.port or _DEFAULT_PORTS.get(url.scheme, 80))


class AsyncTransport(httpx.AsyncBaseTransport):
    """In memory to an app of this process, else httpx's network transport."""

    def __init__(self, network: httpx.AsyncBaseTransport | None = None) -> None:
        self.network = network or httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        found = ORIGINS.get(_origin(request.url))
        if found is None:
            return await self.network.handle_async_request(request)
        return await _in_memory(found[0], found[1], request)

    async def aclose(self) -> None:
        await self.network.aclose()


class Transport(httpx.BaseTransport):
    """The blocking form: an app of this process is run on its loop, from this thread."""

    def __init__(self, network: httpx.BaseTransport | None = None) -> None:
        self.network = network or httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        found = ORIGINS.get(_origin(request.url))
        if found is None:
            return self.network.handle_request(request)
        app, state, loop = found
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            raise RuntimeError(
                f"a blocking request to {request.url} from the event loop's own thread would "
                "wait for itself: use AsyncClient there, or run this code on a thread"
            )
        future = asyncio.run_coroutine_threadsafe(_in_memory(app, state, request), loop)
        response = future.result()
        response.read()
        return response

    def close(self) -> None:
        self.network.close()


class AsyncClient(httpx.AsyncClient):
    """``httpx.AsyncClient``, reaching the apps of this process in memory."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("transport", AsyncTransport(kwargs.pop("network", None)))
        super().__init__(**kwargs)


class Client(httpx.Client):
    """``httpx.Client``, reaching the apps of this process in memory."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("transport", Transport(kwargs.pop("network", None)))
        super().__init__(**kwargs)
