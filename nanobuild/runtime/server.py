"""Serve a workspace over HTTP: wire its services, build the app, run uvicorn.

``run`` is what ``nanobuild serve`` and the bundled binary call. It returns an exit
code instead of exiting, so its caller decides what the process does.
"""

from __future__ import annotations

import asyncio
import copy
import importlib.util
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, cast

import msgspec
import uvicorn
import uvicorn.config

from nanobuild.runtime import telemetry
from nanobuild.runtime.app import App, Companion, build_app, port_faces
from nanobuild.runtime.errors import SettingsError, SetupError
from nanobuild.runtime.httpguard import guarded
from nanobuild.runtime.limits import (
    filter_bursts,
    fit_file_limit,
    guarded_listener,
    quiet_accept_errors,
)
from nanobuild.runtime.node import Node
from nanobuild.runtime.placement import Placement
from nanobuild.runtime.settings import Limits, Settings
from nanobuild.runtime.spec import AppSpec
from nanobuild.runtime.wiring import wire

if TYPE_CHECKING:
    from nanobuild.runtime.asgi import Adopted, Listening
    from nanobuild.runtime.page import Page
    from nanobuild.runtime.transports.tcp import TcpServer

# exit codes, as the README's commands use them
OK = 0
FAILED = 1  # the services could not be wired or started, or the port could not be bound
BAD_INPUT = 2  # a setting (environment variable) has a value that cannot be used


class Stack(NamedTuple):
    """The event loop and the HTTP/1.1 parser uvicorn serves with."""

    loop: Literal["asyncio", "uvloop"]
    http: Literal["h11", "httptools"]

    def __str__(self) -> str:
        return f"{self.loop} + {self.http}"


def server_stack(choice: str) -> Stack:
    """The stack ``NANO_SERVER_STACK``'s ``choice`` gives with the packages installed here.

    ``auto`` takes each of uvloop and httptools that this Python can import (uvloop has
    no Windows build), ``asyncio`` neither, ``uvloop`` both: ``SettingsError`` if one is
    missing. Looking them up imports neither, so a process that fails early pays nothing.
    """
    have = {name: importlib.util.find_spec(name) is not None for name in ("uvloop", "httptools")}
    if choice == "asyncio":
        return Stack("asyncio", "h11")
    if choice == "uvloop":
        missing = [name for name, found in have.items() if not found]
        if missing:
            verb = "is" if len(missing) == 1 else "are"
            raise SettingsError(
                f"NANO_SERVER_STACK=uvloop, but {' and '.join(missing)} {verb} not installed here"
            )
        return Stack("uvloop", "httptools")
    return Stack(
        "uvloop" if have["uvloop"] else "asyncio", "httptools" if have["httptools"] else "h11"
    )


def run(
    spec: AppSpec,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    access_log: bool = False,
    placement: Placement | None = None,
    settings: Settings | None = None,
    log_format: str = "text",
) -> int:
    """Serve ``spec`` until SIGINT or SIGTERM; the exit code for the process.

    ``settings`` default to the environment's. With a ``placement``, only its local
    services run here, the others are reached where it says, and with an
    ``internal_port`` the local ones also answer other nanobuild processes over TCP.
    Problems are reported in one line, never a traceback.
    """
    try:
        settings = Settings.from_env() if settings is None else settings
        _listenable(host)
        stack = server_stack(settings.server_stack)
        node = wire(spec, placement, settings=settings)
        limits = _fitted(settings.limits)
        adopted, port = _adopted(spec, placement, host, port, stack, limits)
    except SetupError as exc:
        if isinstance(exc, SettingsError):
            return _complain(str(exc), BAD_INPUT)
        return _complain(f"cannot wire {spec.name}: {exc}", FAILED)
    internal = _internal(node, host, placement, limits)
    companions: list[Companion] = [c for c in (adopted, internal) if c is not None]
    try:  # a contract's route the build did not check (E230-E235) stops it here
        faces = port_faces(node)
        if faces:
            companions.append(OwnPorts(faces, host, stack, limits, access_log=access_log))
        app = build_app(node, companions, mounts=adopted.mounts() if adopted else ())
    except SetupError as exc:
        return _complain(f"cannot serve {spec.name}: {exc}", FAILED)
    if adopted is not None:
        adopted.front, adopted.access_log = (host, port, app), access_log
    label = spec.name
    if placement is not None and placement.remotes:
        label += f" ({', '.join(placement.local)})"
    config = _config(app, host, port, stack, limits, access_log=access_log, log_format=log_format)
    # the HTTP face's drain bound; uvicorn annotates an int, and waits a float
    config.timeout_graceful_shutdown = cast(int, settings.drain_seconds)
    server = _Server(label, config, internal, stack)
    server.page = app.page
    with _quiet_after_signals():
        try:
            server.run()
        except SystemExit:  # uvicorn's way out when start-up fails or the port is taken
            return FAILED
        finally:
            telemetry.shutdown()  # the spans still batched for export go out
    return OK if server.started else FAILED


