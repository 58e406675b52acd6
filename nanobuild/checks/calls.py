"""E212-E217: every construction of a contract or of a kernel's Struct takes the fields
its class has, and every attribute read off a call's response is one the response has.

The call sites come from ``nanobuild.source`` (``Module.calls``, read with ``ast``), the
classes from the kernel probe (``KernelInfo.structs``, each contract's ``answers``), so
no service's own code is imported, nor its third-party packages. A call is judged as
msgspec's constructor takes it: fields in order by position (keyword-only ones not),
then by keyword. What the source cannot say (``*args``, ``**kwargs``, a value that is
not a literal, a type that is not plainly a builtin) is never held against it: every
problem reported here is one the call would really have.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

import msgspec

from nanobuild import codes
from nanobuild.checks.context import Context
from nanobuild.diagnostics import Diagnostic, did_you_mean
from nanobuild.probe import FieldInfo, StructInfo
from nanobuild.source import Argument, CallSite, union_members

# The types a literal's type is judged against; any other (a class, ``Any``, a type
# variable, ``Literal[...]``) may take values no literal shows, and is not judged.
_JUDGED = frozenset(
    {"int", "float", "complex", "bool", "str", "bytes", "bytearray", "memoryview", "None"}
    | {"list", "dict", "set", "frozenset", "tuple"}
)
# A literal's kind -> the judged types that take it (an int is a float, a bool an int,
# as type checkers and msgspec's decoding have it).
_TAKES = {
    "int": {"int", "float", "complex"},
    "bool": {"bool", "int", "float", "complex"},
    "float": {"float", "complex"},
    "str": {"str"},
    "bytes": {"bytes", "bytearray", "memoryview"},
    "None": {"None"},
    "list": {"list"},
    "dict": {"dict"},
}


NOWHERE = ""  # the path of a problem until ``check`` places it in its module


@dataclass(frozen=True)
class _Class:
    """A class of a kernel that call sites construct."""

    label: str  # "contract GetUser of users", "struct User of users"
    info: StructInfo
    answers: StructInfo | None  # a contract's response, when it is a Struct
    response: str | None  # a contract's response as type text

    @cached_property
    def fields(self) -> dict[str, FieldInfo]:
        return {field.name: field for field in self.info.fields}

    @cached_property
    def required(self) -> set[str | None]:
        return {field.name for field in self.info.fields if field.required}

    @cached_property
    def positional(self) -> list[FieldInfo]:
        """The fields an argument by position gives, in order."""
        return [field for field in self.info.fields if not field.kw_only]


def check(ctx: Context) -> Iterator[Diagnostic]:
    known = _classes(ctx)
    if not known:
        return
    for modules in ctx.modules.values():
        for module in modules:
            found = [
                problem
                for site in module.calls
                if (cls := known.get(site.target)) is not None
                for problem in (*_construction(site, cls), *_reads(site, cls))
            ]
            if found:  # placed only now: a module's path costs more than its calls
                here = ctx.rel(module.path)
                yield from (msgspec.structs.replace(problem, path=here) for problem in found)


def _classes(ctx: Context) -> dict[str, _Class]:
    """Each probed kernel's Structs, by dotted name: ``users.kernel.GetUser``."""
    known: dict[str, _Class] = {}
    for name, kernel in ctx.kernels.items():
        module = ctx.workspace.services[name].kernel_module
        for cls, info in kernel.structs.items():
            contract = kernel.contracts.get(cls)
            kind = "contract" if contract is not None else "struct"
            known.setdefault(
                f"{module}.{cls}",
                _Class(
                    f"{kind} {cls} of {name}",
                    info,
                    contract.answers if contract else None,
                    contract.response if contract else None,
                ),
            )
    return known


def _construction(site: CallSite, cls: _Class) -> Iterator[Diagnostic]:
    """E212-E215, E217: the arguments against the fields."""
    fields = cls.fields
    named = {arg.name for arg in site.arguments}
    if named <= fields.keys() and cls.required <= named and not site.spread:
        # the common call: every field by a keyword it has, the required ones all there
        for arg in site.arguments:
            if arg.literal is not None and arg.name is not None:
                yield from _literal(arg, fields[arg.name], cls)
        return
    given: dict[str, Argument] = {}
    by_position = [arg for arg in site.arguments if arg.name is None]
    if not site.star:
        yield from _positions(site, cls, by_position, given)
    unknown = [arg for arg in site.arguments if arg.name is not None and arg.name not in fields]
    # with a keyword unknown and a required field missing, the one was meant for the other
    meant = {arg.name: _meant(arg.name, cls, site, unknown) for arg in unknown if arg.name}
    for arg in site.arguments:
        if arg.name is None:
            continue
        field = fields.get(arg.name)
        if field is None:
            yield _unknown(arg, arg.name, cls, meant[arg.name])
        elif arg.name in given:
            yield Diagnostic(
                NOWHERE,
                codes.E217,
                f"field {arg.name} of {cls.label} is given twice, by position and by keyword",
                line=arg.line,
                hint="give it once",
            )
        else:
            given[arg.name] = arg
            yield from _literal(arg, field, cls)
    if not site.star and not site.spread:
        yield from _missing(site, cls, given, {m for m in meant.values() if m})


