"""Adopted ASGI services: an existing app (FastAPI, Starlette, any ASGI) run as a service.

Each adopted service is a folder of flat modules (``main.py``, ``models.py``) that
uvicorn ran from. Fused in one process, three ``main`` modules must not collide, so
the folder's modules are loaded under a private namespace, ``_nanoasgi.<service>.main``,
and each of them gets a ``__builtins__`` of its own whose ``__import__`` maps the
folder's top-level names (``import models``) into that namespace. Python looks
``__import__`` up in the importing frame's builtins, so nothing else in the process
is touched, and no file is renamed.

Before the modules are imported, every ``urls`` variable is set to the base URL of
the service it names: here, its own port or the front door plus its mount; elsewhere,
the address the placement gives. The apps' lifespans then run in dependency order
(shutdown in reverse); each app is served on its own port (a uvicorn server of its
own, on the same loop) or under its mount of the front door, as Starlette's ``Mount``
serves it: the path is kept and the mount goes into ``root_path``, so the app's URLs
are what they were.
"""

from __future__ import annotations

import asyncio
import builtins
import importlib.abc
import importlib.machinery
import importlib.util
import inspect
import socket
import sys
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from nanobuild.runtime import telemetry
from nanobuild.runtime.errors import SetupError
from nanobuild.runtime.placement import Placement
from nanobuild.runtime.settings import Limits, export
from nanobuild.runtime.spec import ADOPTED, AppSpec, ServiceSpec, adopted_package

Scope = MutableMapping[str, Any]  # as Starlette and uvicorn type it
ASGIApp = Callable[..., Any]

# origin (scheme, host, port) -> the app answering there in this process, its
# lifespan state and its loop: what ``nanobuild.runtime.httpclient`` serves in memory
ORIGINS: dict[tuple[str, str, int], tuple[ASGIApp, dict[str, Any], asyncio.AbstractEventLoop]] = {}


def in_memory_at(host: str, port: int, app: ASGIApp, state: dict[str, Any]) -> None:
    """Let nanobuild's HTTP client answer requests to ``host:port`` with ``app`` in memory
    (on the running loop), as the server listening there would."""
    hosts = {host, "127.0.0.1", "localhost"} if host in ("127.0.0.1", "0.0.0.0") else {host}
    loop = asyncio.get_running_loop()
    for name in hosts:
        ORIGINS[("http", name, port)] = (app, state, loop)


def forget_port(port: int) -> None:
    """Requests to ``port`` go over the network again (its server has stopped)."""
    for origin in [o for o in ORIGINS if o[2] == port]:
        del ORIGINS[origin]


# -- the namespacing loader


class _Empty(importlib.abc.Loader):
    """The loader of a namespace folder with no ``__init__.py``: nothing to run."""

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        return None


class _Namespaced(importlib.abc.Loader):
    """A module's own loader, run with the service's builtins in the module's globals."""

    def __init__(self, inner: importlib.abc.Loader, own: dict[str, Any]) -> None:
        self.inner = inner
        self.own = own

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        module.__dict__["__builtins__"] = self.own
        self.inner.exec_module(module)

    def __getattr__(self, name: str) -> Any:  # get_source, get_resource_reader, ...
        return getattr(self.inner, name)


class Finder(importlib.abc.MetaPathFinder):
    """Finds the modules of ``_nanoasgi.<service>``; returns None at once for any other."""

    def __init__(self) -> None:
        self.folders: dict[str, Path] = {}
        self.builtins: dict[str, dict[str, Any]] = {}

    def add(self, service: ServiceSpec) -> None:
        self.folders[service.name] = _folder(service)
        self.builtins[service.name] = _builtins(adopted_package(service.name), service.modules)

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        spec: importlib.machinery.ModuleSpec | None
        if not fullname.startswith(ADOPTED):
            return None
        parts = fullname.split(".")
        if parts[0] != ADOPTED:
            return None
        if len(parts) == 1:
            return _namespace(fullname, [])
        folder = self.folders.get(parts[1])
        if folder is None:
            return None
        if len(parts) == 2:
            init = folder / "__init__.py"
            if not init.is_file():
                return _namespace(fullname, [str(folder)])
            spec = importlib.util.spec_from_file_location(
                fullname, init, submodule_search_locations=[str(folder)]
            )
        else:
            spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _Namespaced(spec.loader, self.builtins[parts[1]])
        return spec


