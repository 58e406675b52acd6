"""Importing kernels, in a child process, to learn their contracts.

Kernels are the only service code ``check`` imports. They run in a child Python so
that whatever a kernel does at import (fail, print, mutate ``sys.modules``) cannot
disturb the checker, and so that two workspaces checked in one process never see
each other's modules. The child reports, per kernel: the names it defines, each
contract's response type (as the same type text ``nanobuild.source`` renders from
handler annotations), whether each contract can cross the network (and if not, which
field of which type keeps it from it), and the fields of each Struct it defines and of
each contract's response, for ``nanobuild.checks.calls`` to prove call sites against.

The parent starts the child first, sends it the kernels to import as soon as it knows
them, and collects its report last, so that it can read the workspace meanwhile.

This is a top-level module, not part of ``nanobuild.checks``, because the child runs
it as ``python -m nanobuild.probe``: its start-up then imports only this module and
the runtime the kernels need anyway, not every family of checks. For the same
reason, what only the parent needs (subprocess, diagnostics) is imported
inside the parent's functions.
"""

from __future__ import annotations

import importlib.machinery
import os
import sys
import traceback
import types
import typing
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO

import msgspec

if TYPE_CHECKING:
    import subprocess
    from pathlib import Path

    from nanobuild.errors import CheckFailed

PROBE_TIMEOUT = 120.0


class FieldInfo(msgspec.Struct, frozen=True, omit_defaults=True):
    """One field of a Struct, as its constructor takes it."""

    name: str
    encode_name: str  # its name on the wire (differs under ``rename=``)
    type: str  # type text (``type_text``); "" when the annotation cannot be resolved
    required: bool = True
    kw_only: bool = False  # it cannot be given positionally


class StructInfo(msgspec.Struct, frozen=True, omit_defaults=True):
    """A Struct class: its fields in constructor order (a subclass's after its bases',
    keyword-only ones last, as msgspec orders them), and every other attribute its
    instances have (methods, properties, class variables)."""

    fields: list[FieldInfo] = []
    attributes: list[str] = []
    dynamic: bool = False  # ``__getattr__`` or ``dict=True``: any attribute may exist


class ContractInfo(msgspec.Struct, frozen=True, omit_defaults=True):
    response: str | None = None  # None: the contract declares no response type
    wire_error: str | None = None  # why the request or response cannot cross the network
    answers: StructInfo | None = None  # the response type, when it is a Struct or a model
    model_error: str | None = None  # why a pydantic model in it cannot cross the network
    model: str | None = None  # that model's class name


class RouteField(msgspec.Struct, frozen=True, omit_defaults=True):
    """A field of a routed contract: its type text, and how it can come from a URL."""

    type: str
    kind: str = ""  # "scalar", "list", or "" (not from text: a Struct, a dict, ...)


class RouteInfo(msgspec.Struct, frozen=True, omit_defaults=True):
    """A contract's ``http`` route as its kernel declares it; ``checks.routes`` judges it."""

    text: str  # the route text (``GET /users/{id}``), or what was given instead
    line: int | None = None  # where the ``Route(...)`` is written
    status: int = 200
    query: list[str] = []
    fields: dict[str, RouteField] = {}
    problem: str | None = None  # what is wrong that the text cannot show (not a Route, ...)


class ImportFailure(msgspec.Struct, frozen=True, omit_defaults=True):
    message: str
    path: str | None = None
    line: int | None = None


class KernelInfo(msgspec.Struct, frozen=True, omit_defaults=True):
    names: list[str] = []
    contracts: dict[str, ContractInfo] = {}
    structs: dict[str, StructInfo] = {}  # each Struct the kernel defines, contracts included
    routes: dict[str, RouteInfo] = {}  # each contract's REST route (``http``), if it has one
    error: ImportFailure | None = None


class Request(msgspec.Struct, frozen=True):
    packages: dict[str, str]  # top-level package name -> the project folder holding it
    kernels: dict[str, str]  # service -> kernel module


# -- the parent side


def _failed(message: str) -> CheckFailed:
    """The child process itself failed (E211), not one kernel's import (E208): a kernel
    ended or crashed the interpreter, hung it, or garbled its report."""
    from nanobuild import codes
    from nanobuild.diagnostics import Diagnostic
    from nanobuild.errors import CheckFailed

    return CheckFailed(
        [Diagnostic("nano.toml", codes.E211, f"importing the kernels failed: {message}")]
    )


