"""Contract shapes and their comparison: one test per rule of the README's table.

Each test writes two versions of a contract as classes (names do not matter to a
shape, only what crosses the wire), takes their shapes as the runtime does, and
compares the caller's against the callee's as ``check --against`` and the TCP
handshake do.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Annotated, Any, Literal

import msgspec
import pytest

from nanobuild.runtime import Contract
from nanobuild.runtime.contracts import response_type
from nanobuild.runtime.shapes import shape_of
from nanobuild.runtime.spec import (
    RULES,
    ContractShape,
    ContractTable,
    compare,
    compare_tables,
    describe,
    fingerprint,
)
from tests.conftest import SAMPLES


def shape(contract: type) -> ContractShape:
    return shape_of(contract, response_type(contract))


def rules(caller: type, callee: type) -> list[tuple[str, str, bool]]:
    """(rule, where, breaking) for each change from the caller's contract to the callee's."""
    return [
        (c.rule, f"{c.side}.{c.path}" if c.path else c.side, c.breaking)
        for c in compare(shape(caller), shape(callee))
    ]


class User(msgspec.Struct, frozen=True):
    id: str
    name: str


class Get(Contract[User], frozen=True):
    id: str


def test_equal_contracts_have_equal_fingerprints_and_no_changes() -> None:
    class Get2(Contract[User], frozen=True):
        id: str

    assert compare(shape(Get), shape(Get)) == []
    assert fingerprint(shape(Get)) == fingerprint(shape(Get))
    assert len(fingerprint(shape(Get))) == 16
    # another class name is another fingerprint, but the same wire form: nothing to report
    assert fingerprint(shape(Get2)) != fingerprint(shape(Get))
    assert rules(Get, Get2) == []


def test_a_removed_contract_breaks_and_a_new_one_does_not() -> None:
    old = {"users.Get": shape(Get), "users.Gone": shape(Get)}
    new = {"users.Get": shape(Get), "users.New": shape(Get)}
    found = compare_tables(old, new)
    assert {name: [c.rule for c in changes] for name, changes in found.items()} == {
        "users.Gone": ["contract-removed"],
        "users.New": ["contract-added"],
    }
    assert found["users.Gone"][0].breaking and not found["users.New"][0].breaking


def test_a_request_field_the_caller_sends_and_the_callee_dropped_breaks() -> None:
    class Old(Contract[User], frozen=True):
        id: str
        note: str = ""

    assert rules(Old, Get) == [("request-field-removed", "request.note", True)]


def test_a_new_required_request_field_breaks_and_a_new_optional_one_does_not() -> None:
    class Required(Contract[User], frozen=True):
        id: str
        region: str

    class Optional(Contract[User], frozen=True):
        id: str
        region: str = "eu"

    assert rules(Get, Required) == [("request-field-required", "request.region", True)]
    assert rules(Get, Optional) == [("request-field-added", "request.region", False)]


def test_a_response_field_the_caller_requires_breaks_when_gone_an_optional_one_does_not() -> None:
    class Named(msgspec.Struct, frozen=True):
        id: str

    class Maybe(msgspec.Struct, frozen=True):
        id: str
        name: str = "?"

    class GetNamed(Contract[Named], frozen=True):
        id: str

    class GetMaybe(Contract[Maybe], frozen=True):
        id: str

    assert rules(Get, GetNamed) == [("response-field-removed", "response.name", True)]
    assert rules(GetMaybe, GetNamed) == [("response-field-dropped", "response.name", False)]


def test_a_new_response_field_is_ignored_unless_the_caller_forbids_unknown_fields() -> None:
    class Wider(msgspec.Struct, frozen=True):
        id: str
        name: str
        email: str = ""

    class Strict(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
        id: str
        name: str

    class GetWider(Contract[Wider], frozen=True):
        id: str

    class GetStrict(Contract[Strict], frozen=True):
        id: str

    assert rules(Get, GetWider) == [("response-field-added", "response.email", False)]
    assert rules(GetStrict, GetWider) == [("response-field-refused", "response.email", True)]


def test_a_changed_type_breaks_and_a_wider_one_does_not() -> None:
    class ByNumber(Contract[User], frozen=True):
        id: int

    class ByMaybe(Contract[User], frozen=True):
        id: str | None = None

    class Score(Contract[float], frozen=True):
        id: str

    class Count(Contract[int], frozen=True):
        id: str

    assert rules(Get, ByNumber) == [("type-changed", "request.id", True)]
    assert rules(Get, ByMaybe) == [("type-widened", "request.id", False)]
    assert rules(ByMaybe, Get) == [("type-changed", "request.id", True)]  # None is refused
    assert rules(Score, Count) == [("type-widened", "response", False)]  # ints read as floats
    assert rules(Count, Score) == [("type-changed", "response", True)]


def test_constraints_may_loosen_but_not_tighten() -> None:
    class Short(Contract[User], frozen=True):
        id: Annotated[str, msgspec.Meta(max_length=8)]

    class Long(Contract[User], frozen=True):
        id: Annotated[str, msgspec.Meta(max_length=64)]

    assert rules(Long, Short) == [("type-changed", "request.id", True)]
    assert rules(Short, Long) == [("type-widened", "request.id", False)]


def test_literals_may_gain_values_but_not_lose_them() -> None:
    class Two(Contract[User], frozen=True):
        mode: Literal["a", "b"]

    class Three(Contract[User], frozen=True):
        mode: Literal["a", "b", "c"]

    assert rules(Two, Three) == [("type-widened", "request.mode", False)]
    assert rules(Three, Two) == [("type-changed", "request.mode", True)]


class Quantity(msgspec.Struct, frozen=True):
    amount: int


class Quantity2(msgspec.Struct, frozen=True):
    amount: int
    unit: str


class Order(Contract[list[User]], frozen=True):
    lines: list[Quantity]


class Order2(Contract[list[User]], frozen=True):
    lines: list[Quantity2]


def test_nested_records_are_compared_field_by_field_with_their_path() -> None:
    assert rules(Order, Order2) == [("request-field-required", "request.lines[].unit", True)]


def test_the_wire_name_counts_not_the_attribute() -> None:
    class Renamed(Contract[User], frozen=True, rename={"key": "id"}):
        key: str

    class Moved(Contract[User], frozen=True, rename="camel"):
        user_id: str

    assert rules(Get, Renamed) == []
    assert {rule for rule, _, _ in rules(Get, Moved)} == {
        "request-field-removed",
        "request-field-required",
    }


def test_a_changed_tag_or_layout_breaks() -> None:
    class Tagged(msgspec.Struct, frozen=True, tag="user"):
        id: str
        name: str

    class Row(msgspec.Struct, frozen=True, array_like=True):
        id: str
        name: str

    class GetTagged(Contract[Tagged], frozen=True):
        id: str

    class GetRow(Contract[Row], frozen=True):
        id: str

    assert rules(Get, GetTagged) == [("tag-changed", "response", True)]
    assert rules(Get, GetRow) == [("layout-changed", "response", True)]


class Card(msgspec.Struct, frozen=True, tag="card"):
    number: str


class Cash(msgspec.Struct, frozen=True, tag="cash"):
    amount: int


class Cheque(msgspec.Struct, frozen=True, tag="cheque"):
    bank: str


class Pay(Contract[None], frozen=True):
    by: Card | Cash


class PayMore(Contract[None], frozen=True):
    by: Card | Cash | Cheque


class PayLess(Contract[None], frozen=True):
    by: Card | Cheque


def test_tagged_unions_match_alternatives_by_tag() -> None:
    assert rules(Pay, PayMore) == []  # every tag the caller sends is still taken
    assert rules(Pay, PayLess) == [("tag-changed", "request.by", True)]  # no more "cash"


class Tree(msgspec.Struct, frozen=True):
    value: int
    children: list[Tree] = []


class Walk(Contract[Tree], frozen=True):
    root: Tree


def test_a_record_that_refers_to_itself_has_a_finite_shape() -> None:
    walked = shape(Walk)
    assert set(walked.records) == {f"{__name__}.Tree", f"{__name__}.Walk"}
    assert compare(walked, walked) == []


def test_every_rule_reads_as_a_sentence_naming_both_sides() -> None:
    change = compare(shape(Get), shape(type("X", (Get,), {})))
    assert change == []
    [required] = compare_tables({"a.B": shape(Get)}, {"a.B": shape(_with_required_field())})["a.B"]
    text = describe(required, "this process", "tcp://127.0.0.1:9")
    assert text == (
        "request field `region` (str) is required by tcp://127.0.0.1:9 but not sent by this process"
    )
    assert set(RULES) >= {"contract-removed", "type-changed", "tag-changed"}


def _with_required_field() -> type:
    class Get(Contract[User], frozen=True):
        id: str
        region: str

    return Get


def test_the_child_program_describes_a_workspaces_kernels() -> None:
    request = {
        "packages": {
            "users": str(SAMPLES / "mini/services/users"),
            "orders": str(SAMPLES / "mini/services/orders"),
            "units": str(SAMPLES / "mini/libs/units"),
        },
        "kernels": {"users": "users.kernel", "orders": "orders.kernel", "ghost": "ghost.kernel"},
    }
    done = subprocess.run(
        [sys.executable, "-m", "nanobuild.runtime.shapes"],
        input=msgspec.json.encode(request),
        capture_output=True,
        timeout=60,
        check=True,
    )
    table = msgspec.json.decode(done.stdout, type=ContractTable)
    assert sorted(table.contracts) == ["orders.PlaceOrder", "users.GetUser", "users.ListUsers"]
    assert table.errors == {"ghost": "ModuleNotFoundError: No module named 'ghost'"}
    place: Any = table.contracts["orders.PlaceOrder"]
    assert [f.wire for f in place.records["units.Quantity"].fields] == ["amount", "unit"]


@pytest.mark.parametrize("rule", sorted(RULES))
def test_every_rule_has_a_sentence(rule: str) -> None:
    from nanobuild.runtime.spec import Change

    assert describe(Change(rule, "request", "x", "str", "int"))
