"""The shop's gateway request (gateway -> users), before and after adoption, side by side.

Four systems answer ``GET /users/{id}`` on the gateway, which asks users for it:

* original: the example's three apps, one uvicorn process each, the gateway calling
  users over loopback HTTP with its plain ``httpx.AsyncClient``;
* adopted, environment URL: the same files in one binary; the gateway's client is
  still plain httpx, to the ``USERS_URL`` nanobuild sets (loopback, in one process);
* adopted, in memory: a temporary copy of the example whose one client line uses
  ``nanobuild.runtime.httpclient.AsyncClient``, so the call to users never leaves the
  process (the example itself stays plain FastAPI);
* converted: the shop with users converted to contracts (examples/shop-converted),
  the gateway calling it with typed calls (``call(GetUser(...))``), in one binary.

Beside them, the apps' own work, with no server and no users app behind the gateway:
in a child process the two apps are imported as uvicorn would import them and called
as ASGI apps directly, on the binaries' event loop; users with the request, the
gateway with nanobuild's client answered in memory by a stand-in that replays users'
recorded answer; and that client and stand-in alone, whose time is taken off the
gateway's. The sum is what the in-memory system pays whatever its server and client.
Users is also timed on its own port of the in-memory binary: that less users alone is
what receiving a request and sending its answer costs (the raw client, the server).
The original divided by the apps' work plus that is the most in-memory calls could
reach on this example, were nanobuild's client free.

All four run at once. The requests are sent one after another over one keep-alive
connection by a raw HTTP/1.1 client (a blocking socket and the load generator's
response parser), so the client's own cost stays small beside the systems'. Each
round times every system in turn, starting one later each round; the CPUs are held
out of idle states while it runs (``/dev/cpu_dma_latency``; ``--allow-idle`` for
without). Figures are medians per request over the rounds' medians; ratios are the
medians of the rounds' ratios, with their range. The issue's target: in memory >= 3x
faster than the original at the median.

    python bench/adoption.py [--requests 500] [--rounds 5] [--allow-idle]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
sys.path[:0] = [str(REPO), str(BENCH)]

import loadgen  # noqa: E402 - the system benchmark's raw HTTP/1.1 response parser
from transport_latency import cpus_awake  # noqa: E402

from nanobuild.runtime.asgi import ORIGINS  # noqa: E402
from nanobuild.runtime.httpclient import AsyncClient  # noqa: E402
from tests import shop  # noqa: E402 - the example's own runners
from tests.servers import Binary, Server, build_binary, free_port, start  # noqa: E402

TARGET = 3.0
SYSTEMS = {
    "original": "original: three uvicorn processes",
    "env": "adopted, environment URL (httpx, loopback)",
    "memory": "adopted, nanobuild's client (in memory)",
    "converted": "users converted to contracts (typed call)",
}
ONE_LINE = (
    "return httpx.AsyncClient(base_url=base_url, timeout=10.0)",
    "return __import__('nanobuild.runtime.httpclient').runtime.httpclient"
    ".AsyncClient(base_url=base_url, timeout=10.0)",
)
WARM_UP = 50  # requests before each timed batch
JSON = [(b"content-type", b"application/json")]


class Raw:
    """One keep-alive HTTP/1.1 connection, one request at a time, on a blocking socket."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = bytearray()

    def send(self, data: bytes) -> tuple[int, bytes]:
        """(status, body) of the answer to ``data``, a whole request."""
        self.sock.sendall(data)
        while True:
            answer = loadgen._parse(self.buffer)
            if answer is not None:
                del self.buffer[: answer[2]]
                return answer[0], answer[1]
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            self.buffer += chunk

    def close(self) -> None:
        self.sock.close()


def request(method: str, path: str, body: Any = None) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    if body is None:
        return (head + "\r\n").encode()
    data = json.dumps(body).encode()
    head += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    return head.encode() + data


def sign_up(port: int) -> bytes:
    """A user made through the gateway; the request that reads it back."""
    body = {"name": "Ada", "email": f"ada{time.time_ns()}@example.com", "password": "long-enough"}
    conn = Raw(port)
    try:
        status, answer = conn.send(request("POST", "/signup", body))
        assert status == 201, (status, answer)
        user = json.loads(answer)
        read = request("GET", f"/users/{user['id']}")
        status, answer = conn.send(read)
        assert status == 200 and json.loads(answer) == user, (status, answer)
    finally:
        conn.close()
    return read


def timed(port: int, read: bytes, requests: int) -> float:
    """The median seconds of ``requests`` sequential gateway requests."""
    conn = Raw(port)
    times = []
    try:
        for _ in range(WARM_UP):
            assert conn.send(read)[0] == 200
        for _ in range(requests):
            began = time.perf_counter()
            status, _ = conn.send(read)
            times.append(time.perf_counter() - began)
            assert status == 200
    finally:
        conn.close()
    return statistics.median(times)


