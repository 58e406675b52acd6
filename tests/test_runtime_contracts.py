"""The contract API as service code sees it: ``nanobuild.runtime``."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

import nanobuild.runtime as runtime
from nanobuild.runtime import (
    Contract,
    NanoError,
    NotFound,
    UnknownContract,
    call,
    handler,
    on_startup,
)
from nanobuild.runtime.contracts import (
    MissingResponseType,
    handler_types,
    is_contract,
    is_handler,
    response_type,
)
from nanobuild.runtime.errors import ERROR_KINDS, Internal


class Item(msgspec.Struct, frozen=True):
    id: str


class GetItem(Contract[Item], frozen=True):
    id: str


class ListItems(Contract[list[Item]]):
    pass


class Bare(Contract):  # type: ignore[type-arg]
    pass


class GetItemV2(GetItem, frozen=True):
    version: int = 2


def test_public_names_are_explicit() -> None:
    for name in runtime.__all__:
        assert hasattr(runtime, name), name
    assert {"Contract", "handler", "call", "NanoError", "NotFound", "BadRequest"} <= set(
        runtime.__all__
    )


def test_response_type_comes_from_the_generic_parameter() -> None:
    assert response_type(GetItem) is Item
    assert response_type(ListItems) == list[Item]
    assert response_type(GetItemV2) is Item  # inherited from a contract subclass


def test_bare_contract_has_no_response_type() -> None:
    with pytest.raises(MissingResponseType, match="subclass Contract\\[Response\\]"):
        response_type(Bare)


def test_contracts_are_msgspec_structs() -> None:
    req = GetItem(id="x")
    assert msgspec.json.decode(msgspec.json.encode(req), type=GetItem) == req
    assert is_contract(GetItem) and not is_contract(Contract) and not is_contract(Item)


def test_handler_marks_without_wrapping() -> None:
    async def get_item(req: GetItem) -> Item:
        return Item(id=req.id)

    assert handler(get_item) is get_item
    assert is_handler(get_item)
    assert handler_types(get_item) == (GetItem, Item)

    def load() -> None:
        pass

    assert on_startup(load) is load


def test_call_without_a_route_raises_unknown_contract() -> None:
    with pytest.raises(UnknownContract, match="GetItem"):
        asyncio.run(call(GetItem(id="x")))  # type: ignore[arg-type]


def test_errors_know_their_kind_and_status() -> None:
    assert NotFound.status == 404 and NotFound.kind == "not_found"
    assert issubclass(UnknownContract, NotFound)
    assert all(issubclass(cls, NanoError) for cls in ERROR_KINDS.values())
    assert len({cls.kind for cls in ERROR_KINDS.values()}) == len(ERROR_KINDS)


def test_errors_round_trip_through_the_wire_body() -> None:
    err = NotFound("no item x", service="items", contract="GetItem")
    again = NanoError.from_wire(err.to_wire())
    assert type(again) is NotFound
    assert (again.message, again.service, again.contract) == ("no item x", "items", "GetItem")
    assert type(NanoError.from_wire({"kind": "martian"})) is Internal


def test_a_routed_contracts_subclass_does_not_inherit_its_route() -> None:
    from nanobuild.runtime import router

    async def get_item(req: GetItem) -> Item:
        return Item(id=req.id)

    router.install({GetItem: get_item})
    try:
        assert asyncio.run(call(GetItem(id="x"))) == Item(id="x")  # type: ignore[arg-type]
        with pytest.raises(UnknownContract, match="GetItemV2"):
            asyncio.run(call(GetItemV2(id="x")))  # type: ignore[arg-type]
    finally:
        router.install({})
    with pytest.raises(UnknownContract):
        asyncio.run(call(GetItem(id="x")))  # type: ignore[arg-type]


def test_a_route_that_is_not_a_function_is_called_with_the_request() -> None:
    from nanobuild.runtime import router

    class Answer:
        """A callable object as a route (a transport's, say): it does not bind."""

        async def __call__(self, req: GetItem) -> Item:
            return Item(id=req.id + "!")

    router.install({GetItem: Answer()})
    try:
        assert asyncio.run(call(GetItem(id="x"))) == Item(id="x!")  # type: ignore[arg-type]
    finally:
        router.install({})


@pytest.mark.parametrize(
    ("wrong", "named"),
    [({"id": "x"}, "not a dict"), (GetItem, "not the class GetItem"), (None, "not a NoneType")],
)
def test_call_with_something_else_than_a_request_says_so(wrong: object, named: str) -> None:
    with pytest.raises(TypeError, match=f"takes a request, .* {named}$"):
        call(wrong)  # type: ignore[arg-type]
