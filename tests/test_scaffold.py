"""``nanobuild new`` and ``init``: services, libraries and workspaces that pass ``check``
and their own tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import Sample
from tests.test_cli import nanobuild


def pytest_in(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """pytest run in ``folder``, as a user runs it there."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
    )


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
    tests = pytest_in(mini.root, "services/inventory")
    assert tests.returncode == 0, tests.stdout
    assert "3 passed" in tests.stdout  # in process, refused input, and over HTTP


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


def test_the_scaffolded_test_passes_once_the_service_calls_another(mini: Sample) -> None:
    assert nanobuild("new", "inventory", cwd=mini.root).returncode == 0
    mini.edit(
        "nano.toml", '[services.inventory]\npath = "services/inventory"\ndepends = []',
        '[services.inventory]\npath = "services/inventory"\ndepends = ["users"]',
    )  # fmt: skip
    handlers = "services/inventory/inventory/handlers.py"
    mini.edit(handlers, "import BadRequest, handler", "import BadRequest, call, handler")
    mini.edit(handlers, "from .kernel", "from users.kernel import GetUser\n\nfrom .kernel")
    mini.edit(
        handlers, "    return Greeting(", '    await call(GetUser(id="u1"))  # a real call\n    return Greeting('
    )  # fmt: skip
    assert nanobuild("check", cwd=mini.root).returncode == 0
    tests = pytest_in(mini.root, "-v", "services/inventory")
    assert tests.returncode == 0, tests.stdout
    assert "3 passed" in tests.stdout
    # and it really called users: a user that is not there fails the scaffolded test
    mini.edit(handlers, 'GetUser(id="u1")', 'GetUser(id="nobody")')
    failed = pytest_in(mini.root, "services/inventory")
    assert failed.returncode == 1 and "NotFound: no user nobody" in failed.stdout


def test_new_service_with_a_package_of_its_own(mini: Sample) -> None:
    refused = nanobuild("new", "email", cwd=mini.root)
    assert refused.returncode == 2
    assert "E009 cannot create email: a package named email would shadow" in refused.stderr
    assert "--package email_service" in refused.stderr  # the hint says what to do
    done = nanobuild("new", "email", "--package", "mailer", cwd=mini.root)
    assert done.returncode == 0, done.stderr
    assert (mini.root / "services/email/mailer/kernel.py").is_file()
    assert (mini.root / "services/email/tests/test_mailer.py").is_file()
    assert 'path = "services/email"\npackage = "mailer"\n' in (mini.root / "nano.toml").read_text()
    assert nanobuild("check", cwd=mini.root).returncode == 0
    tests = pytest_in(mini.root, "services/email")
    assert tests.returncode == 0, tests.stdout
    assert "3 passed" in tests.stdout


def test_a_package_that_cannot_be_used_is_refused(mini: Sample) -> None:
    before = (mini.root / "nano.toml").read_text()
    for package, message in [
        ("3x", "'3x' is not a Python identifier"),
        ("json", "a package named json would shadow the module json"),
        ("units", "libraries.units already has the package units"),
    ]:
        done = nanobuild("new", "stock", "--package", package, cwd=mini.root)
        assert done.returncode == 2
        assert f"E022 --package {package!r} cannot be used for stock: {message}" in done.stderr
        lib = nanobuild("new", "--library", "shelf", "--package", package, cwd=mini.root)
        assert lib.returncode == 2 and "E022" in lib.stderr
    assert (mini.root / "nano.toml").read_text() == before
    assert not (mini.root / "services/stock").exists() and not (mini.root / "libs/shelf").exists()


def test_new_library(mini: Sample) -> None:
    done = nanobuild("new", "--library", "money", cwd=mini.root)
    assert done.returncode == 0, done.stderr
    assert "created libs/money/ and [libraries.money] in nano.toml" in done.stdout
    assert (mini.root / "libs/money/money/__init__.py").is_file()
    assert (
        '\n[libraries.money]\npath = "libs/money"\nrequires = []\n'
        in (mini.root / "nano.toml").read_text()
    )
    check = nanobuild("check", cwd=mini.root)
    assert check.returncode == 0, check.stdout
    assert "2 libraries" in check.stdout
    tests = pytest_in(mini.root, "libs/money")
    assert tests.returncode == 0, tests.stdout
    assert "1 passed" in tests.stdout
    other = nanobuild("new", "--library", "metrics", "--path", "shared/metrics", cwd=mini.root)
    assert other.returncode == 0 and (mini.root / "shared/metrics/metrics/__init__.py").is_file()
    assert nanobuild("check", cwd=mini.root).returncode == 0


