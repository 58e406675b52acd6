"""pydantic models as contracts: ``ModelContract[Response]``, and their wire form.

A kernel that already has pydantic models keeps them::

    from pydantic import BaseModel
    from nanobuild.runtime import ModelContract

    class User(BaseModel):
        id: int
        name: str

    class GetUser(ModelContract[User]):     # a pydantic model; [User] is the response
        id: int

A ``ModelContract`` is a frozen ``BaseModel`` that forbids unknown fields (as a msgspec
contract's request decoding does); it is called, served and checked as any contract.
Its request is validated by pydantic on the way in (a bad body is ``BadRequest``
naming the field), and every model is written out by its own serializer, by alias,
in JSON and MessagePack alike. A msgspec contract may answer a pydantic model, and a
``ModelContract`` a msgspec Struct: each type is carried by the library it belongs to.

The runtime imports this module, and so pydantic, only once pydantic is loaded: a
kernel that never imports pydantic never pays for it.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, Generic, TypeVar

import msgspec
import msgspec.inspect
import pydantic
from pydantic import BaseModel, ConfigDict
from pydantic_core import PydanticSerializationError

from nanobuild.runtime import contracts
from nanobuild.runtime.contracts import MissingResponseType

R = TypeVar("R")


class ModelContract(BaseModel, Generic[R]):
    """A request, as a pydantic model, whose response type is ``R``.

    Subclass as ``ModelContract[Response]``: ``Response`` may be a ``BaseModel``, a
    msgspec Struct, a builtin type, ``list[...]`` of them, or ``None``. Like
    ``Contract``, it is frozen and says ``idempotent: ClassVar[bool] = True`` when
    its handler may safely run twice for one call.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    idempotent: ClassVar[bool] = False

    # ``call`` finds the route here, as on ``Contract`` (``router.install`` sets it)
    __nano_route__ = contracts.Contract.__dict__[contracts.ROUTE]

    @classmethod
    def __nano_response_type__(cls) -> Any:
        """The response type ``ModelContract[Response]`` declares."""
        for klass in cls.__mro__:
            meta = klass.__dict__.get("__pydantic_generic_metadata__") or {}
            if meta.get("origin") is ModelContract and meta.get("args"):
                return meta["args"][0]
        raise MissingResponseType(
            f"contract {cls.__qualname__} has no response type: "
            f"subclass ModelContract[Response], not bare ModelContract"
        )


contracts.add_base(ModelContract)


def is_model(tp: Any) -> bool:
    """Whether ``tp`` is a pydantic model class."""
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def involves_models(tp: Any) -> bool:
    """Whether a pydantic model is ``tp`` or any type it is made of (``list[User]``)."""
    return next(_models(tp, set()), None) is not None


# -- the wire form


class FieldMismatch(ValueError):
    """A model's field holds a value of another type than it declares (strict mode)."""


def dump(value: BaseModel) -> Any:
    """``value`` as JSON-ready data, by alias, as its own serializer writes it."""
    return value.model_dump(mode="json", by_alias=True)


def dump_checked(value: BaseModel) -> Any:
    """``dump``, refusing a field whose value is not of its declared type (a ``bytes`` in
    a ``str`` field), which ``dump`` writes as best it can."""
    try:
        return value.model_dump(mode="json", by_alias=True, warnings="error")
    except PydanticSerializationError as exc:
        raise FieldMismatch(
            f"{_article(type(value).__name__)} whose fields are wrong: {_mismatches(exc)}"
        ) from None


# one of pydantic's serializer warnings: what it expected, of which field, and what it got
_WARNING = re.compile(r"Expected `([^`]+)`.*?field_name='([^']*)'.*?input_type=(\w+)")


def _mismatches(exc: PydanticSerializationError) -> str:
    """pydantic's serializer warnings as msgspec's decoder words a wrong field."""
    found = _WARNING.findall(str(exc))
    if not found:
        return str(exc).replace("\n", " ")
    return "; ".join(f"Expected `{want}`, got `{got}` - at `$.{name}`" for want, name, got in found)


def _article(name: str) -> str:
    return f"an {name}" if name[0] in "aeioAEIO" else f"a {name}"


