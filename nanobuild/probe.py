"""Importing kernels, in a child process, to learn their contracts.

Kernels are the only service code ``check`` imports. They run in a child Python so
that whatever a kernel does at import (fail, print, mutate ``sys.modules``) cannot
disturb the checker, and so that two workspaces checked in one process never see
each other's modules. The child reports, per kernel: the names it defines, each
contract's response type (as the same type text ``nanobuild.source`` renders from
handler annotations) and whether each contract can cross the network.
"""

from __future__ import annotations

import os
import subprocess
import sys
import traceback
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from nanobuild.diagnostics import Diagnostic
from nanobuild.errors import CheckFailed

PROBE_TIMEOUT = 120.0


class ContractInfo(msgspec.Struct, frozen=True, omit_defaults=True):
    response: str | None = None  # None: the contract declares no response type
    wire_error: str | None = None  # why the request or response cannot cross the network


class ImportFailure(msgspec.Struct, frozen=True, omit_defaults=True):
    message: str
    path: str | None = None
    line: int | None = None


class KernelInfo(msgspec.Struct, frozen=True, omit_defaults=True):
    names: list[str] = []
    contracts: dict[str, ContractInfo] = {}
    error: ImportFailure | None = None


class Request(msgspec.Struct, frozen=True):
    paths: list[str]
    kernels: dict[str, str]  # service -> kernel module


def _failed(message: str) -> CheckFailed:
    """The child process itself failed, not one kernel: a kernel crashed the interpreter."""
    return CheckFailed(
        [Diagnostic("nano.toml", "E208", f"importing the kernels failed: {message}")]
    )


def probe(paths: list[Path], kernels: Mapping[str, str]) -> dict[str, KernelInfo]:
    """Import each kernel in a child Python and describe it."""
    if not kernels:
        return {}
    request = Request(paths=[str(p) for p in paths], kernels=dict(kernels))
    package_parent = str(Path(__file__).resolve().parents[2])
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [package_parent, *filter(None, [os.environ.get("PYTHONPATH")])]
        ),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    try:
        done = subprocess.run(
            [sys.executable, "-m", "nanobuild.checks.probe"],
            input=msgspec.json.encode(request),
            capture_output=True,
            env=env,
            timeout=PROBE_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise _failed(f"it took over {PROBE_TIMEOUT:.0f} s") from exc
    if done.returncode != 0:
        raise _failed(done.stderr.decode(errors="replace").strip()[-2000:])
    return msgspec.json.decode(done.stdout, type=dict[str, KernelInfo])


# -- the child side


def main() -> None:
    request = msgspec.json.decode(sys.stdin.buffer.read(), type=Request)
    sys.path[:0] = request.paths
    roots = tuple(request.paths)
    stdout = sys.stdout
    sys.stdout = sys.stderr  # a kernel that prints must not corrupt the report
    report = {service: describe(module, roots) for service, module in request.kernels.items()}
    stdout.buffer.write(msgspec.json.encode(report))


def describe(module_name: str, roots: tuple[str, ...]) -> KernelInfo:
    from nanobuild.runtime.contracts import MissingResponseType, is_contract, response_type

    try:
        module = __import__(module_name, fromlist=["_"])
    except BaseException as exc:  # a kernel may raise anything, SystemExit included
        return KernelInfo(error=_failure(exc, roots))
    contracts = {}
    for name, value in vars(module).items():
        if is_contract(value) and value.__module__ == module_name:
            try:
                response = response_type(value)
            except MissingResponseType:
                contracts[name] = ContractInfo()
                continue
            contracts[name] = ContractInfo(
                response=type_text(response), wire_error=wire_error(value, response)
            )
    names = [name for name in vars(module) if not name.startswith("__")]
    return KernelInfo(names=names, contracts=contracts)


def wire_error(request: type, response: Any) -> str | None:
    """Why msgspec cannot carry this contract's request or response, or None."""
    try:
        msgspec.json.schema_components([request, response])
    except (TypeError, ValueError) as exc:
        return str(exc).splitlines()[0]
    return None


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