def test_bad_library_names_are_refused(mini: Sample) -> None:
    before = (mini.root / "nano.toml").read_text()
    for name, message in [
        ("users", "already has a service or library named users"),
        ("json", "would shadow the module json"),
        ("not-a-name", "is not a Python identifier"),
    ]:
        done = nanobuild("new", "--library", name, cwd=mini.root)
        assert done.returncode == 2
        assert f"E021 cannot create {name}: " in done.stderr and message in done.stderr
    assert (mini.root / "nano.toml").read_text() == before


def test_init_writes_a_workspace_that_passes_check_and_its_tests(tmp_path: Path) -> None:
    done = nanobuild("init", "shop", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "created the workspace shop in shop" in done.stdout
    root = tmp_path / "shop"
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) == [
        ".gitignore",
        "README.md",
        "nano.toml",
        "services/hello/conftest.py",
        "services/hello/hello/__init__.py",
        "services/hello/hello/handlers.py",
        "services/hello/hello/kernel.py",
        "services/hello/tests/test_hello.py",
    ]
    assert '[workspace]\nname = "shop"\n' in (root / "nano.toml").read_text()
    check = nanobuild("check", cwd=root)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "shop: 1 service, 0 libraries: all checks passed" in check.stdout
    tests = pytest_in(root)
    assert tests.returncode == 0, tests.stdout
    assert "3 passed" in tests.stdout
    assert nanobuild("new", "users", cwd=root).returncode == 0  # and it grows as any does
    assert "shop: 2 services" in nanobuild("check", cwd=root).stdout


def test_init_in_the_current_folder_beside_existing_code(tmp_path: Path) -> None:
    project = tmp_path / "my project"
    (project / "users").mkdir(parents=True)
    (project / "users/main.py").write_text("app = None\n")
    (project / "README.md").write_text("# my project\n")
    done = nanobuild("init", cwd=project)
    assert done.returncode == 0, done.stderr
    assert "kept your README.md as it is" in done.stdout
    assert (project / "README.md").read_text() == "# my project\n"
    assert (project / ".gitignore").is_file()
    assert 'name = "my-project"' in (project / "nano.toml").read_text()
    assert (project / "users/main.py").read_text() == "app = None\n"  # left alone
    assert nanobuild("check", cwd=project).returncode == 0


def test_init_never_overwrites_and_writes_nothing_when_it_refuses(tmp_path: Path) -> None:
    (tmp_path / "nano.toml").write_text("# mine\n")
    done = nanobuild("init", cwd=tmp_path)
    assert done.returncode == 2
    assert f"E020 cannot write the workspace: {tmp_path}/nano.toml already exists" in done.stderr
    assert (tmp_path / "nano.toml").read_text() == "# mine\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nano.toml"]
    other = tmp_path / "other"
    (other / "services/hello").mkdir(parents=True)
    (other / "nano.lock").write_text("mine\n")
    refused = nanobuild("init", "other", cwd=tmp_path)
    assert refused.returncode == 2
    assert (
        f"E020 cannot write the workspace: {other}/services/hello already exists" in refused.stderr
    )
    assert sorted(p.name for p in other.iterdir()) == ["nano.lock", "services"]
    (tmp_path / "afile").write_text("")
    not_a_folder = nanobuild("init", "afile", cwd=tmp_path)
    assert not_a_folder.returncode == 2 and "E020" in not_a_folder.stderr
    assert (tmp_path / "afile").read_text() == ""


def test_every_command_explains_itself() -> None:
    for command, words in [
        ("init", ["nano.toml", "never over", "hello"]),
        ("new", ["--package", "--library", "--path", "testing.service"]),
    ]:
        done = nanobuild(command, "--help")
        assert done.returncode == 0
        flat = " ".join(done.stdout.split())
        for word in words:
            assert word in flat, (command, word, done.stdout)
    top = nanobuild("--help")
    assert "init" in top.stdout and "new" in top.stdout
