"""The contract between the build side and the binary: plain data, nothing else.

``nanobuild serve`` builds an ``AppSpec`` from the workspace's source; ``nanobuild
bundle`` writes the same ``AppSpec`` and a ``BuildInfo`` as literals into the
generated ingress module. The runtime wires whatever it is handed. This is the only
module of the runtime that the build side imports, so it imports nothing but msgspec.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterable

import msgspec

__version__ = "0.1.0"  # the one place the version lives; the build side reads it here


class ServiceSpec(msgspec.Struct, frozen=True):
    """One service as the runtime needs to know it. Functions are named ``module:function``."""

    name: str
    package: str
    handlers: dict[str, str]  # contract name -> its handler
    hooks: tuple[str, ...] = ()  # its @on_startup and @on_shutdown functions
    public: tuple[str, ...] = ()
    depends: tuple[str, ...] = ()
    # nano.toml's ``[services.<name>.errors]``: exception class (``module.Class``) -> the
    # name of the NanoError its handlers' exceptions of that class reach callers as
    errors: dict[str, str] = {}
    # an adopted ASGI service (nano.toml's ``asgi``): its app, ``module:attribute`` of
    # its folder's flat modules, served on its own ``port`` or under a ``mount`` of the
    # front door; ``urls`` sets each variable to the base URL of the service it names
    asgi: str | None = None
    port: int | None = None
    mount: str | None = None
    urls: dict[str, str] = {}
    modules: tuple[str, ...] = ()  # the folder's top-level module names (``main``, ...)
    folder: str | None = None  # where those modules are when not packed (serve from source)


ADOPTED = "_nanoasgi"  # the private namespace of adopted services: ``_nanoasgi.users.main``


def adopted_package(service: str) -> str:
    """The package an adopted service's flat modules are loaded under."""
    return f"{ADOPTED}.{service}"


# the error kinds an exception map may name: the NanoError classes a handler raises
ERROR_NAMES = (
    "BadRequest",
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "Conflict",
    "Internal",
    "Unavailable",
    "Timeout",
)


# -- placement groups: nano.toml's ``[placement.<group>]``, what ``serve --group`` runs
#
# A group is the services that run together in one process (and in one container);
# the others find it at the discovery pattern's address for it. The deployment
# generator and the binary read these names and defaults from here, the one place.

DEFAULT_INTERNAL_PORT = 9100  # where a group's processes answer the other groups (TCP)
DEFAULT_DISCOVERY = "tcp://{group}:{port}"  # {group}: its name; {port}: its internal port
PLACEHOLDERS = ("{group}", "{port}")
# the variables a deployment sets; settings.py reads them by these very names
SECRET_VARIABLE = "NANO_SECRET"
SECRET_FILE_VARIABLE = "NANO_SECRET_FILE"
DISCOVERY_VARIABLE = "NANO_DISCOVERY"


class GroupSpec(msgspec.Struct, frozen=True):
    """One placement group: its name (a DNS label: it names hosts), its services."""

    name: str
    services: tuple[str, ...]
    replicas: int = 1
    internal_port: int = DEFAULT_INTERNAL_PORT


def own_group(service: str) -> str:
    """The name of the group a service in no ``[placement]`` group forms alone:
    ``user_db`` runs in ``user-db`` (host names take no ``_`` and no capitals)."""
    return service.lower().replace("_", "-")


def discovered(pattern: str, group: GroupSpec) -> str:
    """The address ``pattern`` gives ``group``: ``tcp://catalog:9100``. Replaced, not
    ``str.format``ted: a brace the pattern holds by mistake cannot run anything."""
    return pattern.replace("{group}", group.name).replace("{port}", str(group.internal_port))


def pattern_problem(pattern: str) -> str:
    """Why ``pattern`` cannot be a discovery pattern ('' if it can): it must be
    ``tcp://HOST:PORT`` with ``{group}`` or ``{port}`` in it, and no other braces.
    ``check`` (for ``deploy.discovery``) and the binary (for NANO_DISCOVERY) ask alike."""
    rest = pattern
    for placeholder in PLACEHOLDERS:
        rest = rest.replace(placeholder, "")
    if "{" in rest or "}" in rest:
        return "holds a brace that is not {group} or {port}, its only placeholders"
    if not any(p in pattern for p in PLACEHOLDERS):
        return "has no {group} (nor {port}): every group would be looked for at one address"
    sample = discovered(pattern, GroupSpec(name="group", services=()))
    scheme, _, address = sample.partition("://")
    host, _, port = address.rpartition(":")
    if scheme != "tcp" or not host or "/" in host or "@" in host:
        return "is not tcp://HOST:PORT (the internal transport's address, e.g. tcp://{group}:9100)"
    if not port.isdigit() or not 0 < int(port) < 65536:
        return "names no port 1-65535 after the host (tcp://{group}:9100)"
    return ""


