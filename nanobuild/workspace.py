"""``nano.toml`` -> ``Workspace``: the typed model every other part of the build reads.

Loading reports every problem in the file at once, each naming the file, the line
and the exact key (``services.checkout.depend``), with a did-you-mean where a known
key is close. A file with any problem raises ``WorkspaceError``: nothing past this
point has to cope with a half-valid workspace.
"""

from __future__ import annotations

import functools
import ipaddress
import keyword
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import msgspec
from packaging.requirements import InvalidRequirement, Requirement

from nanobuild import codes
from nanobuild.diagnostics import Diagnostic, did_you_mean
from nanobuild.errors import WorkspaceError
from nanobuild.runtime.spec import (
    DEFAULT_DISCOVERY,
    DEFAULT_INTERNAL_PORT,
    ERROR_NAMES,
    adopted_package,
)
from nanobuild.source import read_regular

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

FILENAME = "nano.toml"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_CLASS_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$")  # module.Class, dotted
_ASGI = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_MOUNT = re.compile(r"^/$|^(/[A-Za-z0-9._~!$&'()*+,;=:@%-]+)+$")
_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# -- the file's schema: one Struct per table, field defaults are the documented defaults


class WorkspaceTable(msgspec.Struct, frozen=True):
    name: str


class IngressTable(msgspec.Struct, frozen=True):
    host: str = "127.0.0.1"
    port: int = 8000
    static: str | None = None


class ServiceTable(msgspec.Struct, frozen=True):
    path: str
    package: str | None = None
    requires: list[str] = []
    depends: list[str] = []
    libraries: list[str] = []
    public: list[str] = []
    errors: dict[str, str] = {}  # exception class (module.Class) -> error kind
    asgi: str | None = None
    port: int | None = None
    mount: str | None = None
    urls: dict[str, str] = {}


class LibraryTable(msgspec.Struct, frozen=True):
    path: str
    package: str | None = None
    requires: list[str] = []


class GroupTable(msgspec.Struct, frozen=True):
    """``[placement.<group>]``: the services that run together in one process."""

    services: list[str]
    replicas: int = 1
    internal_port: int = DEFAULT_INTERNAL_PORT  # the `{port}` of the discovery pattern
    resources: dict[str, Any] = {}  # read as ``ResourcesTable``, naming its own keys


class ResourcesTable(msgspec.Struct, frozen=True):
    """What one process of a group asks for, in Kubernetes' quantities."""

    cpu: str | None = None  # cores: "500m", "2"
    memory: str | None = None  # bytes: "256Mi", "1Gi"


class DeployTable(msgspec.Struct, frozen=True):
    """``[deploy]``: how groups find each other, and which one is the front door."""

    discovery: str = DEFAULT_DISCOVERY
    front: str | None = None  # the group whose HTTP face is published; default: the first


# -- the model the rest of the build uses


class Library(msgspec.Struct, frozen=True):
    """Plain shared code: one package, no contracts, no handlers."""

    name: str
    root: Path  # the project folder, absolute
    package: str  # the importable package inside ``root``
    requires: tuple[str, ...] = ()

    @property
    def package_dir(self) -> Path:
        return self.root / self.package

    @property
    def label(self) -> str:
        """How messages name it: ``library money``."""
        return f"library {self.name}"

    @property
    def key(self) -> str:
        """Its table in nano.toml: ``libraries.money``."""
        return f"libraries.{self.name}"


class Service(msgspec.Struct, frozen=True):
    """One service: a project folder holding one package, whose kernel is its public face."""

    name: str
    root: Path
    package: str
    requires: tuple[str, ...] = ()
    depends: tuple[str, ...] = ()
    libraries: tuple[str, ...] = ()
    public: tuple[str, ...] = ()
    errors: dict[str, str] = {}  # exception class (module.Class) -> error kind
    # an adopted ASGI app (``module:attribute``), its port or mount, and its ``urls``;
    # a contract service's port is where its REST routes are served
    asgi: str | None = None
    port: int | None = None
    mount: str | None = None
    urls: dict[str, str] = {}

    @property
    def adopted(self) -> bool:
        """An existing ASGI app: flat modules in ``root``, no kernel, no handlers."""
        return self.asgi is not None

    @property
    def package_dir(self) -> Path:
        # an adopted service's folder is its package, loaded under its private namespace
        return self.root if self.asgi is not None else self.root / self.package

    @property
    def label(self) -> str:
        """How messages name it: ``service checkout``."""
        return f"service {self.name}"

    @property
    def key(self) -> str:
        """Its table in nano.toml: ``services.checkout``."""
        return f"services.{self.name}"

    @property
    def kernel_module(self) -> str:
        return f"{self.package}.kernel"

    @property
    def kernel_file(self) -> Path:
        return self.package_dir / "kernel.py"


