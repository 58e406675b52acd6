"""Testing a service: run it in this process with fakes for what it calls, and talk to it.

Two tools, for a service's own tests (``services/<name>/tests/``, run by pytest from
the workspace root or from the service's folder)::

    import pytest
    from nanobuild.runtime import call
    from nanobuild.runtime.testing import fake, service

    pytestmark = pytest.mark.anyio          # async tests, run by anyio's pytest plugin

    async def test_places_an_order():
        async with service("orders", fakes={GetUser: lambda req: User(id=req.id, name="Ada")}):
            order = await call(PlaceOrder(user_id="u1", quantity=Quantity(2)))
            assert order.user_name == "Ada"

    async def test_over_http():
        async with service("orders") as svc:
            answer = await svc.http.post("/api/orders/PlaceOrder", json={...})
            assert answer.status_code == 200

``service(name)`` reads the workspace's ``nano.toml`` (found from the current folder
up, or given as ``workspace=``), wires the service's handlers as ``nanobuild serve``
would (``NANO_STRICT`` included), runs its start-up hooks, and, on leaving the block
however it ends, its shutdown hooks, and puts back the routes that were in place
before. The services it depends on run in this process too, for real, unless
``isolated=True``; the contracts in ``fakes`` are answered by their fakes instead,
and with ``isolated=True`` a call of any other contract fails with an
``UnknownContract`` that says which fake is missing.

``svc.http`` is an httpx ``AsyncClient`` over the process's HTTP face, in memory (no
socket): contract calls on ``/api/``, a contract's REST route, and everything else
the face serves, as a browser sees it (public contracts only); ``svc.trusted`` is
the same with the workspace secret, as another nanobuild process calls. httpx is
imported only when one of them is used: it is a test dependency, not the runtime's.

``fake(answers)`` is the smaller tool, for a handler called directly: inside the
block, ``call(ListProducts(...))`` runs the fake (a function of the request, ``def``
or ``async def``, returning the response or raising a ``NanoError``); every other
contract is routed as it was before, and the routes in place before the block are
back after it, however it ends. The route table is one per process, so ``fake``
blocks and ``service`` blocks nest as ``with`` blocks do: one test (or task) at a time.
"""

from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
import secrets
import sys
import types
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import msgspec

from nanobuild.runtime import router
from nanobuild.runtime.app import App, build_app
from nanobuild.runtime.contracts import HOOK_MARK, handler_types, is_contract, is_handler
from nanobuild.runtime.errors import SetupError, UnknownContract
from nanobuild.runtime.exchange import SECRET_HEADER
from nanobuild.runtime.node import Node
from nanobuild.runtime.settings import Settings, restore, saved
from nanobuild.runtime.spec import AppSpec, ServiceSpec, adopted_package
from nanobuild.runtime.wiring import wire

if TYPE_CHECKING:
    import httpx

    from nanobuild.runtime.asgi import Adopted

Fake = Callable[[Any], Any]
WORKSPACE_FILE = "nano.toml"


class TestSetupError(SetupError):
    """The service cannot be run for a test as asked; the message says what to fix."""

    __test__ = False  # pytest: not a test class, despite its name


def make_importable(start: str | os.PathLike[str] | None = None) -> Path:
    """Put the packages of every service and library of the workspace holding
    ``start`` (a file or folder; default the current folder) on ``sys.path``; its root.

    A service's ``conftest.py`` calls it with ``__file__``, so that its tests import
    its package and the kernels it calls, from whichever folder pytest runs.
    """
    ws = Workspace.find(Path(start) if start is not None else Path.cwd())
    ws.make_importable()
    return ws.root


@contextmanager
def fake(answers: Mapping[type, Fake]) -> Iterator[None]:
    """Answer each contract class in ``answers`` with its function, inside the block."""
    routes = _fake_routes(answers)
    before = router.installed()
    router.install({**before, **routes})
    try:
        yield
    finally:
        router.install(before)


