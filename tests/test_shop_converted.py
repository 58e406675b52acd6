"""The shop with its users service converted to contracts (examples/shop-converted).

users is a contract service whose REST routes keep the FastAPI app's URLs on its own
port; the gateway calls it by its contracts. The example's own tests pass against
the binary fused and split in two, `check` passes, and a field renamed in users'
kernel is caught at the gateway's call site.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests import shop
from tests.servers import build_binary, free_port, start


def check(root: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "nanobuild", "check", "--workspace", str(root)]
    return subprocess.run(
        [*command, "--format", "json"], capture_output=True, text=True, timeout=120
    )


def diagnostics(root: Path) -> list[tuple[str, str, int | None, str]]:
    """(code, path, line, message) of each problem ``check`` finds; it must find some."""
    done = check(root)
    assert done.returncode == 1, done.stdout + done.stderr
    found = json.loads(done.stdout)["diagnostics"]
    return [(d["code"], d["path"], d.get("line"), d["message"]) for d in found]


def line_of(path: Path, text: str) -> int:
    """The line number of the one line of ``path`` that holds ``text``."""
    [number] = [n for n, line in enumerate(path.read_text().splitlines(), 1) if text in line]
    return number


@pytest.fixture
def converted(tmp_path: Path) -> Path:
    return shop.converted_workspace(tmp_path)


def test_the_overlay_holds_only_what_the_conversion_changes() -> None:
    for path in shop.CONVERTED.rglob("*.py"):
        original = shop.SHOP / path.relative_to(shop.CONVERTED)
        if original.is_file():
            assert original.read_bytes() != path.read_bytes(), path  # no copy of a file
    assert not (shop.CONVERTED / "orders").exists()


def test_check_passes_on_the_converted_workspace(converted: Path) -> None:
    done = check(converted)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout) == {"ok": True, "diagnostics": []}
    assert not (converted / "users" / "main.py").exists()  # the FastAPI app is gone


def test_a_renamed_field_of_a_users_contract_fails_at_the_gateways_call(converted: Path) -> None:
    kernel = converted / "users" / "users" / "kernel.py"
    text = kernel.read_text()
    fields = '    http: ClassVar[Route] = Route("POST /login")\n    email: str\n'
    assert fields in text
    kernel.write_text(text.replace(fields, fields.replace("email: str", "login: str")))
    main = converted / "gateway" / "main.py"
    [(code, path, line, message)] = diagnostics(converted)
    assert (code, path) == ("E212", "gateway/main.py")
    assert line == line_of(main, "call(LogIn(email=body.email")
    assert message == "contract LogIn of users has no field email"


def test_a_renamed_path_field_fails_with_the_route_code(converted: Path) -> None:
    kernel = converted / "users" / "users" / "kernel.py"
    text = kernel.read_text()
    route = '    http: ClassVar[Route] = Route("GET /users/{user_id}")\n    user_id: int\n'
    assert route in text
    kernel.write_text(text.replace(route, route.replace("user_id: int", "id: int")))
    found = diagnostics(converted)
    routes = [d for d in found if d[0] == "E231"]
    assert [(d[1], d[3]) for d in routes] == [
        (
            "users/users/kernel.py",
            "the route GET /users/{user_id} of users.GetUser binds user_id, "
            "which is not a field of it",
        )
    ]
    main = converted / "gateway" / "main.py"
    calls = sorted((d[0], d[1], d[2]) for d in found if d[0] != "E231")
    assert calls == [
        ("E212", "gateway/main.py", line_of(main, "call(GetUser(user_id=user_id))")),
        ("E212", "gateway/main.py", line_of(main, "call(GetUser(user_id=caller.user_id))")),
    ]


def test_a_contract_services_port_must_be_a_tcp_port(converted: Path) -> None:
    toml = converted / "nano.toml"
    toml.write_text(toml.read_text().replace("port = 8001", "port = 70000"))
    done = check(converted)
    assert done.returncode == 2, done.stdout + done.stderr
    [problem] = json.loads(done.stdout)["diagnostics"]
    assert problem["code"] == "E012"
    assert problem["message"] == "`services.users.port` = 70000 is not a TCP port"


# -- the binary: fused and split


def test_the_shops_tests_pass_against_the_converted_binary_fused_and_split(
    tmp_path: Path,
) -> None:
    users_port, orders_port = free_port(), free_port()
    root = shop.converted_workspace(tmp_path, users_port=users_port, orders_port=orders_port)
    binary = build_binary(root, tmp_path / "build")
    env = {**shop.service_env(tmp_path), "NANO_SECRET": "s-W89dsN73Y2AUGFIMghOoyQ", **binary.env}
    users = f"http://127.0.0.1:{users_port}"
    orders = f"http://127.0.0.1:{orders_port}"
    fused = start(binary.command("serve", "--port", "0"), tmp_path / "fused.log", env)
    try:
        shop.assert_tests_pass(fused.url, users_url=users, orders_url=orders)
        # users' routes are on its port alone: the gateway keeps the same paths its own
        assert httpx.get(f"{fused.url}/users/ada").json()["detail"][0]["loc"] == [
            "path",
            "user_id",
        ]
        refused = httpx.get(f"{users}/users/ada")
        assert refused.status_code == 400
        assert refused.json()["error"]["contract"] == "GetUser"
        assert httpx.get(f"{users}/orders").status_code == 404  # its own routes alone
        for face in (users, fused.url):  # its /api/ paths answer on both
            answer = httpx.post(f"{face}/api/users/Health", json={})
            assert answer.json() == {"status": "ok"}
    finally:
        assert fused.stop() == 0
    time.sleep(0.5)  # the ports are free again
    internal = free_port()
    back = start(
        binary.command("serve", "--only", "users", "--port", "0", "--internal-port", str(internal)),
        tmp_path / "users.log",
        env,
    )
    try:
        command = ["serve", "--only", "orders,gateway", "--port", "0"]
        remote = ["--remote", f"users=tcp://127.0.0.1:{internal}"]
        front = start(binary.command(*command, *remote), tmp_path / "front.log", env)
        try:
            shop.assert_tests_pass(front.url, users_url=users, orders_url=orders)
        finally:
            assert front.stop() == 0
    finally:
        assert back.stop() == 0
    assert "Traceback" not in back.log()
