"""Inputs that mislead: each is refused by ``check`` with its code and place, or read
as the user meant it, and the runtime refuses what ``check`` refuses, in its words."""

from __future__ import annotations

import functools
import unicodedata

import pytest

from nanobuild import lock
from nanobuild.checks.declared import runtime_modules
from nanobuild.errors import PackError, WorkspaceError
from nanobuild.runtime import contracts
from nanobuild.runtime.testing import Workspace as TestWorkspace
from nanobuild.workspace import host_problem
from tests.conftest import Sample

USERS_HANDLERS = "services/users/users/handlers.py"
USERS_KERNEL = "services/users/users/kernel.py"
DEEP = "deep = " + "[" * 5000 + "]" * 5000 + "\n"


def load_problems(mini: Sample) -> list[tuple[str, int | None, str]]:
    with pytest.raises(WorkspaceError) as caught:
        mini.load()
    return [(d.code, d.line, d.message) for d in caught.value.diagnostics]


# -- nano.toml and nano.lock, as files


def test_a_byte_order_mark_is_read_as_nothing_by_every_reader(mini: Sample) -> None:
    for name in ("nano.toml", "nano.lock"):
        path = mini.root / name
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    ws = mini.load()
    assert ws.name == "mini" and ws.lines["services.users"] == 5  # lines as written
    made = lock.read(ws)
    assert made is not None and made.python
    assert TestWorkspace.read(mini.root / "nano.toml").name == "mini"  # the runtime's reader
    assert mini.check() == []


def test_a_deeply_nested_nano_toml_is_e001_naming_it(mini: Sample) -> None:
    with (mini.root / "nano.toml").open("a") as out:
        out.write(DEEP)
    [(code, _, message)] = load_problems(mini)
    assert code == "E001"
    assert "nano.toml nests arrays or tables too deeply" in message


def test_a_deeply_nested_nano_lock_is_e504_in_check_and_bundle_alike(mini: Sample) -> None:
    with (mini.root / "nano.lock").open("a") as out:
        out.write(DEEP)
    with pytest.raises(PackError, match="E504"):
        lock.read(mini.load())
    d = mini.only("E504")
    assert (d.path, d.message) == (
        "nano.lock",
        "nano.lock cannot be used: it nests arrays or tables too deeply to be read",
    )


def test_bytes_that_are_not_utf8_are_e001_at_their_line(mini: Sample) -> None:
    (mini.root / "nano.toml").write_bytes(b'[workspace]\nname = "mini"\n# caf\xe9\n')
    assert load_problems(mini) == [
        ("E001", 3, "nano.toml is not UTF-8 text: invalid continuation byte (byte 32)")
    ]


def test_utf16_is_named_as_such(mini: Sample) -> None:
    path = mini.root / "nano.toml"
    path.write_bytes(path.read_text().encode("utf-16"))
    [(code, _, message)] = load_problems(mini)
    assert code == "E001" and "is UTF-16 text; TOML files are UTF-8" in message


# -- names


NFD = unicodedata.normalize("NFD", "caf\u00e9")


@pytest.mark.parametrize("name", [NFD, "caf\u00e9"])
def test_a_service_name_that_is_not_ascii_is_e006(mini: Sample, name: str) -> None:
    mini.write(f"services/{name}/{name}/kernel.py", "")
    with (mini.root / "nano.toml").open("a") as out:
        out.write(f'\n[services."{name}"]\npath = "services/{name}"\n')
    [(code, line, message)] = load_problems(mini)
    assert (code, line) == ("E006", 19)
    assert f"service name {name!r} is not an ASCII identifier" in message


def test_packages_and_names_in_lists_that_are_not_ascii_are_e006(mini: Sample) -> None:
    mini.edit("nano.toml", 'depends = ["users"]', f'depends = ["{NFD}"]\npackage = "{NFD}"')
    found = load_problems(mini)
    assert sorted((code, line) for code, line, _ in found) == [("E006", 11), ("E006", 12)]
    assert all("is not an ASCII identifier" in message for _, _, message in found)


def test_a_keyword_is_named_as_one(mini: Sample) -> None:
    mini.edit("nano.toml", "[services.users]", "[services.class]")
    [(code, _, message)] = load_problems(mini)
    assert (code, message) == ("E006", "service name 'class' is a Python keyword")


# -- hosts and requirements


