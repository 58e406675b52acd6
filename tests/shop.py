"""The shop example (examples/shop): run its services and its own tests.

The example is a plain FastAPI project; its tests talk HTTP to a gateway at SHOP_URL
(and to the services behind it at USERS_URL and ORDERS_URL, when set). These helpers
start the original apps as three uvicorn processes, run the example's tests against
any set of URLs, and hash the services' files, so that every way of running the shop
(original, adopted fused, adopted split) is proved with the same tests and the same
untouched files.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.servers import Server, output

REPO = Path(__file__).resolve().parent.parent
SHOP = REPO / "examples" / "shop"
CONVERTED = REPO / "examples" / "shop-converted"  # the files the conversion changes
SERVICES = ("users", "orders", "gateway")  # start-up order: the gateway calls the others
SECRET = "the-shop-tests-signing-secret-0123456789"

_RUNNING = re.compile(r"Uvicorn running on (http://\S+)")


def route_files(root: Path = SHOP) -> dict[str, str]:
    """sha256 of every ``.py`` file under the three service folders, by path from ``root``.

    Compare the result before and after a run to prove no service file was changed.
    """
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for service in SERVICES
        for path in sorted((root / service).rglob("*.py"))
        if "__pycache__" not in path.parts
    }


def converted_workspace(tmp: Path, *, users_port: int = 8001, orders_port: int = 8002) -> Path:
    """The shop with users converted to contracts, assembled in ``tmp/shop-converted``.

    A copy of examples/shop (without its build output, databases and caches), each
    folder examples/shop-converted replaces wholesale (``users``: a contract service
    now) dropped, then every file of examples/shop-converted laid over it: its own
    nano.toml and nano.lock, and the gateway's changed modules. Its nano.toml then
    gives users and orders these ports (8001 and 8002, as the example has them). The
    example's own tests (from examples/shop) run against it unchanged. Returns the
    workspace root.
    """
    root = tmp / "shop-converted"
    skipped = shutil.ignore_patterns("dist", "data", "__pycache__", ".*")
    shutil.copytree(SHOP, root, ignore=skipped)
    for replaced in REPLACED:
        shutil.rmtree(root / replaced)
    shutil.copytree(CONVERTED, root, ignore=skipped, dirs_exist_ok=True)
    toml = root / "nano.toml"
    text = toml.read_text().replace("port = 8001", f"port = {users_port}")
    toml.write_text(text.replace("port = 8002", f"port = {orders_port}"))
    return root


REPLACED = ("users",)  # the shop's folders the converted workspace has a new version of


def service_env(tmp: Path) -> dict[str, str]:
    """The shop's settings for every way of running it: one secret, databases in ``tmp/data``.

    (The gateway's USERS_URL and ORDERS_URL are not here: they depend on where the
    services run.)
    """
    return {
        "JWT_SECRET": SECRET,
        "USERS_DB": str(tmp / "data" / "users.db"),
        "ORDERS_DB": str(tmp / "data" / "orders.db"),
    }


def run_tests(
    shop_url: str,
    *,
    users_url: str | None = None,
    orders_url: str | None = None,
    args: tuple[str, ...] = (),
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """The example's own pytest run (a subprocess, from examples/shop) against these URLs.

    Without ``users_url``/``orders_url`` the tests that reach a service directly skip.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("USERS_URL", "ORDERS_URL")}
    env |= {"SHOP_URL": shop_url, "PYTHONDONTWRITEBYTECODE": "1"}
    env |= {k: v for k, v in (("USERS_URL", users_url), ("ORDERS_URL", orders_url)) if v}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args]
    return subprocess.run(
        command, cwd=SHOP, env=env, capture_output=True, text=True, timeout=timeout
    )


def assert_tests_pass(
    shop_url: str, *, users_url: str | None = None, orders_url: str | None = None
) -> dict[str, int]:
    """Run the example's tests against these URLs; fail unless they all pass.

    Returns the counts of the summary line (``{"passed": 27}``, ``"skipped"`` when a
    service URL was not given); with both service URLs nothing may be skipped.
    """
    done = run_tests(shop_url, users_url=users_url, orders_url=orders_url)
    assert done.returncode == 0, done.stdout + done.stderr
    last = done.stdout.strip().splitlines()[-1]
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (\w+)", last)}
    assert counts.get("passed", 0) > 0, done.stdout
    if users_url and orders_url:
        assert "skipped" not in counts, done.stdout
    return counts


def start_service(name: str, tmp: Path, **env: str) -> Server:
    """``uvicorn main:app`` from the service's folder on a free port of 127.0.0.1.

    Port 0 lets the system pick the port, which uvicorn reports in its start-up line,
    so there is no race for a port. Settings are :func:`service_env`'s, then ``env``;
    its output (stderr and stdout) goes to ``tmp/<name>.log``.
    """
    log = tmp / f"{name}.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "main:app", "--host", "127.0.0.1", "--port", "0"],
        cwd=SHOP / name,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **service_env(tmp), **env},
    )
    for line in output(proc, log):
        if found := _RUNNING.search(line):
            return Server(proc, found.group(1), log)
    proc.kill()
    proc.wait()
    time.sleep(0.2)  # let the pump write the last lines
    raise AssertionError(f"{name} did not start:\n{log.read_text()}")


@contextmanager
def original(tmp: Path) -> Iterator[dict[str, Server]]:
    """The shop as its authors run it: three uvicorn processes, the gateway told the others' URLs.

    Yields the processes by service name; stops them all (gateway first) on the way out.
    """
    running: dict[str, Server] = {}
    try:
        running["users"] = start_service("users", tmp)
        running["orders"] = start_service("orders", tmp)
        running["gateway"] = start_service(
            "gateway", tmp, USERS_URL=running["users"].url, ORDERS_URL=running["orders"].url
        )
        yield running
    finally:
        for process in reversed(running.values()):
            process.stop()
