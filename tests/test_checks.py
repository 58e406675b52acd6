"""``nanobuild check``: each kind of problem, made in a copy of a clean workspace,
is caught with its code and place."""

from __future__ import annotations

from tests.conftest import Sample

USERS_KERNEL = "services/users/users/kernel.py"
USERS_HANDLERS = "services/users/users/handlers.py"
ORDERS_KERNEL = "services/orders/orders/kernel.py"
ORDERS_HANDLERS = "services/orders/orders/handlers.py"


def test_the_clean_sample_passes(mini: Sample) -> None:
    assert mini.check() == []


# -- structure, dependencies, imports (E1xx)


def test_dependency_not_in_the_workspace(mini: Sample) -> None:
    mini.edit("nano.toml", 'depends = ["users"]', 'depends = ["users", "user"]')
    d = mini.only("E101")
    assert (d.path, d.line) == ("nano.toml", 11)
    assert "orders depends on user, which is not a service" in d.message
    assert d.hint == "did you mean `users`?"


def test_cycle_is_printed_as_a_path(mini: Sample) -> None:
    mini.edit("nano.toml", 'public = ["GetUser"]', 'public = ["GetUser"]\ndepends = ["orders"]')
    found = mini.check()
    assert [d.message for d in found if d.code == "E102"] == [
        "dependency cycle: orders -> users -> orders"
    ]


def test_self_dependency_is_a_cycle(mini: Sample) -> None:
    mini.edit("nano.toml", 'public = ["GetUser"]', 'public = ["GetUser"]\ndepends = ["users"]')
    assert "dependency cycle: users -> users" in [d.message for d in mini.check()]


def test_undeclared_cross_service_import(mini: Sample) -> None:
    mini.edit("nano.toml", 'depends = ["users"]', "depends = []")
    d = mini.only("E103")
    assert (d.path, d.line) == (ORDERS_HANDLERS, 2)
    assert "orders imports users.kernel, but users is not in services.orders.depends" in d.message


def test_import_of_another_services_internals(mini: Sample) -> None:
    mini.write("services/users/users/store.py", "DB = {}\n")
    mini.edit(
        ORDERS_HANDLERS, "from . import kernel", "from . import kernel\nfrom users.store import DB"
    )
    d = mini.only("E104")
    assert (d.path, d.line) == (ORDERS_HANDLERS, 5)
    assert "orders imports users.store.DB, which is not the kernel of users" in d.message


def test_import_of_a_service_package_itself(mini: Sample) -> None:
    mini.edit(ORDERS_HANDLERS, "from . import kernel", "from . import kernel\nimport users")
    assert mini.only("E104").line == 5


def test_undeclared_library_import(mini: Sample) -> None:
    mini.edit("nano.toml", 'libraries = ["units"]', "libraries = []")
    d = mini.only("E105")
    assert (d.path, d.line) == (ORDERS_KERNEL, 4)


def test_library_importing_a_service(mini: Sample) -> None:
    mini.write("libs/units/units/bad.py", "from users.kernel import User\n")
    d = mini.only("E106")
    assert (d.path, d.line) == ("libs/units/units/bad.py", 1)


def test_unknown_library(mini: Sample) -> None:
    mini.edit("nano.toml", 'libraries = ["units"]', 'libraries = ["units", "unit"]')
    d = mini.only("E107")
    assert d.hint == "did you mean `units`?"


def test_missing_package_and_kernel(mini: Sample) -> None:
    (mini.root / USERS_KERNEL).unlink()
    mini.edit("nano.toml", "[libraries.units]", '[libraries.units]\npackage = "unitz"')
    found = mini.check()
    assert [d.message for d in found if d.code == "E108"] == [
        "service users has no kernel: services/users/users/kernel.py does not exist",
        "library units has no package: libs/units/unitz/ does not exist",
    ]


def test_syntax_error_in_service_code(mini: Sample) -> None:
    mini.write("services/users/users/broken.py", "def f(:\n    pass\n")
    d = mini.only("E109")
    assert (d.path, d.line) == ("services/users/users/broken.py", 1)


def test_service_code_importing_the_build_side(mini: Sample) -> None:
    mini.edit(
        USERS_HANDLERS,
        "from nanobuild.runtime",
        "import nanobuild.workspace\nfrom nanobuild.runtime",
    )
    d = mini.only("E110")
    assert "nanobuild.workspace" in d.message


# -- contracts, kernels, handlers (E2xx)


