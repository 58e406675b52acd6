"""What real services do, with a real binary: the exception map (fused and split), the
data folder, and a read-only extraction that refuses a file written beside the code."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nanobuild.errors import WorkspaceError
from tests.conftest import SAMPLES, Sample
from tests.servers import Binary, Server, build_binary, serve, start

SECRET = "real-services-secret-0PSbR7byftIJdv535AtOFg"

MAP = """
[services.users.errors]
"users.handlers.Gone" = "NotFound"
"sqlite3.IntegrityError" = "Conflict"
"""

HANDLERS = '''
import sqlite3
from pathlib import Path
from typing import Any

from nanobuild.runtime import NotFound, data_dir, handler

from .kernel import Beside, GetUser, ListUsers, Note, User

USERS = {"u1": User(id="u1", name="Ada")}


class Gone(LookupError):
    """A user that was deleted: mapped to NotFound in nano.toml."""


class Purged(Gone):
    """A subclass of a mapped class is mapped too."""


@handler
async def get_user(req: GetUser) -> User:
    if req.id == "gone":
        raise Gone("user gone was deleted")
    if req.id == "purged":
        raise Purged("user purged was purged")
    if req.id == "dup":
        raise sqlite3.IntegrityError("UNIQUE constraint failed: users.id")
    if req.id == "boom":
        raise ValueError("not in the map")
    if req.id not in USERS:
        raise NotFound(f"no user {req.id}")
    return USERS[req.id]


@handler
def list_users(req: ListUsers) -> list[User]:
    return list(USERS.values())


@handler
def note(req: Note) -> str:
    path = data_dir() / "note.txt"
    path.write_text(req.text)
    return str(path)


@handler
async def beside(req: Beside) -> str:
    Path(__file__).with_name("state.txt").write_text("lost on the next build")
    return "written"
'''

KERNEL_ADDITIONS = """

class Note(Contract[str], frozen=True):
    text: str


class Beside(Contract[str], frozen=True):
    pass
