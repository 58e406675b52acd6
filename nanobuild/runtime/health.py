"""``/healthz`` and ``/readyz``: whether this process is alive, and whether it is ready.

    GET /healthz   alive: the process serves HTTP. A constant answer (what it answers
                   for, which of those run elsewhere, the builds that disagree); it
                   never waits on anything, so a liveness probe never restarts a
                   process for a remote's trouble.
    GET /readyz    ready: its start-up (the services' hooks, the adopted apps'
                   lifespans, the internal port) is done, and every remote it needs
                   is reachable: 200 and the services checked, else 503 and those
                   not ready, each with a short reason.

Readiness asks each transport one question, ``Transport.reachable(timeout)``
(``transports/base.py``): the TCP transport is connected and welcomed or connects
now, the HTTP one finds its remote's ``/healthz`` answering. The checks run side by
side, each bounded by ``PROBE_TIMEOUT``, so the answer comes within a k8s probe's
default second; it is kept for ``CACHE_SECONDS``, and probes arriving meanwhile
share one check, so a probe storm never becomes a connection storm. The body is
public: a reason never names an internal address (the transport's log line does).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any

import msgspec

from nanobuild.runtime.node import Node

if TYPE_CHECKING:
    from nanobuild.runtime.transports.base import Transport

log = logging.getLogger("nanobuild.health")

PATHS = ("/healthz", "/readyz")
PROBE_TIMEOUT = 0.5  # seconds each remote's check may take
CACHE_SECONDS = 1.0  # how long an answer of /readyz is given again without checking
JSON = b"application/json"

Scope = MutableMapping[str, Any]  # as Starlette and uvicorn type it
Receive = Any
Send = Any


def _transports(node: Node) -> list[Transport]:
    """The node's transports to other processes; a fused process never loads their
    module (nor pays for it), so then it has none."""
    loaded = sys.modules.get("nanobuild.runtime.transports.base")
    if loaded is None:
        return []
    return [c for c in node.closables if isinstance(c, loaded.Transport)]


class Health:
    """The answers of ``/healthz`` and ``/readyz`` for one node (an ASGI app of its own).

    The HTTP face tells it where start-up stands (``started``, ``stopping``); until
    ``started`` and from ``stopping`` on, ``/readyz`` says so without checking remotes.
    """

    def __init__(
        self, node: Node, *, timeout: float = PROBE_TIMEOUT, cache: float = CACHE_SECONDS
    ) -> None:
        # what this process answers for: its own services, and those it reaches elsewhere
        answered = {e.service for e in node.every_endpoint()}
        elsewhere = {e.service for e in node.remote.values()}
        self.checked = [s.name for s in node.spec.services if s.name in answered]
        self.local = [name for name in self.checked if name not in elsewhere]
        self.remote = [name for name in self.checked if name in elsewhere]
        self._facts = {"status": "ok", "services": self.checked, "remote": sorted(elsewhere)}
        self._alive = msgspec.json.encode(self._facts)
        # the TCP transports find, at each handshake, the contracts their remote disagrees on
        self._compared = [c for c in node.closables if hasattr(c, "disagreements")]
        self.transports = _transports(node)
        self.timeout = timeout
        self.cache = cache
        self.state = "starting"  # then "ready" once started, "shutting down" once stopping
        self._answer: tuple[float, int, bytes] | None = None  # until (loop time), status, body
        self._checking: asyncio.Task[tuple[int, bytes]] | None = None

    def started(self) -> None:
        """Start-up is done: from now on, ready when the remotes are."""
        self.state, self._answer = "ready", None

    def stopping(self) -> None:
        """Shutdown has begun: not ready, whatever the remotes."""
        self.state, self._answer = "shutting down", None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] not in ("GET", "HEAD"):
            body = b'{"error": "use GET"}'
            await _respond(send, 405, body, [(b"allow", b"GET, HEAD")], scope)
            return
        if scope["path"] == "/healthz":
            await _respond(send, 200, self.alive(), [], scope)
            return
        status, body = await self.ready()
        await _respond(send, status, body, [(b"cache-control", b"no-store")], scope)

    def alive(self) -> bytes:
        """The body of ``/healthz``."""
        found = [d for transport in self._compared for d in transport.disagreements]
        if found:
            return msgspec.json.encode({**self._facts, "disagree": found})
        return self._alive

    async def ready(self) -> tuple[int, bytes]:
        """The status and body of ``/readyz``: the latest answer while it is fresh, else
        the one check under way (started here if none is)."""
        loop = asyncio.get_running_loop()
        answer = self._answer
        if answer is not None and loop.time() < answer[0]:
            return answer[1], answer[2]
        if self._checking is None:
            self._checking = loop.create_task(self._check())
        # a probe that hangs up leaves the check to finish for the next one
        return await asyncio.shield(self._checking)

    async def _check(self) -> tuple[int, bytes]:
        loop = asyncio.get_running_loop()
        try:
            if self.state != "ready":
                not_ready = [{"service": name, "reason": self.state} for name in self.local]
            else:
                not_ready = await self._remotes()
            status = 503 if not_ready or self.state != "ready" else 200
            facts = {
                "status": "ready" if status == 200 else "not ready",
                "started": self.state == "ready",
                "checked": self.checked,
                "not_ready": not_ready,
            }
            body = msgspec.json.encode(facts)
            self._answer = (loop.time() + self.cache, status, body)
            return status, body
        finally:
            self._checking = None

    async def _remotes(self) -> list[dict[str, str]]:
        """Each remote service that cannot be reached now, with the reason."""
        reasons = await asyncio.gather(*(self._probe(t) for t in self.transports))
        failed = {
            service: reason
            for transport, reason in zip(self.transports, reasons, strict=True)
            if reason
            for service in transport.services
        }
        return [{"service": name, "reason": failed[name]} for name in self.remote if name in failed]

    async def _probe(self, transport: Transport) -> str:
        """``transport.reachable()``, bounded even if it were not, and never raising."""
        try:
            return await asyncio.wait_for(transport.reachable(self.timeout), self.timeout + 0.25)
        except asyncio.TimeoutError:
            return f"no answer within {self.timeout:g} s"
        except Exception:  # a check that fails is an answer of its own: not ready
            log.exception("the readiness check of %s failed", transport.address)
            return "its check failed"


async def _respond(
    send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]], scope: Scope
) -> None:
    headers = [(b"content-type", JSON), (b"content-length", str(len(body)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})
