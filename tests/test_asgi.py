"""Adopted ASGI services: nano.toml's keys, check, the binary fused and split, the client."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from nanobuild.errors import WorkspaceError
from nanobuild.runtime.asgi import ORIGINS, Adopted, load_app
from nanobuild.runtime.httpclient import AsyncClient, Client
from nanobuild.runtime.spec import ServiceSpec
from tests.conftest import REPO, SAMPLES, Sample
from tests.servers import Binary, build_binary, free_port, start


@pytest.fixture
def adopt(tmp_path: Path) -> Sample:
    shutil.copytree(SAMPLES / "adopt", tmp_path / "adopt")
    return Sample(tmp_path / "adopt")


def problems(sample: Sample) -> list[tuple[str, str, str | None]]:
    with pytest.raises(WorkspaceError) as info:
        sample.load()
    return [(d.code, d.message, d.hint) for d in info.value.diagnostics]


# -- nano.toml


def test_the_sample_loads_with_its_keys(adopt: Sample) -> None:
    ws = adopt.load()
    users, gateway = ws.services["users"], ws.services["gateway"]
    assert (users.asgi, users.port, users.mount) == ("main:app", 18401, None)
    assert gateway.urls == {"USERS_URL": "users", "ORDERS_URL": "orders"}
    assert users.package_dir == adopt.root / "users"  # the folder is the package
    assert users.package == "_nanoasgi.users"
    assert adopt.root / "users" not in ws.import_paths()  # its main.py would collide


BAD_KEYS = [
    ('asgi = "main:app"\nport', 'asgi = "main"\nport', "E011", "is not module:attribute"),
    ('asgi = "main:app"\nmount = "/orders"', 'mount = "/orders"', "E011", "asgi` is not set"),
    ("port = 18401", 'port = 18401\nmount = "/u"', "E012", "both `port` and `mount`"),
    ("port = 18401", "port = 70000", "E012", "is not a TCP port"),
    ('mount = "/orders"', 'mount = "orders/"', "E012", "is not a URL path prefix"),
    ('mount = "/orders"', 'mount = "/"', "E013", "already taken by `services.orders"),
    ("port = 18401", "port = 8000", "E013", "already taken by `ingress.port`"),
    ('USERS_URL = "users"', 'USERS_URL = "userz"', "E014", "not a service of this"),
    ('depends = ["users", "orders"]', 'depends = ["orders"]', "E014", "is not in"),
    ('USERS_URL = "users"', '"2URL" = "users"', "E015", "'2URL' is not a name"),
    ('USERS_URL = "users"', 'NANO_SECRET = "users"', "E015", "is nanobuild's own"),
]


def test_each_bad_asgi_key_is_named_with_its_own_code(tmp_path: Path) -> None:
    found = []
    for number, (old, new, code, words) in enumerate(BAD_KEYS):
        shutil.copytree(SAMPLES / "adopt", tmp_path / str(number))
        sample = Sample(tmp_path / str(number))
        sample.edit("nano.toml", old, new)
        [(got, message, _)] = problems(sample)
        assert words in message, (code, message)
        found.append(got)
    assert found == [code for _, _, code, _ in BAD_KEYS]
    assert sorted(set(found)) == ["E011", "E012", "E013", "E014", "E015"]


def test_a_urls_service_not_in_the_workspace_gets_a_did_you_mean(adopt: Sample) -> None:
    adopt.edit("nano.toml", 'USERS_URL = "users"', 'USERS_URL = "userz"')
    [(code, message, hint)] = problems(adopt)
    assert code == "E014" and "USERS_URL names userz" in message
    assert hint == "did you mean `users`?"


# -- check


def test_check_reads_the_flat_modules_as_the_services_own(adopt: Sample) -> None:
    assert adopt.check() == []  # `import models` is each app's own, not a package to declare


def test_check_judges_the_apps_other_imports_against_requires(adopt: Sample) -> None:
    adopt.edit("users/models.py", 'OWNER = "users"', 'import yaml\n\nOWNER = "users"')
    found = adopt.only("E120")
    assert "users imports yaml" in found.message and found.path == "users/models.py"


def test_an_asgi_module_that_is_not_in_the_folder_is_e130(adopt: Sample) -> None:
    adopt.edit(
        "nano.toml", 'path = "users"\nasgi = "main:app"', 'path = "users"\nasgi = "mian:app"'
    )
    found = adopt.only("E130")
    assert "no module mian in users" in found.message
    assert found.hint == "did you mean `main`?"


def test_an_asgi_attribute_the_module_does_not_define_is_e131(adopt: Sample) -> None:
    adopt.edit("nano.toml", 'path = "users"\nasgi = "main:app"', 'path = "users"\nasgi = "main:ap"')
    found = adopt.only("E131")
    assert "users/main.py does not define ap" in found.message


# -- the runtime, in this process


PYDANTIC_APP = {
    "models.py": (
        "from __future__ import annotations\n"
        "from pydantic import BaseModel\n"
        "class Order(BaseModel):\n    id: str\n    lines: list[Line]\n"
        "class Line(BaseModel):\n    sku: str\n"
    ),
    "main.py": (
        "from __future__ import annotations\n"
        "from fastapi import FastAPI\n"
        "import models\nfrom models import Order\n"
        "app = FastAPI()\n"
        "@app.post('/orders', status_code=201)\n"
        "async def place(order: Order) -> models.Order:\n    return order\n"
    ),
}


def write_app(folder: Path, files: dict[str, str]) -> None:
    folder.mkdir(parents=True)
    for name, text in files.items():
        (folder / name).write_text(text)


def test_three_main_modules_load_side_by_side_and_models_resolve(tmp_path: Path) -> None:
    names = ("shopa", "shopb", "shopc")
    for name in names:
        main = PYDANTIC_APP["main.py"] + "import owner\n"
        write_app(
            tmp_path / name, {**PYDANTIC_APP, "main.py": main, "owner.py": f"NAME = {name!r}\n"}
        )
    apps = [
        load_app(
            ServiceSpec(
                name,
                f"_nanoasgi.{name}",
                {},
                asgi="main:app",
                port=1,
                modules=("main", "models", "owner"),
                folder=str(tmp_path / name),
            )
        )
        for name in names
    ]
    assert len({id(app) for app in apps}) == 3
    owners = [sys.modules[f"_nanoasgi.{name}.owner"].NAME for name in names]
    assert owners == list(names)
    assert "main" not in sys.modules and "models" not in sys.modules

    async def place() -> httpx.Response:
        transport = httpx.ASGITransport(app=apps[1])
        async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
            return await client.post("/orders", json={"id": "o1", "lines": [{"sku": "A"}]})

    answer = asyncio.run(place())
    assert answer.status_code == 201, answer.text
    assert answer.json() == {"id": "o1", "lines": [{"sku": "A"}]}


def test_an_app_that_is_not_asgi_is_refused_in_one_line(tmp_path: Path) -> None:
    write_app(tmp_path / "bad", {"main.py": "app = 3\nclass App:\n    pass\n"})
    spec = ServiceSpec(
        "bad",
        "_nanoasgi.bad",
        {},
        asgi="main:app",
        port=1,
        modules=("main",),
        folder=str(tmp_path / "bad"),
    )
    with pytest.raises(Exception, match="is not an ASGI app: it is int"):
        load_app(spec)


def test_the_client_reaches_an_app_of_this_process_in_memory(tmp_path: Path) -> None:
    write_app(tmp_path / "mem", PYDANTIC_APP)
    spec = ServiceSpec(
        "mem",
        "_nanoasgi.mem",
        {},
        asgi="main:app",
        port=1,
        modules=("main", "models"),
        folder=str(tmp_path / "mem"),
    )
    app = load_app(spec)
    port = free_port()  # nothing listens there: only the in-memory path can answer

    async def run() -> tuple[int, int]:
        group = Adopted([], "h11")
        group.front = ("127.0.0.1", port, app)
        await group.start()
        try:
            async with AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                placed = await client.post("/orders", json={"id": "o", "lines": []})
            with pytest.raises(httpx.ConnectError):  # anything else: the network
                async with AsyncClient(base_url=f"http://127.0.0.1:{free_port()}") as other:
                    await other.get("/")
            blocking = await asyncio.to_thread(_blocking, port)
            return placed.status_code, blocking
        finally:
            await group.close()

    assert asyncio.run(run()) == (201, 201)
    assert ORIGINS == {}


def _blocking(port: int) -> int:
    with Client(base_url=f"http://127.0.0.1:{port}") as client:
        return client.post("/orders", json={"id": "o", "lines": []}).status_code


# -- the binary: fused and split


@pytest.fixture(scope="module")
def adopt_binary(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Binary]:
    tmp = tmp_path_factory.mktemp("adopt-binary")
    return tmp, build_binary(SAMPLES / "adopt", tmp)


def test_the_binary_serves_the_apps_fused(
    adopt_binary: tuple[Path, Binary], tmp_path: Path
) -> None:
    _, binary = adopt_binary
    log = tmp_path / "life.log"
    front = free_port()
    server = start(
        binary.command("serve", "--port", str(front)),
        tmp_path / "err.log",
        binary.env,
        ADOPT_LOG=str(log),
    )
    try:
        profile = httpx.get(f"{server.url}/profile/u1").json()
        assert profile["models"] == "gateway"
        assert profile["user"] == {"id": "u1", "name": "Ada", "models": "users", "state": "hello"}
        assert profile["orders"] == {"models": "orders", "user": "u1", "root": "/orders"}
        urls = httpx.get(f"{server.url}/urls").json()
        assert urls == {
            "USERS_URL": "http://127.0.0.1:18401",
            "ORDERS_URL": f"http://127.0.0.1:{front}/orders",
        }
        assert httpx.get("http://127.0.0.1:18401/users/u1").status_code == 200  # its own port
        assert httpx.get("http://127.0.0.1:18401/users/u9").status_code == 404
    finally:
        assert server.stop() == 0
    # lifespans in dependency order, shutdown in reverse; orders has none, and is fine
    assert log.read_text().split("\n")[:-1] == [
        "start users",
        "start gateway",
        "stop gateway",
        "stop users",
    ]
    assert "Traceback" not in server.log()


def test_an_apps_own_port_has_the_front_doors_limits(
    adopt_binary: tuple[Path, Binary], tmp_path: Path
) -> None:
    _, binary = adopt_binary
    env = {**binary.env, "NANO_HEADER_TIMEOUT": "0.5", "NANO_MAX_CONNECTIONS": "4"}
    server = start(binary.command("serve", "--port", "0"), tmp_path / "err.log", env)
    try:
        half = socket.create_connection(("127.0.0.1", 18401), timeout=5)
        half.sendall(b"GET /users/u1 HTTP/1.1\r\nHost: x\r\n")  # a head that never ends
        began = time.monotonic()
        assert half.recv(1) == b"", "the half head was answered"
        assert time.monotonic() - began < 3, "closed at the header timeout, not later"
        waiting = [socket.create_connection(("127.0.0.1", 18401)) for _ in range(8)]
        assert httpx.get("http://127.0.0.1:18401/users/u1").status_code == 200  # past the cap
        for sock in [half, *waiting]:
            sock.close()
    finally:
        assert server.stop() == 0
    assert "Traceback" not in server.log()


def test_the_binary_serves_the_gateway_split(
    adopt_binary: tuple[Path, Binary], tmp_path: Path
) -> None:
    _, binary = adopt_binary
    env = {"NANO_SECRET": "s-rJJ3eNJvhvNgviymkAWi9Q", **binary.env}
    # both ports the system's: the internal one defaults to the next port after --port,
    # which another process may hold
    back = start(
        binary.command("serve", "--only", "users,orders", "--port", "0", "--internal-port", "0"),
        tmp_path / "back.log",
        env,
    )
    try:
        command = binary.command(
            "serve",
            "--only",
            "gateway",
            "--port",
            "0",
            "--remote",
            "users=http://127.0.0.1:18401",
            "--remote",
            f"orders={back.url}",
        )
        gateway = start(command, tmp_path / "gateway.log", env)
        try:
            profile = httpx.get(f"{gateway.url}/profile/u1").json()
            assert profile["user"]["models"] == "users"
            assert profile["orders"]["root"] == "/orders"
            assert httpx.get(f"{gateway.url}/urls").json()["ORDERS_URL"] == f"{back.url}/orders"
        finally:
            assert gateway.stop() == 0
    finally:
        assert back.stop() == 0


def test_the_default_internal_port_steps_over_the_apps_own_ports(
    adopt_binary: tuple[Path, Binary], tmp_path: Path
) -> None:
    # users keeps 18401, the port after the HTTP port: the TCP transport takes 18402
    _, binary = adopt_binary
    command = binary.command("serve", "--only", "users,orders", "--port", "18400")
    back = start(command, tmp_path / "back.log", binary.env, NANO_SECRET="s-Mr7QD5PCv_GkxqQni3YCGw")
    try:
        assert "internally at tcp://127.0.0.1:18402" in back.log()
        assert httpx.get("http://127.0.0.1:18401/users/u1").status_code in (200, 404)
    finally:
        assert back.stop() == 0


def test_an_app_that_fails_to_import_stops_the_binary_in_one_line(
    adopt: Sample, tmp_path: Path
) -> None:
    adopt.write("orders/models.py", "raise RuntimeError('no database')\n")
    adopt.edit("orders/main.py", "from models import OWNER", "import models\nOWNER = 1")
    done = subprocess.run(
        [sys.executable, "-m", "nanobuild", "serve", "--workspace", str(adopt.root), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "the app of orders, main:app, fails to import: RuntimeError: no database" in done.stderr
    assert "Traceback" not in done.stderr


# -- the shop example, adopted


def shop_copy(tmp: Path) -> tuple[Path, int, int]:
    """A copy of examples/shop whose services take free ports (the machine is shared)."""
    copy = tmp / "shop"
    shutil.copytree(
        REPO / "examples" / "shop",
        copy,
        ignore=shutil.ignore_patterns("dist", "data", "__pycache__", ".*"),
    )
    users, orders = free_port(), free_port()
    toml = copy / "nano.toml"
    text = toml.read_text().replace("port = 8001", f"port = {users}")
    toml.write_text(text.replace("port = 8002", f"port = {orders}"))
    return copy, users, orders


def test_the_shops_tests_pass_against_the_adopted_binary_fused_and_split(tmp_path: Path) -> None:
    from tests import shop

    before = shop.route_files()
    copy, users_port, orders_port = shop_copy(tmp_path)
    binary = build_binary(copy, tmp_path / "build")
    env = {**shop.service_env(tmp_path), "NANO_SECRET": "s-rJJ3eNJvhvNgviymkAWi9Q", **binary.env}
    users = f"http://127.0.0.1:{users_port}"
    orders = f"http://127.0.0.1:{orders_port}"
    fused = start(binary.command("serve", "--port", "0"), tmp_path / "fused.log", env)
    try:
        shop.assert_tests_pass(fused.url, users_url=users, orders_url=orders)
    finally:
        assert fused.stop() == 0
    time.sleep(0.5)
    back = start(
        binary.command("serve", "--only", "users,orders", "--port", "0"),
        tmp_path / "back.log",
        env,
    )
    try:
        gateway = start(
            binary.command(
                "serve",
                "--only",
                "gateway",
                "--port",
                "0",
                "--remote",
                f"users={users}",
                "--remote",
                f"orders={orders}",
            ),
            tmp_path / "gateway.log",
            env,
        )
        try:
            shop.assert_tests_pass(gateway.url, users_url=users, orders_url=orders)
        finally:
            assert gateway.stop() == 0
    finally:
        assert back.stop() == 0
    assert shop.route_files() == before  # the same route files, byte for byte
    assert shop.route_files(copy) == before
