"""Wire codecs: strict request decoding (unknown fields anywhere) and response checks."""

from __future__ import annotations

from typing import Annotated, Generic, Optional, TypeVar, Union

import msgspec
import pytest

from nanobuild.runtime import BadRequest, Contract, Internal
from nanobuild.runtime.codecs import JSON, MSGPACK, Codec, Format, format_of, strict_twin

T = TypeVar("T")


class Money(msgspec.Struct, frozen=True):
    currency_code: str
    units: int = 0


class Tree(msgspec.Struct):
    value: int
    children: list[Tree] = []


class Point(msgspec.Struct, array_like=True):
    x: int
    y: int = 0


class Cat(msgspec.Struct, tag=True):
    name: str


class Dog(msgspec.Struct, tag=True):
    barks: bool


class Page(msgspec.Struct, Generic[T]):
    items: list[T]


class Everything(Contract[list[Money]], frozen=True, rename="camel"):
    base_price: Money
    tree: Tree | None = None
    point: Optional[Point] = None  # noqa: UP045 - typing's spelling must work too
    pets: list[Union[Cat, Dog]] = msgspec.field(default_factory=list)  # noqa: UP007
    prices: dict[str, Money] = msgspec.field(default_factory=dict)
    count: Annotated[int, msgspec.Meta(ge=0)] = 0
    page: Page[Money] | None = None
    pair: tuple[Money, ...] = ()


GOOD = {
    "basePrice": {"currency_code": "USD"},
    "tree": {"value": 1, "children": [{"value": 2}]},
    "point": [1, 2],
    "pets": [{"type": "Cat", "name": "Tom"}, {"type": "Dog", "barks": True}],
    "prices": {"mug": {"currency_code": "EUR", "units": 3}},
    "count": 2,
    "page": {"items": [{"currency_code": "CHF"}]},
    "pair": [{"currency_code": "GBP"}],
}


def with_(**changes: object) -> dict[str, object]:
    return {**GOOD, **changes}


@pytest.fixture(params=[JSON, MSGPACK], ids=["json", "msgpack"])
def fmt(request: pytest.FixtureRequest) -> Format:
    found: Format = request.param
    return found


@pytest.fixture
def codec(fmt: Format) -> Codec:
    return Codec(fmt, Everything, list[Money], thorough=False)


def test_a_valid_request_decodes_to_the_real_classes(fmt: Format, codec: Codec) -> None:
    request = codec.decode(fmt.encode(GOOD))
    assert type(request) is Everything
    assert request.base_price == Money("USD")
    assert request.tree == Tree(1, [Tree(2)])
    assert request.point == Point(1, 2)
    assert request.pets == [Cat("Tom"), Dog(True)]
    assert request.page == Page[Money]([Money("CHF")])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (with_(extra=1), "Object contains unknown field `extra`"),
        (
            with_(basePrice={"currency_code": "USD", "cents": 1}),
            "Object contains unknown field `cents` - at `$.basePrice`",
        ),
        (
            with_(tree={"value": 1, "children": [{"value": 2, "x": 0}]}),
            "Object contains unknown field `x` - at `$.tree.children[0]`",
        ),
        (
            with_(pets=[{"type": "Cat", "name": "Tom", "lives": 9}]),
            "Object contains unknown field `lives` - at `$.pets[0]`",
        ),
        (
            with_(prices={"mug": {"currency_code": "EUR", "q": 1}}),
            "Object contains unknown field `q` - at `$.prices[...]`",
        ),
        (
            with_(page={"items": [{"currency_code": "CHF", "q": 1}]}),
            "Object contains unknown field `q` - at `$.page.items[0]`",
        ),
        (
            with_(pair=[{"currency_code": "GBP", "q": 1}]),
            "Object contains unknown field `q` - at `$.pair[0]`",
        ),
        (with_(count=-1), "Expected `int` >= 0 - at `$.count`"),
        (with_(point=[1, "2"]), "Expected `int`, got `str` - at `$.point[1]`"),
        ({"base_price": {"currency_code": "USD"}}, "Object contains unknown field `base_price`"),
        ({}, "Object missing required field `basePrice`"),
    ],
)
def test_bad_requests_say_what_is_wrong(
    fmt: Format, codec: Codec, body: object, message: str
) -> None:
    with pytest.raises(BadRequest) as caught:
        codec.decode(fmt.encode(body))
    assert caught.value.message == message


def test_malformed_bodies_are_bad_requests(codec: Codec) -> None:
    for body in (b"", b"{", b"\xc1"):
        with pytest.raises(BadRequest):
            codec.decode(body)


def test_a_twin_shares_types_without_structs() -> None:
    assert strict_twin(int) is int
    assert strict_twin(list[dict[str, int]]) == list[dict[str, int]]
    twin = strict_twin(Tree)
    assert twin is not Tree
    assert twin.__struct_config__.forbid_unknown_fields
    assert twin.__annotations__["children"] == list[twin]  # a recursive type stays recursive


def test_responses_of_the_wrong_type_are_internal(fmt: Format, codec: Codec) -> None:
    assert codec.encode([Money("USD")]) == fmt.encode([{"currency_code": "USD", "units": 0}])
    for wrong in (None, Money("USD"), [{"currency_code": 1}], [object()]):
        with pytest.raises(Internal):
            codec.encode(wrong)


def test_struct_responses_are_checked_by_class_or_thoroughly() -> None:
    class Reply(Contract[Money], frozen=True):
        pass

    quick = Codec(JSON, Reply, Money, thorough=False)
    thorough = Codec(JSON, Reply, Money, thorough=True)
    for codec in (quick, thorough):
        with pytest.raises(
            Internal, match="returned a dict, not the contract's response type Money"
        ):
            codec.encode({"currency_code": "USD"})
    wrong_field = Money(currency_code=42)  # type: ignore[arg-type]
    assert quick.encode(wrong_field)  # the quick check trusts the class...
    with pytest.raises(Internal):
        thorough.encode(wrong_field)  # ...the thorough one (NANO_STRICT) reads the fields


def test_scalar_responses_follow_the_wire_rules() -> None:
    class Rate(Contract[float], frozen=True):
        pass

    class Nothing(Contract[None], frozen=True):
        pass

    assert Codec(JSON, Rate, float, thorough=False).encode(2) == b"2"  # an int is a fine float
    with pytest.raises(Internal):
        Codec(JSON, Rate, float, thorough=False).encode("2")
    assert Codec(MSGPACK, Nothing, type(None), thorough=False).encode(None) == b"\xc0"
    with pytest.raises(Internal, match="returned an int"):
        Codec(JSON, Nothing, type(None), thorough=False).encode(0)


@pytest.mark.parametrize(
    ("content_type", "name"),
    [
        (b"application/json", "json"),
        (b"application/json; charset=utf-8", "json"),
        (b"Application/JSON;charset=UTF-8", "json"),
        (b"application/msgpack", "msgpack"),
        (b"application/x-msgpack", "msgpack"),
        (b"text/plain", None),
        (b"application/jsonx", None),
        (b"", None),
    ],
)
def test_format_of_content_types(content_type: bytes, name: str | None) -> None:
    found = format_of(content_type)
    assert (found.name if found else None) == name