def _adopted(
    spec: AppSpec, placement: Placement | None, host: str, port: int, stack: Stack, limits: Limits
) -> tuple[Adopted | None, int]:
    """The adopted ASGI apps placed here, imported (their ``urls`` set first), and the
    front door's port: a free one for ``0``, since their base URLs must name it."""
    local = placement.local if placement is not None else spec.carried
    if not any(s.asgi is not None and s.name in local for s in spec.services):
        return None, port  # no adopted app: nothing of it is loaded
    from nanobuild.runtime.asgi import Adopted, adopt

    if port == 0:
        with socket.create_server((host, 0)) as probe:
            port = probe.getsockname()[1]
    return Adopted(adopt(spec, local, placement, host, port), stack.http, limits), port


class OwnPorts:
    """The REST routes of contract services with a port of their own (nano.toml's
    ``port``), each on that port: a uvicorn server per port, on the front door's loop.

    A ``Companion`` of the HTTP face: it listens once the services have started, and
    stops listening before they stop.
    """

    def __init__(
        self,
        faces: list[tuple[str, int, App]],
        host: str,
        stack: Stack,
        limits: Limits,
        *,
        access_log: bool,
    ) -> None:
        self.faces = faces
        self.host = host
        self.stack = stack
        self.limits = limits
        self.access_log = access_log
        self.servers: list[Listening] = []

    async def start(self) -> None:
        from nanobuild.runtime.asgi import listen  # only with such a service

        for name, port, face in self.faces:
            http, access_log = self.stack.http, self.access_log
            server = await listen(name, face, self.host, port, http, access_log, {}, self.limits)
            self.servers.append(server)

    async def close(self) -> None:
        from nanobuild.runtime.asgi import stop

        await stop(self.servers)


def _internal(
    node: Node, host: str, placement: Placement | None, limits: Limits
) -> TcpServer | None:
    """The TCP server through which other processes call this one's services, if asked."""
    if placement is None or placement.internal_port is None:
        return None
    from nanobuild.runtime.transports.tcp import TcpServer  # split processes only

    return TcpServer(
        node,
        host=host,
        port=placement.internal_port,
        secret=node.settings.secret,
        handshake_timeout=limits.handshake_timeout,
        max_connections=limits.max_connections,
        grace=node.settings.drain_seconds,
    )


def _fitted(limits: Limits) -> Limits:
    """``limits`` with a connection cap this process's open-file limit can keep (raised
    toward it first): past the cap a port evicts or refuses, instead of failing every
    accept once no descriptor is left."""
    cap = fit_file_limit(limits.max_connections)
    if cap == limits.max_connections:
        return limits
    print(
        f"nanobuild: at most {cap} connections per port, not {limits.max_connections} "
        "(NANO_MAX_CONNECTIONS): the open-file limit (ulimit -n) allows no more",
        file=sys.stderr,
    )
    return msgspec.structs.replace(limits, max_connections=cap)


def _config(
    app: App,
    host: str,
    port: int,
    stack: Stack,
    limits: Limits,
    *,
    access_log: bool,
    log_format: str = "text",
) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        loop=stack.loop,  # the TCP transport's servers and clients run on this loop too
        lifespan="on",
        access_log=access_log,
        log_level="info",
        log_config=log_config(log_format),
        **guarded(stack.http, limits, "http face"),  # uvicorn's parser, with deadlines and a cap
    )