# -- the systems


def adopted_copy(tmp: Path, *, in_memory: bool, users_port: int) -> Path:
    """A copy of the example (its own ports for users and orders), its client line swapped."""
    copy = tmp / ("shop-memory" if in_memory else "shop-env")
    shutil.copytree(shop.SHOP, copy, ignore=shutil.ignore_patterns("dist", "data", "__pycache__"))
    toml = copy / "nano.toml"
    text = toml.read_text().replace("port = 8001", f"port = {users_port}")
    toml.write_text(text.replace("port = 8002", f"port = {free_port()}"))
    if in_memory:
        clients = copy / "gateway" / "clients.py"
        text = clients.read_text()
        assert ONE_LINE[0] in text, "the gateway's client line changed: update ONE_LINE"
        clients.write_text(text.replace(*ONE_LINE))
    return copy


def build(tmp: Path, users_port: int) -> dict[str, Binary]:
    """The three binaries; users of the in-memory one listens on ``users_port``."""
    workspaces = {
        "env": adopted_copy(tmp / "env", in_memory=False, users_port=free_port()),
        "memory": adopted_copy(tmp / "memory", in_memory=True, users_port=users_port),
        "converted": shop.converted_workspace(
            tmp / "converted", users_port=free_port(), orders_port=free_port()
        ),
    }
    return {name: build_binary(root, tmp / f"{name}-build") for name, root in workspaces.items()}


@contextmanager
def running(tmp: Path, binaries: dict[str, Binary]) -> Iterator[dict[str, int]]:
    """Every system started at once; yields the gateway's port of each."""
    with ExitStack() as stack:
        (tmp / "original").mkdir()
        original = stack.enter_context(shop.original(tmp / "original"))
        ports = {"original": int(original["gateway"].url.rsplit(":", 1)[1])}
        for name, binary in binaries.items():
            server = serve(tmp / f"{name}-run", binary)
            stack.callback(server.stop)
            ports[name] = int(server.url.rsplit(":", 1)[1])
        yield ports


def serve(tmp: Path, binary: Binary) -> Server:
    tmp.mkdir()
    env = {
        **shop.service_env(tmp),
        **binary.env,
        "NANO_STRICT": "0",
        "NANO_SECRET": "bench-secret-3pQz8NwYc1LkX0vRj5TeHA",
    }
    return start(binary.command("serve", "--port", "0"), tmp / "log", env)


# -- the apps' own work


def apps_alone(data: Path, requests: int, rounds: int) -> dict[str, float]:
    """Median seconds of users' and the gateway's own work per request, each app called directly.

    Run in a child process: it imports the example's modules by their flat names.
    """
    os.environ.update(shop.service_env(data), USERS_URL="http://users", ORDERS_URL="http://orders")
    users, gateway = _imported("users"), _imported("gateway")
    timing = _time_apps(users, gateway, requests, rounds)
    try:  # the loop the binaries serve on
        import uvloop
    except ImportError:
        return asyncio.run(timing)
    return uvloop.run(timing)


def _imported(service: str) -> Any:
    """``main:app`` of the service, as ``uvicorn main:app`` run from its folder imports it."""
    folder = str(shop.SHOP / service)
    names = [path.stem for path in (shop.SHOP / service).glob("*.py")]
    sys.path.insert(0, folder)
    try:
        return importlib.import_module("main").app
    finally:
        sys.path.remove(folder)
        for name in names:  # the next service has modules of the same names
            sys.modules.pop(name, None)