@asynccontextmanager
async def service(
    name: str,
    fakes: Mapping[type, Fake] | None = None,
    *,
    isolated: bool = False,
    workspace: str | os.PathLike[str] | None = None,
) -> AsyncIterator[Running]:
    """Run the service ``name`` in this process for the block; what it runs as.

    Its dependencies run here too (unless ``isolated``), ``fakes`` answer the
    contracts they name, its start-up hooks have run when the block starts, and its
    shutdown hooks run when it ends; the routes in place before are back after it.
    ``TestSetupError`` if the workspace, the service or its modules cannot be found or
    imported; ``WiringError`` if its handlers do not match its contracts, and
    ``StartupFailed`` if a start-up hook raises (both ``SetupError``, as in a process).
    """
    routes = _fake_routes(fakes or {})
    ws = Workspace.find(Path(workspace) if workspace is not None else Path.cwd())
    ws.make_importable()
    spec = ws.spec(name, isolated=isolated)
    settings = _test_settings()
    before = router.installed()
    variables = saved(v for s in spec.services for v in s.urls)  # what adopting sets
    running: Running | None = None
    try:
        node = wire(spec, settings=settings)
        kept = {} if not isolated else _refusals(ws, name, routes)
        router.install({**kept, **router.installed(), **routes})
        running = Running(name, node, settings.secret or "", ws.front)
        await running.start()
        yield running
    finally:
        try:
            if running is not None:
                await running.close()
        finally:
            router.install(before)
            restore(variables)


class Running:
    """A service running for a test: its node, its HTTP face and clients of it.

    Adopted ASGI apps of the services it runs are started too (their lifespans, in
    order) and reached in memory, where nanobuild's HTTP client finds them
    (``nanobuild.runtime.httpclient``): on their own port or under their mount of the
    front door, at the addresses their ``urls`` name. Nothing listens on a socket.
    """

    __test__ = False

    def __init__(self, name: str, node: Node, secret: str, front: tuple[str, int]) -> None:
        self.name = name
        self.node = node
        self.secret = secret  # the workspace secret this test runs with
        self.front = front  # the front door's host and port, as nano.toml's ingress says
        self.adopted = _adopt(node.spec, front)
        mounts = self.adopted.mounts() if self.adopted is not None else ()
        self.app: App = build_app(node, mounts=mounts)  # the ASGI app of the HTTP face
        self._clients: dict[bool, httpx.AsyncClient] = {}

    @property
    def url(self) -> str:
        """The base URL of the service: its own port if it is an app served on one, else
        the front door's (a mounted app's paths include its mount, as before adoption)."""
        port = self.node.spec.service(self.name).port
        return f"http://{self.front[0]}:{self.front[1] if port is None else port}"

    @property
    def http(self) -> httpx.AsyncClient:
        """A client of the service's HTTP face as the outside world calls it: no secret."""
        return self._client(trusted=False)

    @property
    def trusted(self) -> httpx.AsyncClient:
        """The same client carrying the workspace secret: every contract answers."""
        return self._client(trusted=True)

    def _client(self, *, trusted: bool) -> httpx.AsyncClient:
        if trusted not in self._clients:
            import httpx  # a test dependency: imported only by a test that talks HTTP

            headers = _secret_headers(self.secret) if trusted else {}
            self._clients[trusted] = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=self._answering()),
                base_url=self.url,
                headers=headers,
            )
        return self._clients[trusted]

    def _answering(self) -> Callable[..., Awaitable[None]]:
        """The ASGI app at ``url``: the front door, an adopted app on its own port, or
        the face of a contract service whose REST routes are served on its own port."""
        served = self.node.spec.service(self.name)
        if served.port is None:
            return self.app
        if self.adopted is None or served.asgi is None:
            return App(self.node, only=self.name)
        return _with_state(*_origin(self.adopted, self.name))

    async def start(self) -> None:
        """Run the start-up hooks, then the adopted apps' lifespans, as a process does."""
        await self.node.startup()
        if self.adopted is not None:
            await self.adopted.start()
            _serve_in_memory(self.adopted, self.front, self.app)
        if self.app.health is not None:  # /readyz as a process answers it once started
            self.app.health.started()

    async def close(self) -> None:
        """Close the clients, stop the adopted apps, then the services (in reverse order)."""
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()
        try:
            if self.adopted is not None:
                await self.adopted.close()
        finally:
            await self.node.shutdown()


