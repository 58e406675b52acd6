"""The shop example as its authors run it: its own tests pass against three uvicorn processes."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests import shop


def test_the_shops_tests_pass_against_its_three_uvicorn_processes(tmp_path: Path) -> None:
    before = shop.route_files()
    with shop.original(tmp_path) as running:
        counts = shop.assert_tests_pass(
            running["gateway"].url, users_url=running["users"].url, orders_url=running["orders"].url
        )
    assert counts["passed"] >= 25
    assert shop.route_files() == before
    for process in running.values():
        log = process.log()
        assert "Application shutdown complete." in log, log
        assert "Traceback" not in log, log
    # the services kept their data where they were told to, not beside their code
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["orders.db", "users.db"]
    assert not any((shop.SHOP / name / "data").exists() for name in shop.SERVICES)


def test_without_the_service_urls_the_direct_tests_skip(tmp_path: Path) -> None:
    with shop.original(tmp_path) as running:
        counts = shop.assert_tests_pass(running["gateway"].url)
    assert counts["skipped"] == 5


def test_the_shops_tests_fail_when_the_gateway_is_not_there(tmp_path: Path) -> None:
    done = shop.run_tests("http://127.0.0.1:9", args=("-x", "tests/test_users.py"))
    assert done.returncode == 1
    assert "ConnectError" in done.stdout


def test_the_route_file_hashes_cover_every_module_and_see_one_changed_byte(
    tmp_path: Path,
) -> None:
    hashes = shop.route_files()
    for name in shop.SERVICES:
        assert f"{name}/main.py" in hashes
    assert "users/db.py" in hashes and "orders/db.py" in hashes
    copy = tmp_path / "shop"
    shutil.copytree(shop.SHOP, copy, ignore=shutil.ignore_patterns("__pycache__", "data"))
    assert shop.route_files(copy) == hashes
    main = copy / "users" / "main.py"
    main.write_text(main.read_text().replace('"/users/{user_id}"', '"/user/{user_id}"', 1))
    changed = shop.route_files(copy)
    assert {k for k in hashes if changed[k] != hashes[k]} == {"users/main.py"}
