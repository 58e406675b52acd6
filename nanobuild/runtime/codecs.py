"""Wire codecs: one endpoint's request decoding and response encoding, in one format.

Requests are decoded strictly: a field of the wrong type, a missing field and an
*unknown* field are all ``BadRequest``. msgspec ignores unknown fields unless a
Struct class says ``forbid_unknown_fields=True``, and the contracts are the users'
classes, so each request type gets a *strict twin*: the same fields under the same
wire names, every Struct in it (nested ones too) rebuilt with
``forbid_unknown_fields=True``. The body is first decoded into the twin, which only
validates, and then into the real type, which builds the value the handler gets.
Two C-level decodes of a small body cost about a microsecond; the handler sees
its own classes, so ``type(request)`` and ``==`` behave as in memory.

Responses are checked before they leave: a handler that returns the wrong type
is an ``Internal`` error, not a body the caller cannot decode. Under ``NANO_STRICT``
(``thorough``) every field is checked too, in MessagePack, which keeps what JSON
hides: a ``bytes`` in a ``str`` field would be base64 text in JSON.

pydantic models (``nanobuild.runtime.models``) go through the same codecs: msgspec
writes them through an ``enc_hook`` (called only for a type msgspec does not know,
so it costs the others nothing) and reads them through a ``dec_hook``; a request or
response that is itself a model is validated by pydantic straight from the body.
None of it is imported until pydantic is.

Nesting. msgspec decodes nested arrays and maps recursively, under the
interpreter's recursion limit, so a small body nested a few thousand deep raises
``RecursionError``. That is caught where a body is decoded and becomes
``BadRequest(TOO_DEEP)``: a try block costs nothing until it catches, where a
depth pre-scan would cost every body a pass over its bytes. Every body nested up to
``DEPTH`` levels decodes (the stack is far from that deep where bodies are
decoded); a deeper one may, as far as the stack allows, or is refused.
"""

from __future__ import annotations

import re
import sys
import types
import typing
from collections.abc import Callable
from typing import Any

import msgspec

from nanobuild.runtime.errors import BadRequest, Internal, WrongResponse

Encode = Callable[[Any], bytes]

DEPTH = 500  # levels of nesting every body may have (the interpreter's limit is 1000 frames)
TOO_DEEP = f"the body is nested deeper than {DEPTH} levels (arrays and maps inside each other)"


def too_deep(exc: RecursionError) -> bool:
    """Whether ``exc`` is msgspec's, from walking a value nested too deeply (not a user's
    validator that recursed without end, which is a fault of its own)."""
    return "serializing an object" in str(exc)  # msgspec's words, decoding and encoding


class Format:
    """A wire format: the media type it answers with, and how to build its codecs.

    ``checked`` encodes as ``encode`` does, but refuses a pydantic model whose field
    holds a value of another type (strict mode).
    """

    __slots__ = ("checked", "decoder", "encode", "media_type", "name")

    def __init__(
        self,
        name: str,
        media_type: bytes,
        encoder: Callable[..., Any],
        decoder: Callable[[Any], Any],
    ) -> None:
        self.name = name
        self.media_type = media_type
        self.encode: Encode = encoder(enc_hook=_encode_model).encode
        self.checked: Encode = encoder(enc_hook=_encode_model_checked).encode
        self.decoder = decoder  # type -> a decoder object with ``.decode(bytes)``


def _encode_model(value: Any) -> Any:
    """What msgspec writes for a value of a type it does not know: a pydantic model's data."""
    if not hasattr(type(value), "__pydantic_serializer__"):
        raise TypeError(f"Encoding objects of type {type(value).__name__} is unsupported")
    from nanobuild.runtime import models

    return models.dump(value)


def _encode_model_checked(value: Any) -> Any:
    if not hasattr(type(value), "__pydantic_serializer__"):
        raise TypeError(f"Encoding objects of type {type(value).__name__} is unsupported")
    from nanobuild.runtime import models

    return models.dump_checked(value)


def _decoder(module: Any, *, json: bool) -> Callable[[Any], Any]:
    """Decoders of ``module`` (msgspec.json, msgspec.msgpack), or pydantic's for a model."""
    plain = module.Decoder

    def decoder(tp: Any) -> Any:
        if "pydantic" not in sys.modules:
            return plain(tp)  # no model can exist: msgspec's own decoder, untouched
        from nanobuild.runtime import models

        if models.is_model(tp):
            return models.ModelDecoder(tp, json)
        if models.involves_models(tp):
            return plain(tp, dec_hook=models.validate)
        return plain(tp)

    return decoder


