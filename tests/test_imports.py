"""The import rules hold however code is reached: dynamic imports, attribute chains
through a package, ``sys.path``, file loads, and links in a package folder.

Each bypass is made in a copy of the clean sample and caught with its code, file
and line, in process and through the real CLI (which must not print a traceback).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import NamedTuple

import pytest

from nanobuild import checks, pack
from nanobuild.errors import PackError
from nanobuild.source import walk
from tests.conftest import REPO, Sample
from tests.servers import start
from tests.test_cli import nanobuild

ORDERS_REACH = "services/orders/orders/reach.py"
USERS_REACH = "services/users/users/reach.py"
UNITS_REACH = "libs/units/units/reach.py"
USERS_PACKAGE = "services/users/users"


class Case(NamedTuple):
    """A module written into the sample, and the one diagnostic it must bring."""

    path: str
    source: str
    code: str
    line: int
    message: str


def module(path: str, source: str, code: str, line: int, message: str) -> Case:
    return Case(path, textwrap.dedent(source).lstrip("\n"), code, line, message)


INTERNALS = "orders imports users.store, which is not the kernel of users"
PATH_RULE = "code can import anything that way, past every import rule"

CASES = {
    "import_module": module(
        ORDERS_REACH,
        """
        import importlib

        STORE = importlib.import_module("users.store")
        """,
        "E104",
        3,
        INTERNALS,
    ),
    "import_module imported from importlib": module(
        ORDERS_REACH,
        """
        from importlib import import_module

        STORE = import_module("users.store")
        """,
        "E104",
        3,
        INTERNALS,
    ),
    "import_module relative to a literal package": module(
        ORDERS_REACH,
        """
        import importlib

        STORE = importlib.import_module(".store", package="users")
        """,
        "E104",
        3,
        INTERNALS,
    ),
    "__import__": module(ORDERS_REACH, '__import__("users.store")\n', "E104", 1, INTERNALS),
    "__import__ with a fromlist": module(
        ORDERS_REACH,
        'import os\n\nusers = __import__("users", fromlist=["store"])\n',
        "E104",
        3,
        INTERNALS,
    ),
    "find_spec": module(
        ORDERS_REACH,
        """
        import importlib.util

        SPEC = importlib.util.find_spec("users.store")
        """,
        "E104",
        3,
        INTERNALS,
    ),
    "runpy.run_module": module(
        ORDERS_REACH, 'import runpy\nrunpy.run_module("users.store")\n', "E104", 2, INTERNALS
    ),
    "pkgutil.resolve_name": module(
        ORDERS_REACH,
        'import pkgutil\nCARTS = pkgutil.resolve_name("users.store:CARTS")\n',
        "E104",
        2,
        "orders imports users.store.CARTS, which is not the kernel of users",
    ),
    "sys.modules": module(
        ORDERS_REACH,
        'import sys\n\nCARTS = sys.modules["users.store"].CARTS\n',
        "E104",
        3,
        INTERNALS,
    ),
    "sys.modules.get": module(
        ORDERS_REACH, 'import sys\nSTORE = sys.modules.get("users.store")\n', "E104", 2, INTERNALS
    ),
    "a dynamic import of an undeclared service": module(
        USERS_REACH,
        'import importlib\n\nimportlib.import_module("orders.kernel")\n',
        "E103",
        3,
        "users imports orders.kernel, but orders is not in services.users.depends",
    ),
    "a dynamic import of an unlisted library": module(
        USERS_REACH,
        'import importlib\n\nimportlib.import_module("units")\n',
        "E105",
        3,
        "users imports library units, but it is not in services.users.libraries",
    ),
    "a library importing a service dynamically": module(
        UNITS_REACH,
        'import importlib\n\nimportlib.import_module("users.kernel")\n',
        "E106",
        3,
        "library units imports service users (users.kernel)",
    ),
    "a dynamic import of the build side": module(
        ORDERS_REACH,
        'import importlib\n\nimportlib.import_module("nanobuild.workspace")\n',
        "E110",
        3,
        "orders imports nanobuild.workspace: service code may use only nanobuild.runtime",
    ),
    "a chain past a kernel": module(
        ORDERS_REACH,
        """
        import users.kernel

        CARTS = users.store.CARTS
        """,
        "E104",
        3,
        "orders uses users.store.CARTS, which is not the kernel of users",
    ),
    "a chain to a module past a kernel": module(
        ORDERS_REACH,
        """
        import users.kernel


        def store():
            return users.store
        """,
        "E104",
        5,
        "orders uses users.store, which is not the kernel of users",
    ),
    "a chain past the runtime": module(
        ORDERS_REACH,
        """
        import nanobuild.runtime

        LOAD = nanobuild.workspace.load
        """,
        "E110",
        3,
        "orders uses nanobuild.workspace.load: service code may use only nanobuild.runtime",
    ),
    "sys.path.insert": module(
        ORDERS_REACH,
        'import sys\n\nsys.path.insert(0, "/elsewhere")\n',
        "E111",
        3,
        f"orders changes where imports come from (sys.path.insert): {PATH_RULE}",
    ),
    "sys.path.append": module(
        ORDERS_REACH, 'import sys\nsys.path.append("/x")\n', "E111", 2, "(sys.path.append)"
    ),
    "sys.path.extend": module(
        ORDERS_REACH, 'import sys\nsys.path.extend(["/x"])\n', "E111", 2, "(sys.path.extend)"
    ),
    "sys.path assigned": module(
        ORDERS_REACH, 'import sys\nsys.path = ["/x"]\n', "E111", 2, "(sys.path)"
    ),
    "sys.path added to": module(
        ORDERS_REACH, 'import sys\nsys.path += ["/x"]\n', "E111", 2, "(sys.path)"
    ),
    "sys.path assigned into": module(
        ORDERS_REACH, 'import sys\nsys.path[:0] = ["/x"]\n', "E111", 2, "(sys.path)"
    ),
    "path imported from sys": module(
        ORDERS_REACH,
        """
        def reach():
            from sys import path

            path.insert(0, "/x")
        """,
        "E111",
        4,
        "(sys.path.insert)",
    ),
    "sys.meta_path": module(
        ORDERS_REACH, "import sys\nsys.meta_path.insert(0, None)\n", "E111", 2, "(sys.meta_path"
    ),
    "sys.modules assigned into": module(
        ORDERS_REACH, 'import sys\nsys.modules["users"] = sys\n', "E111", 2, "(sys.modules)"
    ),
    "site.addsitedir": module(
        UNITS_REACH,
        'import site\nsite.addsitedir("/x")\n',
        "E111",
        2,
        f"library units changes where imports come from (site.addsitedir): {PATH_RULE}",
    ),
    "spec_from_file_location": module(
        ORDERS_REACH,
        """
        import importlib.util

        SPEC = importlib.util.spec_from_file_location("store", "../users/users/store.py")
        """,
        "E112",
        3,
        "orders loads a module from a file path (importlib.util.spec_from_file_location): "
        "no import rule can follow it",
    ),
    "runpy.run_path": module(
        ORDERS_REACH, 'import runpy\nrunpy.run_path("x.py")\n', "E112", 2, "(runpy.run_path)"
    ),
    "a dynamic import by a name that is not a literal": module(
        ORDERS_REACH,
        """
        import importlib


        def load(name: str) -> object:
            return importlib.import_module(name)
        """,
        "W101",
        5,
        "orders imports a module by a name that is not a literal "
        "(importlib.import_module): check cannot see what it imports",
    ),
    "__import__ of a name that is not a literal": module(
        ORDERS_REACH, 'NAME = "users.store"\n__import__(NAME)\n', "W101", 2, "(__import__)"
    ),
    "sys.modules by a name that is not a literal": module(
        ORDERS_REACH,
        'import sys\nNAME = "users.store"\nSTORE = sys.modules[NAME]\n',
        "W101",
        3,
        "(sys.modules)",
    ),
}


def with_store(mini: Sample) -> Sample:
    mini.write("services/users/users/store.py", "CARTS = {}\n")
    return mini


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_each_bypass_is_caught_at_its_line(mini: Sample, case: Case) -> None:
    with_store(mini).write(case.path, case.source)
    d = mini.only(case.code)
    assert (d.code, d.path, d.line) == (case.code, case.path, case.line)
    assert case.message in d.message
    assert d.is_error is (case.code != "W101")


def test_changing_sys_path_is_an_error(mini: Sample) -> None:
    mini.write(ORDERS_REACH, CASES["sys.path.insert"].source)
    d = mini.only("E111")
    assert (d.path, d.line) == (ORDERS_REACH, 3)
    assert d.hint is not None and "a library in `libraries`" in d.hint


def test_loading_a_module_from_a_file_path_is_an_error(mini: Sample) -> None:
    mini.write(ORDERS_REACH, CASES["spec_from_file_location"].source)
    d = mini.only("E112")
    assert (d.path, d.line) == (ORDERS_REACH, 3)


BY_CLI = ["import_module", "a chain past a kernel", "sys.path.insert", "spec_from_file_location"]


@pytest.mark.parametrize("name", BY_CLI)
def test_each_kind_of_bypass_fails_the_cli_with_its_place(mini: Sample, name: str) -> None:
    case = CASES[name]
    with_store(mini).write(case.path, case.source)
    done = nanobuild("check", "-w", str(mini.root), cwd=mini.root)  # asserts no traceback
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"{case.path}:{case.line}: {case.code} " in done.stdout
    assert "1 problem found" in done.stderr


NEGATIVE = {
    "the standard library, dynamically": """
        import importlib
        import importlib.util

        JSON = importlib.import_module("json")
        PICKLE = __import__("pickle")
        SPEC = importlib.util.find_spec("tomllib")
        """,
    "a third-party package, dynamically": """
        from importlib import import_module

        MSGSPEC = import_module("msgspec")
        """,
    "its own modules, dynamically": """
        import importlib

        KERNEL = importlib.import_module(".kernel", __package__)
        HANDLERS = importlib.import_module("orders.handlers")
        ITSELF = __import__(__name__)
        """,
    "a kernel through its package": """
        import users.kernel

        ASK = users.kernel.GetUser(id="u1")
        KIND = users.kernel.GetUser.__name__
        """,
    "a name that shadows a package": """
        from users.kernel import User

        users = [User(id="u1", name="Ada")]
        users.append(User(id="u2", name="Grace"))
        """,
    "sys.path read, not changed": """
        import sys

        FIRST = sys.path[0]
        ALL = list(sys.path)
        WHERE = sys.path.index(FIRST)
        ITSELF = sys.modules[__name__]
        LOADED = "users.store" in sys.modules
        """,
}


@pytest.mark.parametrize("source", NEGATIVE.values(), ids=NEGATIVE.keys())
def test_what_reaches_no_other_package_is_fine(mini: Sample, source: str) -> None:
    with_store(mini).write(ORDERS_REACH, textwrap.dedent(source).lstrip("\n"))
    assert mini.check() == []


# -- warnings: shown, never failing


def with_warning(mini: Sample) -> Sample:
    case = CASES["a dynamic import by a name that is not a literal"]
    mini.write(case.path, case.source)
    return mini


def test_a_warning_is_shown_and_check_passes(mini: Sample) -> None:
    done = nanobuild("check", "-w", str(with_warning(mini).root), cwd=mini.root)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{ORDERS_REACH}:5: W101 warning: orders imports a module by a name" in done.stdout
    assert "mini: 2 services, 1 library: all checks passed (1 warning)" in done.stdout


def test_a_warning_in_json_says_its_severity_and_errors_keep_their_shape(mini: Sample) -> None:
    with_warning(mini).edit("nano.toml", 'depends = ["users"]', 'depends = ["users", "ghost"]')
    done = nanobuild("check", "--format", "json", "-w", str(mini.root))
    assert done.returncode == 1
    doc = json.loads(done.stdout)
    assert doc["ok"] is False
    by_code = {d["code"]: d for d in doc["diagnostics"]}
    assert by_code["W101"]["severity"] == "warning"
    assert (by_code["W101"]["path"], by_code["W101"]["line"]) == (ORDERS_REACH, 5)
    assert "severity" not in by_code["E101"]


def test_warnings_alone_leave_json_ok(mini: Sample) -> None:
    done = nanobuild("check", "--format", "json", "-w", str(with_warning(mini).root))
    assert done.returncode == 0
    doc = json.loads(done.stdout)
    assert doc["ok"] is True
    assert [d["code"] for d in doc["diagnostics"]] == ["W101"]


def test_the_summary_counts_only_errors(mini: Sample) -> None:
    with_warning(mini).edit("nano.toml", 'depends = ["users"]', 'depends = ["users", "ghost"]')
    done = nanobuild("check", "-w", str(mini.root))
    assert done.returncode == 1
    assert "E101 orders depends on ghost" in done.stdout
    assert "mini: 1 problem found (1 warning)" in done.stderr


def test_serve_is_not_stopped_by_a_warning(mini: Sample, tmp_path: Path) -> None:
    with_warning(mini)
    command = [sys.executable, "-m", "nanobuild", "serve", "-w", str(mini.root), "--port", "0"]
    server = start(command, tmp_path / "log")
    try:
        assert server.http.post("/api/users/GetUser", json={"id": "u1"}).json()["name"] == "Ada"
    finally:
        server.stop()
    assert "W101 warning:" in server.log()


def test_bundle_is_not_stopped_by_a_warning(mini: Sample, wheelhouse: Path) -> None:
    with_warning(mini)
    done = nanobuild("bundle", "--offline", "--find-links", str(wheelhouse), cwd=mini.root)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (mini.root / "dist" / "mini.pyz").is_file()


# -- links and unreadable files in a package


def link(mini: Sample, rel: str, target: str | Path) -> None:
    (mini.root / rel).symlink_to(target)


def test_a_linked_folder_into_another_service_is_refused(mini: Sample) -> None:
    link(mini, f"{USERS_PACKAGE}/orders_code", "../../orders/orders")
    d = mini.only("E113")
    assert (d.path, d.line) == (f"{USERS_PACKAGE}/orders_code", None)
    assert d.message == (
        f"{USERS_PACKAGE}/orders_code links to services/orders/orders, "
        "outside the package of service users"
    )


def test_a_linked_file_into_another_service_is_refused(mini: Sample) -> None:
    link(mini, f"{USERS_PACKAGE}/store.py", "../../orders/orders/kernel.py")
    d = mini.only("E113")
    assert d.path == f"{USERS_PACKAGE}/store.py"
    assert "links to services/orders/orders/kernel.py" in d.message


def test_a_link_out_of_the_workspace_is_refused(mini: Sample, tmp_path: Path) -> None:
    outside = tmp_path / "outside.py"
    outside.write_text("SECRET = 1\n")
    link(mini, "libs/units/units/leak.py", outside)
    d = mini.only("E113")
    assert d.message == (
        f"libs/units/units/leak.py links to {outside}, outside the package of library units"
    )


def test_a_package_folder_that_is_a_link_is_refused(mini: Sample) -> None:
    units = mini.root / "libs" / "units" / "units"
    units.rename(mini.root / "services" / "users" / "units")
    units.symlink_to("../../services/users/units")
    d = mini.only("E113")
    assert (d.path, d.message) == (
        "libs/units/units",
        "the package of library units, libs/units/units, is a link to "
        "services/users/units, outside its project folder libs/units",
    )


def test_links_that_stay_in_their_package_are_fine(mini: Sample) -> None:
    mini.write(f"{USERS_PACKAGE}/data/names.py", "NAMES = ['Ada']\n")
    link(mini, f"{USERS_PACKAGE}/alias", "data")
    link(mini, f"{USERS_PACKAGE}/same.py", "data/names.py")
    link(mini, f"{USERS_PACKAGE}/data/loop", "..")
    assert mini.check() == []
    names = {m.name for m in checks.Context.read(mini.load()).modules["users"]}
    assert {"users.alias.names", "users.data.names", "users.same"} <= names


def test_check_reads_the_files_bundle_packs(mini: Sample) -> None:
    mini.write(f"{USERS_PACKAGE}/data/names.py", "NAMES = ['Ada']\n")
    mini.write(f"{USERS_PACKAGE}/data/users.json", "[]\n")
    mini.write(f"{USERS_PACKAGE}/__pycache__/kernel.cpython-311.pyc", "")
    link(mini, f"{USERS_PACKAGE}/alias", "data")
    ws = mini.load()
    context = checks.Context.read(ws)
    packed = pack.sources(ws, pack.plan(ws, list(ws.services)))
    read = {m.path for modules in context.modules.values() for m in modules}
    assert read == {path for path in packed if path.suffix == ".py"}
    walked = {path for tree in context.trees.values() for path in tree.files}
    assert walked == set(packed)
    assert mini.root / USERS_PACKAGE / "alias" / "users.json" in walked


def test_a_broken_link_is_named(mini: Sample) -> None:
    link(mini, f"{USERS_PACKAGE}/gone.py", "nowhere.py")
    d = mini.only("E114")
    assert (d.path, d.message) == (
        f"{USERS_PACKAGE}/gone.py",
        f"cannot read {USERS_PACKAGE}/gone.py: No such file or directory",
    )


def test_a_fifo_is_named_not_waited_on(mini: Sample) -> None:
    os.mkfifo(mini.root / USERS_PACKAGE / "pipe.json")
    d = mini.only("E114")
    assert d.message == f"cannot read {USERS_PACKAGE}/pipe.json: it is not a regular file"


def test_a_linked_folder_is_not_bundled(mini: Sample, wheelhouse: Path) -> None:
    link(mini, f"{USERS_PACKAGE}/orders_code", "../../orders/orders")
    done = nanobuild("bundle", "--offline", "--find-links", str(wheelhouse), cwd=mini.root)
    assert done.returncode == 1
    assert f"{USERS_PACKAGE}/orders_code: E113 {USERS_PACKAGE}/orders_code links to" in (
        done.stderr
    )
    assert not (mini.root / "dist" / "mini.pyz").exists()


def test_pack_itself_refuses_a_link_out_of_a_package(mini: Sample) -> None:
    """For callers of ``pack`` that did not check first."""
    link(mini, f"{USERS_PACKAGE}/orders_code", "../../orders/orders")
    package = mini.root / USERS_PACKAGE
    with pytest.raises(PackError, match="E404") as exc:
        list(pack._tree(package, "site-packages/users", shown=USERS_PACKAGE, sealed=True))
    [d] = exc.value.diagnostics
    assert d.message.startswith(
        f"cannot pack {USERS_PACKAGE}/orders_code: it links to {mini.root}/services/orders/orders"
    )


UNREADABLE_FOLDER = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, sys.argv[2])
    from pathlib import Path
    from nanobuild import pack, workspace
    from nanobuild.checks import Context, structure
    from nanobuild.source import walk
    ws = workspace.load(Path(sys.argv[1]))
    if os.geteuid() == 0:  # imports done: the interpreter's own files may be out of reach now
        os.setgid(65534)
        os.setuid(65534)
    owners = [*ws.services.values(), *ws.libraries.values()]
    trees = {o.name: walk(o.package_dir, sealed=True) for o in owners}
    for d in structure.check(Context(ws, {o.name: [] for o in owners}, trees=trees)):
        print(d.path, d.code, d.message)
    try:
        list(pack._tree(ws.services["users"].package_dir, "x", shown="users", sealed=True))
    except pack.PackError as exc:
        print(exc)
    """
)