"""


def real_services(root: Path) -> Path:
    """The mini workspace with an exception map, a data folder and a write beside the code."""
    shutil.copytree(SAMPLES / "mini", root)
    sample = Sample(root)
    sample.write("nano.toml", (root / "nano.toml").read_text() + MAP)
    kernel = root / "services/users/users/kernel.py"
    kernel.write_text(kernel.read_text() + KERNEL_ADDITIONS)
    sample.write("services/users/users/handlers.py", HANDLERS)
    return root


def as_someone_else() -> list[str]:
    """A prefix that runs a command as an unprivileged user, when this is root.

    Root ignores permission bits, so only another user can show that the extraction
    refuses writes.
    """
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root, with no setpriv to run the binary as another user")
    return [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]


class Run:
    """The binary, copied where an unprivileged user can read it, with a HOME of its own."""

    def __init__(self, binary: Binary, folder: Path) -> None:
        self.folder = folder
        self.pyz = folder / binary.pyz.name
        shutil.copy2(binary.pyz, self.pyz)
        self.home = folder / "home"
        self.home.mkdir()
        self.prefix = as_someone_else()
        if self.prefix:
            os.chown(self.home, 65534, 65534)
        self.python = sys._base_executable  # a Python the other user can run, too

    def start(self, log: Path, *args: str, as_me: bool = False, **env: str) -> Server:
        prefix = [] if as_me else self.prefix
        command = [*prefix, self.python, str(self.pyz), "serve", "--port", "0", *args]
        env = {"HOME": str(self.home), "XDG_CACHE_HOME": "", "NANO_SECRET": SECRET, **env}
        return start(command, log, cwd=self.folder, **env)

    @property
    def apps(self) -> Path:
        return self.home / ".cache" / "nanobuild" / "apps"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    tmp = tmp_path_factory.mktemp("real-services")
    binary = build_binary(real_services(tmp / "src"), tmp)
    folder = Path(tempfile.mkdtemp(prefix="nano-real-"))
    folder.chmod(0o755)  # the unprivileged user reads the binary here
    yield Run(binary, folder)
    shutil.rmtree(folder, ignore_errors=True)


def error_of(
    server: Server, service: str, contract: str, body: dict[str, Any]
) -> tuple[int, str, str]:
    response = server.call(service, contract, body, headers={"nano-secret": SECRET})
    error = response.json()["error"]
    return response.status_code, error["kind"], error["message"]


def test_mapped_exceptions_reach_callers_as_their_errors_fused(run: Run, tmp_path: Path) -> None:
    server = run.start(tmp_path / "fused.log")
    try:
        assert error_of(server, "users", "GetUser", {"id": "gone"}) == (
            404,
            "not_found",
            "user gone was deleted",
        )
        # a subclass of a mapped class, and a standard library class
        assert error_of(server, "users", "GetUser", {"id": "purged"})[:2] == (404, "not_found")
        assert error_of(server, "users", "GetUser", {"id": "dup"}) == (
            409,
            "conflict",
            "UNIQUE constraint failed: users.id",
        )
        # unmapped: Internal, as before
        status, kind, message = error_of(server, "users", "GetUser", {"id": "boom"})
        assert (status, kind) == (500, "internal") and "unexpected ValueError" in message
        # through another service's call, in memory
        body = {"user_id": "gone", "quantity": {"amount": 1}}
        assert error_of(server, "orders", "PlaceOrder", body)[:2] == (404, "not_found")
    finally:
        assert server.stop() == 0


def test_mapped_exceptions_cross_the_network_split(run: Run, tmp_path: Path) -> None:
    users = run.start(tmp_path / "users.log", "--only", "users", "--internal-port", "0")
    try:
        assert users.internal is not None
        orders = run.start(
            tmp_path / "orders.log", "--only", "orders", "--remote", f"users={users.internal}"
        )
        try:
            body = {"user_id": "gone", "quantity": {"amount": 1}}
            assert error_of(orders, "orders", "PlaceOrder", body) == (
                404,
                "not_found",
                "user gone was deleted",
            )
            body = {"user_id": "dup", "quantity": {"amount": 1}}
            assert error_of(orders, "orders", "PlaceOrder", body)[:2] == (409, "conflict")
        finally:
            orders.stop()
    finally:
        users.stop()


def test_a_service_writes_to_its_data_folder_and_not_beside_its_code(
    run: Run, tmp_path: Path
) -> None:
    server = run.start(tmp_path / "data.log")
    try:
        note = server.call("users", "Note", {"text": "kept"}, headers={"nano-secret": SECRET})
        assert note.status_code == 200, note.text
        written = Path(note.json())
        # beside the extractions, never inside one
        assert written == run.apps / "mini-data" / "users" / "note.txt"
        assert written.read_text() == "kept"
        beside = server.call("users", "Beside", {}, headers={"nano-secret": SECRET})
        assert beside.status_code == 500, beside.text
    finally:
        server.stop()
    assert "PermissionError" in server.log()
    [extraction] = [p for p in run.apps.iterdir() if not p.name.endswith("-data")]
    assert not (extraction / "site-packages" / "users" / "state.txt").exists()
    for path in (extraction / "site-packages" / "users", extraction / "site-packages"):
        assert stat.S_IMODE(path.stat().st_mode) & 0o222 == 0, path
    handlers = extraction / "site-packages" / "users" / "handlers.py"
    assert stat.S_IMODE(handlers.stat().st_mode) & 0o222 == 0


def test_the_extraction_refuses_a_write_beside_the_code_as_root_too(
    run: Run, tmp_path: Path
) -> None:
    # root ignores write bits: the binary's audit hook refuses the write all the same
    server = run.start(tmp_path / "root.log", as_me=True)
    try:
        beside = server.call("users", "Beside", {}, headers={"nano-secret": SECRET})
        assert beside.status_code == 500, beside.text
    finally:
        server.stop()
    assert "is inside the binary's extraction, which is read-only" in server.log()
    [extraction] = [p for p in run.apps.iterdir() if not p.name.endswith("-data")]
    assert not (extraction / "site-packages" / "users" / "state.txt").exists()


def test_nano_data_dir_moves_every_services_folder(run: Run, tmp_path: Path) -> None:
    data = run.folder / "data"
    data.mkdir()
    if run.prefix:
        os.chown(data, 65534, 65534)
    server = run.start(tmp_path / "moved.log", NANO_DATA_DIR=str(data))
    try:
        note = server.call("users", "Note", {"text": "here"}, headers={"nano-secret": SECRET})
        assert note.status_code == 200, note.text
        assert Path(note.json()) == data / "users" / "note.txt"
    finally:
        server.stop()


def test_a_relative_nano_data_dir_stops_the_binary(run: Run) -> None:
    done = subprocess.run(
        [*run.prefix, run.python, str(run.pyz), "serve", "--port", "0"],
        env={"HOME": str(run.home), "NANO_DATA_DIR": "data", "PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "NANO_DATA_DIR must be an absolute path, not 'data'" in done.stderr
    assert "Traceback" not in done.stderr


# -- the map's keys, as check reads them, and a class missing at start-up


def test_an_unknown_error_kind_is_named_with_a_did_you_mean(mini: Sample) -> None:
    mini.write(
        "nano.toml",
        (mini.root / "nano.toml").read_text()
        + '\n[services.users.errors]\n"sqlite3.IntegrityError" = "Conflct"\n',
    )
    with pytest.raises(WorkspaceError) as raised:
        mini.load()
    [problem] = raised.value.diagnostics
    assert problem.code == "E016"
    assert problem.message == (
        "`services.users.errors`: 'sqlite3.IntegrityError' maps to 'Conflct', "
        "which is not an error kind"
    )
    assert problem.hint == "did you mean `Conflict`?"
    assert problem.line == len((mini.root / "nano.toml").read_text().splitlines())


def test_a_class_that_is_not_a_dotted_path_is_named(mini: Sample) -> None:
    mini.write(
        "nano.toml",
        (mini.root / "nano.toml").read_text()
        + '\n[services.users.errors]\n"IntegrityError" = "Conflict"\n"a..b" = "NotFound"\n',
    )
    with pytest.raises(WorkspaceError) as raised:
        mini.load()
    assert [(d.code, d.message) for d in raised.value.diagnostics] == [
        ("E017", "`services.users.errors`: 'IntegrityError' is not a class path (module.Class)"),
        ("E017", "`services.users.errors`: 'a..b' is not a class path (module.Class)"),
    ]


def test_a_mapped_class_missing_at_start_up_is_one_line_and_exit_1(mini: Sample) -> None:
    mini.write(
        "nano.toml",
        (mini.root / "nano.toml").read_text()
        + '\n[services.users.errors]\n"sqlite3.IntegrityErr" = "Conflict"\n',
    )
    done = subprocess.run(serve(mini.root), capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert (
        "services.users.errors: 'sqlite3.IntegrityErr' cannot be found: sqlite3 has no IntegrityErr"
    ) in done.stderr
    assert "Traceback" not in done.stderr


def test_nanobuild_serve_gives_each_service_a_data_folder_too(tmp_path: Path) -> None:
    root = real_services(tmp_path / "ws")
    cache = tmp_path / "apps"
    env = {"NANO_APP_CACHE": str(cache), "NANO_SECRET": SECRET}
    server = start(serve(root), tmp_path / "serve.log", **env)
    try:
        note = server.call(
            "users", "Note", {"text": "from source"}, headers={"nano-secret": SECRET}
        )
        assert note.status_code == 200, note.text
        assert Path(note.json()) == cache / "mini-data" / "users" / "note.txt"
        assert (cache / "mini-data" / "users" / "note.txt").read_text() == "from source"
    finally:
        server.stop()


MAPPED = """
import msgspec
from nanobuild.runtime import Contract, Forbidden, handler