@pytest.mark.parametrize(
    ("host", "why"),
    [
        ("localhost:8000", "is not a host: give the address or name alone"),
        ("http://0.0.0.0", "is not a host"),
        ("", "is empty"),
        ("my host", "is neither an IP address nor a host name"),
        ("-bad.example", "is neither an IP address nor a host name"),
    ],
)
def test_a_host_of_the_wrong_form_is_e023(mini: Sample, host: str, why: str) -> None:
    mini.edit("nano.toml", 'name = "mini"', f'name = "mini"\n[ingress]\nhost = "{host}"')
    [(code, line, message)] = load_problems(mini)
    assert (code, line) == ("E023", 5)
    assert message.startswith(f"`ingress.host` = {host!r} {why}")


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "0.0.0.0", "::", "::1", "localhost", "api.example.com.", "my_db"]
)
def test_addresses_and_host_names_pass_without_being_resolved(host: str) -> None:
    assert host_problem(host) == ""


def test_a_requirement_naming_a_url_is_e024(mini: Sample) -> None:
    mini.edit("nano.toml", '"msgspec>=0.18"', '"msgspec @ https://example.com/msgspec.whl"')
    [(code, line, message)] = load_problems(mini)
    assert (code, line) == ("E024", 13)
    assert "names a URL, which nano.lock cannot pin" in message


# -- handlers


def test_a_handler_whose_name_is_bound_again_is_e218_naming_both_lines(mini: Sample) -> None:
    text = (mini.root / USERS_HANDLERS).read_text()
    (mini.root / USERS_HANDLERS).write_text(
        text + "\n\n@handler\nasync def get_user(req: ListUsers) -> list[User]:\n    return []\n"
    )
    found = mini.check()
    assert [d.code for d in found] == ["E203", "E218"]  # list_users answers ListUsers too
    d = found[1]
    assert (d.path, d.line) == (USERS_HANDLERS, 21)
    assert "E218" in f"{d.code} {d.message}"
    assert d.message == (
        "handler get_user at line 9 is replaced by what line 21 binds to get_user: "
        "the module keeps only the last"
    )


def test_a_handler_rebound_by_an_assignment_is_e218(mini: Sample) -> None:
    text = (mini.root / USERS_HANDLERS).read_text()
    mini.write(USERS_HANDLERS, text + "\n\nlist_users = None\n")
    d = mini.only("E218")
    assert d.line == 20 and "handler list_users at line 16" in d.message


@pytest.mark.parametrize(
    ("above", "wrapper"),
    [
        ("@handler\n@functools.lru_cache\n", "functools.lru_cache"),
        ("@functools.lru_cache(maxsize=8)\n@handler\n", "functools.lru_cache"),
        ("@handler\n@functools.cache\n", "functools.cache"),
    ],
)
def test_a_handler_wrapped_by_a_cache_is_e219(mini: Sample, above: str, wrapper: str) -> None:
    mini.edit(USERS_HANDLERS, "@handler\ndef list_users", above + "def list_users")
    mini.edit(USERS_HANDLERS, "from nanobuild", "import functools\nfrom nanobuild")
    d = mini.only("E219")
    assert (d.path, d.line) == (USERS_HANDLERS, 18)
    assert d.message == (
        f"@handler marks a function (def or async def), but @{wrapper} makes list_users "
        "something else, off which the runtime cannot read its request"
    )


@pytest.mark.parametrize(
    ("code", "line", "said"),
    [
        ("@handler\nclass Users:\n    pass\n", 21, "not the class Users"),
        ("x = handler(lambda req: None)\n", 20, "not a lambda"),
        ("y = handler(list_users)\n", 20, "handler(list_users) is called outside any function"),
        ("@handler()\ndef z(req: GetUser) -> User:\n    return User(id='', name='')\n", 20, ""),
    ],
)
def test_handler_on_what_is_not_a_function_is_e219(
    mini: Sample, code: str, line: int, said: str
) -> None:
    text = (mini.root / USERS_HANDLERS).read_text()
    mini.write(USERS_HANDLERS, text + "\n\n" + code)
    found = mini.check()
    assert [(d.code, d.line) for d in found if d.code == "E219"] == [("E219", line)]
    assert said in found[-1].message or said in found[0].message


def test_static_and_class_methods_above_the_mark_are_fine(mini: Sample) -> None:
    mini.edit(
        USERS_HANDLERS,
        "@handler\ndef list_users",
        "class Lists:\n    @staticmethod\n    @handler\n    def list_users",
    )
    mini.edit(
        USERS_HANDLERS, "    return list(USERS.values())", "        return list(USERS.values())"
    )
    assert mini.check() == []
    mini.edit(
        USERS_HANDLERS, "    @staticmethod\n    @handler\n", "    @handler\n    @staticmethod\n"
    )
    assert mini.only("E219").message.endswith(
        "@staticmethod makes Lists.list_users something else, off which the runtime cannot read its request"
    )


