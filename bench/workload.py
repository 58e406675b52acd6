"""What the benchmarks share: a one-service workspace, the same handler as a FastAPI
app, server processes on free 127.0.0.1 ports, and checked command-line counts."""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

PATH = "/api/greeter/Greet"

KERNEL = """
import msgspec
from nanobuild.runtime import Contract


class Greeting(msgspec.Struct, frozen=True):
    text: str


class Greet(Contract[Greeting], frozen=True):
    name: str
"""

HANDLERS = """
from nanobuild.runtime import handler
from .kernel import Greet, Greeting


@handler
async def greet(req: Greet) -> Greeting:
    return Greeting(text=f"Hello, {req.name}!")
"""

FASTAPI_APP = f"""
from fastapi import FastAPI
from pydantic import BaseModel

app = FastAPI()


class Greet(BaseModel):
    name: str


class Greeting(BaseModel):
    text: str


@app.post("{PATH}")
async def greet(req: Greet) -> Greeting:
    return Greeting(text=f"Hello, {{req.name}}!")
"""


def write_workspace(root: Path) -> None:
    """The greeter workspace (nano.toml, services/greeter) and fastapi_app.py in ``root``."""
    package = root / "services" / "greeter" / "greeter"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "kernel.py").write_text(textwrap.dedent(KERNEL))
    (package / "handlers.py").write_text(textwrap.dedent(HANDLERS))
    (root / "nano.toml").write_text(
        '[workspace]\nname = "greeter"\n\n[services.greeter]\n'
        'path = "services/greeter"\npublic = ["Greet"]\n'
    )
    (root / "fastapi_app.py").write_text(textwrap.dedent(FASTAPI_APP))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running(
    command: list[str], port: int, cwd: Path, env: Mapping[str, str] | None = None
) -> Iterator[None]:
    """``command`` as a subprocess in ``cwd``, listening on ``port``; stopped afterwards."""
    full = {**os.environ, "NANO_STRICT": "0", **(env or {})}
    proc = subprocess.Popen(
        command, cwd=cwd, env=full, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        _wait_until_listening(port, proc)
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _wait_until_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            assert proc.stderr is not None
            sys.exit(f"a server exited early:\n{proc.stderr.read().decode()}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    sys.exit(f"a server did not listen on port {port}")


def at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number no smaller than ``minimum``."""

    def count(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is less than {minimum}")
        return value

    return count
