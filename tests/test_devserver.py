"""``nanobuild serve``: the runtime in a child Python, signals passed on, ``--reload``."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.conftest import SAMPLES
from tests.servers import Server, free_port, start

HANDLERS = "services/users/users/handlers.py"


def serving(root: Path, log: Path, *options: str) -> Server:
    command = [sys.executable, "-m", "nanobuild", "serve", "--workspace", str(root), *options]
    return start(command, log)


def eventually(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.1)


def name_of_u1(url: str) -> str | None:
    try:
        response = httpx.post(f"{url}/api/users/GetUser", json={"id": "u1"}, timeout=2)
    except httpx.HTTPError:
        return None
    return str(response.json()["name"]) if response.status_code == 200 else None


def children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(line) for line in found.stdout.split()]


def test_serve_runs_the_services_in_a_child_and_stops_it_on_sigterm(tmp_path: Path) -> None:
    root = tmp_path / "mini"
    shutil.copytree(SAMPLES / "mini", root)
    server = serving(root, tmp_path / "log", "--port", "0")
    assert name_of_u1(server.url) == "Ada"
    [child] = children(server.proc.pid)
    assert server.stop(signal.SIGTERM) == 0, server.log()
    assert "Application shutdown complete" in server.log()
    eventually(lambda: not Path(f"/proc/{child}").exists(), timeout=5)


def test_serve_reload_restarts_on_a_change_and_waits_out_a_broken_one(tmp_path: Path) -> None:
    root = tmp_path / "mini"
    shutil.copytree(SAMPLES / "mini", root)
    port = free_port()
    server = serving(root, tmp_path / "log", "--port", str(port), "--reload")
    handlers = root / HANDLERS
    try:
        assert name_of_u1(server.url) == "Ada"
        handlers.write_text(handlers.read_text().replace('"Ada"', '"Grace"'))
        eventually(lambda: name_of_u1(server.url) == "Grace")

        handlers.write_text(handlers.read_text() + "\ndef broken(:\n")  # check refuses it
        eventually(lambda: "E109" in server.log())
        assert name_of_u1(server.url) is None  # not serving until the next change
        assert "not serving until the next change" in server.log()

        handlers.write_text(handlers.read_text().replace("\ndef broken(:\n", ""))
        eventually(lambda: name_of_u1(server.url) == "Grace")
    finally:
        code = server.stop(signal.SIGINT)
    assert code == 0, server.log()
    assert "Traceback" not in server.log()