def _namespace(name: str, locations: list[str]) -> importlib.machinery.ModuleSpec:
    spec = importlib.machinery.ModuleSpec(name, _Empty(), is_package=True)
    spec.submodule_search_locations = locations
    return spec


def _folder(service: ServiceSpec) -> Path:
    """Where the service's modules are: its source folder, or packed on ``sys.path``."""
    if service.folder is not None:
        return Path(service.folder)
    for entry in sys.path:
        candidate = Path(entry or ".") / ADOPTED / service.name
        if candidate.is_dir():
            return candidate
    raise SetupError(f"this binary does not carry the modules of {service.name}")


def _builtins(package: str, names: Sequence[str]) -> dict[str, Any]:
    """A copy of the builtins whose ``__import__`` reads the folder's names as the package's."""
    real = builtins.__import__
    local = frozenset(names)
    modules = sys.modules

    def __import__(  # the builtin, for this service's modules
        name: str,
        globals: Mapping[str, Any] | None = None,
        locals: Mapping[str, Any] | None = None,
        fromlist: Sequence[str] = (),
        level: int = 0,
    ) -> ModuleType:
        if level == 0 and name.partition(".")[0] in local:
            module = real(f"{package}.{name}", globals, locals, fromlist, 0)
            # ``import models.x`` binds ``models``: the service's, not the namespace's top
            return module if fromlist else modules[f"{package}.{name.partition('.')[0]}"]
        return real(name, globals, locals, fromlist, level)

    own = dict(vars(builtins))
    own["__import__"] = __import__
    return own


_FINDER = Finder()


def load_app(service: ServiceSpec) -> ASGIApp:
    """Import ``service``'s app under its namespace; ``SetupError`` in one line if it cannot."""
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
    _FINDER.add(service)
    assert service.asgi is not None
    module_name, _, attribute = service.asgi.partition(":")
    full = f"{adopted_package(service.name)}.{module_name}"
    try:
        module = importlib.import_module(full)
    except Exception as exc:  # an app's module may fail to import in any way at all
        raise SetupError(
            f"the app of {service.name}, {service.asgi}, fails to import: "
            f"{type(exc).__name__}: {exc}"
        ) from None
    app: Any = module
    for part in attribute.split("."):
        app = getattr(app, part, None)
    if app is None:
        raise SetupError(f"the app of {service.name}: {module_name} has no {attribute}")
    why = _not_asgi(app)
    if why:
        raise SetupError(f"the app of {service.name}, {service.asgi}, is not an ASGI app: {why}")
    return app  # type: ignore[no-any-return]


def _not_asgi(app: Any) -> str:
    """Why ``app`` is not an ASGI 3 callable, or ``""``."""
    if isinstance(app, type):
        return f"it is the class {app.__name__}; name an instance of it"
    if not callable(app):
        return f"it is {type(app).__name__}, which cannot be called"
    try:
        parameters = inspect.signature(app).parameters.values()
    except (TypeError, ValueError):
        return ""  # no signature to read (a C callable): trust it
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if any(p.kind == p.VAR_POSITIONAL for p in parameters) or len(positional) == 3:
        return ""
    return f"it takes {len(positional)} arguments, not (scope, receive, send)"


# -- base URLs


def base_urls(
    spec: AppSpec, local: Sequence[str], placement: Placement | None, host: str, port: int
) -> dict[str, str]:
    """Each ``urls`` variable of the local adopted services -> the base URL it names."""
    remotes = placement.remotes if placement is not None else {}
    here = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
    found: dict[str, str] = {}
    for service in spec.services:
        if service.name not in local:
            continue
        for variable, target in service.urls.items():
            callee = spec.service(target)
            if target in local:
                found[variable] = _url(here, callee.port or port, callee.mount)
            elif target in remotes:
                found[variable] = _remote_url(variable, remotes[target], callee.mount)
    return found