async def _time_apps(users: Any, gateway: Any, requests: int, rounds: int) -> dict[str, float]:
    async with users.router.lifespan_context(users), gateway.router.lifespan_context(gateway):
        body = json.dumps({"name": "Ada", "email": "ada@example.com", "password": "long-enough"})
        status, made = await _asgi(users, "POST", "/users", body.encode())
        assert status == 201, (status, made)
        path = f"/users/{json.loads(made)['id']}"
        status, answer = await _asgi(users, "GET", path)
        assert status == 200, (status, answer)

        async def recorded(scope: Any, receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": JSON})
            await send({"type": "http.response.body", "body": answer})

        ORIGINS[("http", "users", 80)] = (recorded, {}, asyncio.get_running_loop())
        gateway.state.users = AsyncClient(base_url="http://users", timeout=10.0)
        client = gateway.state.users

        async def stand_in() -> int:
            return (await client.get(path)).status_code  # type: ignore[no-any-return]

        systems = {
            "users": lambda: _asgi(users, "GET", path),
            "gateway": lambda: _asgi(gateway, "GET", path),
            "client": stand_in,
        }
        found: dict[str, list[float]] = {name: [] for name in systems}
        for _ in range(rounds):
            for name, system in systems.items():
                found[name].append(await _median(system, requests))
        return {name: statistics.median(medians) for name, medians in found.items()}


async def _median(answer: Callable[[], Awaitable[Any]], requests: int) -> float:
    times = []
    for turn in range(WARM_UP + requests):
        began = time.perf_counter()
        found = await answer()
        if turn >= WARM_UP:
            times.append(time.perf_counter() - began)
        assert (found if isinstance(found, int) else found[0]) == 200
    return statistics.median(times)


async def _asgi(app: Any, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
    """(status, body) of ``app``'s answer to one request, called as a server calls it."""
    headers = [(b"host", b"127.0.0.1")]
    if body:
        headers += [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
        "state": {},
    }
    answer: dict[str, Any] = {"body": b""}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
        elif message["type"] == "http.response.body":
            answer["body"] += message.get("body", b"")

    await app(scope, receive, send)
    return answer["status"], answer["body"]


def measure_apps_alone(tmp: Path, requests: int, rounds: int) -> dict[str, float]:
    """``apps_alone`` in a child process (CPUs held as the parent holds them)."""
    data = tmp / "alone"
    command = [sys.executable, __file__, "--apps-alone", str(data)]
    command += ["--requests", str(requests), "--rounds", str(rounds)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise SystemExit(f"timing the apps alone failed:\n{done.stderr}")
    return json.loads(done.stdout.splitlines()[-1])  # type: ignore[no-any-return]


# -- the run


def rotated(names: list[str], turn: int) -> list[str]:
    return names[turn % len(names) :] + names[: turn % len(names)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--allow-idle", action="store_true", help="let the CPUs enter idle states between calls"
    )
    parser.add_argument("--apps-alone", type=Path, help=argparse.SUPPRESS)  # the child's mode
    args = parser.parse_args()
    if args.apps_alone:
        with cpus_awake(allow_idle=args.allow_idle):
            print(json.dumps(apps_alone(args.apps_alone, args.requests, args.rounds)))
        return
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        users_port = free_port()
        binaries = build(tmp, users_port)
        with running(tmp, binaries) as ports:
            reads = {name: sign_up(port) for name, port in ports.items()}
            # users on its own port of the in-memory binary: the same path, the same user
            ports["server"], reads["server"] = users_port, reads["memory"]
            rounds: list[dict[str, float]] = []
            with cpus_awake(allow_idle=args.allow_idle) as condition:
                for turn in range(args.rounds):
                    found = {}
                    for name in rotated(list(ports), turn):
                        found[name] = timed(ports[name], reads[name], args.requests)
                    rounds.append(found)
                alone = measure_apps_alone(tmp, args.requests, args.rounds)
    report(rounds, alone, args.requests, condition)


def report(
    rounds: list[dict[str, float]], alone: dict[str, float], requests: int, condition: str
) -> None:
    print(
        f"gateway GET /users/{{id}} (gateway -> users): median per request, "
        f"{len(rounds)} rounds x {requests} sequential requests (raw HTTP/1.1 keep-alive)"
    )
    print(f"  {condition}")
    for name, label in SYSTEMS.items():
        figure = statistics.median(r[name] for r in rounds)
        print(f"  {label:<46} {figure * 1e3:8.3f} ms")
    for name, what in (
        ("env", "adopted (environment URL)"),
        ("memory", "adopted (in memory)"),
        ("converted", "converted (typed call)"),
    ):
        ratios = [r["original"] / r[name] for r in rounds]
        ratio = statistics.median(ratios)
        line = (
            f"  original / {what:<28} {ratio:5.2f}x  (rounds {min(ratios):.2f}-{max(ratios):.2f})"
        )
        if name == "memory":
            verdict = "meets" if ratio >= TARGET else "MISSES"
            line += f"  {verdict} the issue's >= {TARGET:g}x target"
        print(line)
    gateway = alone["gateway"] - alone["client"]
    own = alone["users"] + gateway
    server = statistics.median(r["server"] for r in rounds) - alone["users"]
    original = statistics.median(r["original"] for r in rounds)
    print(
        f"  the apps' own work, no server or client: users {alone['users'] * 1e3:.3f} ms"
        f" + gateway {gateway * 1e3:.3f} ms = {own * 1e3:.3f} ms"
    )
    print(
        f"  nanobuild's part of the in-memory request: its client {alone['client'] * 1e3:.3f} ms,"
        f" the server's request and answer {server * 1e3:.3f} ms"
    )
    print(
        f"  original / (apps' own work + server)    {original / (own + server):5.2f}x"
        "  (the most in-memory calls can reach here: no client cost at all)"
    )


if __name__ == "__main__":
    main()
