"""Contract shapes from the classes, and what two builds' shapes mean for their calls.

``shape_of(request, response)`` describes a contract as it crosses the wire (the
plain data of ``spec.ContractShape``, read with ``msgspec.inspect``); ``spec.compare``
tells what differs between two of them. Three users:

- the TCP transport: at its handshake the two processes exchange fingerprints,
  then shapes for those that differ, and a call to a contract whose two sides
  disagree in a way that breaks fails at once with ``errors.Incompatible``;
- the binary's ``contracts --json``, which prints ``describe_spec(SPEC)``;
- ``nanobuild check --against``, which runs this module as a child program,
  ``python -m nanobuild.runtime.shapes``, with ``{"packages": {name: folder},
  "kernels": {service: module}}`` on its standard input: it imports the kernels
  and prints their ``ContractTable`` as JSON (the build side imports none of it).
"""

from __future__ import annotations

import importlib.machinery
import os
import sys
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import msgspec

from nanobuild.runtime.codecs import type_name
from nanobuild.runtime.contracts import MissingResponseType, is_contract, response_type
from nanobuild.runtime.spec import (
    AppSpec,
    BuildInfo,
    ContractShape,
    ContractTable,
    FieldShape,
    RecordShape,
    TypeShape,
    __version__,
    compare,
    describe,
)

_RECORDS = {
    "StructType": "struct",
    "DataclassType": "dataclass",
    "TypedDictType": "typeddict",
    "NamedTupleType": "namedtuple",
}
_ARGS = ("types", "item_types")  # the inspect fields that hold a tuple of types


class Disagreement(msgspec.Struct, frozen=True):
    """One contract whose shape differs between this process and a remote one."""

    contract: str  # service.Contract
    remote: str  # the remote's address
    breaking: bool
    here: str  # this process's build
    there: str  # the remote's build
    changes: list[str]


# -- this process's build


_build = [f"nanobuild {__version__}"]  # what messages call this process's build


def label(build: BuildInfo) -> str:
    """A build as messages name it: ``mini sha256:3f2a9c0d1b2e (nanobuild 0.1.0)``."""
    inputs = build.inputs
    if inputs.startswith("sha256:"):
        inputs = inputs[: len("sha256:") + 12]
    return f"{build.workspace} {inputs} (nanobuild {build.nanobuild})"


def name_build(build: BuildInfo) -> None:
    """Say which build this process runs (the binary does, as it starts)."""
    _build[0] = label(build)


def this_build() -> str:
    return _build[0]


# -- shapes from classes


def shape_of(request: type, response: Any) -> ContractShape:
    """The wire shape of a contract: its request type and its response type."""
    import msgspec.inspect as mi  # only processes that compare shapes pay for it

    records: dict[str, RecordShape] = {}
    request_info, response_info = mi.multi_type_info([request, response])
    return ContractShape(
        request=_type(request_info, records),
        response=_type(response_info, records),
        records=dict(sorted(records.items())),
    )


def shapes_of(contracts: Iterable[tuple[str, type, Any]]) -> dict[str, ContractShape]:
    """``{service.Contract: shape}`` for ``(service, request, response)`` triples."""
    return {f"{service}.{req.__name__}": shape_of(req, resp) for service, req, resp in contracts}


def _type(info: Any, records: dict[str, RecordShape]) -> TypeShape:
    import msgspec.inspect as mi

    if isinstance(info, mi.Metadata):  # Annotated extras: JSON schema text, not wire form
        return _type(info.type, records)
    name = type(info).__name__
    if name in _RECORDS:
        return TypeShape("record", ref=_record(info, records))
    if name == "CustomType" and hasattr(info.cls, "__pydantic_validator__"):
        return TypeShape("record", ref=_model_record(info.cls, records))
    args: list[TypeShape] = []
    values: tuple[Any, ...] = ()
    meta: dict[str, Any] = {}
    for key, value in msgspec.structs.asdict(info).items():
        if isinstance(value, mi.Type):
            args.append(_type(value, records))
        elif key in _ARGS:
            args += [_type(item, records) for item in value]
        elif key == "values":  # a Literal's
            values = tuple(value)
        elif key == "cls" and name == "EnumType":
            values = tuple(member.value for member in value)
        elif key == "cls":  # a custom type: only its class says what it is
            meta["class"] = f"{value.__module__}.{value.__qualname__}"
        elif value is not None:
            meta[key] = value
    return TypeShape(name.removesuffix("Type").lower(), tuple(args), "", values, meta)


def _record(info: Any, records: dict[str, RecordShape]) -> str:
    """The key of a record in ``records``, describing it there first if it is new."""
    cls = info.cls
    origin = typing.get_origin(cls) or cls
    key = f"{origin.__module__}.{type_name(cls)}"
    if key in records:
        return key
    kind = _RECORDS[type(info).__name__]
    records[key] = RecordShape(kind)  # a record that refers to itself stops here
    fields = tuple(
        FieldShape(f.name, f.encode_name, _type(f.type, records), f.required) for f in info.fields
    )
    config = getattr(origin, "__struct_config__", None)
    records[key] = RecordShape(
        kind,
        fields,
        tag_field=getattr(info, "tag_field", None),
        tag=getattr(info, "tag", None),
        array_like=getattr(info, "array_like", False),
        forbid_unknown_fields=getattr(info, "forbid_unknown_fields", False),
        omit_defaults=bool(config and config.omit_defaults),
    )
    return key


