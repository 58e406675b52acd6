"""The server stack: NANO_SERVER_STACK parsed, resolved against what is installed, and
served processes (from source and the binary in a bare venv) running on what they say."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from nanobuild.runtime.errors import SettingsError
from nanobuild.runtime.server import Stack, server_stack
from nanobuild.runtime.settings import Settings
from tests.conftest import REPO, Sample
from tests.servers import Binary, serve

FAST = Stack("uvloop", "httptools")
PLAIN = Stack("asyncio", "h11")
# the runtime requires uvloop where it has a build: CPython off Windows
UVLOOP_HERE = sys.platform != "win32" and sys.implementation.name == "cpython"


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("", "auto"),
        ("  ", "auto"),
        ("auto", "auto"),
        (" Asyncio ", "asyncio"),
        ("UVLOOP", "uvloop"),
    ],
)
def test_the_setting_is_read(value: str, parsed: str) -> None:
    assert Settings.from_env({"NANO_SERVER_STACK": value}).server_stack == parsed
    assert Settings.from_env({}).server_stack == "auto"


@pytest.mark.parametrize("value", ["trio", "uvloop-httptools", "h11"])
def test_a_bad_value_names_the_variable_and_the_choices(value: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"NANO_SERVER_STACK": value})
    assert str(raised.value) == f"NANO_SERVER_STACK must be auto, asyncio or uvloop, not {value!r}"


def test_choices_resolve_against_this_python() -> None:
    assert server_stack("asyncio") == PLAIN
    assert server_stack("uvloop") == FAST  # this Python has both (the runtime requires them)
    assert server_stack("auto") == FAST
    assert str(FAST) == "uvloop + httptools"


def without_fast_packages(tmp: Path) -> list[str]:
    """A Python command whose packages are this one's, less uvloop and httptools."""
    site = tmp / "site"
    site.mkdir()
    [packages] = {Path(p) for p in sys.path if p.endswith("site-packages")}
    for entry in packages.iterdir():
        if not entry.name.lower().startswith(("uvloop", "httptools")):
            (site / entry.name).symlink_to(entry)
    return [
        sys.executable,
        "-S",
        "-c",
        f"import sys; sys.path[:0] = [{str(REPO)!r}, {str(site)!r}]",
    ]


RUN = """
from nanobuild.runtime import server
from nanobuild.runtime.settings import Settings
from nanobuild.runtime.spec import AppSpec
print(server.server_stack("auto"))
sys.exit(server.run(AppSpec(name="empty", services=()), port=0, settings=Settings.from_env()))
"""


def test_where_neither_is_installed_auto_is_asyncio_and_forcing_uvloop_is_refused(
    tmp_path: Path,
) -> None:
    python, s_flag, c_flag, prelude = without_fast_packages(tmp_path)
    env = {**os.environ, "NANO_SERVER_STACK": "uvloop"}
    done = subprocess.run(
        [python, s_flag, c_flag, prelude + "\n" + RUN],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.stdout == "asyncio + h11\n"
    assert done.returncode == 2
    assert done.stderr == (
        "nanobuild: NANO_SERVER_STACK=uvloop, but uvloop and httptools are not installed here\n"
    )


def loaded(pid: int) -> set[str]:
    """Which of uvloop and httptools a process has mapped, and so really runs on."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return {name for name in ("uvloop", "httptools") if f"/{name}/" in maps}


def tree(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            found += tree(int(child))
    return found


@contextmanager
def served(command: list[str], tmp: Path, cwd: Path, **env: str) -> Iterator[tuple[str, str, int]]:
    """Run ``command`` until it serves: its stack line, its URL, and the pid that serves."""
    out = tmp / "out.log"
    with out.open("w") as sink:
        proc = subprocess.Popen(
            command, cwd=cwd, stdout=sink, stderr=subprocess.STDOUT, env={**os.environ, **env}
        )
    try:
        deadline = time.monotonic() + 60
        lines: dict[str, str] = {}
        while "serving" not in lines and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
            for line in out.read_text().splitlines():
                if line.startswith("nanobuild: server stack "):
                    lines["stack"] = line.removeprefix("nanobuild: server stack ")
                if line.startswith("nanobuild: serving"):
                    lines["serving"] = line.rsplit(" at ", 1)[1]
        assert "serving" in lines, out.read_text()
        # `nanobuild serve` serves from a child: the deepest process of the tree
        yield lines["stack"], lines["serving"], tree(proc.pid)[-1]
    finally:
        proc.terminate()
        proc.wait(timeout=15)


@pytest.mark.parametrize(
    ("choice", "stack"),
    [("auto", FAST if UVLOOP_HERE else PLAIN), ("asyncio", PLAIN), ("uvloop", FAST)],
)
def test_serve_runs_on_the_stack_it_reports(
    mini: Sample, tmp_path: Path, choice: str, stack: Stack
) -> None:
    command = serve(mini.root)
    with served(command, tmp_path, mini.root, NANO_SERVER_STACK=choice) as (said, url, pid):
        assert said == str(stack)
        expected = set() if stack == PLAIN else {"uvloop", "httptools"}
        assert loaded(pid) == expected
        answer = httpx.post(f"{url}/api/users/GetUser", json={"id": "u1"}, timeout=10)
        assert answer.json() == {"id": "u1", "name": "Ada"}


@pytest.mark.parametrize(("choice", "stack"), [("auto", FAST), ("asyncio", PLAIN)])
def test_the_binary_in_a_bare_venv_runs_on_what_it_carries(
    boutique_binary: Binary, tmp_path: Path, choice: str, stack: Stack
) -> None:
    command = boutique_binary.serve()
    env = {**boutique_binary.env, "NANO_SERVER_STACK": choice}
    with served(command, tmp_path, boutique_binary.pyz.parent, **env) as (said, url, pid):
        assert said == str(stack)
        assert loaded(pid) == (set() if stack == PLAIN else {"uvloop", "httptools"})
        answer = httpx.post(f"{url}/api/catalog/ListProducts", json={}, timeout=10)
        assert answer.status_code == 200, answer.text