def _adopt(spec: AppSpec, front: tuple[str, int]) -> Adopted | None:
    """The adopted apps of ``spec``, imported after their ``urls`` are set; none listens."""
    if not any(s.asgi is not None for s in spec.services):
        return None
    from nanobuild.runtime.asgi import Adopted, adopt

    try:
        loaded = adopt(spec, spec.carried, None, *front)
    except SetupError as exc:
        raise TestSetupError(str(exc)) from None
    # each on its own port is reached in memory (``_serve_in_memory``), not on a socket
    return Adopted([(msgspec.structs.replace(s, port=None), app) for s, app in loaded], "h11")


def _serve_in_memory(adopted: Adopted, front: tuple[str, int], door: App) -> None:
    """Make each adopted app on a port of its own, and the front door, answer nanobuild's
    HTTP client at its address in this process, as a process serving them does."""
    from nanobuild.runtime.asgi import in_memory_at

    ports = {s.name: s.port for s in door.node.spec.services if s.port is not None}
    for served, app in adopted.services:
        port = ports.get(served.name)
        if port is not None:
            in_memory_at(front[0], port, app, adopted.states[served.name])
    in_memory_at(front[0], front[1], door, {})


def _origin(adopted: Adopted, name: str) -> tuple[Callable[..., Awaitable[None]], dict[str, Any]]:
    """The app of the adopted service ``name`` and its lifespan state."""
    app = next(app for served, app in adopted.services if served.name == name)
    return app, adopted.states[name]