def _model_record(model: Any, records: dict[str, RecordShape]) -> str:
    """The key of a pydantic model in ``records`` (described by its fields, by alias)."""
    from nanobuild.runtime import models  # pydantic is loaded: a model is at hand

    key = f"{model.__module__}.{model.__qualname__}"
    if key in records:
        return key
    records[key] = RecordShape("pydantic")  # a model that refers to itself stops here
    fields = tuple(
        FieldShape(f.name, f.wire, _annotation(f.annotation, records), f.required)
        for f in models.fields(model)
    )
    records[key] = RecordShape(
        "pydantic", fields, forbid_unknown_fields=models.forbids_unknown(model)
    )
    return key


def _annotation(annotation: Any, records: dict[str, RecordShape]) -> TypeShape:
    """A field type's shape; one msgspec cannot describe (E240 says why) is ``custom``."""
    import msgspec.inspect as mi

    try:
        return _type(mi.type_info(annotation), records)
    except (TypeError, ValueError):
        return TypeShape("custom", meta={"class": type_name(annotation)})


# -- what two builds' shapes mean


def disagreements(
    mine: Mapping[str, ContractShape],
    theirs: Mapping[str, ContractShape | None],
    *,
    remote: str,
    there: str,
) -> list[Disagreement]:
    """This process (the caller) against a remote one (the callee), per contract.

    ``theirs`` holds the remote's shape of each contract whose fingerprint differs
    from ours, or None for one it does not serve at all.
    """
    found = []
    for name in sorted(theirs):
        shape = theirs[name]
        if shape is None:
            breaking, changes = True, [f"{remote} does not serve it"]
        else:
            differ = compare(mine[name], shape)
            breaking = any(change.breaking for change in differ)
            changes = [describe(change, "this process", remote) for change in differ]
        found.append(Disagreement(name, remote, breaking, this_build(), there, changes))
    return found


def refusal(disagreement: Disagreement) -> str:
    """Why a call to a contract that ``disagreement`` breaks is not sent."""
    broken = "; ".join(disagreement.changes) or "their shapes differ"
    return (
        f"{disagreement.contract}: this process (build {disagreement.here}) and "
        f"{disagreement.remote} (build {disagreement.there}) disagree on its shape: {broken}; "
        "run builds that agree on it (`nanobuild check --against` tells what changed)"
    )


# -- describing a whole build: the binary's `contracts`, the child program


def describe_spec(spec: AppSpec, build: str) -> ContractTable:
    """The shape of every contract whose kernel this binary carries."""
    import importlib

    contracts: dict[str, ContractShape] = {}
    errors: dict[str, str] = {}
    for service in spec.services:
        try:
            module = importlib.import_module(f"{service.package}.kernel")
        except ImportError:
            continue  # a binary built --only carries just the kernels it calls
        for name in service.handlers:
            request = getattr(module, name, None)
            if isinstance(request, type) and is_contract(request):
                contracts[f"{service.name}.{name}"] = shape_of(request, response_type(request))
            else:
                errors[service.name] = f"its kernel has no contract {name}"
    return ContractTable(build, dict(sorted(contracts.items())), errors)


def describe_kernels(kernels: Mapping[str, str]) -> ContractTable:
    """The shape of every contract each kernel module defines, by ``service.Contract``."""
    contracts: dict[str, ContractShape] = {}
    errors: dict[str, str] = {}
    for service, module_name in kernels.items():
        try:
            module = __import__(module_name, fromlist=["_"])
        except BaseException as exc:  # a kernel may raise anything, SystemExit included
            errors[service] = f"{type(exc).__name__}: {exc}"
            continue
        for name, value in vars(module).items():
            if is_contract(value) and value.__module__ == module_name:
                try:
                    contracts[f"{service}.{name}"] = shape_of(value, response_type(value))
                except (MissingResponseType, TypeError):
                    continue  # `check` reports these (E210, E206): there is no shape to compare
    return ContractTable("", dict(sorted(contracts.items())), errors)


class _Finder:
    """Each workspace package from its own project folder (a meta path finder)."""

    def __init__(self, packages: Mapping[str, str]) -> None:
        self.packages = packages

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        folder = self.packages.get(fullname) if path is None else None
        if folder is None:
            return None
        return importlib.machinery.PathFinder.find_spec(fullname, [folder], target)


class _Request(msgspec.Struct, frozen=True):
    packages: dict[str, str]
    kernels: dict[str, str]


def main() -> None:
    """The child program: a request on stdin, the kernels' ``ContractTable`` on stdout."""
    request = msgspec.json.decode(sys.stdin.buffer.read(), type=_Request)
    finders = sys.meta_path
    finders.insert(finders.index(importlib.machinery.PathFinder), _Finder(request.packages))
    # a kernel that prints must not garble the report: descriptor 1 is stderr meanwhile
    report = os.dup(1)
    sys.stdout.flush()
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    table = describe_kernels(request.kernels)
    with os.fdopen(report, "wb") as out:
        out.write(msgspec.json.encode(table))


if __name__ == "__main__":
    main()