class Ingress(msgspec.Struct, frozen=True):
    host: str = "127.0.0.1"
    port: int = 8000
    static: Path | None = None  # absolute


class Group(msgspec.Struct, frozen=True):
    """A placement group as nano.toml writes it; ``checks.placement`` judges it."""

    name: str
    services: tuple[str, ...]
    replicas: int = 1
    internal_port: int = DEFAULT_INTERNAL_PORT
    cpu: str | None = None
    memory: str | None = None

    @property
    def key(self) -> str:
        return f"placement.{self.name}"


class Deploy(msgspec.Struct, frozen=True):
    discovery: str = DEFAULT_DISCOVERY
    front: str | None = None


class Workspace(msgspec.Struct, frozen=True):
    """A loaded, valid ``nano.toml`` and the folder it lives in."""

    root: Path
    name: str
    ingress: Ingress
    services: dict[str, Service]
    libraries: dict[str, Library]
    lines: dict[str, int] = {}  # dotted key -> the line of nano.toml it was written on
    groups: dict[str, Group] = {}  # nano.toml's ``[placement.<group>]``, in its order
    deploy: Deploy = Deploy()

    @property
    def file(self) -> Path:
        return self.root / FILENAME

    def at(self, key: str, code: codes.Code, message: str, hint: str | None = None) -> Diagnostic:
        """A diagnostic pointing at ``key`` in nano.toml."""
        return _at(self.lines, key, code, message, hint)

    def rel(self, path: Path) -> str:
        """``path`` relative to the workspace root, with forward slashes."""
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return path.as_posix()

    def import_paths(self) -> list[Path]:
        """The folders to put on ``sys.path`` so every package imports by its name."""
        # an adopted service's folder stays off the path: its flat modules would collide
        roots = [s.root for s in self.services.values() if not s.adopted]
        roots += [lib.root for lib in self.libraries.values()]
        return list(dict.fromkeys(roots))

    def package_folders(self) -> dict[str, Path]:
        """Each top-level package name -> the project folder it imports from.

        Where two claim one name (E301), the first wins, as it would on ``sys.path``
        set to ``import_paths()``.
        """
        owners: list[Service | Library] = [s for s in self.services.values() if not s.adopted]
        owners += self.libraries.values()
        folders: dict[str, Path] = {}
        for owner in owners:
            folders.setdefault(owner.package, owner.root)
        return folders


# -- finding and loading


def find(start: Path) -> Path:
    """The workspace root: ``start`` or the nearest parent holding ``nano.toml``."""
    start = start.resolve()
    for folder in (start, *start.parents):
        if (folder / FILENAME).is_file():
            return folder
    raise WorkspaceError(
        [
            Diagnostic(
                path=str(start),
                code=codes.E000,
                message=f"no {FILENAME} here or in any parent folder",
                hint="run from inside a workspace, or pass --workspace PATH",
            )
        ]
    )