JSON = Format("json", b"application/json", msgspec.json.Encoder, _decoder(msgspec.json, json=True))
MSGPACK = Format(
    "msgpack",
    b"application/msgpack",
    msgspec.msgpack.Encoder,
    _decoder(msgspec.msgpack, json=False),
)

# media type (lowercase, parameters stripped) -> format
MEDIA_TYPES: dict[bytes, Format] = {
    b"application/json": JSON,
    b"application/msgpack": MSGPACK,
    b"application/x-msgpack": MSGPACK,
}


def format_of(content_type: bytes) -> Format | None:
    """The format a ``Content-Type`` value names (parameters such as charset ignored)."""
    found = MEDIA_TYPES.get(content_type)
    if found is None:
        found = MEDIA_TYPES.get(content_type.split(b";", 1)[0].strip().lower())
    return found


_UNTYPED: dict[str, Callable[[bytes], Any]] = {
    "json": msgspec.json.decode,
    "msgpack": msgspec.msgpack.decode,
}


def decode_any(fmt: Format, body: bytes) -> Any:
    """``body`` as plain data (dicts, lists, ...), or ``BadRequest`` saying why it is not."""
    try:
        return _UNTYPED[fmt.name](body)
    except msgspec.DecodeError as exc:
        raise BadRequest(f"the body is not {fmt.name}: {exc}") from None
    except RecursionError as exc:
        if not too_deep(exc):
            raise
        raise BadRequest(TOO_DEEP) from None


class Codec:
    """Decode one contract's requests and encode its responses, in one format."""

    __slots__ = ("_check", "_encode", "_is_valid", "_read", "_response")

    def __init__(self, fmt: Format, request: type, response: Any, *, thorough: bool) -> None:
        twin = strict_twin(request)
        # a model validates all in one (unknown fields are its own config's to forbid)
        self._check = fmt.decoder(twin).decode if twin is not request else _nothing
        self._read = fmt.decoder(request).decode
        self._encode = fmt.checked if thorough else fmt.encode
        self._is_valid = response_check(fmt, response, thorough=thorough)
        self._response = response

    def decode(self, body: bytes) -> Any:
        """The request in ``body``, or ``BadRequest`` saying what is wrong with it."""
        try:
            self._check(body)
            return self._read(body)
        except msgspec.DecodeError as exc:  # includes ValidationError
            raise BadRequest(str(exc)) from exc
        except RecursionError as exc:
            if not too_deep(exc):
                raise
            raise BadRequest(TOO_DEEP) from None

    def encode(self, value: Any) -> bytes:
        """The wire form of a handler's result, or ``Internal`` if it has the wrong type."""
        try:
            body = self._encode(value)
        except (TypeError, ValueError, OverflowError) as exc:
            if type(exc).__name__ == "FieldMismatch":  # models.FieldMismatch, strict mode
                raise WrongResponse(f"the handler returned {exc}") from exc
            raise Internal(f"the handler returned a value that cannot be encoded: {exc}") from exc
        except RecursionError as exc:
            if not too_deep(exc):
                raise
            raise Internal(
                f"the handler returned a value nested too deeply to encode: {exc}"
            ) from None
        if not self._is_valid(value, body):
            raise WrongResponse(_wrong_response(value, self._response))
        return body


def _nothing(body: Any) -> None:
    return None


def response_check(fmt: Format, response: Any, *, thorough: bool) -> Callable[[Any, bytes], bool]:
    """A cheap, sufficient test that a result and its encoding match ``response``.

    ``None``, Struct and model responses are checked by identity and ``isinstance``;
    every other type by decoding the encoded body with a typed decoder, which is exact
    and still runs in C. A Struct's constructor does not check its field types, so
    ``thorough`` mode (under ``NANO_STRICT``) decodes Struct responses too, and in
    MessagePack, where a ``bytes`` stays bytes (a model's fields were checked as it
    was encoded, by ``Format.checked``).
    """
    if response is None or response is type(None):
        return lambda value, body: value is None
    decodes = _decodes(fmt, response, thorough=thorough)
    if not _is_record(response):
        return decodes
    if thorough and _is_struct(response):
        return lambda value, body: isinstance(value, response) and decodes(value, body)
    return lambda value, body: isinstance(value, response)