def validate(tp: type[BaseModel], data: Any) -> BaseModel:
    """``data`` (decoded from the wire) as the model ``tp``: msgspec's ``dec_hook``."""
    if not is_model(tp):
        raise TypeError(f"Unsupported type: {tp!r}")
    try:
        return tp.model_validate(data)
    except pydantic.ValidationError as exc:
        raise ValueError(summary(exc)) from None


def summary(exc: pydantic.ValidationError) -> str:
    """pydantic's errors in one line, each at its field as msgspec writes a path."""
    return "; ".join(f"{err['msg']} - at `{_path(err['loc'])}`" for err in exc.errors())


def _path(loc: tuple[int | str, ...]) -> str:
    return "$" + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)


class ModelDecoder:
    """A decoder of one model class, with ``decode(body)`` as msgspec's decoders have it.

    JSON is validated by pydantic straight from the bytes (its JSON rules: a date from
    a string even in strict mode); MessagePack is decoded by msgspec, then validated.
    What does not validate is ``msgspec.ValidationError``, naming the field.
    """

    __slots__ = ("decode",)

    def __init__(self, tp: type[BaseModel], json: bool) -> None:
        validator = tp.__pydantic_validator__
        unpack = msgspec.msgpack.decode

        def from_json(body: Any) -> Any:
            try:
                return validator.validate_json(body)
            except pydantic.ValidationError as exc:
                raise msgspec.ValidationError(summary(exc)) from None

        def from_msgpack(body: Any) -> Any:
            data = unpack(body)
            try:
                return validator.validate_python(data)
            except pydantic.ValidationError as exc:
                raise msgspec.ValidationError(summary(exc)) from None

        self.decode: Callable[[Any], Any] = from_json if json else from_msgpack


# -- what the proofs read: fields, JSON Schema, what cannot cross the network


class Field(typing.NamedTuple):
    name: str  # the attribute
    wire: str  # its name on the wire (the alias)
    keyword: str  # what the constructor takes: the alias, unless names are allowed too
    annotation: Any
    required: bool


def fields(model: type[BaseModel]) -> list[Field]:
    """The model's fields in declaration order, as its constructor and the wire take them."""
    by_name = bool(model.model_config.get("populate_by_name")) or bool(
        model.model_config.get("validate_by_name")
    )
    found = []
    for name, info in model.model_fields.items():
        wire = info.alias or name
        annotation: Any = info.annotation
        if info.metadata:  # constraints (Field(gt=0), constr) stay on the type, as Annotated
            annotated: Any = typing.Annotated
            parts = (annotation, *info.metadata)
            annotation = annotated[parts]
        keyword = name if by_name else wire
        found.append(Field(name, wire, keyword, annotation, info.is_required()))
    return found


def forbids_unknown(model: type[BaseModel]) -> bool:
    """Whether the model refuses fields it does not declare."""
    return model.model_config.get("extra") == "forbid"


def allows_any_attribute(model: type[BaseModel]) -> bool:
    """Whether an instance may hold attributes beyond its fields (``extra="allow"``)."""
    return model.model_config.get("extra") == "allow"


def json_schema(model: type[BaseModel], ref: str, components: dict[str, Any]) -> dict[str, Any]:
    """A reference to the model's JSON Schema, which goes into ``components`` with those of
    the models it refers to; ``ref`` is a template such as ``#/components/schemas/{name}``."""
    schema = model.model_json_schema(by_alias=True, ref_template=ref.replace("{name}", "{model}"))
    components.update(schema.pop("$defs", {}))
    components[model.__name__] = schema
    return {"$ref": ref.format(name=model.__name__)}


def off_wire(tp: Any) -> tuple[str, str] | None:
    """Why a model in ``tp`` cannot cross the network, or None: the model whose field is
    at fault, and the reason, at its path of fields (``User.profile.photo: ...``).

    A model crosses when pydantic can write its JSON Schema: that holds for every type
    it can carry as JSON, and fails for a field of an arbitrary class
    (``arbitrary_types_allowed``) or a callable.
    """
    for model in _models(tp, set()):
        found = _model_off_wire(model, model.__name__, set())
        if found is not None:
            return found
    return _model_in_struct(tp)