class Probe:
    """A child Python that imports kernels.

    ``start`` it first: it loads msgspec and the runtime while the parent parses the
    kernels. Then ``send`` it the kernels to import, and later ask for its ``report``.
    """

    def __init__(self, process: subprocess.Popen[bytes], request: BinaryIO) -> None:
        self.process = process
        self.request = request  # the child's stdin

    def send(self, packages: Mapping[str, Path], kernels: Mapping[str, str]) -> None:
        """Import each kernel, with the workspace's ``packages`` importable by name."""
        request = Request(
            packages={name: str(folder) for name, folder in packages.items()},
            kernels=dict(kernels),
        )
        try:
            with self.request:  # closing it tells the child the request is complete
                self.request.write(msgspec.json.encode(request))
        except BrokenPipeError:
            pass  # the child has died already: ``report`` says why

    def report(self) -> dict[str, KernelInfo]:
        """Each kernel's description, once the child is done."""
        import subprocess

        try:
            stdout, stderr = self.process.communicate(timeout=PROBE_TIMEOUT)
        except subprocess.TimeoutExpired as exc:
            self.process.kill()
            self.process.communicate()
            raise _failed(f"it took over {PROBE_TIMEOUT:.0f} s") from exc
        status = self.process.returncode
        if status != 0:
            said = stderr.decode(errors="replace").strip()[-2000:]
            raise _failed(said or f"the child Python exited with status {status}")
        try:
            return msgspec.json.decode(stdout, type=dict[str, KernelInfo])
        except msgspec.DecodeError as exc:
            raise _failed(f"its report is unreadable ({exc})") from exc