class AppSpec(msgspec.Struct, frozen=True):
    """The whole workspace: services in start-up order (dependencies first)."""

    name: str
    services: tuple[ServiceSpec, ...]
    static: str | None = None  # folder of the static frontend, served at /
    packed: tuple[str, ...] | None = None  # the services whose code is here; None: all
    groups: tuple[GroupSpec, ...] = ()  # nano.toml's placement groups, as written
    discovery: str = DEFAULT_DISCOVERY  # nano.toml's ``deploy.discovery``
    front: str | None = None  # the group whose face is published: it reaches every service

    def service(self, name: str) -> ServiceSpec:
        return next(s for s in self.services if s.name == name)

    def placement_groups(self) -> tuple[GroupSpec, ...]:
        """Every group: those nano.toml writes, then one of its own for each service
        in none of them (``own_group``), in start-up order."""
        placed = {name for group in self.groups for name in group.services}
        alone = [
            GroupSpec(name=own_group(s.name), services=(s.name,))
            for s in self.services
            if s.name not in placed
        ]
        return (*self.groups, *alone)

    @property
    def carried(self) -> tuple[str, ...]:
        """The services whose code this binary (or source tree) carries."""
        return self.packed if self.packed is not None else tuple(s.name for s in self.services)


class BuildInfo(msgspec.Struct, frozen=True):
    """What ``nanobuild bundle`` records about a build, for ``info``."""

    workspace: str
    nanobuild: str
    inputs: str  # sha256 of nano.toml and every packed workspace file
    built_at: int | None = None  # SOURCE_DATE_EPOCH, when the build set one
    host: str = "127.0.0.1"
    port: int = 8000
    # the third-party distributions it carries, (name, version), from nano.lock
    distributions: tuple[tuple[str, str], ...] = ()


def python_binding() -> str:
    """What a build's compiled packages are bound to: ``cpython-311 linux``.

    The builder records it; the binary's bootstrap, which runs before any package of
    the binary can be imported, computes the same text with its own copy of these
    two lines and refuses to start on another Python (a test keeps them equal).
    """
    return f"{sys.implementation.cache_tag} {sys.platform}"


# -- REST routes: a contract's ``Route("GET /users/{id}")``, as text both sides read
#
# The binary serves the route and ``check`` judges it, so the one reading of the text
# lives here, in the module both may import.

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
BODYLESS = frozenset({"GET", "DELETE"})  # their fields not in the path come from the query


def query_fields(
    method: str, params: Iterable[str], declared: Iterable[str], fields: Iterable[str]
) -> list[str]:
    """The fields a route reads from the query string: those its ``query=`` names, and,
    for a method with no body, every other field ``params`` (the path's) does not take."""
    query = list(declared)
    if method in BODYLESS:
        taken = {*params, *query}
        query += [name for name in fields if name not in taken]
    return query


RESERVED_PATHS = frozenset({"/healthz", "/readyz", "/openapi.json"})  # the HTTP face's own


def route_parts(text: object) -> tuple[str, str, tuple[str, ...]]:
    """(method, path template, parameter names) of a route text such as ``GET /users/{id}``.

    ``ValueError`` saying what is wrong: not ``METHOD /path``, an unknown method, no
    leading slash, a query or fragment, unbalanced braces, a parameter that is not a
    whole segment or not an identifier, a parameter twice, an empty segment, or a
    path of the HTTP face's own.
    """
    if not isinstance(text, str):
        raise ValueError(f"a route is text such as 'GET /users/{{id}}', not {text!r}")
    words = text.split()
    if len(words) != 2:
        raise ValueError(f"route {text!r} is not 'METHOD /path', e.g. 'GET /users/{{id}}'")
    method, path = words[0].upper(), words[1]
    if method not in METHODS:
        raise ValueError(f"route {text!r}: {words[0]} is not one of {', '.join(METHODS)}")
    if not path.startswith("/"):
        raise ValueError(f"route {text!r}: the path must start with '/'")
    if "?" in path or "#" in path:
        raise ValueError(f"route {text!r}: no query in the path; name query fields in query=")
    if path in RESERVED_PATHS:
        raise ValueError(f"route {text!r}: {path} is the HTTP face's own")
    return method, path, _parameters(text, path)


