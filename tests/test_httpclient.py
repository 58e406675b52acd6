"""nanobuild's httpx client in memory answers as httpx does.

Each test sends the same requests to the same ASGI app twice: through
``nanobuild.runtime.httpclient.AsyncClient`` (the app registered as a service of this
process, answered in memory, mostly on the client's fast path) and through plain
``httpx.AsyncClient`` with httpx's own ``ASGITransport``, the reference; what the app
saw and what the caller got must be the same.
"""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from nanobuild.runtime.asgi import ORIGINS, Adopted
from nanobuild.runtime.httpclient import AsyncClient, Client
from tests.servers import free_port

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """Echoes what it was sent; a few paths answer as real apps do."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    path = scope["path"]
    headers = [(b"content-type", b"application/json")]
    status = 200
    if path == "/slow":
        await asyncio.sleep(5)
    if path == "/redirect":
        status, headers = 307, [(b"location", b"/echo?from=redirect")]
    if path == "/cookie":
        headers.append((b"set-cookie", b"session=abc; Path=/"))
    seen = {
        "method": scope["method"],
        "path": path,
        "raw_path": scope["raw_path"].decode(),
        "query": scope["query_string"].decode(),
        "headers": sorted(
            [k.decode(), v.decode()] for k, v in scope["headers"] if k != b"user-agent"
        ),
        "body": body.decode(),
    }
    content = json.dumps(seen).encode()
    if path == "/gzip":
        content = gzip.compress(content)
        headers.append((b"content-encoding", b"gzip"))
    headers.append((b"content-length", str(len(content)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": content})


@asynccontextmanager
async def both(**options: Any) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """(ours, in memory; httpx's own over ASGITransport), made with the same options."""
    port = free_port()  # nothing listens: only the in-memory path can answer
    group = Adopted([], "h11")
    group.front = ("127.0.0.1", port, app)
    await group.start()
    base = options.pop("base_url", "") or f"http://127.0.0.1:{port}"
    reference = httpx.ASGITransport(app=app)
    try:
        async with (
            AsyncClient(base_url=base.format(port=port), **options) as ours,
            httpx.AsyncClient(
                base_url=base.format(port=port), transport=reference, **options
            ) as theirs,
        ):
            yield ours, theirs
    finally:
        await group.close()


def same(ours: httpx.Response, theirs: httpx.Response) -> dict[str, Any]:
    """Assert both answers are alike in everything a caller reads; the app's view."""
    assert ours.status_code == theirs.status_code
    assert ours.headers.multi_items() == theirs.headers.multi_items()
    assert ours.content == theirs.content
    assert str(ours.url) == str(theirs.url)
    assert ours.request.headers.multi_items() == theirs.request.headers.multi_items()
    assert ours.encoding == theirs.encoding
    assert ours.is_closed == theirs.is_closed and ours.is_stream_consumed
    assert ours.elapsed.total_seconds() >= 0
    assert ours.http_version == theirs.http_version
    assert ours.reason_phrase == theirs.reason_phrase
    seen: dict[str, Any] = ours.json()
    return seen


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(test())
    assert ORIGINS == {}


def test_plain_requests_answer_as_httpx_does() -> None:
    async def test() -> None:
        async with both(headers={"x-client": "1"}) as (ours, theirs):
            await ours.get("/warm")  # the first request opens the client: httpx's own path
            for method, url, extra in [
                ("GET", "/users/1", {}),
                ("GET", "/a%2Fb/c:d@e", {}),
                ("GET", "/x/./y/../z", {}),
                ("GET", "/q?a=1&b=two", {}),
                ("GET", "/p", {"params": {"a": "1", "b": ["x", "y"]}}),
                ("POST", "/users", {"json": {"name": "Ada"}}),
                ("PUT", "/users/1", {"content": b"raw", "headers": {"x-call": "2"}}),
                ("POST", "/form", {"data": {"k": "v"}}),
                ("DELETE", "/users/1", {}),
                ("GET", "/gzip", {}),
            ]:
                mine = await ours.request(method, url, **extra)
                reference = await theirs.request(method, url, **extra)
                seen = same(mine, reference)
                assert seen["method"] == method
                # and it took the fast path, not httpx's layers
                default = httpx.USE_CLIENT_DEFAULT
                assert ours._plain(mine.request, default, default) is not None  # type: ignore[attr-defined]

    run(test)


def test_a_base_url_with_a_path_and_absolute_urls_merge_as_httpx_does() -> None:
    async def test() -> None:
        async with both(base_url="http://127.0.0.1:{port}/api") as (ours, theirs):
            await ours.get("/")
            for url in ["/users/1", "", "/", "users/1", "/.well-known/x", "//double"]:
                assert same(await ours.get(url), await theirs.get(url))["path"].startswith("/")
            absolute = str(ours.base_url.join("/elsewhere"))
            assert same(await ours.get(absolute), await theirs.get(absolute))["path"] == (
                "/elsewhere"
            )

    run(test)


def test_cookies_set_by_the_app_are_kept_and_sent_back() -> None:
    async def test() -> None:
        async with both() as (ours, theirs):
            await ours.get("/warm")
            same(await ours.get("/cookie"), await theirs.get("/cookie"))
            assert dict(ours.cookies) == dict(theirs.cookies) == {"session": "abc"}
            seen = same(await ours.get("/echo"), await theirs.get("/echo"))
            assert ["cookie", "session=abc"] in seen["headers"]

    run(test)


def test_auth_reaches_the_app_and_redirects_follow_when_asked() -> None:
    async def test() -> None:
        async with both(auth=("ada", "secret")) as (ours, theirs):
            seen = same(await ours.get("/who"), await theirs.get("/who"))
            assert ["authorization", "Basic YWRhOnNlY3JldA=="] in seen["headers"]
        async with both() as (ours, theirs):
            await ours.get("/warm")
            kept = await ours.get("/redirect")
            assert kept.status_code == 307 and kept.next_request is not None
            assert str(kept.next_request.url).endswith("/echo?from=redirect")
            followed = await ours.get("/redirect", follow_redirects=True)
            reference = await theirs.get("/redirect", follow_redirects=True)
            assert same(followed, reference)["query"] == "from=redirect"
            assert [r.status_code for r in followed.history] == [307]
            bearer = await ours.get("/who", auth=lambda r: _bearer(r))
            assert ["authorization", "Bearer t"] in bearer.json()["headers"]

    run(test)


def _bearer(request: httpx.Request) -> httpx.Request:
    request.headers["Authorization"] = "Bearer t"
    return request


def test_event_hooks_see_every_request_and_response() -> None:
    async def test() -> None:
        log: list[str] = []

        async def on_request(request: httpx.Request) -> None:
            log.append(f"> {request.method} {request.url.path}")

        async def on_response(response: httpx.Response) -> None:
            log.append(f"< {response.status_code}")

        hooks = {"request": [on_request], "response": [on_response]}
        async with both(event_hooks=hooks) as (ours, _):
            await ours.get("/one")
            await ours.post("/two", json={})
        assert log == ["> GET /one", "< 200", "> POST /two", "< 200"]

    run(test)


def test_streaming_reads_and_the_read_timeout_work_in_memory() -> None:
    async def test() -> None:
        async with both(timeout=0.2) as (ours, theirs):
            await ours.get("/warm")
            async with ours.stream("GET", "/streamed") as mine:
                parts = [part async for part in mine.aiter_bytes(chunk_size=7)]
            async with theirs.stream("GET", "/streamed") as reference:
                expected = [part async for part in reference.aiter_bytes(chunk_size=7)]
            assert parts == expected and len(parts) > 1
            with pytest.raises(httpx.ReadTimeout):
                await ours.get("/slow")
            assert (await ours.get("/after")).status_code == 200  # the client still works

    run(test)


def test_a_closed_client_refuses_as_httpx_does() -> None:
    async def test() -> None:
        async with both() as (ours, _):
            await ours.get("/warm")
            await ours.aclose()
            with pytest.raises(RuntimeError, match="closed"):
                await ours.get("/after")

    run(test)


def test_the_blocking_client_answers_from_a_thread() -> None:
    async def test() -> None:
        async with both() as (ours, _):
            port = ours.base_url.port

            def blocking() -> dict[str, Any]:
                with Client(base_url=f"http://127.0.0.1:{port}") as client:
                    answer: dict[str, Any] = client.get("/sync", params={"a": "1"}).json()
                    return answer

            seen = await asyncio.to_thread(blocking)
            assert (seen["path"], seen["query"]) == ("/sync", "a=1")

    run(test)