def test_reference_to_a_contract_the_kernel_lacks(mini: Sample) -> None:
    mini.edit(ORDERS_HANDLERS, "import GetUser", "import GetUsr")
    mini.edit(ORDERS_HANDLERS, "call(GetUser(", "call(GetUsr(")
    d = mini.only("E201")
    assert (d.path, d.line) == (ORDERS_HANDLERS, 2)
    assert "orders uses users.kernel.GetUsr, which the kernel of users does not define" in d.message
    assert d.hint == "did you mean `GetUser`?"


def test_reference_through_a_module_alias(mini: Sample) -> None:
    mini.edit(ORDERS_HANDLERS, "from users.kernel import GetUser", "import users.kernel as uk")
    mini.edit(ORDERS_HANDLERS, "call(GetUser(", "call(uk.DeleteUser(")
    d = mini.only("E201")
    assert d.line == 9 and "users.kernel.DeleteUser" in d.message


def test_contract_without_a_handler(mini: Sample) -> None:
    mini.edit(USERS_HANDLERS, "@handler\ndef list_users", "def list_users")
    d = mini.only("E202")
    assert (d.path, d.line) == (USERS_KERNEL, 15)
    assert "contract ListUsers of users has no handler" in d.message


def test_contract_with_two_handlers(mini: Sample) -> None:
    mini.write(
        "services/users/users/more.py",
        "from nanobuild.runtime import handler\nfrom .kernel import ListUsers, User\n\n\n"
        "@handler\ndef again(req: ListUsers) -> list[User]:\n    return []\n",
    )
    d = mini.only("E203")
    assert (d.path, d.line) == ("services/users/users/more.py", 6)
    assert f"the first is list_users at {USERS_HANDLERS}:16" in d.message


def test_handler_with_the_wrong_return_type(mini: Sample) -> None:
    mini.edit(
        USERS_HANDLERS,
        "def list_users(req: ListUsers) -> list[User]",
        "def list_users(req: ListUsers) -> User",
    )
    d = mini.only("E204")
    assert (d.path, d.line) == (USERS_HANDLERS, 16)
    assert "handler list_users returns User, but ListUsers answers list[User]" in d.message


def test_handler_without_annotations(mini: Sample) -> None:
    mini.edit(USERS_HANDLERS, "def list_users(req: ListUsers) -> list[User]", "def list_users(req)")
    found = mini.check()
    # the handler's contract cannot be known, so ListUsers also counts as unhandled
    assert [d.code for d in found] == ["E204", "E202"]
    assert "handler list_users does not annotate its request parameter" in found[0].message


def test_equivalent_annotations_are_accepted(mini: Sample) -> None:
    mini.edit(USERS_HANDLERS, "from .kernel import", "from typing import List\nfrom .kernel import")
    mini.edit(USERS_HANDLERS, "-> list[User]", '-> "List[User]"')
    assert mini.check() == []


def test_public_name_that_is_not_a_contract(mini: Sample) -> None:
    mini.edit("nano.toml", 'public = ["GetUser"]', 'public = ["GetUser", "User", "GetUsers"]')
    found = mini.check()
    assert [d.code for d in found] == ["E205", "E205"]
    assert found[0].line == 7
    assert {d.message for d in found} == {
        "services.users.public names User, which is not a contract of users",
        "services.users.public names GetUsers, which is not a contract of users",
    }


def test_field_type_that_cannot_cross_the_network(mini: Sample) -> None:
    mini.edit(USERS_KERNEL, "class User(", "class Photo:\n    pass\n\n\nclass User(")
    mini.edit(USERS_KERNEL, "    name: str\n", "    name: str\n    photo: Photo | None = None\n")
    found = mini.check()
    assert {d.code for d in found} == {"E206"}
    # the field is named, with its type and why, for the request and the response alike
    why = "User.photo: Photo is a plain class; use a msgspec Struct"
    assert {d.message for d in found} == {
        f"contract GetUser cannot cross the network: {why}",
        f"contract ListUsers cannot cross the network: {why}",
    }


def test_kernel_importing_a_third_party_package(mini: Sample) -> None:
    mini.edit(USERS_KERNEL, "import msgspec", "import msgspec\nimport requests")
    d = mini.only("E207")
    assert (d.path, d.line) == (USERS_KERNEL, 2)
    assert "imports requests, which is not in the standard library" in d.message


def test_kernel_importing_its_own_internals(mini: Sample) -> None:
    mini.write("services/users/users/models.py", "X = 1\n")
    mini.edit(USERS_KERNEL, "import msgspec", "import msgspec\nfrom .models import X")
    assert "its own service's internals" in mini.only("E207").message