def _positions(
    site: CallSite, cls: _Class, args: list[Argument], given: dict[str, Argument]
) -> Iterator[Diagnostic]:
    """E214, and the fields the positional arguments give."""
    takes = cls.positional
    if len(args) > len(takes):
        names = ", ".join(field.name for field in takes)
        kw_only = [field.name for field in cls.info.fields if field.kw_only]
        yield Diagnostic(
            NOWHERE,
            codes.E214,
            f"{cls.label} takes {_count(len(takes), 'positional argument')}"
            + (f" ({names})" if names else "")
            + f", but this call gives {len(args)}",
            line=site.line,
            hint=f"give {', '.join(kw_only)} by keyword"
            if kw_only
            else "give the fields by keyword, name=value",
        )
    for arg, field in zip(args, takes, strict=False):  # the extra ones: E214 above
        given[field.name] = arg
        yield from _literal(arg, field, cls)


def _meant(name: str, cls: _Class, site: CallSite, unknown: list[Argument]) -> str | None:
    """The field an unknown keyword was most likely meant to be: a close spelling, a
    field it is a word of (``id`` for ``product_id``), or the one required field the
    call leaves out when this is its one unknown keyword."""
    names = [field.name for field in cls.info.fields]
    close = did_you_mean(name, names)
    if close:
        return close.split("`")[1]
    words = [other for other in names if name in other.split("_") or other in name.split("_")]
    if len(words) == 1:
        return words[0]
    if len(unknown) == 1 and not site.star and not site.spread:
        by_position = sum(arg.name is None for arg in site.arguments)
        takes = [field.name for field in cls.info.fields if not field.kw_only]
        given = {arg.name for arg in site.arguments if arg.name} | {*takes[:by_position]}
        missing = [f.name for f in cls.info.fields if f.required and f.name not in given]
        return missing[0] if len(missing) == 1 else None
    return None


def _unknown(arg: Argument, name: str, cls: _Class, meant: str | None) -> Diagnostic:
    """E212: a keyword the class has no field for."""
    wire = next((f.name for f in cls.info.fields if f.encode_name == name != f.name), None)
    if wire:
        hint: str | None = f"`{name}` is the wire name of `{wire}`; in Python, write `{wire}=`"
    else:
        hint = f"did you mean `{meant}`?" if meant else None
    return Diagnostic(
        NOWHERE, codes.E212, f"{cls.label} has no field {name}", line=arg.line, hint=hint
    )


def _missing(
    site: CallSite, cls: _Class, given: dict[str, Argument], meant: set[str]
) -> Iterator[Diagnostic]:
    """E213: required fields the call does not give. A field an unknown keyword was
    meant for is left to that keyword's E212, whose hint names it already."""
    missing = [
        field
        for field in cls.info.fields
        if field.required and field.name not in given and field.name not in meant
    ]
    if missing:
        listed = ", ".join(f"{field.name} ({field.type or 'any type'})" for field in missing)
        yield Diagnostic(
            NOWHERE,
            codes.E213,
            f"{cls.label} needs {'fields' if len(missing) > 1 else 'field'} {listed}, "
            "which this call does not give",
            line=site.line,
            hint=f"add {', '.join(f'{field.name}=...' for field in missing)}",
        )


def _literal(arg: Argument, field: FieldInfo, cls: _Class) -> Iterator[Diagnostic]:
    """E215: a literal its field's declared type certainly does not take."""
    if arg.literal is None or not field.type:
        return
    judged = {member.partition("[")[0] for member in union_members(field.type)}
    if judged <= _JUDGED and not judged & _TAKES[arg.literal]:
        yield Diagnostic(
            NOWHERE,
            codes.E215,
            f"field {field.name} of {cls.label} is {field.type}, but this call gives it "
            f"{'None' if arg.literal == 'None' else _article(arg.literal)}",
            line=arg.line,
            hint=f"give {field.name} a value of type {field.type}",
        )


def _reads(site: CallSite, cls: _Class) -> Iterator[Diagnostic]:
    """E216: attributes read off ``await call(X(...))`` that X's response lacks."""
    answers = cls.answers
    if answers is None or answers.dynamic:
        return
    names = [field.name for field in answers.fields] + answers.attributes
    for attr, line in site.reads:
        if attr not in names and not attr.startswith("__"):
            yield Diagnostic(
                NOWHERE,
                codes.E216,
                f"{cls.label} answers {cls.response}, which has no attribute {attr}",
                line=line,
                hint=did_you_mean(attr, names),
            )


def _count(n: int, what: str) -> str:
    if n == 0:
        return f"no {what}s"
    return f"{n} {what}" + ("" if n == 1 else "s")


def _article(kind: str) -> str:
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"