class Gone(LookupError):
    pass

class Ask(Contract[str]):
    what: str

class AskSync(Contract[str]):
    what: str

def answer(what: str) -> str:
    if what == "gone":
        raise Gone("it is gone")
    if what == "key":
        raise KeyError("k")  # a LookupError too: mapped by its base's entry
    if what == "forbidden":
        raise Forbidden("no")  # a NanoError passes as it is
    raise ValueError("unmapped")

@handler
async def ask(req: Ask) -> str:
    return answer(req.what)

@handler
def ask_sync(req: AskSync) -> str:
    return answer(req.what)
"""


@pytest.mark.parametrize("strict", [False, True])
def test_the_map_holds_in_memory_for_async_and_def_handlers(tmp_path: Path, strict: bool) -> None:
    import asyncio

    from nanobuild.runtime import Conflict, Forbidden, Internal, NotFound, call, router
    from nanobuild.runtime.settings import Settings
    from nanobuild.runtime.spec import AppSpec, ServiceSpec
    from nanobuild.runtime.wiring import wire

    (tmp_path / "mapped.py").write_text(MAPPED)
    sys.path.insert(0, str(tmp_path))
    try:
        import mapped

        errors = {"mapped.Gone": "NotFound", "builtins.LookupError": "Conflict"}
        handlers = {"Ask": "mapped:ask", "AskSync": "mapped:ask_sync"}
        spec = AppSpec("t", (ServiceSpec("svc", "mapped", handlers, errors=errors),))
        node = wire(spec, settings=Settings(strict=strict))
        for contract in (mapped.Ask, mapped.AskSync):
            with pytest.raises(NotFound, match="it is gone"):
                asyncio.run(call(contract(what="gone")))
            with pytest.raises(Conflict, match="'k'"):
                asyncio.run(call(contract(what="key")))
            with pytest.raises(Forbidden, match="no"):
                asyncio.run(call(contract(what="forbidden")))
            with pytest.raises(Internal if strict else ValueError):
                asyncio.run(call(contract(what="other")))
        asyncio.run(node.shutdown())
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("mapped", None)
        router.install({})


def test_data_dir_names_a_service_or_refuses_one_that_is_not_here(tmp_path: Path) -> None:
    from nanobuild.runtime import data_dir
    from nanobuild.runtime.settings import Settings
    from nanobuild.runtime.spec import AppSpec, ServiceSpec
    from nanobuild.runtime.wiring import wire

    spec = AppSpec("t", (ServiceSpec("svc", "svcpkg", {}),))
    wire(spec, settings=Settings(data_dir=str(tmp_path / "data")))
    folder = data_dir("svc")
    assert folder == tmp_path / "data" / "svc" and folder.is_dir()
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    with pytest.raises(RuntimeError, match="there is no service ghost here"):
        data_dir("ghost")
    with pytest.raises(RuntimeError, match=r"cannot tell which service tests\.test_real_services"):
        data_dir()  # this test module belongs to no service