def test_kernel_importing_a_library_with_requirements(mini: Sample) -> None:
    mini.edit("nano.toml", 'path = "libs/units"', 'path = "libs/units"\nrequires = ["pint"]')
    assert "library units, which needs third-party packages (pint)" in mini.only("E207").message


def test_kernel_that_fails_to_import_is_shown_not_raised(mini: Sample) -> None:
    mini.edit(USERS_KERNEL, "class User(", "RATE = 1 / 0\n\n\nclass User(")
    d = mini.only("E208")
    assert (d.path, d.line) == (USERS_KERNEL, 6)
    assert "ZeroDivisionError: division by zero" in d.message


def test_kernel_that_exits_at_import(mini: Sample) -> None:
    mini.edit(
        USERS_KERNEL, "import msgspec", "import sys\nimport msgspec\nprint('hi')\nsys.exit(3)"
    )
    assert "SystemExit" in mini.only("E208").message


def test_handler_for_another_services_contract(mini: Sample) -> None:
    mini.write(
        "services/orders/orders/steal.py",
        "from nanobuild.runtime import handler\nfrom users.kernel import GetUser, User\n\n\n"
        "@handler\nasync def mine(req: GetUser) -> User:\n    raise NotImplementedError\n",
    )
    d = mini.only("E209")
    assert "answers users.kernel.GetUser, a contract of users" in d.message


def test_contract_without_response_type(mini: Sample) -> None:
    mini.edit(USERS_KERNEL, "class ListUsers(Contract[list[User]]", "class ListUsers(Contract")
    d = mini.only("E210")
    assert (d.path, d.line) == (USERS_KERNEL, 15)


# -- fusion (E3xx)


def test_two_services_with_the_same_package(mini: Sample) -> None:
    mini.edit("nano.toml", "[libraries.units]", '[libraries.units]\npackage = "users"')
    mini.edit("nano.toml", 'libraries = ["units"]', "libraries = []")
    mini.edit(ORDERS_KERNEL, "from units import Quantity\n", "")
    mini.edit(ORDERS_KERNEL, "quantity: Quantity", "quantity: int")
    mini.edit(ORDERS_KERNEL, "quantity: Quantity", "quantity: int")
    found = mini.check()
    assert [d.message for d in found if d.code == "E301"] == [
        "library units and service users both claim the module name users"
    ]


def test_requirements_that_cannot_be_met_together(mini: Sample) -> None:
    mini.edit(
        "nano.toml", 'public = ["GetUser"]', 'public = ["GetUser"]\nrequires = ["pydantic<2"]'
    )
    mini.edit("nano.toml", '"msgspec>=0.18"', '"msgspec>=0.18", "pydantic>=2.5"')
    d = mini.only("E302")
    assert d.line == 14
    assert (
        "no version of pydantic satisfies service users (pydantic<2) and service orders (pydantic>=2.5)"
        in d.message
    )


def test_requirement_clashing_with_the_runtime(mini: Sample) -> None:
    mini.edit("nano.toml", '"msgspec>=0.18"', '"msgspec<0.10"')
    assert "the nanobuild runtime (msgspec>=0.18)" in mini.only("E302").message


def test_package_shadowing_the_standard_library(mini: Sample) -> None:
    (mini.root / "services/users/users").rename(mini.root / "services/users/email")
    mini.edit("nano.toml", 'path = "services/users"', 'path = "services/users"\npackage = "email"')
    for rel in (ORDERS_HANDLERS, ORDERS_KERNEL):
        mini.edit(rel, "", "")
    mini.edit(ORDERS_HANDLERS, "from users.kernel", "from email.kernel")
    assert "shadow the standard library" in mini.only("E304").message


# -- reporting


def test_every_problem_is_reported_in_one_run(mini: Sample) -> None:
    mini.edit("nano.toml", 'depends = ["users"]', 'depends = ["users", "ghost"]')
    mini.edit(USERS_HANDLERS, "@handler\ndef list_users", "def list_users")
    mini.edit(ORDERS_HANDLERS, "import GetUser", "import GetUsr")
    mini.edit(ORDERS_HANDLERS, "call(GetUser(", "call(GetUsr(")
    assert [d.code for d in mini.check()] == ["E101", "E201", "E202"]


def test_a_kernel_writing_to_the_stdout_descriptor_does_not_corrupt_the_report(
    mini: Sample,
) -> None:
    mini.edit(USERS_KERNEL, "import msgspec", "import os\nimport msgspec\nos.write(1, b'noise')")
    assert mini.check() == []
