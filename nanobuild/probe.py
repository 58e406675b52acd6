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

The child says which kernel it is importing before it imports it, so that the parent
can give each kernel a deadline (``NANO_KERNEL_TIMEOUT`` seconds, 10 by default: one
process for all of them, one clock per kernel) and name the kernel that hangs, ends
the child (``os._exit``, a segfault) or leaves a non-daemon thread behind. The child
never outlives the parent: on Linux the kernel kills it when the parent dies
(``PR_SET_PDEATHSIG``), and everywhere it ends when its standard input, which the
parent holds open, reaches its end.

This is a top-level module, not part of ``nanobuild.checks``, because the child runs
it as ``python -m nanobuild.probe``: its start-up then imports only this module and
the runtime the kernels need anyway, not every family of checks. For the same
reason, what only the parent needs (subprocess, diagnostics) is imported
inside the parent's functions.
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import os
import sys
import traceback
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import msgspec

if TYPE_CHECKING:
    import subprocess

    from nanobuild.errors import CheckFailed

TIMEOUT_VARIABLE = "NANO_KERNEL_TIMEOUT"
DEFAULT_KERNEL_TIMEOUT = 10.0  # seconds one kernel may take to import and be described
_MAX_KERNEL_TIMEOUT = 3600.0
_STDERR_KEPT = 2000  # the tail of what the child wrote to stderr, for a failure's message
_THREAD_GRACE = 0.2  # seconds a kernel's non-daemon threads get to end, all together
# the lines of the child's report, each a kind letter and its text
_IMPORTING, _THREAD, _REPORT = b"I", b"T", b"R"


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


def _failed(message: str, path: str = "nano.toml", hint: str | None = None) -> CheckFailed:
    """The child process itself failed (E211), not one kernel's import (E208): a kernel
    ended or crashed the interpreter, hung it, or garbled its report. ``path`` is the
    kernel to blame, when the child was importing one."""
    from nanobuild import codes
    from nanobuild.diagnostics import Diagnostic
    from nanobuild.errors import CheckFailed

    return CheckFailed([Diagnostic(path, codes.E211, message, hint=hint)])


def kernel_timeout() -> float:
    """The seconds each kernel may take: ``NANO_KERNEL_TIMEOUT``, or the default.

    A value that is not a number of seconds (above 0, at most an hour) is a
    ``WorkspaceError`` naming the variable (E122).
    """
    text = os.environ.get(TIMEOUT_VARIABLE, "").strip()
    if not text:
        return DEFAULT_KERNEL_TIMEOUT
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds <= _MAX_KERNEL_TIMEOUT:  # nan and inf fail this too
        from nanobuild import codes
        from nanobuild.diagnostics import Diagnostic
        from nanobuild.errors import WorkspaceError

        raise WorkspaceError(
            [
                Diagnostic(
                    TIMEOUT_VARIABLE,
                    codes.E122,
                    f"{TIMEOUT_VARIABLE}={text!r} is not a number of seconds",
                    hint=f"set it to the seconds a kernel may take to import, "
                    f"above 0 and at most {_MAX_KERNEL_TIMEOUT:g} (default "
                    f"{DEFAULT_KERNEL_TIMEOUT:g}), or unset it",
                )
            ]
        )
    return seconds


class _Said:
    """What the child has said so far: the kernel it is importing, the threads kernels
    left running, its report, and the tail of its stderr."""

    def __init__(self) -> None:
        self.pending = b""  # the start of a line not yet complete
        self.importing: str | None = None
        self.threads: list[tuple[str, str]] = []  # (service, thread name)
        self.report: bytes | None = None
        self.stderr = b""

    def out(self, chunk: bytes) -> bool:
        """Take a chunk of the report; whether a new kernel's import began in it."""
        *lines, self.pending = (self.pending + chunk).split(b"\n")
        began = False
        for line in lines:
            kind, text = line[:1], line[1:]
            if kind == _IMPORTING:
                self.importing, began = text.decode(errors="replace"), True
            elif kind == _THREAD:
                service, name = msgspec.json.decode(text, type=tuple[str, str])
                self.threads.append((service, name))
            else:  # the report, or garbage: decoding it says which
                self.report = line[1:] if kind == _REPORT else line
        return began

    def err(self, chunk: bytes) -> None:
        self.stderr = (self.stderr + chunk)[-_STDERR_KEPT:]


