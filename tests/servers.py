"""Real servers for end-to-end tests: subprocesses serving on 127.0.0.1.

A server is started on port 0 and reports the port the system gave it in its
``nanobuild: serving <name> at http://...`` banner, so there is no race for a port.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest


def free_port() -> int:
    """A TCP port nothing listens on now, for a server that must be told its port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(root: Path) -> list[str]:
    """``nanobuild serve`` on ``root``, on a port the system picks (the banner tells it)."""
    return [sys.executable, "-m", "nanobuild", "serve", "--workspace", str(root), "--port", "0"]


class Server:
    """A running server process, its base URL and its log (its stderr, or all its output)."""

    def __init__(
        self, proc: subprocess.Popen[str], url: str, log: Path, internal: str | None = None
    ) -> None:
        self.proc = proc
        self.url = url
        self.internal = internal  # tcp://host:port, where other processes reach it
        self.port = int(url.rsplit(":", 1)[1])
        self.log_path = log
        self.http = httpx.Client(base_url=url, timeout=10)

    def log(self) -> str:
        return self.log_path.read_text()

    def call(self, service: str, contract: str, body: Any = None, **kw: Any) -> httpx.Response:
        """POST a JSON body (``{}`` by default) to a contract."""
        return self.http.post(f"/api/{service}/{contract}", json={} if body is None else body, **kw)

    def call_msgpack(self, service: str, contract: str, body: Any, **kw: Any) -> httpx.Response:
        headers = {"content-type": "application/msgpack", **kw.pop("headers", {})}
        return self.http.post(
            f"/api/{service}/{contract}",
            content=msgspec.msgpack.encode(body),
            headers=headers,
            **kw,
        )

    def raw_get(self, target: str) -> tuple[int, bytes]:
        """GET ``target`` byte for byte, as no client library would normalise it."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
            sock.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        return int(head.split()[1]), body

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.http.close()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise


def start(
    command: list[str],
    log: Path,
    environment: Mapping[str, str] | None = None,
    *,
    cwd: Path | None = None,
    **env: str,
) -> Server:
    """Run ``command`` and wait for its ``serving ... at`` line (it is listening then).

    Its environment is this one plus ``environment`` plus ``env``; strict mode is on
    unless they say otherwise; the server's stderr goes to ``log``.
    """
    proc = subprocess.Popen(
        command,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=log.open("w"),
        text=True,
        env={**os.environ, "NANO_STRICT": "1", **(environment or {}), **env},
    )
    return serving(proc, log)


def serving(proc: subprocess.Popen[str], log: Path) -> Server:
    """``proc`` once it says ``serving ... at`` (and where its internal transport is, if
    it says that before); the test fails with its log if it never does."""
    internal = None
    for line in output(proc):
        if line.startswith("nanobuild: internal transport at "):
            internal = line.rsplit(" at ", 1)[1].strip()
        if line.startswith("nanobuild: serving"):
            return Server(proc, line.rsplit(" at ", 1)[1].strip(), log, internal)
    proc.kill()
    proc.wait()
    pytest.fail(f"the server did not start:\n{log.read_text()}")


def output(
    proc: subprocess.Popen[str], copy: Path | None = None, timeout: float = 30
) -> Iterator[str]:
    """Each line ``proc`` writes to its stdout pipe, until it exits or ``timeout`` passes.

    A thread reads the pipe to its end (copying it to ``copy``, if given), so the
    process never blocks on a full pipe, whether or not the lines are still wanted.
    """
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_pump, args=(proc, lines, copy), daemon=True).start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            yield lines.get(timeout=0.2)
        except queue.Empty:
            if proc.poll() is not None:
                return


def _pump(proc: subprocess.Popen[str], lines: queue.Queue[str], copy: Path | None) -> None:
    assert proc.stdout is not None
    with copy.open("w") if copy is not None else contextlib.nullcontext() as out:
        for line in proc.stdout:
            if out is not None:
                out.write(line)
                out.flush()
            lines.put(line)


class Binary:
    """A bundled binary in an otherwise empty folder, and a bare Python to run it with."""

    def __init__(self, pyz: Path, python: Path, home: Path) -> None:
        self.pyz = pyz
        self.python = python
        self.env = {"HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache")}

    def command(self, *args: str) -> list[str]:
        return [str(self.python), str(self.pyz), *args]

    def serve(self) -> list[str]:
        return self.command("serve", "--port", "0")


def build_binary(workspace: Path, tmp: Path, *, only: str = "") -> Binary:
    """Bundle a copy of ``workspace``; copy the binary to an empty folder beside a bare venv.

    The venv has nothing installed (not even pip), so the binary can only run on what
    it carries. Staging uses a cache of its own, so the build is a real one.
    """
    copy = tmp / "ws"
    shutil.copytree(
        workspace,
        copy,
        ignore=shutil.ignore_patterns("__pycache__", "dist", ".*", "tests", "bench", "*.egg-info"),
    )
    command = [sys.executable, "-m", "nanobuild", "bundle", "--workspace", str(copy), "--quiet"]
    if only:
        command += ["--only", only]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "NANO_CACHE_DIR": str(tmp / "stage-cache")},
    )
    assert done.returncode == 0, done.stderr
    [built] = (copy / "dist").glob("*.pyz")
    run = tmp / "run"
    run.mkdir()
    shutil.copy2(built, run / built.name)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp / "venv")], check=True)
    return Binary(run / built.name, tmp / "venv" / "bin" / "python", tmp / "home")


# The boutique's services in start-up order (dependencies first).
def order(user: str, currency: str = "EUR") -> dict[str, Any]:
    """A boutique PlaceOrder body for ``user``, paid in ``currency``, with a card valid for years."""
    return {
        "user_id": user,
        "user_currency": currency,
        "address": {
            "street_address": "1600 Amphitheatre Parkway",
            "city": "Mountain View",
            "state": "CA",
            "country": "United States",
            "zip_code": 94043,
        },
        "email": "someone@example.com",
        "credit_card": {
            "credit_card_number": "4432-8015-6152-0454",
            "credit_card_cvv": 672,
            "credit_card_expiration_year": datetime.date.today().year + 2,
            "credit_card_expiration_month": 1,
        },
    }


BOUTIQUE = [
    "ad", "cart", "catalog", "currency", "email", "payment", "shipping", "checkout",
    "recommendation",
]  # fmt: skip

# Placements of the boutique: groups of services, each group one process. A group
# is told where every group started before it is, so each process reaches all it
# calls, and the last one — the front every test talks to — reaches everything.
PLACEMENTS = {
    "fused": [BOUTIQUE],
    "split": [[name] for name in BOUTIQUE],
    "mixed": [
        ["ad", "cart", "catalog", "currency", "recommendation"],
        ["email", "payment", "shipping", "checkout"],
    ],
}


class Cluster:
    """The processes of one placement; ``front`` is the one that reaches every service."""

    def __init__(self, servers: list[Server]) -> None:
        self.servers = servers

    @property
    def front(self) -> Server:
        return self.servers[-1]

    def stop(self) -> list[int]:
        return [server.stop() for server in reversed(self.servers)]


def start_placement(
    binary: Binary, groups: list[list[str]], logs: Path, *extra: str, **env: str
) -> Cluster:
    """One process of ``binary`` per group, each on ports the system picks."""
    servers: list[Server] = []
    placed: dict[str, str] = {}
    try:
        for i, group in enumerate(groups):
            options = [] if len(groups) == 1 else ["--only", ",".join(group)]
            options += [f"--remote={name}={address}" for name, address in placed.items()]
            if len(groups) > 1:
                options += ["--internal-port", "0"]
            log = logs / f"{i}-{'-'.join(group)}.log"
            server = start(
                binary.command("serve", "--port", "0", *options, *extra),
                log,
                {**binary.env, **env},
                cwd=binary.pyz.parent,
            )
            servers.append(server)
            if server.internal:
                placed |= dict.fromkeys(group, server.internal)
    except BaseException:
        Cluster(servers).stop()
        raise
    return Cluster(servers)
