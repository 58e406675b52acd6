"""The kernel probe: the child process that imports kernels to learn their contracts."""

from __future__ import annotations

from pathlib import Path

import pytest

from nanobuild import probe
from nanobuild.diagnostics import Diagnostic
from nanobuild.errors import CheckFailed
from tests.conftest import Sample

USERS_KERNEL = "services/users/users/kernel.py"
ORDERS_KERNEL = "services/orders/orders/kernel.py"


def _probe(sample: Sample, *services: str) -> dict[str, probe.KernelInfo]:
    ws = sample.load()
    kernels = {name: ws.services[name].kernel_module for name in services}
    return probe.probe(ws.package_folders(), kernels)


def test_kernels_import_other_kernels_and_libraries(mini: Sample) -> None:
    mini.edit(ORDERS_KERNEL, "import msgspec", "import msgspec\nfrom users.kernel import User")
    info = _probe(mini, "users", "orders")
    assert info["orders"].error is None
    assert {"User", "Order", "PlaceOrder", "Quantity"} <= set(info["orders"].names)
    assert list(info["orders"].contracts) == ["PlaceOrder"]
    assert info["orders"].contracts["PlaceOrder"].response == "Order"
    assert set(info["users"].contracts) == {"GetUser", "ListUsers"}


def test_only_the_contracts_that_cannot_cross_are_named(mini: Sample) -> None:
    mini.write(
        USERS_KERNEL,
        (mini.root / USERS_KERNEL).read_text()
        + "\n\nclass Photo:\n    pass\n\n\nclass GetPhoto(Contract[Photo], frozen=True):\n"
        "    id: str\n",
    )
    contracts = _probe(mini, "users")["users"].contracts
    assert [name for name, c in contracts.items() if c.wire_error] == ["GetPhoto"]
    assert (contracts["GetUser"].response, contracts["GetUser"].wire_error) == ("User", None)
    assert contracts["ListUsers"] == probe.ContractInfo(response="list[User]")


def test_a_failure_points_at_the_kernel_that_raised(mini: Sample) -> None:
    mini.edit(USERS_KERNEL, "class User(", "RATE = 1 / 0\n\n\nclass User(")
    mini.edit(ORDERS_KERNEL, "import msgspec", "import msgspec\nfrom users.kernel import User")
    error = _probe(mini, "orders")["orders"].error
    assert error is not None
    assert "ZeroDivisionError" in error.message
    assert error.path is not None
    assert (mini.load().rel(Path(error.path)), error.line) == (USERS_KERNEL, 6)


def test_nothing_to_import(mini: Sample) -> None:
    assert probe.probe(mini.load().package_folders(), {}) == {}


def test_a_kernel_that_ends_the_child_is_reported(mini: Sample) -> None:
    mini.edit(USERS_KERNEL, "import msgspec", "import os\nimport msgspec\nos._exit(3)")
    with pytest.raises(CheckFailed) as failed:
        mini.check()
    assert failed.value.diagnostics == [
        Diagnostic(
            USERS_KERNEL,
            "E211",
            f"importing {USERS_KERNEL} ended the child Python (exit status 3)",
        )
    ]


def test_structs_are_described_as_their_constructors_take_them(mini: Sample) -> None:
    """Fields in order (a subclass's after its bases', keyword-only ones last), with
    their wire names, types and defaults; methods, properties and class variables."""
    mini.edit(USERS_KERNEL, "import msgspec", "from typing import ClassVar\n\nimport msgspec")
    mini.write(
        USERS_KERNEL,
        (mini.root / USERS_KERNEL).read_text()
        + "\n\nclass Base(msgspec.Struct, kw_only=True):\n    tag: str = 'x'\n\n\n"
        "class Page(Base, rename='camel'):\n    user_id: str\n    size: int | None = 10\n"
        "    limit: ClassVar[int] = 5\n\n    def half(self) -> int:\n        return 1\n",
    )
    info = _probe(mini, "users")["users"]
    assert info.structs["Page"] == probe.StructInfo(
        fields=[
            probe.FieldInfo("user_id", "userId", "str"),
            probe.FieldInfo("size", "size", "None | int", required=False),
            probe.FieldInfo("tag", "tag", "str", required=False, kw_only=True),
        ],
        attributes=["half", "limit"],
    )
    assert set(info.structs) == {"User", "GetUser", "ListUsers", "Base", "Page"}
    # a contract's response, when it is a Struct, for what callers read off it
    assert info.contracts["GetUser"].answers == info.structs["User"]
    assert info.contracts["ListUsers"].answers is None  # a list: not judged


@pytest.mark.parametrize(
    ("declared", "why"),
    [
        (
            "class GetPhoto(Contract[None], frozen=True):\n    photo: Photo\n",
            "GetPhoto.photo: Photo is a plain class; use a msgspec Struct",
        ),
        (
            "class Album(msgspec.Struct):\n    pages: dict[str, list[Photo | None]]\n\n\n"
            "class Shelf(msgspec.Struct):\n    album: Album\n\n\n"
            "class GetPhoto(Contract[list[Shelf]], frozen=True):\n    id: str\n",
            "Shelf.album.pages: Photo is a plain class; use a msgspec Struct",
        ),
        (
            "class GetPhoto(Contract[Photo], frozen=True):\n    id: str\n",
            "GetPhoto's response: Photo is a plain class; use a msgspec Struct",
        ),
        (
            "class GetPhoto(Contract[None], frozen=True):\n    hook: Callable[[], int]\n",
            "GetPhoto.hook: Callable[[], int]: type <class 'collections.abc.Callable'> "
            "is not supported",
        ),
    ],
)
def test_a_contract_that_cannot_cross_names_the_field_its_type_and_why(
    mini: Sample, declared: str, why: str
) -> None:
    mini.edit(
        USERS_KERNEL, "import msgspec", "from collections.abc import Callable\n\nimport msgspec"
    )
    mini.write(
        USERS_KERNEL,
        (mini.root / USERS_KERNEL).read_text() + "\n\nclass Photo:\n    pass\n\n\n" + declared,
    )
    contracts = _probe(mini, "users")["users"].contracts
    assert contracts["GetPhoto"].wire_error == why
    assert contracts["GetUser"].wire_error is None


def test_string_annotations_are_resolved(mini: Sample) -> None:
    """A kernel under ``from __future__ import annotations`` has its types resolved too."""
    mini.edit(
        USERS_KERNEL, "import msgspec", "from __future__ import annotations\n\nimport msgspec"
    )
    mini.edit(USERS_KERNEL, "    name: str\n", "    name: str\n    friends: list[User] = []\n")
    user = _probe(mini, "users")["users"].structs["User"]
    assert [(f.name, f.type, f.required) for f in user.fields] == [
        ("id", "str", True),
        ("name", "str", True),
        ("friends", "list[User]", False),
    ]