def _url(host: str, port: int, mount: str | None) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}{mount if mount and mount != '/' else ''}"


def _remote_url(variable: str, address: str, mount: str | None) -> str:
    if not address.startswith(("http://", "https://")):
        raise SetupError(f"{variable} needs an http:// address, not {address!r}")
    return address.rstrip("/") + (mount if mount and mount != "/" else "")


# -- serving


class Adopted:
    """The adopted apps of one process: loaded, started in order, served, stopped.

    A ``Companion`` of the HTTP face (``runtime/app.py``): it starts after the
    services' hooks and stops before them.
    """

    def __init__(
        self,
        services: Sequence[tuple[ServiceSpec, ASGIApp]],
        http: str,
        limits: Limits | None = None,
    ) -> None:
        self.services = list(services)
        self.http = http  # uvicorn's HTTP parser, as the front door's
        self.limits = limits  # the front door's, on the apps' own ports too
        self.states: dict[str, dict[str, Any]] = {s.name: {} for s, _ in self.services}
        self.lifespans: list[_Lifespan] = []
        self.servers: list[Listening] = []
        self.front: tuple[str, int, ASGIApp] | None = None  # set by the server
        self.access_log = False

    def mounts(self) -> list[tuple[str, ASGIApp, dict[str, Any]]]:
        """The mounted apps, longest mount first, each with its lifespan state (behind the
        front door, whose ``telemetry.Edge`` gives each request its ids)."""
        found = [
            (s.mount, _spanned(s.name, app), self.states[s.name])
            for s, app in self.services
            if s.mount
        ]
        return sorted(found, key=lambda item: len(item[0]), reverse=True)

    async def start(self) -> None:
        for service, app in self.services:
            lifespan = _Lifespan(service.name, app, self.states[service.name])
            await lifespan.startup()
            self.lifespans.append(lifespan)
        host = self.front[0] if self.front is not None else "127.0.0.1"
        for service, app in self.services:
            if service.port is not None:
                state = self.states[service.name]
                self.servers.append(
                    await listen(
                        service.name,
                        _edged(service.name, app),
                        host,
                        service.port,
                        self.http,
                        self.access_log,
                        state,
                        self.limits,
                    )
                )
        if self.front is not None:
            host, port, front = self.front
            in_memory_at(host, port, front, {})

    async def close(self) -> None:
        ORIGINS.clear()
        await stop(self.servers)
        failures = []
        for lifespan in reversed(self.lifespans):
            failure = await lifespan.shutdown()
            if failure:
                failures.append(failure)
        self.lifespans.clear()
        if failures:
            raise SetupError("; ".join(failures))


def _spanned(name: str, app: ASGIApp) -> ASGIApp:
    """``app`` with a span per request at its edge when telemetry is on; else ``app``
    itself, so that off costs nothing."""
    return telemetry.AppSpans(name, app) if telemetry.enabled() else app


def _edged(name: str, app: ASGIApp) -> ASGIApp:
    """``_spanned``, and on a port of its own the request id and trace context the
    front door's ``Edge`` gives its requests."""
    return telemetry.Edge(telemetry.AppSpans(name, app)) if telemetry.enabled() else app


# a uvicorn server of this process's own, beside the front door: it, its main loop, its socket
Listening = tuple[Any, asyncio.Future[None], socket.socket]