@pytest.mark.skipif(not hasattr(os, "setuid"), reason="needs POSIX users")
def test_a_folder_that_cannot_be_read_is_named(mini: Sample) -> None:
    """chmod 000 does not stop root, so the walk runs as another user, where it does."""
    locked = mini.root / USERS_PACKAGE / "locked"
    locked.mkdir()
    (locked / "secret.py").write_text("KEY = 1\n")
    locked.chmod(0)
    modes = {f: f.stat().st_mode for f in locked.parents if f != Path(f.anchor)}
    try:
        for folder, mode in modes.items():
            folder.chmod(mode | 0o005)  # that user may list and pass through, and no more
        done = subprocess.run(
            [sys.executable, "-c", UNREADABLE_FOLDER, str(mini.root), str(REPO)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        for folder, mode in modes.items():
            folder.chmod(mode)
        locked.chmod(0o755)
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == (
        f"{USERS_PACKAGE}/locked E114 cannot read {USERS_PACKAGE}/locked: Permission denied"
    )
    assert "users/locked: E404 cannot pack users/locked: Permission denied" in done.stdout


def test_a_walk_names_what_it_cannot_read(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("")
    (tmp_path / "b.pyc").write_text("")
    (tmp_path / "gone.py").symlink_to("nowhere.py")
    found = walk(tmp_path)
    assert found.files == [tmp_path / "a.py"]
    assert found.unreadable == [(tmp_path / "gone.py", "No such file or directory")]
