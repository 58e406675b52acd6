"""``nanobuild check`` proves call sites: every construction of a contract or of a
kernel's Struct against its class, and every attribute read off ``await call(X(...))``
against X's response type. Each problem is made in a copy of a clean workspace."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, Sample

USERS_KERNEL = "services/users/users/kernel.py"
USERS_HANDLERS = "services/users/users/handlers.py"
ORDERS_KERNEL = "services/orders/orders/kernel.py"
ORDERS_HANDLERS = "services/orders/orders/handlers.py"
CALL = "call(GetUser(id=req.user_id))"  # orders' handler, line 9


# -- the story: a field renamed in the example workspace


def _boutique(tmp_path: Path) -> Path:
    root = tmp_path / "boutique"
    root.mkdir()
    shutil.copy2(REPO / "nano.toml", root / "nano.toml")
    for folder in ("services", "libs", "frontend"):
        shutil.copytree(REPO / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} not once in {path}"
    path.write_text(text.replace(old, new))


def test_a_field_renamed_in_the_catalog_is_caught_where_checkout_calls_it(
    tmp_path: Path,
) -> None:
    root = _boutique(tmp_path)
    catalog = root / "services/catalog/catalog"
    _replace(
        catalog / "kernel.py",
        '"""One product by id; NotFound if there is none."""\n\n    id: str',
        '"""One product by id; NotFound if there is none."""\n\n    product_id: str',
    )
    _replace(
        catalog / "handlers.py",
        "store.products().get(req.id)",
        "store.products().get(req.product_id)",
    )
    _replace(catalog / "handlers.py", "no product {req.id!r}", "no product {req.product_id!r}")
    # what checkout's call does at run time: the order would answer 500
    made = subprocess.run(
        [sys.executable, "-c", "from catalog.kernel import GetProduct; GetProduct(id='x')"],
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(catalog.parent), str(root / "libs/money")]),
        },
    )
    assert "TypeError: Unexpected keyword argument 'id'" in made.stderr
    done = subprocess.run(
        [sys.executable, "-m", "nanobuild", "check"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout.splitlines()[:2] == [
        "services/checkout/checkout/handlers.py:28: E212 contract GetProduct of catalog has no field id",
        "    hint: did you mean `product_id`?",
    ]
    assert "Traceback" not in done.stderr


# -- constructions


def test_a_keyword_the_contract_has_no_field_for(mini: Sample) -> None:
    mini.edit(
        USERS_KERNEL,
        "class GetUser(Contract[User], frozen=True):\n    id: str",
        "class GetUser(Contract[User], frozen=True):\n    user_id: str",
    )
    mini.edit(
        USERS_HANDLERS,
        'if req.id not in USERS:\n        raise NotFound(f"no user {req.id}")\n    return USERS[req.id]',
        "return USERS[req.user_id]",
    )
    d = mini.only("E212")
    assert (d.path, d.line) == (ORDERS_HANDLERS, 9)
    assert d.message == "contract GetUser of users has no field id"
    assert d.hint == "did you mean `user_id`?"


def test_a_misspelt_keyword_of_the_services_own_struct(mini: Sample) -> None:
    mini.edit(ORDERS_HANDLERS, "kernel.Order(user_name=", "kernel.Order(user_nmae=")
    d = mini.only("E212")
    assert (d.path, d.line) == (ORDERS_HANDLERS, 10)
    assert d.message == "struct Order of orders has no field user_nmae"
    assert d.hint == "did you mean `user_name`?"


def test_a_wire_name_given_instead_of_the_field(mini: Sample) -> None:
    mini.edit(
        USERS_KERNEL,
        "class GetUser(Contract[User], frozen=True):\n    id: str",
        "class GetUser(Contract[User], frozen=True, rename='camel'):\n    user_id: str",
    )
    mini.edit(
        USERS_HANDLERS,
        'if req.id not in USERS:\n        raise NotFound(f"no user {req.id}")\n    return USERS[req.id]',
        "return USERS[req.user_id]",
    )
    mini.edit(ORDERS_HANDLERS, CALL, "call(GetUser(userId=req.user_id))")
    d = mini.only("E212")
    assert d.hint == "`userId` is the wire name of `user_id`; in Python, write `user_id=`"


def test_a_required_field_left_out(mini: Sample) -> None:
    mini.edit(ORDERS_HANDLERS, CALL, "call(GetUser())")
    d = mini.only("E213")
    assert (d.path, d.line) == (ORDERS_HANDLERS, 9)
    assert (
        d.message == "contract GetUser of users needs field id (str), which this call does not give"
    )
    assert d.hint == "add id=..."


def test_required_fields_left_out_in_the_kernel_itself(mini: Sample) -> None:
    mini.edit(
        USERS_KERNEL,
        "class GetUser(",
        'def nobody() -> User:\n    return User(name="")\n\n\nclass GetUser(',
    )
    d = mini.only("E213")
    assert (d.path, d.line) == (USERS_KERNEL, 12)
    assert d.message == "struct User of users needs field id (str), which this call does not give"


def test_too_many_positional_arguments(mini: Sample) -> None:
    mini.edit(ORDERS_HANDLERS, CALL, 'call(GetUser(req.user_id, "again"))')
    d = mini.only("E214")
    assert (d.path, d.line) == (ORDERS_HANDLERS, 9)
    assert (
        d.message
        == "contract GetUser of users takes 1 positional argument (id), but this call gives 2"
    )


def test_keyword_only_fields_cannot_be_given_by_position(mini: Sample) -> None:
    mini.edit(
        USERS_KERNEL,
        "class GetUser(Contract[User], frozen=True):",
        "class GetUser(Contract[User], frozen=True, kw_only=True):",
    )
    mini.edit(ORDERS_HANDLERS, CALL, "call(GetUser(req.user_id))")
    found = mini.check()
    assert [d.code for d in found] == ["E213", "E214"]
    assert (
        found[1].message
        == "contract GetUser of users takes no positional arguments, but this call gives 1"
    )
    assert found[1].hint == "give id by keyword"


def test_a_field_given_by_position_and_by_keyword(mini: Sample) -> None:
    mini.edit(ORDERS_HANDLERS, CALL, 'call(GetUser("u1", id=req.user_id))')
    d = mini.only("E217")
    assert (
        d.message
        == "field id of contract GetUser of users is given twice, by position and by keyword"
    )


@pytest.mark.parametrize(
    ("annotation", "literal", "given"),
    [
        ("str", "7", "an int"),
        ("str", "None", "None"),
        ("int", "1.5", "a float"),
        ("int", "'7'", "a str"),
        ("float", "'1.5'", "a str"),
        ("bool", "1", "an int"),
        ("None | str", "-3", "an int"),
        ("list[str]", "{}", "a dict"),
        ("dict[str, int]", "[1]", "a list"),
        ("bytes", "f'{1}'", "a str"),
    ],
)
def test_a_literal_of_the_wrong_type(
    mini: Sample, annotation: str, literal: str, given: str
) -> None:
    mini.edit(
        USERS_KERNEL,
        "    name: str\n",
        f"    name: str\n    extra: {annotation} = None  # type: ignore\n",
    )
    mini.edit(
        USERS_HANDLERS, 'User(id="u1", name="Ada")', f'User(id="u1", name="Ada", extra={literal})'
    )
    d = mini.only("E215")
    assert (d.path, d.line) == (USERS_HANDLERS, 5)
    assert (
        d.message
        == f"field extra of struct User of users is {annotation}, but this call gives it {given}"
    )


def test_a_literal_by_position_is_judged_against_the_field_in_that_place(mini: Sample) -> None:
    """A subclass's fields follow its bases': ``Named("Ada", 3)`` gives ``id`` then ``name``."""
    mini.edit(
        USERS_KERNEL,
        "class GetUser(",
        "class Named(User, frozen=True):\n    rank: int = 0\n\n\nclass GetUser(",
    )
    mini.edit(
        USERS_HANDLERS,
        'USERS = {"u1": User(id="u1", name="Ada")}',
        'USERS = {"u1": User(id="u1", name="Ada")}\nNAMED = Named("u2", 3, "first")',
    )
    mini.edit(USERS_HANDLERS, "import GetUser,", "import GetUser, Named,")
    found = mini.check()
    assert [(d.code, d.line) for d in found] == [("E215", 6), ("E215", 6)]
    assert [d.message for d in found] == [
        "field name of struct Named of users is str, but this call gives it an int",
        "field rank of struct Named of users is int, but this call gives it a str",
    ]


# -- what is read off a response


def test_an_attribute_the_response_does_not_have(mini: Sample) -> None:
    mini.edit(ORDERS_HANDLERS, "user_name=user.name", "user_name=user.nmae")
    d = mini.only("E216")
    assert (d.path, d.line) == (ORDERS_HANDLERS, 10)
    assert d.message == "contract GetUser of users answers User, which has no attribute nmae"
    assert d.hint == "did you mean `name`?"


def test_an_attribute_read_straight_off_the_await(mini: Sample) -> None:
    mini.edit(
        ORDERS_HANDLERS,
        "user_name=user.name",
        "user_name=(await call(GetUser(id=req.user_id))).nmae",
    )
    d = mini.only("E216")
    assert d.line == 10 and "has no attribute nmae" in d.message


# -- what stays quiet


VALID_KERNEL = """