def _with_state(
    app: Callable[..., Awaitable[None]], state: dict[str, Any]
) -> Callable[..., Awaitable[None]]:
    """``app`` given its lifespan's state in every request's scope, as a server gives it."""

    async def serve(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await app({**scope, "state": state.copy()}, receive, send)

    return serve


def _secret_headers(secret: str) -> dict[str, str]:
    """The header that carries the workspace secret to the HTTP face."""
    return {SECRET_HEADER.decode("latin-1"): secret}


def _test_settings() -> Settings:
    """The environment's settings, with a secret of this test's own if it sets none."""
    settings = Settings.from_env()
    if settings.secret is None:
        settings = msgspec.structs.replace(settings, secret=secrets.token_hex(16))
    return msgspec.structs.replace(settings, remotes={}, timeouts={})


def _fake_routes(answers: Mapping[type, Fake]) -> dict[type, router.Route]:
    for contract in answers:
        if not is_contract(contract):
            raise TypeError(f"fake() takes contract classes, not {contract!r}")
    return {contract: _route(fn) for contract, fn in answers.items()}


def _route(fn: Fake) -> Callable[[Any], Awaitable[Any]]:
    async def answer(request: Any) -> Any:
        result = fn(request)  # a def, an async def, or an object with an async __call__
        return await result if inspect.isawaitable(result) else result

    return answer


def _refusals(ws: Workspace, name: str, faked: Mapping[type, object]) -> dict[type, router.Route]:
    """For an isolated service, a route for every contract of what it depends on that
    says which fake is missing (a plain unrouted call would only say "no contract")."""
    routes: dict[type, router.Route] = {}
    for dependency in ws.depends(name):
        for contract in ws.contracts(dependency):
            if contract not in faked:
                routes[contract] = _refusal(name, dependency, contract)
    return routes


def _refusal(name: str, dependency: str, contract: type) -> router.Route:
    async def refuse(request: object) -> object:
        raise UnknownContract(
            f"{name} calls {dependency}.{contract.__name__}, which this isolated test does "
            f"not fake: give service({name!r}, fakes={{{contract.__name__}: ...}})",
            service=dependency,
            contract=contract.__name__,
        )

    return refuse


class Workspace:
    """What a test needs of ``nano.toml``: each service's package, folder and dependencies.

    The build side validates the file (``nanobuild check``); this reads only the keys
    it needs and trusts the rest.
    """

    __test__ = False

    def __init__(self, file: Path, data: dict[str, Any]) -> None:
        self.file = file
        self.root = file.parent
        self.name = str(data.get("workspace", {}).get("name", self.root.name))
        self.services: dict[str, dict[str, Any]] = dict(data.get("services", {}))
        self.libraries: dict[str, dict[str, Any]] = dict(data.get("libraries", {}))
        ingress = data.get("ingress", {})
        self.front = (str(ingress.get("host", "127.0.0.1")), int(ingress.get("port", 8000)))

    @classmethod
    def find(cls, start: Path) -> Workspace:
        """The workspace of ``start``: its ``nano.toml``, or the nearest parent's."""
        start = start.resolve()
        if start.is_file():
            start = start.parent
        for folder in (start, *start.parents):
            if (folder / WORKSPACE_FILE).is_file():
                return cls.read(folder / WORKSPACE_FILE)
        raise TestSetupError(f"no {WORKSPACE_FILE} in {start} or any parent folder")

    @classmethod
    def read(cls, file: Path) -> Workspace:
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover - the build side's own fallback on 3.10
            import tomli as tomllib
        try:
            # utf-8-sig: a leading BOM is nothing, as the build side reads nano.toml
            return cls(file, tomllib.loads(file.read_text(encoding="utf-8-sig")))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError) as exc:
            message = f"{file}: cannot be read ({exc}); `nanobuild check` says more"
            raise TestSetupError(message) from None

    def make_importable(self) -> None:
        """Put every service's and library's folder on ``sys.path``, as the binary has them."""
        for table in (*self.services.values(), *self.libraries.values()):
            if "asgi" in table or not isinstance(table.get("path"), str):
                continue  # an adopted app's flat modules are loaded in their own namespace
            folder = str(self.root / table["path"])
            if folder not in sys.path:
                sys.path.insert(0, folder)

    def package(self, name: str) -> str:
        return str(self._table(name).get("package", name))

    def depends(self, name: str) -> list[str]:
        return [str(d) for d in self._table(name).get("depends", [])]

    def _table(self, name: str) -> dict[str, Any]:
        if name not in self.services:
            known = ", ".join(sorted(self.services)) or "none"
            raise TestSetupError(f"{name} is not a service of {self.file} (its services: {known})")
        table: dict[str, Any] = self.services[name]
        return table

    def order(self, name: str) -> list[str]:
        """``name`` and everything it depends on: dependencies first."""
        done: list[str] = []

        def visit(service: str, path: tuple[str, ...]) -> None:
            if service in done or service in path:
                return  # a cycle is check's to report (E102); stop walking it here
            for dependency in self.depends(service):
                visit(dependency, (*path, service))
            done.append(service)

        visit(name, ())  # an unknown ``name`` is refused by ``depends``
        return done

    def spec(self, name: str, *, isolated: bool) -> AppSpec:
        """What to wire for a test of ``name``, in start-up order."""
        names = [name] if isolated else self.order(name)
        services = tuple(self.service_spec(s) for s in names)
        return AppSpec(name=self.name, services=services)

    def service_spec(self, name: str) -> ServiceSpec:
        """``name`` as the runtime wires it: its handlers and hooks, found by importing
        every module of its package, as ``nanobuild serve`` finds them by reading them."""
        table = self._table(name)
        if "asgi" in table:
            return self._adopted_spec(name, table)
        package = self.package(name)
        kernel = f"{package}.kernel"
        handlers: dict[str, str] = {}
        hooks: list[str] = []
        for target, value in _marked(_modules(name, package)):
            if is_handler(value):
                request = _request_of(target, value)
                if is_contract(request) and request.__module__ == kernel:
                    handlers[request.__name__] = target
            else:
                hooks.append(target)
        return ServiceSpec(
            name=name,
            package=package,
            handlers=dict(sorted(handlers.items())),
            hooks=tuple(hooks),
            public=tuple(str(p) for p in table.get("public", [])),
            depends=tuple(self.depends(name)),
            errors=_errors(table),
            port=table.get("port"),  # where its REST routes are served, if not the front door
        )

    def _adopted_spec(self, name: str, table: dict[str, Any]) -> ServiceSpec:
        """An adopted ASGI app as the runtime loads it: its folder's flat modules."""
        folder = self.root / str(table.get("path", ""))
        modules = {p.stem for p in folder.glob("*.py")}
        modules |= {d.name for d in folder.iterdir() if d.is_dir() and any(d.glob("*.py"))}
        return ServiceSpec(
            name=name,
            package=adopted_package(name),
            handlers={},
            public=tuple(str(p) for p in table.get("public", [])),
            depends=tuple(self.depends(name)),
            asgi=str(table["asgi"]),
            port=table.get("port"),
            mount=table.get("mount"),
            urls={str(k): str(v) for k, v in table.get("urls", {}).items()},
            modules=tuple(sorted(m for m in modules if m.isidentifier())),
            folder=str(folder),
        )

    def contracts(self, name: str) -> list[type]:
        """The contracts of ``name``'s kernel (an adopted app has none)."""
        if "asgi" in self._table(name):
            return []
        module = _import(name, f"{self.package(name)}.kernel")
        return [
            v for v in vars(module).values() if is_contract(v) and v.__module__ == module.__name__
        ]