def _parameters(text: str, path: str) -> tuple[str, ...]:
    params: list[str] = []
    segments = path[1:].split("/")
    for i, segment in enumerate(segments):
        if not segment and i < len(segments) - 1:  # a trailing slash is a path of its own
            raise ValueError(f"route {text!r}: an empty segment ('//')")
        if segment.count("{") != segment.count("}"):
            raise ValueError(f"route {text!r}: unbalanced braces in {segment!r}")
        if "{" not in segment and "}" not in segment:
            continue
        name = segment[1:-1]
        if not (segment.startswith("{") and segment.endswith("}")) or "{" in name or "}" in name:
            raise ValueError(f"route {text!r}: a parameter is a whole segment, not {segment!r}")
        if not name.isidentifier():
            raise ValueError(f"route {text!r}: parameter {segment} does not name a field")
        if name in params:
            raise ValueError(f"route {text!r}: parameter {segment} appears twice")
        params.append(name)
    return tuple(params)


def route_key(method: str, path: str) -> str:
    """What two routes share when they are one route: ``GET /users/{}`` for ``/users/{id}``."""
    segments = ["{}" if s.startswith("{") else s for s in path.split("/")]
    return f"{method} {'/'.join(segments)}"


# -- contract shapes: what two builds compare before they call each other
#
# A contract's *shape* is its request and response types as they travel: every
# field's wire name, type and whether it is required, the nested records, tags and
# layout. ``nanobuild.runtime.shapes`` computes it from the classes; two builds
# exchange shapes (``nanobuild check --against``, the TCP handshake) and ``compare``
# tells whether one build can call the other. Names of classes are kept for
# messages, never compared: only what crosses the wire is.

Scalar = str | int | float | bool | None


class TypeShape(msgspec.Struct, frozen=True, omit_defaults=True):
    """One type: ``kind`` (``int``, ``str``, ``list``, ``union``, ``record``, ...),
    its element types, the record it names, its literal or enum values, its
    constraints (``max_length``, ``ge``, ``tz``, ...)."""

    kind: str
    args: tuple[TypeShape, ...] = ()
    ref: str = ""  # for a record: its key in ContractShape.records
    values: tuple[Scalar, ...] = ()
    meta: dict[str, Scalar] = {}


class FieldShape(msgspec.Struct, frozen=True, omit_defaults=True):
    name: str  # the attribute
    wire: str  # the name on the wire
    type: TypeShape
    required: bool = False


class RecordShape(msgspec.Struct, frozen=True, omit_defaults=True):
    """A Struct, dataclass, TypedDict or NamedTuple: its fields and wire layout."""

    kind: str  # struct, dataclass, typeddict, namedtuple
    fields: tuple[FieldShape, ...] = ()
    tag_field: str | None = None
    tag: str | int | None = None
    array_like: bool = False
    forbid_unknown_fields: bool = False
    omit_defaults: bool = False


class ContractShape(msgspec.Struct, frozen=True, omit_defaults=True):
    """A contract as it crosses the wire: request, response and the records they use."""

    request: TypeShape
    response: TypeShape
    records: dict[str, RecordShape] = {}


class ContractTable(msgspec.Struct, frozen=True, omit_defaults=True):
    """Every contract of a build, by ``service.Contract``; what ``contracts --json`` prints."""

    build: str
    contracts: dict[str, ContractShape] = {}
    errors: dict[str, str] = {}  # service -> why its kernel could not be read


def fingerprint(shape: ContractShape) -> str:
    """A short, stable hash of ``shape``: equal for equal shapes, in any build."""
    encoded = msgspec.json.encode(shape, order="deterministic")
    return hashlib.sha256(encoded).hexdigest()[:16]