UserId = NewType("UserId", str)
T = TypeVar("T")


class Account(User, frozen=True, kw_only=True):
    kind: Literal["a", "b"] = "a"
    note: str | None = None
    extra: Any = None
    rank: int | str = 0
    score: float = 0.0
    tags: list[str] = []
    meta: dict[str, int] = {}
    owner: UserId | None = None
    when: datetime.date | None = None

    def initials(self) -> str:
        return self.name[:1]


class Page(msgspec.Struct, Generic[T], frozen=True):
    items: list[T]
    cursor: T | None = None
"""

VALID_CALLS = """
import datetime
from typing import Any

from nanobuild.runtime import call
from users.kernel import Account, GetUser, ListUsers, Page, User

ARGS: list[Any] = []
KW: dict[str, Any] = {}


async def valid() -> object:
    Account("u1", "Ada")
    Account(id="u1", name="Ada", kind="z", note=None, extra=[1], rank="x", score=1)
    Account("u1", "Ada", tags=[], meta={}, owner="o", when=datetime.date.today(), rank=True)
    Account(*ARGS)
    Account(**KW)
    Account("u1", **KW)
    User(*ARGS, name="Ada")
    Page(items=[1], cursor="c")
    user = await call(GetUser(id="u1"))
    users = await call(ListUsers())
    other = await call(GetUser(id="u2"))
    other = Account("x", "y")
    return user.name, user.id, user.__class__, users.copy(), other.kind


