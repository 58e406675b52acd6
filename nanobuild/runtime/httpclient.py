"""An httpx client that reaches the ASGI services of this process in memory.

``AsyncClient`` and ``Client`` are ``httpx.AsyncClient`` and ``httpx.Client``, with
one difference: a request to the origin of an app served by this process (an adopted
service on its port, or the front door and every app mounted on it) is handed to
that app itself, in memory, with no socket; any other request goes over the network
through httpx's own transport. So switching a service's
``httpx.AsyncClient(base_url=os.environ["USERS_URL"])`` to
``nanobuild.runtime.httpclient.AsyncClient(...)`` is the whole change: fused, its
calls to users no longer leave the process; split, they go over the network as before.

In memory, ``AsyncClient.send`` answers a plain request (no auth, redirects not
followed, the client's own transport) without httpx's auth, redirect and stream
layers, which have nothing to do there; event hooks, cookies, timeouts, ``elapsed``
and the log line are kept. Anything else takes httpx's own path, through the same
in-memory transport. The answer is an ``httpx.Response`` whose body is already read
(the app has answered in full), for ``stream=True`` too.

httpx is imported only when this module is: it stays the app's own requirement.
Outside a nanobuild process (under plain uvicorn, in a test) no app is registered,
and every request goes over the network.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

import httpx

from nanobuild.runtime.asgi import ORIGINS

log = logging.getLogger("nanobuild.http")
_HTTPX_LOG = logging.getLogger("httpx")  # httpx's own "HTTP Request: ..." line, kept
_DEFAULT_PORTS = {"http": 80, "https": 443}
_ASGI = {"version": "3.0", "spec_version": "2.3"}
_NO_ANSWER = b"Internal Server Error"
_timeout: Callable[[float | None], Any] | None = getattr(asyncio, "timeout", None)  # 3.11+


async def _in_memory(app: Any, state: dict[str, Any], request: httpx.Request) -> httpx.Response:
    """``request`` answered by ``app`` itself, as a server would call it.

    The read timeout of the request, when it has one, bounds the whole answer
    (``httpx.ReadTimeout``, as a server that does not answer in time).
    """
    read = request.extensions.get("timeout", {}).get("read")
    if read is None:
        return await _answer(app, state, request)
    try:
        if _timeout is not None:
            async with _timeout(read):
                return await _answer(app, state, request)
        return await asyncio.wait_for(_answer(app, state, request), read)
    except asyncio.TimeoutError:  # the builtin TimeoutError from 3.11 on
        message = f"{request.url} did not answer in {read:g} s"
        raise httpx.ReadTimeout(message, request=request) from None


async def _answer(app: Any, state: dict[str, Any], request: httpx.Request) -> httpx.Response:
    url = request.url
    body = await request.aread()
    raw_path, _, query = url.raw_path.partition(b"?")
    scope = {
        "type": "http",
        "asgi": _ASGI,
        "http_version": "1.1",
        "method": request.method,
        "scheme": url.scheme,
        "path": unquote(raw_path.decode("latin-1")),
        "raw_path": raw_path,
        "query_string": query,
        "root_path": "",
        "headers": [(name.lower(), value) for name, value in request.headers.raw],
        "client": ("127.0.0.1", 0),
        "server": (url.host, url.port or _DEFAULT_PORTS.get(url.scheme, 80)),
        "state": state.copy(),  # as uvicorn: each request gets a shallow copy
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
            start = {"status": 500, "headers": [(b"content-length", b"21")]}
            chunks = [_NO_ANSWER]
    # the headers as the app sent them; the body is read by the client, through
    # httpx's decoders (gzip...), and its closing sets ``elapsed``
    return httpx.Response(
        start.get("status", 500),
        headers=start.get("headers", []),
        stream=httpx.ByteStream(b"".join(chunks)),
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
        return future.result()  # read by the client, as any transport's answer

    def close(self) -> None:
        self.network.close()


# -- merging a relative path onto the base URL without parsing it again

# a relative path httpx would keep as it is: its path characters, valid escapes, no
# query or fragment; "." segments (which httpx drops) are refused below
_PLAIN_PATH = re.compile(r"(?:/(?!/)(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-Fa-f]{2})*)?")


def _joined(base: httpx.URL, url: str) -> httpx.URL | None:
    """``url`` on ``base`` as httpx merges them, or None where a parse is needed.

    httpx re-parses the whole URL for every request (tens of µs); for a plain
    path on a plain base the result is the base's parts with a longer path.
    """
    reference = getattr(base, "_uri_reference", None)
    if (
        reference is None
        or reference.query is not None
        or reference.fragment is not None
        or not _PLAIN_PATH.fullmatch(url)
        or ("." in url and {".", ".."} & set(url.split("/")))
    ):
        return None
    joined = httpx.URL.__new__(httpx.URL)
    joined._uri_reference = reference._replace(path=(reference.path or "/") + url.lstrip("/"))
    return joined


def _joins_as_httpx() -> bool:
    """Whether ``_joined`` gives httpx's own merge on this httpx (its internals may move)."""
    try:
        # a transport of no use, so that the probe builds no SSL context (tens of ms)
        bases = [
            httpx.Client(base_url=url, transport=httpx.BaseTransport(), trust_env=False)
            for url in ("http://127.0.0.1:1", "http://h/api")
        ]
        samples = ("/users/1", "", "/", "/a%2Fb:c@d", "/x/y/")
        return all(
            str(_joined(client.base_url, path)) == str(client._merge_url(path))
            for client in bases
            for path in samples
        )
    except Exception:  # any change of httpx's internals: keep httpx's own merge
        return False