class Change(msgspec.Struct, frozen=True, omit_defaults=True):
    """One difference between a caller's and a callee's shape of one contract.

    ``rule`` names it (``RULES`` says which rules break calls); ``side`` is where
    (``request`` or ``response``); ``path`` the field (``quantity.amount``);
    ``caller`` and ``callee`` the type each side has there, as text.
    """

    rule: str
    side: str = ""
    path: str = ""
    caller: str = ""
    callee: str = ""

    @property
    def breaking(self) -> bool:
        return RULES[self.rule]


# rule -> whether a call across it fails (True) or still works (False)
RULES: dict[str, bool] = {
    "contract-removed": True,  # the callee does not serve it
    "contract-added": False,
    "request-field-removed": True,  # the caller sends it; the callee refuses it as unknown
    "request-field-required": True,  # the callee requires it; the caller does not send it
    "request-field-added": False,  # optional in the callee, not sent: its default applies
    "request-field-ignored": False,  # sent, and ignored by a record that allows unknown fields
    "response-field-removed": True,  # the caller requires it; the callee does not send it
    "response-field-dropped": False,  # optional for the caller, not sent: its default applies
    "response-field-added": False,  # sent by the callee; the caller ignores it
    "response-field-refused": True,  # sent by the callee; the caller forbids unknown fields
    "type-changed": True,  # the reader does not accept what the writer sends
    "type-widened": False,  # the reader accepts all the writer sends, and more
    "tag-changed": True,  # a record's tag or tag field differs
    "layout-changed": True,  # an array on one side, an object on the other
}

CALLER_SENDS = {"request": True, "response": False}


def compare(caller: ContractShape, callee: ContractShape) -> list[Change]:
    """What differs between the caller's shape of a contract and the callee's.

    The caller writes the request and reads the response; the callee reads the
    request strictly (an unknown field is refused) and writes the response, which
    the caller reads leniently unless its record forbids unknown fields. So each
    side is compared writer against reader. Empty when they agree on the wire.
    """
    found: list[Change] = []
    for side in ("request", "response"):
        writer, reader = (caller, callee) if CALLER_SENDS[side] else (callee, caller)
        _Comparison(side, writer, reader, found).types(
            getattr(writer, side), getattr(reader, side), ""
        )
    return found


def compare_tables(
    caller: dict[str, ContractShape], callee: dict[str, ContractShape]
) -> dict[str, list[Change]]:
    """Per contract (``service.Contract``), the changes from ``caller``'s build to ``callee``'s."""
    changes = {name: [Change("contract-removed")] for name in caller if name not in callee}
    changes |= {name: [Change("contract-added")] for name in callee if name not in caller}
    for name in caller.keys() & callee.keys():
        if fingerprint(caller[name]) != fingerprint(callee[name]):
            changes[name] = compare(caller[name], callee[name])
    return {name: changes[name] for name in sorted(changes) if changes[name]}


def type_text(shape: TypeShape, records: dict[str, RecordShape] | None = None) -> str:
    """``list[Product]``, ``str | None``, ``str(max_length=5)``: a type for messages."""
    if shape.kind == "union":
        return " | ".join(type_text(arg) for arg in shape.args)
    if shape.kind == "record":
        text = shape.ref.rpartition(".")[2]
    elif shape.kind in ("literal", "enum"):
        text = f"{shape.kind}[{', '.join(repr(v) for v in shape.values)}]"
    elif shape.args:
        text = f"{shape.kind}[{', '.join(type_text(arg) for arg in shape.args)}]"
    else:
        text = shape.kind
    if shape.meta:
        text += "(" + ", ".join(f"{k}={v!r}" for k, v in sorted(shape.meta.items())) + ")"
    return text


_TEMPLATES = {
    "contract-removed": "{callee} does not serve it",
    "contract-added": "new in {callee}",
    "request-field-removed": "request field `{path}` ({caller_type}) is sent by {caller} "
    "but refused as unknown by {callee}",
    "request-field-required": "request field `{path}` ({callee_type}) is required by {callee} "
    "but not sent by {caller}",
    "request-field-added": "request field `{path}` ({callee_type}) is new in {callee} and "
    "optional: not sent by {caller}, it takes its default",
    "request-field-ignored": "request field `{path}` is sent by {caller} and ignored by {callee}",
    "response-field-removed": "response field `{path}` ({caller_type}) is required by {caller} "
    "but not sent by {callee}",
    "response-field-dropped": "response field `{path}` ({caller_type}) is optional for {caller} "
    "and not sent by {callee}: it takes its default",
    "response-field-added": "response field `{path}` ({callee_type}) is new in {callee} and "
    "ignored by {caller}",
    "response-field-refused": "response field `{path}` ({callee_type}) is sent by {callee} "
    "but refused as unknown by {caller}",
    "type-changed": "`{where}` is {caller_type} in {caller} but {callee_type} in {callee}",
    "type-widened": "`{where}` is {caller_type} in {caller} and {callee_type} in {callee}, "
    "which accepts it",
    "tag-changed": "`{where}` is {caller_type} in {caller} but {callee_type} in {callee}",
    "layout-changed": "`{where}` is {caller_type} in {caller} but {callee_type} in {callee}",
}