def load(location: Path) -> Workspace:
    """Read and validate the workspace at ``location`` (a folder or a ``nano.toml``)."""
    file = location / FILENAME if location.is_dir() else location
    root = file.parent.resolve()
    try:
        text = read_toml_text(file)
    except UnicodeDecodeError as exc:  # the line of the first byte that is not UTF-8
        line = exc.object[: exc.start].count(b"\n") + 1
        message = f"{FILENAME} is not UTF-8 text: {exc.reason} (byte {exc.start + 1})"
        hint = "TOML files are UTF-8: save it so, with your editor's encoding setting"
        raise WorkspaceError([Diagnostic(FILENAME, codes.E001, message, line, hint)]) from None
    except (OSError, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise WorkspaceError(
            [Diagnostic(path=FILENAME, code=codes.E001, message=f"cannot read {file}: {reason}")]
        ) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise WorkspaceError([_syntax_error(exc)]) from exc
    except RecursionError:  # the parser recurses once per level of nesting
        raise WorkspaceError([_too_deep(FILENAME)]) from None
    reader = _Reader(root, text)
    workspace = reader.workspace(raw)
    if reader.problems or workspace is None:
        raise WorkspaceError(reader.problems)
    return workspace


def read_toml_text(file: Path) -> str:
    """The text of a TOML file nanobuild reads (nano.toml, nano.lock): UTF-8, with a
    leading byte order mark (what Windows editors write) read as nothing, by every
    reader alike. UTF-16 text (a BOM of its own) is a ``UnicodeError`` saying so; a FIFO
    or anything else that is not a regular file is an ``OSError``, never waited on."""
    data = read_regular(file)
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise UnicodeError(f"{file.name} is UTF-16 text; TOML files are UTF-8: save it as UTF-8")
    return data.decode("utf-8-sig")


def _too_deep(name: str) -> Diagnostic:
    return Diagnostic(
        path=name,
        code=codes.E001,
        message=f"TOML syntax error: {name} nests arrays or tables too deeply to be read",
        hint="no nanobuild setting nests more than two levels: remove the deep value",
    )


_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")


def host_problem(host: str) -> str:
    """Why ``host`` is neither an IP address nor a host name ('' if it is one).

    Only the form is judged: resolving a name here would make ``check`` wait on DNS,
    and the name need only resolve where the binary runs, which checks it at start."""
    if not host:
        return "is empty"
    try:
        ipaddress.ip_address(host)
        return ""
    except ValueError:
        pass
    if "://" in host or ":" in host:
        return "is not a host: give the address or name alone (the port is `ingress.port`)"
    labels = host.removesuffix(".").split(".")
    if len(host) > 253 or not all(_HOST_LABEL.match(label) for label in labels):
        return "is neither an IP address nor a host name"
    return ""


NAME_HINT = "use ASCII letters, digits and '_', not starting with a digit"


def name_problem(name: str) -> str:
    """Why ``name`` cannot name a service, library, package or contract ('' if it can).

    Such a name is a folder on disk, a module Python imports and a part of URLs; a
    non-ASCII one could be written in two Unicode forms (NFC, NFD) that compare
    unequal, and Python reads identifiers as their NFKC form, so a folder named in
    one form is not found under the name code imports it by: only ASCII is one form.
    """
    if not name.isascii():
        return "is not an ASCII identifier (names are folders and modules, matched byte for byte)"
    if keyword.iskeyword(name):
        return "is a Python keyword"
    return "" if name.isidentifier() else "is not a Python identifier"


def _at(
    lines: dict[str, int], key: str, code: codes.Code, message: str, hint: str | None
) -> Diagnostic:
    """A diagnostic at the line of ``key`` (or, failing that, of its table) in nano.toml."""
    where = key
    while where and where not in lines:
        where = where.rpartition(".")[0]
    return Diagnostic(FILENAME, code, message, line=lines.get(where), hint=hint)


def _syntax_error(exc: tomllib.TOMLDecodeError) -> Diagnostic:
    message = str(exc)
    match = re.search(r"\(at line (\d+), column \d+\)", message)
    line = int(match.group(1)) if match else None
    message = re.sub(r"\s*\(at line \d+, column \d+\)", "", message)
    return Diagnostic(
        path=FILENAME, line=line, code=codes.E001, message=f"TOML syntax error: {message}"
    )


T = TypeVar("T", bound=msgspec.Struct)


class _Reader:
    """Turns the parsed TOML into a ``Workspace``, collecting every problem on the way."""

    def __init__(self, root: Path, text: str) -> None:
        self.root = root
        self.lines = _key_lines(text)
        self.problems: list[Diagnostic] = []

    def problem(self, key: str, code: codes.Code, message: str, hint: str | None = None) -> None:
        self.problems.append(_at(self.lines, key, code, message, hint))

    # -- tables

    def workspace(self, raw: dict[str, Any]) -> Workspace | None:
        top = self.table(raw, "", _TopLevel)
        head = None
        if "workspace" in raw:
            head = self.table(raw["workspace"], "workspace", WorkspaceTable)
        else:
            self.problem("workspace", codes.E003, "missing table [workspace] (it names the binary)")
        ingress_table = self.table(raw.get("ingress", {}), "ingress", IngressTable)
        services = {
            name: svc
            for name, table in self.named_tables(raw, "services")
            if (svc := self.service(name, table)) is not None
        }
        libraries = {
            name: lib
            for name, table in self.named_tables(raw, "libraries")
            if (lib := self.library(name, table)) is not None
        }
        for name in sorted(services.keys() & libraries.keys()):
            self.problem(
                f"libraries.{name}",
                codes.E010,
                f"`services.{name}` and `libraries.{name}` share one name",
                "give the library another name: the two are told apart by name",
            )
        if head is not None and not _NAME.match(head.name):
            self.problem(
                "workspace.name",
                codes.E006,
                f"workspace.name {head.name!r} cannot name a file",
                "use letters, digits, '.', '_' and '-'",
            )
        ingress = self.ingress(ingress_table)
        if ingress is not None:
            tables = raw.get("services")
            self.served(services, ingress.port, set(tables) if isinstance(tables, dict) else set())
        groups = self.groups(raw.get("placement", {}))
        deploy = self.table(raw.get("deploy", {}), "deploy", DeployTable)
        if "observe" in raw:  # a table of an earlier release: tracing packed the SDK then
            self.problem(
                "observe",
                codes.E002,
                "unknown key `observe`",
                "remove the table: every binary exports its traces over OTLP when "
                "OTEL_EXPORTER_OTLP_ENDPOINT is set, with nothing packed for it",
            )
        if top is None or head is None or ingress is None or deploy is None:
            return None
        return Workspace(
            root=self.root,
            name=head.name,
            ingress=ingress,
            services=services,
            libraries=libraries,
            lines=self.lines,
            groups=groups,
            deploy=Deploy(discovery=deploy.discovery, front=deploy.front),
        )

    def groups(self, tables: Any) -> dict[str, Group]:
        """Each ``[placement.<group>]`` read as written; its names and values are
        judged by ``check`` (E036-E044), which can name every problem at once."""
        if not isinstance(tables, dict):  # already reported by the top-level table
            return {}
        groups: dict[str, Group] = {}
        for name, raw in tables.items():
            key = f"placement.{name}"
            table = self.table(raw, key, GroupTable)
            if table is None:
                continue
            resources = self.table(table.resources, f"{key}.resources", ResourcesTable)
            if resources is None:
                continue
            groups[name] = Group(
                name=name,
                services=tuple(table.services),
                replicas=table.replicas,
                internal_port=table.internal_port,
                cpu=resources.cpu,
                memory=resources.memory,
            )
        return groups

    def named_tables(self, raw: dict[str, Any], section: str) -> Iterator[tuple[str, Any]]:
        tables = raw.get(section, {})
        if not isinstance(tables, dict):  # already reported by the top-level table
            return
        for name, table in tables.items():
            key = f"{section}.{name}"
            why = name_problem(name)
            if why:
                self.problem(
                    key,
                    codes.E006,
                    f"{section[:-1] if section == 'services' else 'library'} name {name!r} {why}",
                    NAME_HINT,
                )
                continue
            if not isinstance(table, dict):
                self.problem(key, codes.E003, f"`{key}` must be a table")
                continue
            yield name, table

    def ingress(self, table: IngressTable | None) -> Ingress | None:
        if table is None:
            return None
        static = None
        if table.static is not None:
            static = self.folder("ingress.static", table.static)
        if not 0 <= table.port <= 65535:
            self.problem("ingress.port", codes.E003, f"ingress.port {table.port} is not a TCP port")
        why = host_problem(table.host)
        if why:
            self.problem(
                "ingress.host",
                codes.E023,
                f"`ingress.host` = {table.host!r} {why}",
                'use an address ("127.0.0.1", "0.0.0.0", "::") or a host name ("localhost"); '
                "whether a name resolves is known where the binary starts, and it says so there",
            )
        return Ingress(host=table.host, port=table.port, static=static)

    def service(self, name: str, raw: dict[str, Any]) -> Service | None:
        key = f"services.{name}"
        table = self.table(raw, key, ServiceTable)
        if table is None:
            return None
        root = self.folder(f"{key}.path", table.path)
        if table.asgi is not None or table.mount is not None:
            package = self.adopted(key, table, name)
        else:  # a contract service's ``port`` serves its REST routes there
            package = self.package(key, table.package or name)
            self.port(key, table.port)
        if table.urls:
            self.urls(key, table)
        self.requirements(key, table.requires)
        self.exception_map(key, table.errors)
        for field in ("depends", "libraries", "public"):
            for item in getattr(table, field):
                why = name_problem(item)
                if why:
                    self.problem(
                        f"{key}.{field}", codes.E006, f"{key}.{field}: {item!r} {why}", NAME_HINT
                    )
        if root is None or package is None:
            return None
        return Service(
            name=name,
            root=root,
            package=package,
            requires=tuple(table.requires),
            depends=tuple(table.depends),
            libraries=tuple(table.libraries),
            public=tuple(table.public),
            errors=dict(table.errors),
            asgi=table.asgi,
            port=table.port,
            mount=table.mount,
            urls=dict(table.urls),
        )

    def adopted(self, key: str, table: ServiceTable, name: str) -> str | None:
        """The private package of an adopted ASGI service, or None after naming what is wrong."""
        if table.asgi is None:
            self.problem(
                f"{key}.mount",
                codes.E011,
                f"`{key}.mount` serves an ASGI app, but `{key}.asgi` is not set",
                'name the app, e.g. asgi = "main:app", or remove the key',
            )
            return None
        ok = _ASGI.match(table.asgi) is not None
        if not ok:
            self.problem(
                f"{key}.asgi",
                codes.E011,
                f"`{key}.asgi` = {table.asgi!r} is not module:attribute",
                'write it as uvicorn takes it, relative to the folder: asgi = "main:app"',
            )
        if table.package is not None:
            ok = False
            self.problem(
                f"{key}.package",
                codes.E011,
                f"`{key}.package` cannot be set with `{key}.asgi`: an ASGI service's "
                "modules are the flat modules of its folder",
                f"remove `{key}.package`; `{key}.path` is the folder uvicorn ran from",
            )
        return adopted_package(name) if self.served_by(key, table) and ok else None

    def served_by(self, key: str, table: ServiceTable) -> bool:
        """Whether ``table`` says where its app is served: a port or a mount, not both."""
        if (table.port is None) == (table.mount is None):
            both = table.port is not None
            has = "has both `port` and `mount`" if both else "has neither `port` nor `mount`"
            self.problem(
                f"{key}.mount" if both else f"{key}.asgi",
                codes.E012,
                f"{key} {has}: an ASGI service is served on its own port "
                "or under a mount of the front door",
                'choose one: port = 8001, or mount = "/"',
            )
            return False
        if not self.port(key, table.port):
            return False
        if table.mount is not None and not _MOUNT.match(table.mount):
            self.problem(
                f"{key}.mount",
                codes.E012,
                f"`{key}.mount` = {table.mount!r} is not a URL path prefix",
                'start it with "/" and end it without one: "/", "/users"',
            )
            return False
        return True

    def port(self, key: str, port: int | None) -> bool:
        """E012 for a service's ``port`` that is not a TCP port; whether it is fine."""
        if port is not None and not 0 < port <= 65535:
            self.problem(f"{key}.port", codes.E012, f"`{key}.port` = {port} is not a TCP port")
            return False
        return True

    def urls(self, key: str, table: ServiceTable) -> None:
        """E011 and E015 for each ``urls`` variable (E014, the services, once all are read)."""
        if table.asgi is None:
            self.problem(
                f"{key}.urls",
                codes.E011,
                f"`{key}.urls` sets variables for an ASGI app, but `{key}.asgi` is not set",
                "a nanobuild service reaches another with call(); remove the key",
            )
        for variable in table.urls:
            if not _VARIABLE.match(variable) or variable.startswith("NANO_"):
                why = "is nanobuild's own" if variable.startswith("NANO_") else "is not a name"
                self.problem(
                    f"{key}.urls",
                    codes.E015,
                    f"`{key}.urls`: the variable {variable!r} {why}",
                    "use letters, digits and '_', not starting with a digit nor NANO_",
                )

    def served(self, services: dict[str, Service], ingress_port: int, named: set[str]) -> None:
        """E013 for two services on one port or mount; E014 for ``urls`` naming a non-dependency."""
        taken: dict[tuple[str, object], str] = {("port", ingress_port): "ingress.port"}
        for svc in services.values():
            what, where = ("port", svc.port) if svc.port is not None else ("mount", svc.mount)
            if where is None:
                continue
            first = taken.setdefault((what, where), f"{svc.key}.{what}")
            if first != f"{svc.key}.{what}":
                self.problem(
                    f"{svc.key}.{what}",
                    codes.E013,
                    f"`{svc.key}.{what}` = {where!r} is already taken by `{first}`",
                    f"give each ASGI service a {what} of its own",
                )
        for svc in services.values():
            for variable, target in svc.urls.items():
                if target not in named:  # a service with a problem of its own is still there
                    hint = did_you_mean(target, services)
                    self.problem(
                        f"{svc.key}.urls",
                        codes.E014,
                        f"`{svc.key}.urls`: {variable} names {target}, "
                        "which is not a service of this workspace",
                        hint,
                    )
                elif target in services and target not in svc.depends:
                    self.problem(
                        f"{svc.key}.urls",
                        codes.E014,
                        f"`{svc.key}.urls`: {variable} names {target}, which is not in "
                        f"`{svc.key}.depends`",
                        f'add "{target}" to `{svc.key}.depends`: it starts first, and is placed',
                    )

    def library(self, name: str, raw: dict[str, Any]) -> Library | None:
        key = f"libraries.{name}"
        table = self.table(raw, key, LibraryTable)
        if table is None:
            return None
        root = self.folder(f"{key}.path", table.path)
        package = self.package(key, table.package or name)
        self.requirements(key, table.requires)
        if root is None or package is None:
            return None
        return Library(name=name, root=root, package=package, requires=tuple(table.requires))

    def exception_map(self, key: str, errors: dict[str, str]) -> None:
        """Each ``"module.Class" = "Kind"`` of ``[services.<name>.errors]``, checked here;
        whether the class can be imported is known only where it runs (at start-up)."""
        for path, kind in errors.items():
            where = f"{key}.errors.{path}"
            if not _CLASS_PATH.match(path):
                self.problem(
                    where,
                    codes.E017,
                    f"`{key}.errors`: {path!r} is not a class path (module.Class)",
                    'name the class with its module, as it is imported: "sqlite3.IntegrityError"',
                )
            if kind not in ERROR_NAMES:
                self.problem(
                    where,
                    codes.E016,
                    f"`{key}.errors`: {path!r} maps to {kind!r}, which is not an error kind",
                    did_you_mean(kind, ERROR_NAMES) or f"use one of {', '.join(ERROR_NAMES)}",
                )

    # -- values

    def table(self, raw: Any, key: str, schema: type[T]) -> T | None:
        """Decode one TOML table into ``schema``, naming each unknown key and bad value.

        Unknown keys are reported but do not stop the decoding, so the rest of the
        table is still checked; ``load`` refuses the workspace either way.
        """
        if not isinstance(raw, dict):
            self.problem(key, codes.E003, f"`{key}` must be a table")
            return None
        fields = _fields(schema)
        ok = True
        for name in raw:
            if name not in fields:
                where = f"{key}.{name}" if key else name
                self.problem(
                    where, codes.E002, f"unknown key `{where}`", did_you_mean(name, fields)
                )
        values: dict[str, Any] = {}
        for name, field in fields.items():
            where = f"{key}.{name}" if key else name
            if name not in raw:
                if field.required:
                    self.problem(where, codes.E003, f"missing key `{where}`")
                    ok = False
                continue
            try:
                values[name] = msgspec.convert(raw[name], field.type)
            except msgspec.ValidationError as exc:
                self.problem(where, codes.E003, f"`{where}`: {_type_message(exc)}")
                ok = False
        return schema(**values) if ok else None

    def folder(self, key: str, value: str) -> Path | None:
        """A folder inside the workspace, or a problem naming ``key``."""
        given = Path(value)
        if given.is_absolute():
            self.problem(key, codes.E005, f"`{key}` = {value!r} is absolute", _RELATIVE_HINT)
            return None
        if "\0" in value:
            self.problem(key, codes.E004, f"`{key}` = {value!r} holds a NUL character")
            return None
        path = (self.root / given).resolve()
        if not path.is_relative_to(self.root):
            self.problem(
                key, codes.E005, f"`{key}` = {value!r} leaves the workspace", _RELATIVE_HINT
            )
            return None
        if not path.is_dir():
            self.problem(key, codes.E004, f"`{key}` = {value!r}: no such folder")
            return None
        return path

    def package(self, key: str, package: str) -> str | None:
        why = name_problem(package)
        if why:
            self.problem(f"{key}.package", codes.E006, f"package name {package!r} {why}", NAME_HINT)
            return None
        return package

    def requirements(self, key: str, requires: list[str]) -> None:
        for text in requires:
            try:
                requirement = Requirement(text)
            except InvalidRequirement as exc:
                self.problem(
                    f"{key}.requires",
                    codes.E007,
                    f"`{key}.requires`: {text!r} is not a PEP 508 requirement",
                    str(exc).splitlines()[0],
                )
                continue
            if requirement.url is not None:  # the lock pins index versions and their hashes
                self.problem(
                    f"{key}.requires",
                    codes.E024,
                    f"`{key}.requires`: {text!r} names a URL, which nano.lock cannot pin",
                    f'require it by name and version ("{requirement.name}>=1.0"), and give '
                    "a folder holding its wheel to `nanobuild lock --find-links`",
                )


@functools.cache
def _fields(schema: type[msgspec.Struct]) -> dict[str, msgspec.structs.FieldInfo]:
    """A schema's fields by key, worked out once per schema: msgspec resolves the
    annotations (strings here) again on every call, a cost paid per table otherwise."""
    return {f.encode_name: f for f in msgspec.structs.fields(schema)}


class _TopLevel(msgspec.Struct, frozen=True):
    workspace: dict[str, Any] = {}
    ingress: dict[str, Any] = {}
    services: dict[str, Any] = {}
    libraries: dict[str, Any] = {}
    placement: dict[str, Any] = {}
    deploy: dict[str, Any] = {}
    observe: dict[str, Any] = {}  # no longer a table: refused with what to do instead


_RELATIVE_HINT = "paths are relative to the folder of nano.toml and stay inside it"


def _type_message(exc: msgspec.ValidationError) -> str:
    """msgspec's message without its ``- at `$...` `` suffix, which the key already says."""
    message = str(exc)
    message = re.sub(r"\s*- at `\$[^`]*`$", "", message).replace("`object`", "`table`")
    return message[0].lower() + message[1:] if message else message


def _key_lines(text: str) -> dict[str, int]:
    """Where each table and key of the TOML text starts, for line numbers in messages."""
    lines: dict[str, int] = {}
    table: tuple[str, ...] = ()
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        header = re.match(r"^\[\s*([^\[\]]+?)\s*\]", stripped)
        if header:
            table = _dotted(header.group(1))
            lines.setdefault(".".join(table), number)
            continue
        assignment = re.match(r"^([A-Za-z0-9_\-.\"' ]+?)\s*=", stripped)
        if assignment:
            lines.setdefault(".".join(table + _dotted(assignment.group(1))), number)
    return lines


def _dotted(key: str) -> tuple[str, ...]:
    return tuple(part.strip().strip("\"'") for part in key.split("."))