def _marked(modules: Iterable[ModuleType]) -> Iterator[tuple[str, Callable[..., object]]]:
    """Each handler and hook the modules define, named as wiring resolves it:
    ``module:function``, or ``module:Class.method`` for a method of a handler class."""
    for module in modules:
        for attribute, value in vars(module).items():
            if getattr(value, "__module__", None) != module.__name__:
                continue  # imported from elsewhere: found where it is defined
            if isinstance(value, type):
                for method, member in vars(value).items():
                    if _is_marked(member):
                        yield f"{module.__name__}:{attribute}.{method}", member
            elif _is_marked(value):
                yield f"{module.__name__}:{attribute}", value


def _is_marked(value: object) -> bool:
    return is_handler(value) or getattr(value, HOOK_MARK, None) in ("startup", "shutdown")


def _errors(table: Mapping[str, Any]) -> dict[str, str]:
    """The service's exception map: exception class (``module.Class``) -> error kind."""
    return {str(k): str(v) for k, v in table.get("errors", {}).items()}


def _request_of(target: str, fn: Callable[..., object]) -> type:
    if "." in target.partition(":")[2]:  # a method: read as bound, ``self`` given
        fn = types.MethodType(fn, object())
    try:
        request: type = handler_types(fn)[0]
        return request
    except (NameError, TypeError) as exc:  # an annotation that does not resolve
        raise TestSetupError(f"{target}: {exc}") from exc


def _modules(service: str, package: str) -> Iterator[ModuleType]:
    """Every module of ``package``, imported (``__main__`` modules excepted)."""
    root = _import(service, package)
    yield root
    for info in pkgutil.walk_packages(getattr(root, "__path__", []), f"{package}."):
        if info.name.rpartition(".")[2] != "__main__":
            yield _import(service, info.name)


def _import(service: str, module: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except Exception as exc:  # service code may fail to import in any way at all
        raise TestSetupError(
            f"service {service}: cannot import {module}: {type(exc).__name__}: {exc}"
        ) from exc
