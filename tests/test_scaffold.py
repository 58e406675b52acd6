"""``nanobuild new``: a service that passes ``check`` and its own tests."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import Sample
from tests.test_cli import nanobuild


def test_new_service_passes_check_and_its_tests(mini: Sample) -> None:
    done = nanobuild("new", "inventory", cwd=mini.root)
    assert done.returncode == 0, done.stderr
    assert "created services/inventory/" in done.stdout
    assert (mini.root / "services/inventory/inventory/kernel.py").is_file()
    assert (
        '[services.inventory]\npath = "services/inventory"' in (mini.root / "nano.toml").read_text()
    )
    assert "# A tiny, clean workspace" in (mini.root / "nano.toml").read_text()  # kept as written
    check = nanobuild("check", cwd=mini.root)
    assert check.returncode == 0, check.stdout
    assert "3 services" in check.stdout
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "services/inventory"],
        cwd=mini.root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert tests.returncode == 0, tests.stdout
    assert "2 passed" in tests.stdout


def test_new_service_in_a_folder_of_its_own_choosing(mini: Sample) -> None:
    assert nanobuild("new", "stock", "--path", "apps/stock", cwd=mini.root).returncode == 0
    assert (mini.root / "apps/stock/stock/handlers.py").is_file()
    assert nanobuild("check", cwd=mini.root).returncode == 0


def test_bad_names_are_refused_and_nothing_is_written(mini: Sample) -> None:
    before = (mini.root / "nano.toml").read_text()
    for name, message in [
        ("users", "already has a service or library named users"),
        ("email", "would shadow the module email"),
        ("3d", "is not a Python identifier"),
    ]:
        done = nanobuild("new", name, cwd=mini.root)
        assert done.returncode == 2
        assert f"E009 cannot create {name}: " in done.stderr and message in done.stderr
    outside = nanobuild("new", "x", "--path", "../x", cwd=mini.root)
    assert outside.returncode == 2 and "outside the workspace" in outside.stderr
    (mini.root / "services/taken").mkdir()
    assert "already exists" in nanobuild("new", "taken", cwd=mini.root).stderr
    assert (mini.root / "nano.toml").read_text() == before


def test_keywords_runtime_names_and_odd_paths(mini: Sample) -> None:
    for name in ("class", "msgspec", "uvicorn"):
        assert nanobuild("new", name, cwd=mini.root).returncode == 2
    done = nanobuild("new", "odd", "--path", 'apps/we"ird', cwd=mini.root)
    assert done.returncode == 0, done.stderr
    assert nanobuild("check", cwd=mini.root).returncode == 0  # nano.toml still parses