def log_config(log_format: str = "text") -> dict[str, Any]:
    """uvicorn's logging, extended to nanobuild's and the services' own loggers; with
    ``json``, every line one JSON object (``--log-format json``)."""
    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    if log_format == "json":
        for formatter in config["formatters"]:
            config["formatters"][formatter] = {"()": "nanobuild.runtime.telemetry.JsonFormatter"}
    # the root logger catches nanobuild.http (tracebacks of 500s) and every
    # service's logging.getLogger(__name__); uvicorn's loggers do not propagate
    config["root"] = {"handlers": ["default"], "level": "INFO"}
    # an adopted app's httpx client logs every request at INFO, which uvicorn alone
    # never showed: keep its warnings only
    config["loggers"]["httpx"] = {"level": "WARNING"}
    return config


class _Server(uvicorn.Server):
    """uvicorn's server, saying where it serves once it really does."""

    def __init__(
        self, name: str, config: uvicorn.Config, internal: TcpServer | None, stack: Stack
    ) -> None:
        super().__init__(config)
        self.name = name
        self.internal = internal
        self.stack = stack
        self.page: Page | None = None  # the built-in page, whose address start-up prints
        self._loop: asyncio.AbstractEventLoop | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """SIGTERM or SIGINT: drain. The HTTP face stops listening and finishes its
        requests (uvicorn's graceful shutdown, bounded by NANO_DRAIN_SECONDS); the
        internal port does the same at once, telling its peers (GOAWAY), so that
        their next calls go to other replicas while this one finishes its own."""
        if self.internal is not None and self._loop is not None:
            # a Python signal handler runs between two steps of the loop: drain in it
            self._loop.call_soon_threadsafe(self.internal.drain)
        super().handle_exit(sig, frame)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        _bounded_logs()
        self._loop = asyncio.get_running_loop()
        if sockets is None:  # bound here (uvicorn logs where), before the services start
            sockets = [guarded_listener(self.config.bind_socket())]
        await super().startup(sockets)
        if self.started:
            print(f"nanobuild: server stack {self.stack}", flush=True)
            if self.internal is not None:  # started by the app's lifespan, before this
                print(f"nanobuild: internal transport at {self.internal.address}", flush=True)
            host, port = self.servers[0].sockets[0].getsockname()[:2]  # the real port, if 0
            print(f"nanobuild: serving {self.name} at http://{_host(host)}:{port}", flush=True)
            if self.page is not None:  # a one-time link only to a terminal, never to a log
                for line in self.page.banner(f"http://{_host(host)}:{port}", terminal=_tty()):
                    print(line, flush=True)


def _bounded_logs() -> None:
    """Make the lines a hostile peer can cause once per connection come in bursts: a
    failed accept, uvicorn's answers to bad requests, the TCP server's refusals."""
    quiet_accept_errors(asyncio.get_running_loop())
    filter_bursts("uvicorn.error", ("Invalid HTTP request received.",))
    filter_bursts("nanobuild.tcp")


def _tty() -> bool:
    try:
        return sys.stdout.isatty()
    except ValueError:  # stdout closed
        return False


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


@contextmanager
def _quiet_after_signals() -> Iterator[None]:
    """Let SIGINT and SIGTERM end the process through a clean shutdown, exit code 0.

    uvicorn catches both signals, shuts down gracefully, then raises the signal again
    for the handler that was there before it. With Python's defaults that second
    delivery would kill the process (SIGTERM) or raise KeyboardInterrupt (SIGINT)
    after the shutdown is done; the handler installed here lets it pass.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # signals belong to the main thread; uvicorn skips them here too
        return
    previous = {sig: signal.signal(sig, _served) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _served(signum: int, frame: FrameType | None) -> None:
    """The signal already stopped the server; nothing is left to do."""


def _listenable(host: str) -> None:
    """``SettingsError`` naming ``host`` if no address can be listened on for it:
    uvicorn would say only "Name or service not known", after start-up ran."""
    try:
        socket.getaddrinfo(host, None, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SettingsError(
            f"cannot listen on the host {host!r} (ingress.host, or --host): {why}"
        ) from None


def _complain(message: str, code: int) -> int:
    print(f"nanobuild: {message}", file=sys.stderr)
    return code