class Probe:
    """A child Python that imports kernels.

    ``start`` it first: it loads msgspec and the runtime while the parent parses the
    kernels. Then ``send`` it the kernels to import, and later ask for its ``report``.
    """

    def __init__(self, process: subprocess.Popen[bytes], request: BinaryIO, timeout: float) -> None:
        self.process = process
        self.request = request  # the child's stdin: held open until the report is in
        self.timeout = timeout
        self.files: dict[str, Path] = {}  # service -> its kernel's file, to name it

    def send(self, packages: Mapping[str, Path], kernels: Mapping[str, str]) -> None:
        """Import each kernel, with the workspace's ``packages`` importable by name."""
        request = Request(
            packages={name: str(folder) for name, folder in packages.items()},
            kernels=dict(kernels),
        )
        for service, module in kernels.items():
            top, *rest = module.split(".")
            if top in packages:
                self.files[service] = Path(packages[top], top, *rest).with_suffix(".py")
        try:  # one line: the request is complete at its end
            self.request.write(msgspec.json.encode(request) + b"\n")
            self.request.flush()
        except BrokenPipeError:
            pass  # the child has died already: ``report`` says why

    def report(self) -> dict[str, KernelInfo]:
        """Each kernel's description, once the child is done; a ``CheckFailed`` (E211)
        naming the kernel when one hangs, ends the child or leaves a thread running."""
        try:
            said, finished = self._listen()
        finally:
            self._end()
        if not finished:
            raise self._hung(said)
        status = self.process.returncode
        if status != 0 or said.report is None:
            raise self._died(said, status)
        if said.threads:
            raise self._threaded(*said.threads[0])
        try:
            return msgspec.json.decode(said.report, type=dict[str, KernelInfo])
        except msgspec.DecodeError as exc:
            raise _failed(
                f"importing the kernels failed: its report is unreadable ({exc})"
            ) from exc

    def _listen(self) -> tuple[_Said, bool]:
        """Read the child until its report ends; whether it ended before a deadline
        (each kernel's clock starts when the child says it imports it)."""
        import selectors
        import subprocess
        import time

        said = _Said()
        stdout, stderr = self.process.stdout, self.process.stderr
        assert stdout is not None and stderr is not None
        with selectors.DefaultSelector() as selector:
            selector.register(stdout, selectors.EVENT_READ, said.out)
            selector.register(stderr, selectors.EVENT_READ, said.err)
            deadline = time.monotonic() + self.timeout
            while stdout in {key.fileobj for key in selector.get_map().values()}:
                left = deadline - time.monotonic()
                if left <= 0:
                    return said, False
                for key, _ in selector.select(left):
                    chunk = os.read(key.fd, 65536)
                    if not chunk:
                        selector.unregister(key.fileobj)
                    elif key.data(chunk):
                        deadline = time.monotonic() + self.timeout
            # stderr's last words, if there are any yet (a kernel's process may hold it)
            while selector.get_map() and selector.select(0):
                chunk = os.read(stderr.fileno(), 65536)
                if not chunk:
                    break
                said.err(chunk)
        try:
            self.process.wait(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            return said, False
        return said, True

    def _end(self) -> None:
        """Kill what is left of the child (its whole group: a kernel may have started
        processes of its own), and close the pipes."""
        import signal

        if self.process.poll() is None:
            with contextlib.suppress(OSError):  # it ended meanwhile
                if hasattr(os, "killpg"):
                    os.killpg(self.process.pid, signal.SIGKILL)
                else:  # no process groups (Windows): the child alone
                    self.process.kill()
            self.process.wait()
        for pipe in (self.request, self.process.stdout, self.process.stderr):
            if pipe is not None:
                # the child never read its request: nothing is lost
                with contextlib.suppress(OSError):
                    pipe.close()

    def _shown(self, service: str) -> str:
        """The kernel of ``service``, relative to the workspace root where one is found."""
        path = self.files.get(service)
        if path is None:
            return f"the kernel of {service}"
        for folder in path.parents:
            if (folder / "nano.toml").is_file():
                return path.relative_to(folder).as_posix()
        return str(path)

    def _hung(self, said: _Said) -> CheckFailed:
        if said.importing is None:
            return _failed(
                f"importing the kernels failed: the child Python did not start in "
                f"{self.timeout:g} s"
            )
        kernel = self._shown(said.importing)
        return _failed(
            f"{kernel} did not finish importing in {self.timeout:g} s",
            kernel,
            hint=f"it sleeps, loops or waits at import; a kernel is imported at every start, "
            f"so keep slow work out of it (an @on_startup hook runs at start); "
            f"{TIMEOUT_VARIABLE}=<seconds> gives each kernel longer",
        )

    def _died(self, said: _Said, status: int) -> CheckFailed:
        import signal

        if status < 0:
            try:
                how = f"killed by {signal.Signals(-status).name}"
            except ValueError:
                how = f"killed by signal {-status}"
        else:
            how = f"exit status {status}"
        stderr = said.stderr.decode(errors="replace").strip()
        hint = "it said:\n" + stderr if stderr else None
        if said.importing is None:
            return _failed(f"importing the kernels failed: {stderr or how}")
        kernel = self._shown(said.importing)
        return _failed(f"importing {kernel} ended the child Python ({how})", kernel, hint)

    def _threaded(self, service: str, name: str) -> CheckFailed:
        kernel = self._shown(service)
        return _failed(
            f"{kernel} leaves a non-daemon thread running after its import ({name}): "
            f"no process that imports it could end",
            kernel,
            hint="make it a daemon thread, or start it in an @on_startup hook and stop it "
            "in an @on_shutdown one",
        )


def start() -> Probe:
    """Start the child Python; it waits for ``Probe.send``."""
    import subprocess

    timeout = kernel_timeout()
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
    # child, which would otherwise never see the end of its input once we are gone.)
    read_end, write_end = os.pipe()
    with open(read_end, "rb") as stdin:  # the child has its own copy once started
        process = subprocess.Popen(
            [sys.executable, "-m", "nanobuild.probe", str(os.getpid())],
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            # its own group, so a hung kernel's processes go with it; and so a Ctrl-C
            # reaches only the parent, which then ends the child itself
            start_new_session=True,
        )
    return Probe(process, open(write_end, "wb"), timeout)


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
    _end_with_parent(int(sys.argv[1]) if len(sys.argv) > 1 else None)
    line = sys.stdin.buffer.readline()
    if not line.endswith(b"\n"):
        os._exit(1)  # the parent went away before it sent the kernels
    request = msgspec.json.decode(line, type=Request)
    _watch_parent()
    # Just before the path finder: as if the project folders led sys.path, built-in
    # and frozen modules still come first.
    finders = sys.meta_path
    at = finders.index(importlib.machinery.PathFinder)
    finders.insert(at, _WorkspaceFinder(request.packages))
    roots = tuple(dict.fromkeys(request.packages.values()))
    # A kernel that prints, even straight to file descriptor 1 (os.write, a C
    # extension, a subprocess), must not corrupt the report: the report keeps a copy
    # of the real stdout (not inherited by a kernel's processes), and descriptor 1
    # becomes stderr while kernels import.
    report_fd = os.dup(1)
    sys.stdout.flush()
    os.dup2(2, 1)
    # a stream of its own on descriptor 1, so a kernel that closes sys.stdout closes
    # neither sys.stderr nor the descriptor
    sys.stdout = os.fdopen(1, "w", errors="backslashreplace", buffering=1, closefd=False)
    out = os.fdopen(report_fd, "wb", buffering=0)
    report, started = {}, {}
    for service, module in request.kernels.items():
        out.write(_IMPORTING + service.encode() + b"\n")
        known = _threads()
        report[service] = describe(module, roots)
        started[service] = _threads() - known
    for service, name in _lingering(started):
        out.write(_THREAD + msgspec.json.encode((service, name)) + b"\n")
    out.write(_REPORT + msgspec.json.encode(report) + b"\n")
    sys.stderr.flush()
    # Not a normal exit: that would wait for every non-daemon thread a kernel started.
    os._exit(0)


def _end_with_parent(parent: int | None) -> None:
    """On Linux, have the kernel kill this process when its parent dies, however it
    dies (SIGKILL included); if the parent is gone already, end now."""
    if sys.platform != "linux" or parent is None:
        return
    import ctypes

    pr_set_pdeathsig, sigkill = 1, 9
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, sigkill)
    if os.getppid() != parent:  # it died before the request above took effect
        os._exit(1)


def _watch_parent() -> None:
    """End this process when the parent closes its end of stdin, or dies: the way on
    every platform (a thread that reads; a kernel holding the GIL in C delays it,
    which ``_end_with_parent`` does not depend on)."""
    import _thread

    def watch() -> None:
        while os.read(0, 4096):
            pass
        os._exit(1)

    _thread.start_new_thread(watch, ())


def _threads() -> set[Any]:
    """The non-daemon threads alive now, but the main one (none if no kernel so much
    as imported ``threading``)."""
    threading = sys.modules.get("threading")
    if threading is None:
        return set()
    main = threading.main_thread()
    return {t for t in threading.enumerate() if not t.daemon and t is not main}


def _lingering(started: Mapping[str, set[Any]]) -> list[tuple[str, str]]:
    """Each thread a kernel started that is still running after a short grace."""
    import time

    if not any(started.values()):
        return []
    until = time.monotonic() + _THREAD_GRACE
    for threads in started.values():
        for thread in threads:
            thread.join(max(0.0, until - time.monotonic()))
    return [(s, t.name) for s, threads in started.items() for t in threads if t.is_alive()]


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