async def shadowed() -> object:
    user = await call(GetUser(id="u1"))

    def inner(user: Account) -> str:
        return user.kind + user.initials()

    return inner(Account(user.id, user.name))
"""


def test_valid_calls_raise_nothing(mini: Sample) -> None:
    """Defaults, keyword-only fields, positions, ``*args``, ``**spread``, unions, ``Any``,
    ``Literal``, NewType and generics, a name bound twice, a list response."""
    mini.edit(
        USERS_KERNEL,
        "import msgspec",
        "import datetime\nfrom typing import Any, Generic, Literal, NewType, TypeVar\n\nimport msgspec",
    )
    (mini.root / USERS_KERNEL).write_text((mini.root / USERS_KERNEL).read_text() + VALID_KERNEL)
    mini.write("services/orders/orders/valid.py", VALID_CALLS)
    assert mini.check() == []


def test_a_method_of_the_response_is_an_attribute(mini: Sample) -> None:
    mini.edit(
        USERS_KERNEL,
        "    name: str\n",
        "    name: str\n\n    def initials(self) -> str:\n        return self.name[:1]\n",
    )
    mini.edit(ORDERS_HANDLERS, "user_name=user.name", "user_name=user.initials()")
    assert mini.check() == []


@pytest.mark.parametrize(
    ("declared", "body"),
    [
        ("class User(msgspec.Struct, frozen=True, dict=True):", ""),
        (
            "class User(msgspec.Struct, frozen=True):",
            "\n    def __getattr__(self, name: str) -> str:\n        return name\n",
        ),
    ],
)
def test_a_response_that_takes_any_attribute_is_not_judged(
    mini: Sample, declared: str, body: str
) -> None:
    mini.edit(USERS_KERNEL, "class User(msgspec.Struct, frozen=True):", declared)
    mini.edit(USERS_KERNEL, "    name: str\n", "    name: str\n" + body)
    mini.edit(ORDERS_HANDLERS, "user_name=user.name", "user_name=user.nickname")
    assert mini.check() == []