_FAST_JOIN = _joins_as_httpx()


def _merged(client: httpx.AsyncClient | httpx.Client, url: httpx.URL | str) -> httpx.URL | None:
    return _joined(client.base_url, url) if _FAST_JOIN and isinstance(url, str) else None


# -- the clients


class AsyncClient(httpx.AsyncClient):
    """``httpx.AsyncClient``, reaching the apps of this process in memory."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("transport", AsyncTransport(kwargs.pop("network", None)))
        # in memory only when every request goes to our transport (no mounts)
        self._direct = isinstance(kwargs["transport"], AsyncTransport) and not kwargs.get("mounts")
        super().__init__(**kwargs)

    def _merge_url(self, url: httpx.URL | str) -> httpx.URL:
        joined = _merged(self, url)
        return super()._merge_url(url) if joined is None else joined

    async def send(
        self,
        request: httpx.Request,
        *,
        stream: bool = False,
        auth: Any = httpx.USE_CLIENT_DEFAULT,
        follow_redirects: Any = httpx.USE_CLIENT_DEFAULT,
    ) -> httpx.Response:
        found = self._plain(request, auth, follow_redirects)
        if found is None:
            return await super().send(
                request, stream=stream, auth=auth, follow_redirects=follow_redirects
            )
        return await self._send_in_memory(found[0], found[1], request)

    def _plain(
        self, request: httpx.Request, auth: Any, follow_redirects: Any
    ) -> tuple[Any, dict[str, Any]] | None:
        """The app and state answering ``request`` when nothing of httpx's layers applies."""
        if not self._direct or getattr(self, "_state", None) is not _OPENED:
            return None  # a closed client raises, and a first request opens it: httpx's path
        if auth is not httpx.USE_CLIENT_DEFAULT and auth is not None:
            return None
        if self.auth is not None or request.url.userinfo:
            return None
        if follow_redirects is httpx.USE_CLIENT_DEFAULT:
            follow_redirects = self.follow_redirects
        if follow_redirects:
            return None
        found = ORIGINS.get(_origin(request.url))
        return None if found is None else (found[0], found[1])

    async def _send_in_memory(
        self, app: Any, state: dict[str, Any], request: httpx.Request
    ) -> httpx.Response:
        """What httpx's ``send`` does for a plain request, the transport being the app."""
        if "timeout" not in request.extensions:
            request.extensions["timeout"] = self.timeout.as_dict()
        await _hooks(self.event_hooks["request"], request)
        began = time.perf_counter()
        response = await _in_memory(app, state, request)
        response.read()
        response.elapsed = datetime.timedelta(seconds=time.perf_counter() - began)
        if "set-cookie" in response.headers or "set-cookie2" in response.headers:
            self.cookies.extract_cookies(response)
        response.default_encoding = self._default_encoding
        if _HTTPX_LOG.isEnabledFor(logging.INFO):
            _HTTPX_LOG.info(
                'HTTP Request: %s %s "%s %d %s"',
                request.method,
                request.url,
                response.http_version,
                response.status_code,
                response.reason_phrase,
            )
        await _hooks(self.event_hooks["response"], response)
        if response.has_redirect_location:  # not followed: said where it would go
            response.next_request = self._build_redirect_request(request, response)
        return response


async def _hooks(hooks: list[Callable[[Any], Awaitable[None]]], argument: Any) -> None:
    for hook in hooks:
        await hook(argument)


class Client(httpx.Client):
    """``httpx.Client``, reaching the apps of this process in memory."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("transport", Transport(kwargs.pop("network", None)))
        super().__init__(**kwargs)

    def _merge_url(self, url: httpx.URL | str) -> httpx.URL:
        joined = _merged(self, url)
        return super()._merge_url(url) if joined is None else joined


_OPENED = getattr(getattr(httpx._client, "ClientState", None), "OPENED", object())
