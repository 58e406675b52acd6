"""Handlers registered by a decorator factory or as methods of a class: seen by
``check`` (E202/E203 stay right) and wired by the runtime, from source and served."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Sample
from tests.servers import serve, start

REGISTRY = '''
from nanobuild.runtime import handler


def endpoint(name: str):
    """A decorator factory, as web frameworks have them: @endpoint("users")."""

    def register(fn):
        fn.endpoint = name
        return handler(fn)

    return register
'''

HANDLERS = '''
from nanobuild.runtime import NotFound, handler, on_startup

from .kernel import GetUser, ListUsers, User
from .registry import endpoint

USERS = {"u1": User(id="u1", name="Ada")}


@endpoint("users")
async def get_user(req: GetUser) -> User:
    if req.id not in USERS:
        raise NotFound(f"no user {req.id}")
    return USERS[req.id]


class Listing:
    """Its methods are handlers and hooks of one instance, made at start-up."""

    def __init__(self) -> None:
        self.users: list[User] = []

    @on_startup
    def load(self) -> None:
        self.users = [*USERS.values(), User(id="u2", name="Grace")]

    @handler
    def list_users(self, req: ListUsers) -> list[User]:
        return self.users
'''

LIBRARY = '''
import msgspec

from nanobuild.runtime import handler


class Quantity(msgspec.Struct, frozen=True):
    amount: int
    unit: str = "piece"


def contract(fn):
    """A plain decorator of a library's that registers what it wraps."""
    return handler(fn)
'''

ORDERS = """
import units
from nanobuild.runtime import call
from users.kernel import GetUser

from . import kernel


@units.contract
async def place_order(req: kernel.PlaceOrder) -> "kernel.Order":
    user = await call(GetUser(id=req.user_id))
    return kernel.Order(user_name=user.name, quantity=req.quantity)
"""


def forms(mini: Sample) -> Sample:
    mini.write("services/users/users/registry.py", REGISTRY)
    mini.write("services/users/users/handlers.py", HANDLERS)
    mini.write("libs/units/units/__init__.py", LIBRARY)
    mini.write("services/orders/orders/handlers.py", ORDERS)
    return mini


def test_factory_and_class_handlers_pass_check(mini: Sample) -> None:
    assert forms(mini).check() == []


def test_a_contract_left_without_its_factory_handler_is_still_e202(mini: Sample) -> None:
    forms(mini).edit("services/users/users/handlers.py", '@endpoint("users")\n', "")
    problem = mini.only("E202")
    assert problem.message == "contract GetUser of users has no handler"


def test_a_second_handler_by_a_factory_is_e203(mini: Sample) -> None:
    forms(mini)
    handlers = mini.root / "services/users/users/handlers.py"
    handlers.write_text(
        handlers.read_text()
        + '\n\n@endpoint("again")\nasync def get_user_again(req: GetUser) -> User:\n'
        + "    return USERS[req.id]\n"
    )
    problem = mini.only("E203")
    assert problem.message.startswith("contract GetUser has a second handler get_user_again")


def test_a_method_and_a_function_for_one_contract_is_e203(mini: Sample) -> None:
    forms(mini)
    handlers = mini.root / "services/users/users/handlers.py"
    handlers.write_text(
        handlers.read_text()
        + "\n\n@handler\ndef list_users(req: ListUsers) -> list[User]:\n    return []\n"
    )
    problem = mini.only("E203")
    assert problem.message.startswith(
        "contract ListUsers has a second handler list_users; the first is Listing.list_users at "
    )


def test_a_method_handlers_annotations_are_checked_past_self(mini: Sample) -> None:
    forms(mini).edit(
        "services/users/users/handlers.py",
        "def list_users(self, req: ListUsers) -> list[User]:",
        "def list_users(self, req: ListUsers) -> User:",
    )
    problem = mini.only("E204")
    assert problem.message == (
        "handler Listing.list_users returns User, but ListUsers answers list[User]"
    )


def test_a_library_decorator_is_seen_only_where_it_calls_handler(mini: Sample) -> None:
    forms(mini).edit("libs/units/units/__init__.py", "    return handler(fn)\n", "    return fn\n")
    problem = mini.only("E202")
    assert problem.message == "contract PlaceOrder of orders has no handler"


def test_factory_and_class_handlers_are_wired_and_served(mini: Sample, tmp_path: Path) -> None:
    secret = "s3-is9P8j6P_TDAzJAcXBBlLA"
    server = start(serve(forms(mini).root), tmp_path / "serve.log", NANO_SECRET=secret)
    try:
        assert server.call("users", "GetUser", {"id": "u1"}).json() == {"id": "u1", "name": "Ada"}
        # the class's start-up hook and its handler share its one instance
        listed = server.call("users", "ListUsers", {}, headers={"nano-secret": secret})
        assert [u["name"] for u in listed.json()] == ["Ada", "Grace"]
        order = server.call("orders", "PlaceOrder", {"user_id": "u1", "quantity": {"amount": 2}})
        assert order.json() == {"user_name": "Ada", "quantity": {"amount": 2, "unit": "piece"}}
    finally:
        assert server.stop() == 0