def describe(change: Change, caller: str = "the caller", callee: str = "the callee") -> str:
    """``change`` in words, naming the two sides ``caller`` and ``callee``."""
    return _TEMPLATES[change.rule].format(
        caller=caller,
        callee=callee,
        where=f"{change.side}.{change.path}" if change.path else change.side,
        path=change.path,
        caller_type=change.caller,
        callee_type=change.callee,
    )


# bounds a reader may widen without breaking: the reader's lower bounds may only
# go down and its upper bounds only up; any other constraint must stay the same
_LOWER = {"ge", "gt", "min_length"}
_UPPER = {"le", "lt", "max_length"}
_ARRAYS = {"list", "set", "frozenset", "vartuple"}  # one wire form: an array of items
_NUMBERS = {("int", "float")}  # writer kind, reader kind: a float reader takes ints


class _Comparison:
    """One side of a contract (request or response), the writer's types against the reader's."""

    def __init__(
        self, side: str, writer: ContractShape, reader: ContractShape, found: list[Change]
    ) -> None:
        self.side = side
        self.writer, self.reader = writer.records, reader.records
        self.found = found
        self.seen: set[tuple[str, str]] = set()  # record pairs compared: recursion ends

    def change(self, rule: str, path: str, writer: str = "", reader: str = "") -> None:
        sent_by_caller = CALLER_SENDS[self.side]
        caller, callee = (writer, reader) if sent_by_caller else (reader, writer)
        self.found.append(Change(rule, self.side, path, caller, callee))

    def types(self, writer: TypeShape, reader: TypeShape, path: str) -> None:
        if reader.kind == "any":
            return
        if writer.kind == "union":
            for alternative in writer.args:
                if self._fit(alternative, reader) is None:
                    self._mismatch(writer, reader, path)
                    return
            for alternative in writer.args:
                self.types(alternative, self._fit(alternative, reader) or reader, path)
            return
        match = self._fit(writer, reader)
        if match is None:
            self._mismatch(writer, reader, path)
        elif match is not reader:  # one alternative of a union the reader accepts
            self.types(writer, match, path)
            self._widened(writer, reader, path)
        else:
            self._same_kind(writer, reader, path)

    def _fit(self, writer: TypeShape, reader: TypeShape) -> TypeShape | None:
        """The reader's type (or alternative of its union) that takes ``writer``'s kind."""
        if reader.kind == "union":
            fits = [alt for alt in reader.args if self._fit(writer, alt)]
            # among records, the alternative with the writer's tag is the one it decodes as
            tagged = [alt for alt in fits if alt.kind != "record" or self._same_tag(writer, alt)]
            return (tagged or fits)[0] if fits else None
        if reader.kind == "any" or writer.kind == reader.kind:
            return reader
        if {writer.kind, reader.kind} <= _ARRAYS or (writer.kind, reader.kind) in _NUMBERS:
            return reader
        if writer.kind == "literal" and all(type(v).__name__ == reader.kind for v in writer.values):
            return reader
        return None

    def _same_tag(self, writer: TypeShape, reader: TypeShape) -> bool:
        w, r = self.writer.get(writer.ref), self.reader.get(reader.ref)
        return w is None or r is None or (w.tag_field, w.tag) == (r.tag_field, r.tag)

    def _mismatch(self, writer: TypeShape, reader: TypeShape, path: str) -> None:
        self.change("type-changed", path, type_text(writer), type_text(reader))

    def _widened(self, writer: TypeShape, reader: TypeShape, path: str) -> None:
        self.change("type-widened", path, type_text(writer), type_text(reader))

    def _same_kind(self, writer: TypeShape, reader: TypeShape, path: str) -> None:
        if writer.kind == "record":
            self.records(writer.ref, reader.ref, path)
            return
        if writer.kind in ("literal", "enum") or reader.kind in ("literal", "enum"):
            if reader.kind in ("literal", "enum") and not set(writer.values) <= set(reader.values):
                self._mismatch(writer, reader, path)
            elif set(writer.values) != set(reader.values) or writer.kind != reader.kind:
                self._widened(writer, reader, path)
            return
        if not _bounds_hold(writer.meta, reader.meta):
            self._mismatch(writer, reader, path)
            return
        if writer.kind == "tuple" and len(writer.args) != len(reader.args):
            self._mismatch(writer, reader, path)
            return
        for i, (w, r) in enumerate(zip(writer.args, reader.args, strict=False)):
            self.types(w, r, _item(path, writer.kind, i))
        if writer.kind != reader.kind or writer.meta != reader.meta:
            self._widened(writer, reader, path)

    def records(self, writer_ref: str, reader_ref: str, path: str) -> None:
        if (writer_ref, reader_ref) in self.seen:
            return
        self.seen.add((writer_ref, reader_ref))
        writer, reader = self.writer[writer_ref], self.reader[reader_ref]
        if (writer.tag_field, writer.tag) != (reader.tag_field, reader.tag):
            self.change("tag-changed", path, _tag(writer), _tag(reader))
            return
        if _layout(writer) != _layout(reader):
            self.change("layout-changed", path, _layout(writer), _layout(reader))
            return
        by = _position if reader.array_like or reader.kind == "namedtuple" else _wire
        written, read = by(writer), by(reader)
        for key, field in written.items():
            there = read.get(key)
            where = f"{path}.{field.wire}" if path else field.wire
            if there is None:
                self._unread(field, reader, where)
            else:
                self._both(field, there, writer, where)
        for key, field in read.items():
            if key not in written:
                self._unwritten(field, f"{path}.{field.wire}" if path else field.wire)

    def _unread(self, field: FieldShape, reader: RecordShape, path: str) -> None:
        """A field the writer sends and the reader does not have."""
        refused = reader.forbid_unknown_fields or (
            self.side == "request" and reader.kind == "struct"  # the callee reads strictly
        )
        if self.side == "request":
            rule = "request-field-removed" if refused else "request-field-ignored"
        else:
            rule = "response-field-refused" if refused else "response-field-added"
        self.change(rule, path, type_text(field.type), "")

    def _unwritten(self, field: FieldShape, path: str) -> None:
        """A field the reader has and the writer does not send."""
        if self.side == "request":
            rule = "request-field-required" if field.required else "request-field-added"
        else:
            rule = "response-field-removed" if field.required else "response-field-dropped"
        self.change(rule, path, "", type_text(field.type))

    def _both(self, written: FieldShape, read: FieldShape, writer: RecordShape, path: str) -> None:
        if read.required and not written.required and writer.omit_defaults:
            # the writer leaves the field out when it holds its default
            self._unwritten(read, path)
        self.types(written.type, read.type, path)


def _bounds_hold(writer: dict[str, Scalar], reader: dict[str, Scalar]) -> bool:
    """Whether every value the writer's constraints allow passes the reader's."""
    for key, bound in reader.items():
        held = writer.get(key)
        if key in _LOWER or key in _UPPER:
            if not isinstance(held, int | float) or not isinstance(bound, int | float):
                return False
            if (key in _LOWER and held < bound) or (key in _UPPER and held > bound):
                return False
        elif held != bound:
            return False
    return True


def _item(path: str, kind: str, index: int) -> str:
    if kind == "dict":
        return f"{path}{{key}}" if index == 0 else f"{path}{{}}"
    if kind == "tuple":
        return f"{path}[{index}]"
    return f"{path}[]"


def _tag(record: RecordShape) -> str:
    if record.tag_field is None:
        return "untagged"
    return f"tagged {record.tag_field}={record.tag!r}"


def _layout(record: RecordShape) -> str:
    return "an array" if record.array_like or record.kind == "namedtuple" else "an object"


def _wire(record: RecordShape) -> dict[str | int, FieldShape]:
    return {f.wire: f for f in record.fields}


def _position(record: RecordShape) -> dict[str | int, FieldShape]:
    return dict(enumerate(record.fields))