# -- the runtime's decorator refuses the same, in the same words


class Answer(contracts.Contract[int], frozen=True):
    n: int


def test_the_runtime_refuses_a_class_a_lambda_and_a_cache() -> None:
    with pytest.raises(
        TypeError, match=r"^@handler marks a function \(def or async def\), not the class Answer$"
    ):
        contracts.handler(Answer)
    with pytest.raises(TypeError, match="not a lambda: it has no name to be wired by"):
        contracts.handler(lambda req: None)

    def double(req: Answer) -> int:
        return req.n * 2

    with pytest.raises(TypeError, match="off which the runtime cannot read its request"):
        contracts.handler(functools.lru_cache(double))
    cached = functools.lru_cache(contracts.handler(double))  # the mark is copied over
    with pytest.raises(TypeError, match="off which the runtime cannot read its request"):
        contracts.handler_types(cached)
    assert contracts.handler(double) is double and contracts.handler_types(double) == (Answer, int)


# -- contracts and kernels


def test_a_contract_named_like_a_builtin_is_e220(mini: Sample) -> None:
    for rel in (USERS_KERNEL, USERS_HANDLERS):
        mini.edit(rel, "ListUsers", "list")
    found = [d for d in mini.check() if d.code == "E220"]
    assert [(d.path, d.line) for d in found] == [(USERS_KERNEL, 15)]
    assert (
        "E220 contract list of users is named like the builtin list" in f"E220 {found[0].message}"
    )


def test_a_contract_name_that_is_not_ascii_is_e220(mini: Sample) -> None:
    for rel in (USERS_KERNEL, USERS_HANDLERS):
        path = mini.root / rel
        path.write_text(path.read_text().replace("ListUsers", "ListUs\u00e9rs"))
    d = mini.only("E220")
    assert d.line == 15
    assert d.message.startswith("contract ListUs\u00e9rs of users is not an ASCII name")


def test_a_kernel_that_is_a_folder_is_named_so(mini: Sample) -> None:
    (mini.root / USERS_KERNEL).unlink()
    (mini.root / USERS_KERNEL).mkdir()
    d = mini.only("E108")
    assert d.message == (
        "service users has no kernel: services/users/users/kernel.py is a folder, not a module file"
    )


# -- packages the runtime needs


def test_the_runtime_closure_comes_from_the_installed_metadata() -> None:
    modules = runtime_modules()
    assert {"msgspec", "starlette", "uvicorn", "h11", "anyio", "click", "idna"} <= set(modules)
    assert modules["h11"].startswith("h11 ")


@pytest.mark.parametrize("lock_file", [True, False])
def test_a_package_named_like_a_runtime_dependency_is_e304(mini: Sample, lock_file: bool) -> None:
    if not lock_file:
        (mini.root / "nano.lock").unlink()  # then the runtime's closure, from this Python's
    mini.edit("nano.toml", 'path = "services/users"', 'path = "services/users"\npackage = "h11"')
    (mini.root / "services/users/users").rename(mini.root / "services/users/h11")
    mini.edit("services/orders/orders/handlers.py", "from users.kernel", "from h11.kernel")
    mini.edit(
        "nano.toml",
        '[libraries.units]\npath = "libs/units"',
        '[libraries.units]\npath = "libs/units"\npackage = "anyio"',
    )
    (mini.root / "libs/units/units").rename(mini.root / "libs/units/anyio")
    mini.edit("services/orders/orders/kernel.py", "from units import", "from anyio import")
    found = [d for d in mini.check() if d.code == "E304"]
    assert [(d.line, d.message.split(" would ")[0]) for d in found] == [
        (7, "service users's package h11"),
        (19, "library units's package anyio"),
    ]
    assert "E304" in found[0].code and "the module h11 of h11 " in found[0].message


def test_a_package_named_test_shadows_the_standard_librarys(mini: Sample) -> None:
    mini.write("libs/t/test/__init__.py", "")
    with (mini.root / "nano.toml").open("a") as out:
        out.write('\n[libraries.test]\npath = "libs/t"\n')
    d = mini.only("E304")
    assert (
        d.message == "library test's package test would shadow the standard library's test package"
    )
