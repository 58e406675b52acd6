"""The shop example as its authors run it: its own tests pass against three uvicorn processes."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

from tests import shop


def test_the_shops_tests_pass_against_its_three_uvicorn_processes(tmp_path: Path) -> None:
    before = shop.route_files()
    with shop.original(tmp_path) as running:
        urls = {"users_url": running["users"].url, "orders_url": running["orders"].url}
        everything = shop.assert_tests_pass(running["gateway"].url, **urls)
        # without the services' own URLs, only the tests that reach them directly skip
        gateway_only = shop.assert_tests_pass(running["gateway"].url)
    assert everything["passed"] >= 25
    assert gateway_only["skipped"] > 0
    assert gateway_only["passed"] + gateway_only["skipped"] == everything["passed"]
    assert shop.route_files() == before
    for process in running.values():
        log = process.log()
        assert "Application shutdown complete." in log, log
        assert "Traceback" not in log, log
    # the services kept their data where they were told to, not beside their code
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["orders.db", "users.db"]
    assert not any((shop.SHOP / name / "data").exists() for name in shop.SERVICES)


def test_the_shops_tests_fail_when_the_gateway_is_not_there() -> None:
    # a port bound but not listening refuses connections for as long as it is held
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{held.getsockname()[1]}"
        done = shop.run_tests(url, args=("-x", "tests/test_users.py"))
    assert done.returncode == 1
    assert "ConnectError" in done.stdout


def test_the_route_file_hashes_cover_every_module_and_see_one_changed_byte(
    tmp_path: Path,
) -> None:
    hashes = shop.route_files()
    for name in shop.SERVICES:
        assert f"{name}/main.py" in hashes
    assert "users/db.py" in hashes and "orders/db.py" in hashes
    # the original is plain FastAPI: nothing of nanobuild in any service file
    assert not [k for k in hashes if "nanobuild" in (shop.SHOP / k).read_text()]
    copy = tmp_path / "shop"
    shutil.copytree(shop.SHOP, copy, ignore=shutil.ignore_patterns("__pycache__", "data"))
    assert shop.route_files(copy) == hashes
    main = copy / "users" / "main.py"
    main.write_text(main.read_text().replace('"/users/{user_id}"', '"/user/{user_id}"', 1))
    changed = shop.route_files(copy)
    assert {k for k in hashes if changed[k] != hashes[k]} == {"users/main.py"}