async def listen(
    name: str,
    app: ASGIApp,
    host: str,
    port: int,
    http: str,
    access_log: bool,
    state: dict[str, Any],
    limits: Limits | None = None,
) -> Listening:
    """Serve ``app`` on ``host:port`` with a uvicorn server of its own, on the running
    loop, and let nanobuild's HTTP client reach it there in memory.

    Its lifespan is off: the front door's runs the services' hooks and the apps'
    lifespans. ``state`` is copied into each request's scope. With ``limits``, the
    port has the front door's deadlines and a connection cap of its own.
    """
    import uvicorn

    try:
        sock = socket.create_server((host, port))
    except OSError as exc:
        raise SetupError(f"{name} cannot listen on port {port}: {exc.strerror or exc}") from None
    options: dict[str, Any] = {"http": http}
    if limits is not None:
        from nanobuild.runtime.httpguard import guarded

        options = guarded(http, limits, f"{name}'s port")
    config = uvicorn.Config(app, lifespan="off", log_config=None, access_log=access_log, **options)
    config.load()
    server = uvicorn.Server(config)
    server.lifespan = config.lifespan_class(config)  # set by Server.serve(), not startup()
    server.lifespan.state = state
    await server.startup(sockets=[sock])
    in_memory_at(host, port, app, state)
    return server, asyncio.ensure_future(server.main_loop()), sock


async def stop(servers: list[Listening]) -> None:
    """Stop the servers ``listen`` started (requests to their ports go over the network)."""
    for server, ticking, sock in servers:
        forget_port(sock.getsockname()[1])
        server.should_exit = True
        await ticking
        await server.shutdown(sockets=[sock])
    servers.clear()


class _Lifespan:
    """One app's lifespan protocol, driven from here; an app without one is fine."""

    def __init__(self, name: str, app: ASGIApp, state: dict[str, Any]) -> None:
        self.name = name
        self.app = app
        self.state = state
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None
        self.supported = True
        self.error: BaseException | None = None

    async def _run(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}}
        try:
            await self.app({**scope, "state": self.state}, self.inbox.get, self.outbox.put)
        except BaseException as exc:  # an app without lifespan support raises at once
            self.error = exc
        finally:
            await self.outbox.put({"type": "ended"})

    async def _exchange(self, kind: str) -> dict[str, Any]:
        await self.inbox.put({"type": f"lifespan.{kind}"})
        return await self.outbox.get()

    async def startup(self) -> None:
        self.task = asyncio.ensure_future(self._run())
        answer = await self._exchange("startup")
        if answer["type"] == "lifespan.startup.failed" or (
            answer["type"] == "ended" and self._failed_starting()
        ):
            message = answer.get("message") or _one_line(self.error)
            raise SetupError(f"the app of {self.name} failed to start: {message}")
        self.supported = answer["type"] == "lifespan.startup.complete"

    def _failed_starting(self) -> bool:
        """Whether the app ended with an error after it began its start-up.

        An app without lifespan support raises before it reads a message, and the
        startup message is then still in its inbox.
        """
        return self.error is not None and self.inbox.empty()

    async def shutdown(self) -> str:
        if not self.supported or self.task is None:
            return ""
        answer = await self._exchange("shutdown")
        await self.task
        if answer["type"] == "lifespan.shutdown.failed":
            return f"the app of {self.name} failed to stop: {answer.get('message', '')}"
        return ""


def _one_line(exc: BaseException | None) -> str:
    return "" if exc is None else f"{type(exc).__name__}: {exc}"


class Front:
    """The front door's paths for the mounted apps, before the site (health, static)."""

    def __init__(
        self, mounts: Sequence[tuple[str, ASGIApp, dict[str, Any]]], fallback: ASGIApp
    ) -> None:
        self.mounts = list(mounts)
        self.fallback = fallback

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            path: str = scope["path"]
            for prefix, app, state in self.mounts:
                if prefix == "/" or path == prefix or path.startswith(prefix + "/"):
                    child = {**scope, "state": state.copy()}
                    if prefix != "/":  # as Starlette's Mount: the path stays, root_path grows
                        child["root_path"] = scope.get("root_path", "") + prefix
                    await app(child, receive, send)
                    return
        await self.fallback(scope, receive, send)


def adopt(
    spec: AppSpec, local: Sequence[str], placement: Placement | None, host: str, port: int
) -> list[tuple[ServiceSpec, ASGIApp]]:
    """Set the ``urls`` variables, then import each local adopted service's app, in order."""
    adopted = [s for s in spec.services if s.asgi is not None and s.name in local]
    if not adopted:
        return []
    export(base_urls(spec, local, placement, host, port))
    return [(service, load_app(service)) for service in adopted]
