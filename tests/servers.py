"""Real servers for end-to-end tests: subprocesses on free 127.0.0.1 ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A running server process, its address and its log."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.proc = proc
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=20)


@contextmanager
def start(
    command: Sequence[str], port: int, *, cwd: Path, env: dict[str, str] | None = None
) -> Iterator[Server]:
    """Run ``command`` until it answers ``GET /healthz``; stop it with SIGTERM afterwards."""
    with tempfile.NamedTemporaryFile(prefix="server-", suffix=".log", delete=False) as log:
        proc = subprocess.Popen(
            list(command),
            cwd=cwd,
            env={**os.environ, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = Server(proc, port, Path(log.name))
    try:
        wait_healthy(server)
        yield server
    finally:
        server.stop()
        Path(log.name).unlink(missing_ok=True)


def wait_healthy(server: Server, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"server exited with {server.proc.returncode}:\n{server.log()}")
        try:
            if httpx.get(server.url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"server not healthy after {timeout} s:\n{server.log()}")


def serve_command(root: Path, port: int, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "nanobuild", "serve",
        "--workspace", str(root), "--port", str(port), *extra,
    ]  # fmt: skip


@contextmanager
def start_serve(root: Path, *extra: str, env: dict[str, str] | None = None) -> Iterator[Server]:
    """``nanobuild serve`` on the workspace at ``root``."""
    port = free_port()
    with start(serve_command(root, port, *extra), port, cwd=root, env=env) as server:
        yield server