def _model_in_struct(tp: Any) -> tuple[str, str] | None:
    """A msgspec Struct in ``tp`` with a pydantic model among its fields (at any depth),
    which msgspec cannot carry: the Struct, and the reason at the field."""
    try:
        info = msgspec.inspect.type_info(tp)
    except (TypeError, ValueError):  # not msgspec's to read: said elsewhere (E210)
        return None
    for struct, field, model in _structs_holding_models(info, set()):
        return struct, (
            f"{struct}.{field} is the pydantic model {model}, which a msgspec Struct cannot "
            f"carry; make {struct} a pydantic model too, or {model} a Struct"
        )
    return None


def _structs_holding_models(
    info: msgspec.inspect.Type, seen: set[type]
) -> Iterator[tuple[str, str, str]]:
    """(Struct, field, model) for each Struct field under ``info`` whose type holds a model."""
    if isinstance(info, msgspec.inspect.StructType):
        if info.cls in seen:
            return
        seen.add(info.cls)
        for field in info.fields:
            for model in _custom_models(field.type):
                yield info.cls.__name__, field.name, model.__name__
            yield from _structs_holding_models(field.type, seen)
        return
    for inner in _inner_types(info):
        yield from _structs_holding_models(inner, seen)


def _custom_models(info: msgspec.inspect.Type) -> Iterator[type[BaseModel]]:
    """The pydantic models ``info`` holds directly (through lists, unions...), not in a Struct."""
    if isinstance(info, msgspec.inspect.CustomType) and is_model(info.cls):
        yield info.cls
    elif not isinstance(info, msgspec.inspect.StructType):
        for inner in _inner_types(info):
            yield from _custom_models(inner)


def _inner_types(info: msgspec.inspect.Type) -> list[msgspec.inspect.Type]:
    """The types a collection, union or metadata wrapper holds."""
    found: list[msgspec.inspect.Type] = []
    for attribute in ("item_type", "key_type", "value_type", "type"):
        inner = getattr(info, attribute, None)
        if isinstance(inner, msgspec.inspect.Type):
            found.append(inner)
    found += [t for t in getattr(info, "types", ()) if isinstance(t, msgspec.inspect.Type)]
    found += [t for t in getattr(info, "item_types", ()) if isinstance(t, msgspec.inspect.Type)]
    return found


def _models(tp: Any, seen: set[int]) -> Iterator[type[BaseModel]]:
    if id(tp) in seen:
        return
    seen.add(id(tp))
    if is_model(tp):
        yield tp
        return
    for arg in typing.get_args(tp):
        if not isinstance(arg, list):
            yield from _models(arg, seen)


def _model_off_wire(model: type[BaseModel], where: str, seen: set[type]) -> tuple[str, str] | None:
    seen.add(model)
    try:
        model.model_json_schema()
    except (pydantic.PydanticUserError, TypeError, ValueError) as exc:
        cause = str(exc).split("\n", 1)[0]
    else:
        return None
    for field in fields(model):
        for inner in _models(field.annotation, set()):
            if inner not in seen:
                deeper = _model_off_wire(inner, f"{where}.{field.name}", seen)
                if deeper is not None:
                    return deeper
        if not is_model(field.annotation) and _field_off_wire(field.annotation, model):
            return model.__name__, f"{where}.{field.name}: {_why(field.annotation)}"
    return model.__name__, f"{where}: {cause}"


def _field_off_wire(annotation: Any, model: type[BaseModel]) -> bool:
    """Whether one field's type alone keeps its model off the network."""
    arbitrary = bool(model.model_config.get("arbitrary_types_allowed"))
    try:
        config = ConfigDict(arbitrary_types_allowed=arbitrary)
        adapter = pydantic.TypeAdapter(annotation, config=config)
        adapter.json_schema()
    except (pydantic.PydanticUserError, TypeError, ValueError):
        return True
    return False


def _why(annotation: Any) -> str:
    """What a field's type is, that pydantic cannot write as JSON."""
    origin = typing.get_origin(annotation)
    if isinstance(annotation, type) and origin is None:
        name = annotation.__name__
        return f"{name} is a plain class, which has no JSON form; use a pydantic model"
    text = _QUALIFIER.sub("", repr(annotation))
    if annotation is Callable or origin is Callable:
        return f"{text} is a callable, which has no JSON form"
    return f"{text} has no JSON form"


_QUALIFIER = re.compile(r"\b(?:\w+\.)+(?=\w)")