def _decodes(fmt: Format, response: Any, *, thorough: bool) -> Callable[[Any, bytes], bool]:
    """Whether the body decodes as ``response``; when ``thorough``, its MessagePack form."""
    if thorough and fmt is not MSGPACK:
        decode = MSGPACK.decoder(response).decode
        encode = MSGPACK.checked

        def exact(value: Any, body: bytes) -> bool:
            try:
                decode(encode(value))
            except (msgspec.DecodeError, TypeError, ValueError):
                return False
            return True

        return exact
    read = fmt.decoder(response).decode

    def decodes(value: Any, body: bytes) -> bool:
        try:
            read(body)
        except msgspec.DecodeError:
            return False
        return True

    return decodes


def _is_record(tp: Any) -> bool:
    """A Struct or a pydantic model: a class whose instances ``isinstance`` tells."""
    if not isinstance(tp, type) or typing.get_origin(tp) is not None:
        return False
    return issubclass(tp, msgspec.Struct) or hasattr(tp, "__pydantic_validator__")


def _wrong_response(value: Any, response: Any) -> str:
    """What is wrong with a result that failed ``response_check`` (slow: errors only)."""
    name = type_name(response)
    if _is_record(response) and isinstance(value, response):
        # the class is right, so strict mode found a field of the wrong type: which
        try:
            MSGPACK.decoder(response).decode(MSGPACK.checked(value))
        except (msgspec.DecodeError, TypeError, ValueError) as exc:
            return f"the handler returned {_describe(value)} whose fields are wrong: {exc}"
    return f"the handler returned {_describe(value)}, not the contract's response type {name}"


def type_name(tp: Any) -> str:
    """``Product`` for a class, ``list[Product]`` for a generic type (no module paths)."""
    # a parametrized generic is no class (Python 3.10 says it is an instance of type)
    if isinstance(tp, type) and typing.get_origin(tp) is None:
        return tp.__name__
    return _QUALIFIER.sub("", repr(tp))


_QUALIFIER = re.compile(r"\b(?:\w+\.)+(?=\w)")


def _describe(value: Any) -> str:
    if value is None:
        return "None"
    name = type(value).__name__
    return f"an {name}" if name[0] in "aeiouAEIOU" else f"a {name}"


# -- strict twins


def strict_twin(tp: Any, _twins: dict[Any, Any] | None = None) -> Any:
    """``tp`` with every Struct in it replaced by a twin that forbids unknown fields."""
    twins = {} if _twins is None else _twins
    if _is_struct(tp):
        return twins[tp] if tp in twins else _make_twin(tp, twins)
    args = typing.get_args(tp)
    if not args or typing.get_origin(tp) is typing.Literal:
        return tp
    if typing.get_origin(tp) is typing.Annotated:
        annotated = (strict_twin(args[0], twins), *tp.__metadata__)
        return typing.Annotated[annotated]
    new_args = tuple(strict_twin(arg, twins) for arg in args)
    if new_args == args:
        return tp  # no Struct inside: share the original type
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        return typing.Union[new_args]  # noqa: UP007 - built from a runtime tuple
    if isinstance(tp, types.GenericAlias):
        return types.GenericAlias(typing.get_origin(tp), new_args)
    return tp.copy_with(new_args)  # typing's own generic aliases (typing.List[...], ...)


def _is_struct(tp: Any) -> bool:
    origin = typing.get_origin(tp) or tp  # a parametrized generic Struct counts too
    return isinstance(origin, type) and issubclass(origin, msgspec.Struct)


def _make_twin(struct: Any, twins: dict[Any, Any]) -> Any:
    fields = msgspec.structs.fields(struct)
    config = typing.get_origin(struct) or struct
    config = config.__struct_config__
    # Field types are filled in after the class exists, so a Struct that refers to
    # itself (a tree) gets a twin that refers to its twin. msgspec reads them lazily.
    twin = msgspec.defstruct(
        getattr(struct, "__name__", "Struct"),
        [(f.name, Any) if f.required else (f.name, Any, None) for f in fields],
        rename={f.name: f.encode_name for f in fields},
        tag=config.tag,
        tag_field=config.tag_field,
        array_like=config.array_like,
        forbid_unknown_fields=True,
        kw_only=True,  # required and optional fields in any order, as declared
    )
    twins[struct] = twin
    twin.__annotations__ = {f.name: strict_twin(f.type, twins) for f in fields}
    return twin