def start() -> Probe:
    """Start the child Python; it waits for ``Probe.send``."""
    import subprocess

    package_parent = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [package_parent, *filter(None, [os.environ.get("PYTHONPATH")])]
        ),
    }
    # A pipe of our own rather than ``stdin=PIPE``, which ``communicate`` would expect
    # to write to itself: the request is sent as soon as it is known, long before the
    # report is collected. (``close_fds``, the default, keeps the write end out of the
    # child, which would otherwise never see the end of the request.)
    read_end, write_end = os.pipe()
    with open(read_end, "rb") as stdin:  # the child has its own copy once started
        process = subprocess.Popen(
            [sys.executable, "-m", "nanobuild.probe"],
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
    return Probe(process, open(write_end, "wb"))


def probe(packages: Mapping[str, Path], kernels: Mapping[str, str]) -> dict[str, KernelInfo]:
    """Import each kernel in a child Python and describe it."""
    if not kernels:
        return {}
    running = start()
    running.send(packages, kernels)
    return running.report()


# -- the child side


class _WorkspaceFinder:
    """A meta path finder: each workspace package from its own project folder.

    Putting every project folder on ``sys.path`` instead would make every import
    (the standard library's too) search every folder: quadratic in the number of
    services. Submodules need no help: they are found through their package's
    ``__path__``. (A plain class: the protocol is just ``find_spec``, and importing
    ``importlib.abc`` would cost the child more than the whole finder.)
    """

    def __init__(self, packages: Mapping[str, str]) -> None:
        self.packages = packages

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: types.ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        folder = self.packages.get(fullname) if path is None else None
        if folder is None:
            return None
        return importlib.machinery.PathFinder.find_spec(fullname, [folder], target)


def main() -> None:
    request = msgspec.json.decode(sys.stdin.buffer.read(), type=Request)
    # Just before the path finder: as if the project folders led sys.path, built-in
    # and frozen modules still come first.
    finders = sys.meta_path
    at = finders.index(importlib.machinery.PathFinder)
    finders.insert(at, _WorkspaceFinder(request.packages))
    roots = tuple(dict.fromkeys(request.packages.values()))
    # A kernel that prints, even straight to file descriptor 1 (os.write, a C
    # extension, a subprocess), must not corrupt the report: the report keeps a copy
    # of the real stdout, and descriptor 1 becomes stderr while kernels import.
    report_fd = os.dup(1)
    sys.stdout.flush()
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    report = {service: describe(module, roots) for service, module in request.kernels.items()}
    with os.fdopen(report_fd, "wb") as out:
        out.write(msgspec.json.encode(report))


def describe(module_name: str, roots: tuple[str, ...]) -> KernelInfo:
    from nanobuild.runtime.contracts import MissingResponseType, is_contract, response_type

    try:
        module = __import__(module_name, fromlist=["_"])
    except BaseException as exc:  # a kernel may raise anything, SystemExit included
        return KernelInfo(error=_failure(exc, roots))
    # pydantic's models, when the kernel has loaded pydantic (else there can be none)
    models: Any = None
    if "pydantic" in sys.modules:
        from nanobuild.runtime import models as loaded

        models = loaded
    # contract name -> (the contract, its response type), or None if it declares none
    declared: dict[str, tuple[type, Any] | None] = {}
    structs: dict[str, StructInfo] = {}
    for name, value in vars(module).items():
        if not isinstance(value, type) or value.__module__ != module_name:
            continue  # only the kernel's own classes are its Structs, models and contracts
        described = _answers(models, value)
        if described is not None:
            structs[name] = described
        if is_contract(value):
            try:
                declared[name] = (value, response_type(value))
            except MissingResponseType:
                declared[name] = None
    wire_errors = _wire_errors({name: pair for name, pair in declared.items() if pair})
    contracts = {
        name: ContractInfo(
            response=type_text(pair[1]),
            wire_error=wire_errors[name],
            answers=_answers(models, pair[1]),
            **_model_error(models, pair),
        )
        if pair
        else ContractInfo()
        for name, pair in declared.items()
    }
    routed = {name: route_info(pair[0]) for name, pair in declared.items() if pair}
    routes = {name: route for name, route in routed.items() if route is not None}
    names = [name for name in vars(module) if not name.startswith("__")]
    return KernelInfo(names=names, contracts=contracts, structs=structs, routes=routes)


def route_info(contract: type) -> RouteInfo | None:
    """The REST route ``contract`` declares, as plain data, or None if it declares none."""
    from nanobuild.runtime.contracts import Route, route_of, text_kind

    declared = route_of(contract)
    if declared is None:
        return None
    if not isinstance(declared, Route):
        what = f"its http is {type(declared).__name__} {declared!r:.80}, not a Route"
        return RouteInfo(text=repr(declared)[:80], problem=what)
    fields = {
        name: RouteField(type=type_text(tp), kind=text_kind(tp) or "")
        for name, tp in _field_types_of(contract).items()
    }
    status, problem = declared.status, _route_problem(declared)
    return RouteInfo(
        text=declared.text if isinstance(declared.text, str) else repr(declared.text),
        line=declared.line,
        status=status if isinstance(status, int) and not isinstance(status, bool) else 0,
        query=[str(name) for name in declared.query],
        fields=fields,
        problem=problem,
    )


def _route_problem(route: Any) -> str | None:
    """What is wrong with a ``Route``'s status, headers or query, if anything."""
    status = route.status
    if not isinstance(status, int) or isinstance(status, bool):
        return f"its status {status!r} is not a number"
    headers = route.headers
    if headers is not None and not (
        isinstance(headers, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items())
    ):
        return f"its headers {headers!r:.80} are not a mapping of text to text"
    if not all(isinstance(name, str) for name in route.query):
        return f"its query {route.query!r:.80} is not a list of field names"
    return None


def _field_types_of(contract: Any) -> dict[str, Any]:
    """A contract's fields and their types: a Struct's, or a pydantic model's."""
    if _is_struct(contract):
        try:
            return {f.name: f.type for f in msgspec.structs.fields(contract)}
        except Exception:  # an annotation that cannot be resolved: E206 says so
            return {}
    return {name: info.annotation for name, info in getattr(contract, "model_fields", {}).items()}


def _is_struct(value: object) -> bool:
    return isinstance(value, type) and issubclass(value, msgspec.Struct)


_described: dict[type, StructInfo] = {}  # a response type is often a kernel's own Struct


def struct_info(cls: Any) -> StructInfo:
    """The fields of a Struct class as its constructor takes them, and its other attributes."""
    if cls in _described:
        return _described[cls]
    # What msgspec keeps on the class says it all, and costs far less than asking for
    # the signature: the positional fields (``__match_args__``, the others are
    # keyword-only) and the defaults, aligned with the last fields (NODEFAULT: none).
    names, defaults = cls.__struct_fields__, cls.__struct_defaults__
    first_default = len(names) - len(defaults)
    positional = set(cls.__match_args__)
    types_of = _field_types(cls)
    fields = [
        FieldInfo(
            name=name,
            encode_name=encode_name,
            type=types_of.get(name, ""),
            required=i < first_default or defaults[i - first_default] is msgspec.NODEFAULT,
            kw_only=name not in positional,
        )
        for i, (name, encode_name) in enumerate(
            zip(names, cls.__struct_encode_fields__, strict=True)
        )
    ]
    attributes = [name for name in dir(cls) if not name.startswith("__") and name not in names]
    # ``dict=True`` lets instances take any attribute; ``__getattr__`` answers any
    dynamic = getattr(cls.__struct_config__, "dict", False) or any(
        "__getattr__" in vars(base) for base in cls.__mro__[:-1]
    )
    info = _described[cls] = StructInfo(fields=fields, attributes=attributes, dynamic=dynamic)
    return info


def _answers(models: Any, response: Any) -> StructInfo | None:
    """The fields and attributes of a class (a response, say) that is a Struct or a
    pydantic model; None for any other type."""
    if _is_struct(response):
        return struct_info(response)
    if models is not None and models.is_model(response):
        return model_info(models, response)
    return None


def model_info(models: Any, cls: Any) -> StructInfo:
    """The fields of a pydantic model as its constructor takes them: all by keyword, each
    by its alias unless the model takes field names too (``populate_by_name``)."""
    if cls in _described:
        return _described[cls]
    fields = models.fields(cls)
    keywords = {field.keyword for field in fields}
    # an attribute is read by its Python name, even where the constructor takes the alias
    renamed = [field.name for field in fields if field.name != field.keyword]
    info = _described[cls] = StructInfo(
        fields=[
            FieldInfo(
                name=field.keyword,
                encode_name=field.wire,
                type=type_text(field.annotation),
                required=field.required,
                kw_only=True,
            )
            for field in fields
        ],
        attributes=renamed
        + [name for name in dir(cls) if not name.startswith("__") and name not in keywords],
        dynamic=models.allows_any_attribute(cls),
    )
    return info


def _model_error(models: Any, pair: tuple[type, Any]) -> dict[str, str]:
    """``model_error`` and ``model`` of a contract whose request or response holds a pydantic
    model that cannot cross the network (E240), else nothing."""
    if models is None:
        return {}
    for carried in pair:
        found = models.off_wire(carried)
        if found is not None:
            model, reason = found
            return {"model_error": reason, "model": model}
    return {}


def _field_types(cls: Any) -> dict[str, str]:
    """Each field's type text, from the classes' own annotations where these are types;
    resolved by msgspec (slower) where one is a string."""
    annotations: dict[str, Any] = {}
    for base in reversed(cls.__mro__):
        annotations.update(vars(base).get("__annotations__", {}))
    if all(name in annotations for name in cls.__struct_fields__) and not any(
        isinstance(annotations[name], str) for name in cls.__struct_fields__
    ):
        return {name: type_text(annotations[name]) for name in cls.__struct_fields__}
    try:
        return {f.name: type_text(f.type) for f in msgspec.structs.fields(cls)}
    except Exception:  # an annotation naming what the kernel never defined, say
        return {}


def _wire_errors(contracts: Mapping[str, tuple[type, Any]]) -> dict[str, str | None]:
    """Per contract, why msgspec cannot carry its request or response, or None.

    One schema of all a kernel's contracts costs far less than one schema per
    contract, and almost always succeeds; only when it fails is each contract tried
    on its own, to tell which of them cannot cross the network, and why. A pydantic
    model is pydantic's to carry: ``_model_error`` (E240) says whether it can.
    """
    if wire_error([t for pair in contracts.values() for t in pair]) is None:
        return dict.fromkeys(contracts)
    return {
        name: None if wire_error(pair) is None else why_not_carried(name, *pair)
        for name, pair in contracts.items()
    }


def _models_carried(tp: Any) -> dict[str, Any]:
    """msgspec's schema hook: a pydantic model is fine here (see E240); any other type
    msgspec does not know fails as it would with no hook."""
    if hasattr(tp, "__pydantic_validator__"):
        return {"type": "object"}  # not empty: msgspec takes an empty schema for none
    raise NotImplementedError


def wire_error(carried: Sequence[Any]) -> str | None:
    """Why msgspec cannot carry one of these types, or None."""
    try:
        msgspec.json.schema_components(carried, schema_hook=_models_carried)
    except (TypeError, ValueError) as exc:
        return str(exc).splitlines()[0]
    return None


def why_not_carried(name: str, request: type, response: Any) -> str:
    """Which field of which type keeps a contract off the network, and why.

    msgspec says only what it could not carry, not where that was: the request and
    the response are walked down to the innermost field or type that fails alone,
    and named by their path of fields (``User.profile.photo``).
    """
    if wire_error([request]) is not None:
        return _culprit(request, name, set(), in_field=False)
    return _culprit(response, f"{name}'s response", set(), in_field=False)


def _is_plain_class(value: object) -> bool:
    """A class of none of the kinds msgspec carries by their fields or values."""
    import enum

    known = ("__struct_fields__", "__dataclass_fields__", "__attrs_attrs__")
    return (
        isinstance(value, type)
        and value.__module__ != "builtins"
        and not issubclass(value, enum.Enum | tuple | dict)
        and not any(hasattr(value, mark) for mark in known)
    )


def _culprit(carried: Any, where: str, seen: set[int], *, in_field: bool) -> str:
    """Why ``carried``, found at ``where``, cannot be carried; it is known not to be.

    ``where`` is a path of fields once ``in_field``; before, it only labels the top.
    """
    seen.add(id(carried))
    inner: list[tuple[Any, str]]  # the parts it is made of, and where each is
    if _is_struct(carried):
        try:
            fields = msgspec.structs.fields(carried)
        except Exception:  # an annotation that cannot be resolved: say what msgspec says
            fields = ()
        path = where if in_field else carried.__name__
        inner = [(f.type, f"{path}.{f.name}") for f in fields]
        in_field = True
    else:
        # the types it is made of; not ``Callable``'s list of parameters, say
        inner = [(arg, where) for arg in typing.get_args(carried) if not isinstance(arg, list)]
    for part, place in inner:
        if id(part) not in seen and wire_error([part]) is not None:
            return _culprit(part, place, seen, in_field=in_field)
    if _is_plain_class(carried):
        return f"{where}: {carried.__name__} is a plain class; use a msgspec Struct"
    return f"{where}: {type_text(carried)}: {_last_reason(carried)}"


def _last_reason(carried: Any) -> str:
    """The line of msgspec's complaint that names the type (its last), not its preamble."""
    try:
        msgspec.json.schema_components([carried], schema_hook=_models_carried)
    except (TypeError, ValueError) as exc:
        return [line for line in str(exc).splitlines() if line.strip()][-1]
    return "msgspec cannot carry it"  # only together with the rest: say no more than that


def type_text(annotation: Any) -> str:
    """A type as text comparable with ``nanobuild.source``'s rendering of annotations."""
    from nanobuild.source import union_text

    if annotation is None or annotation is type(None):
        return "None"
    if annotation is Ellipsis:
        return "..."
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Union or origin is types.UnionType:
        return union_text([type_text(arg) for arg in args])
    if origin is typing.Annotated:
        return type_text(args[0])
    if origin is typing.Literal:
        return f"Literal[{', '.join(repr(arg) for arg in args)}]"
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{', '.join(type_text(arg) for arg in args)}]" if args else name
    return getattr(annotation, "__name__", str(annotation))


def _failure(exc: BaseException, roots: tuple[str, ...]) -> ImportFailure:
    """The exception, placed at the deepest frame that is workspace code."""
    message = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    place = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename.startswith(roots):
            place = frame
    if isinstance(exc, SyntaxError) and exc.filename and exc.filename.startswith(roots):
        return ImportFailure(message=message, path=exc.filename, line=exc.lineno)
    if place is None:
        return ImportFailure(message=message)
    return ImportFailure(message=message, path=place.filename, line=place.lineno)


if __name__ == "__main__":
    main()
