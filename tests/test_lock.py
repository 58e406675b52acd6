"""``nanobuild lock`` and ``nano.lock``: one locked set of packages, from ``serve`` to the
binary; and the check that every third-party import is declared (E120, E121).

Everything resolves and installs offline, from wheels made here: the runtime's
packages repacked from this environment, and versions of the tiny local project
``nanotiny``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nanobuild.workspace import tomllib
from tests.conftest import REPO, Sample
from tests.packing import nanobuild_wheelhouse, report, run_binary, tiny_wheel
from tests.servers import Server, start
from tests.test_cli import nanobuild

pytestmark = pytest.mark.usefixtures("private_cache")
HANDLERS = "services/orders/orders/handlers.py"
TOML = "nano.toml"


@pytest.fixture
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NANO_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def wheels(tmp_path: Path, wheelhouse: Path) -> Path:
    """The runtime's wheels and nanotiny 1.0, in a folder a test may add to."""
    folder = tmp_path / "wheels"
    shutil.copytree(wheelhouse, folder)
    tiny_wheel(folder, "1.0")
    return folder


def lock(sample: Sample, wheels: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return nanobuild("lock", "--offline", "--find-links", str(wheels), *args, cwd=sample.root)


def bundle(sample: Sample, *args: str) -> subprocess.CompletedProcess[str]:
    return nanobuild("bundle", "--offline", *args, cwd=sample.root)


def locked(sample: Sample) -> dict[str, str]:
    """Each package of the sample's nano.lock and its version."""
    doc = tomllib.loads((sample.root / "nano.lock").read_text())
    return {p["name"]: p["version"] for p in doc["package"]}


def needs_tiny(sample: Sample, service: str, requirement: str) -> None:
    """Add ``requirement`` to the service's requires (orders has some; users none)."""
    if service == "orders":
        sample.edit(TOML, '"msgspec>=0.18"', f'"msgspec>=0.18", "{requirement}"')
        return
    path = f'path = "services/{service}"'
    sample.edit(TOML, path, f'{path}\nrequires = ["{requirement}"]')


# -- the lock file


def test_lock_pins_every_package_with_the_hash_of_its_file(mini: Sample, wheels: Path) -> None:
    needs_tiny(mini, "users", "nanotiny")
    done = lock(mini, wheels)
    assert done.returncode == 0, done.stderr
    assert "nano.lock: 11 packages for Python" in done.stderr  # the runtime's 10, nanotiny
    text = (mini.root / "nano.lock").read_text()
    doc = tomllib.loads(text)
    assert doc["python"] == f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert doc["requires"]["services.users"] == ["nanotiny"]
    assert doc["inputs"].startswith("sha256:")
    for package in doc["package"]:
        [file] = package["files"]
        wheel = wheels / file["name"]
        assert hashlib.sha256(wheel.read_bytes()).hexdigest() == file["sha256"], wheel
    assert locked(mini)["nanotiny"] == "1.0"
    again = lock(mini, wheels)  # nothing changed: the same bytes
    assert again.returncode == 0 and (mini.root / "nano.lock").read_text() == text


def test_lock_keeps_the_locked_versions_unless_told_to_upgrade(mini: Sample, wheels: Path) -> None:
    needs_tiny(mini, "users", "nanotiny")
    assert lock(mini, wheels).returncode == 0
    tiny_wheel(wheels, "2.0")
    assert lock(mini, wheels).returncode == 0
    assert locked(mini)["nanotiny"] == "1.0"
    assert lock(mini, wheels, "--upgrade").returncode == 0
    assert locked(mini)["nanotiny"] == "2.0"


def test_the_example_workspace_has_a_current_lock_for_python_3_11_on_linux() -> None:
    doc = tomllib.loads((REPO / "nano.lock").read_text())
    assert (doc["python"], doc["platform"]) == ("3.11", "linux")
    from nanobuild import lock as locking
    from nanobuild import workspace

    ws = workspace.load(REPO)
    assert doc["inputs"] == locking.inputs_hash(locking.requirement_sets(ws))
    assert {"msgspec", "starlette", "uvicorn"} <= {p["name"] for p in doc["package"]}


def test_a_python_or_platform_that_cannot_be_locked_for(mini: Sample, wheels: Path) -> None:
    before = (mini.root / "nano.lock").read_text()
    done = lock(mini, wheels, "--python", "3")
    assert done.returncode == 1
    assert "--python: E507 --python '3': expected a version like 3.11" in done.stderr
    done = lock(mini, wheels, "--platform", "linux x86")
    assert done.returncode == 1 and "E507 --platform 'linux x86'" in done.stderr
    assert (mini.root / "nano.lock").read_text() == before


def test_a_lock_that_cannot_be_written_leaves_nothing_behind(mini: Sample, wheels: Path) -> None:
    (mini.root / "nano.lock").unlink()
    (mini.root / "nano.lock").mkdir()  # a folder where the file should go
    done = lock(mini, wheels)
    assert done.returncode == 1
    assert "nano.lock: E506 cannot write nano.lock: Is a directory" in done.stderr
    assert sorted(p.name for p in mini.root.iterdir() if p.name.startswith(".")) == []


# -- bundle on the lock


def test_bundle_packs_exactly_the_locked_versions(
    mini: Sample, wheels: Path, python: Path, home: Path
) -> None:
    needs_tiny(mini, "orders", "nanotiny")
    mini.edit(HANDLERS, "from . import kernel", "import nanotiny\n\nfrom . import kernel")
    assert lock(mini, wheels).returncode == 0
    tiny_wheel(wheels, "2.0")  # newer, and on offer: the lock still says 1.0
    done = bundle(mini, "--find-links", str(wheels))
    assert done.returncode == 0, done.stderr
    info = report(run_binary(python, mini.root / "dist" / "mini.pyz", "info", "--json", home=home))
    assert info["distributions"] == locked(mini)
    assert info["distributions"]["nanotiny"] == "1.0"
    text = run_binary(python, mini.root / "dist" / "mini.pyz", "info", home=home).stdout
    assert "nanotiny 1.0" in text


def test_bundle_offline_from_a_warm_cache(mini: Sample, wheels: Path) -> None:
    assert lock(mini, wheels).returncode == 0  # it installs the lock in the cache too
    shutil.rmtree(wheels)  # no wheels, no index: only the stage built already
    done = bundle(mini)
    assert done.returncode == 0, done.stderr
    assert "done stage (cached)" in done.stderr


def test_bundle_without_a_lock(mini: Sample) -> None:
    (mini.root / "nano.lock").unlink()
    done = bundle(mini)
    assert done.returncode == 1
    assert "E501 there is no nano.lock beside nano.toml" in done.stderr
    assert "run `nanobuild lock`" in done.stderr
    assert not (mini.root / "dist").exists()


def test_a_stale_lock_names_what_changed(mini: Sample, wheels: Path) -> None:
    assert lock(mini, wheels).returncode == 0
    needs_tiny(mini, "users", "nanotiny>=1")
    mini.edit(TOML, '"msgspec>=0.18"', '"msgspec>=0.19"')
    done = bundle(mini)
    assert done.returncode == 1
    assert (
        "nano.lock: E502 nano.lock no longer matches nano.toml: "
        "services.orders.requires adds msgspec>=0.19; services.orders.requires drops "
        "msgspec>=0.18; services.users.requires adds nanotiny>=1" in done.stderr
    )
    assert "run `nanobuild lock`" in done.stderr and "--upgrade" in done.stderr


def test_a_lock_for_another_python(mini: Sample, wheels: Path) -> None:
    assert lock(mini, wheels).returncode == 0
    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    other = "3.10" if here != "3.10" else "3.11"
    mini.edit("nano.lock", f'python = "{here}"', f'python = "{other}"')
    done = bundle(mini)
    assert done.returncode == 1
    assert (
        f"E503 nano.lock is for Python {other} on linux, but this is Python {here} on linux"
        in done.stderr
    )
    assert f"nanobuild lock --python {here}" in done.stderr


def test_a_lock_that_cannot_be_read(mini: Sample) -> None:
    mini.edit("nano.lock", 'python = "3.11"', "python = 311")
    done = bundle(mini)
    assert done.returncode == 1
    assert "nano.lock: E504 nano.lock cannot be used: Expected `str`, got `int`" in done.stderr
    (mini.root / "nano.lock").write_text("version = [")
    done = bundle(mini)
    assert done.returncode == 1 and "E504 nano.lock cannot be used" in done.stderr


# -- third-party imports are declared


def test_an_undeclared_third_party_import(mini: Sample, wheels: Path) -> None:
    mini.edit(HANDLERS, "from . import kernel", "import slugify\n\nfrom . import kernel")
    assert lock(mini, wheels).returncode == 0
    d = mini.only("E120")
    assert (d.path, d.line) == (HANDLERS, 4)
    assert d.message == "orders imports slugify, which no declared or locked package provides"
    assert d.hint is not None and "to `services.orders.requires`" in d.hint


def test_a_distribution_a_sibling_declares_is_not_the_importers(mini: Sample, wheels: Path) -> None:
    needs_tiny(mini, "users", "nanotiny")
    mini.edit(HANDLERS, "from . import kernel", "import nanotiny\n\nfrom . import kernel")
    assert lock(mini, wheels).returncode == 0
    d = mini.only("E120")
    assert d.message == (
        "orders imports nanotiny, from the distribution nanotiny, which "
        "`services.orders.requires` does not declare (service users declares it, for itself only)"
    )
    assert d.hint == 'services.orders.requires: add "nanotiny", then run `nanobuild lock`'
    done = nanobuild("check", cwd=mini.root)  # the command line says it the same way
    assert done.returncode == 1
    assert f"{HANDLERS}:4: E120 orders imports nanotiny" in done.stdout


def test_a_transitive_dependency_must_be_declared_too(mini: Sample, wheels: Path) -> None:
    # anyio comes with the runtime's starlette, but orders does not ask for it
    mini.edit(HANDLERS, "from . import kernel", "import anyio\n\nfrom . import kernel")
    assert lock(mini, wheels).returncode == 0
    d = mini.only("E120")
    assert d.hint == 'services.orders.requires: add "anyio", then run `nanobuild lock`'
    needs_tiny(mini, "orders", "anyio")
    assert lock(mini, wheels).returncode == 0
    assert mini.check() == []


def test_undeclared_imports_that_cannot_be_checked_are_said_once(mini: Sample) -> None:
    (mini.root / "nano.lock").unlink()
    mini.edit(
        HANDLERS, "from . import kernel", "import slugify\nimport yaml\n\nfrom . import kernel"
    )
    d = mini.only("E121")  # one diagnostic for the two imports
    assert (d.path, d.line) == (HANDLERS, 4)
    assert d.message == (
        "cannot tell which package provides slugify (nor yaml): "
        "there is no nano.lock to tell which packages are installed"
    )


def test_declared_imports_need_no_stage(mini: Sample) -> None:
    (mini.root / "nano.lock").unlink()  # msgspec is named as it is imported: no lookup
    assert mini.check() == []


# -- serve on the lock, from a Python that has nothing but nanobuild


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path) -> tuple[Path, Path]:
    """A venv with pip and nothing but nanobuild installed (and nanotiny 2.0, an
    unlocked version), and a folder of wheels: the runtime's, nanotiny 1.0 and 2.0."""
    root = tmp_path_factory.mktemp("fresh")
    wheels = root / "wheels"
    shutil.copytree(wheelhouse, wheels)
    nanobuild_wheelhouse(wheels)
    tiny_wheel(wheels, "1.0")
    tiny_wheel(wheels, "2.0")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--no-index", "-q"]
    subprocess.run([*pip, "--find-links", str(wheels), "nanobuild", "nanotiny==2.0"], check=True)
    return venv / "bin" / "python", wheels


TINY_HANDLERS = """\
import nanotiny
from nanobuild.runtime import handler

from .kernel import Version, WhichTiny


@handler
def which_tiny(req: WhichTiny) -> Version:
    return Version(tiny=nanotiny.VERSION, msgspec=__import__("msgspec").__file__)
"""
TINY_KERNEL = """\
import msgspec
from nanobuild.runtime import Contract


class Version(msgspec.Struct, frozen=True):
    tiny: str
    msgspec: str


class WhichTiny(Contract[Version], frozen=True):
    pass
"""


def tiny_workspace(root: Path) -> Path:
    package = root / "services" / "tiny" / "tiny"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "kernel.py").write_text(TINY_KERNEL)
    (package / "handlers.py").write_text(TINY_HANDLERS)
    (root / "nano.toml").write_text(
        '[workspace]\nname = "tiny"\n\n[services.tiny]\npath = "services/tiny"\n'
        'requires = ["nanotiny<2"]\npublic = ["WhichTiny"]\n'
    )
    return root


def fresh_serve(
    python: Path, root: Path, wheels: Path, log: Path, tmp: Path
) -> tuple[subprocess.CompletedProcess[str], Server]:
    """Lock ``root`` offline with pip alone, then serve it; the lock's run and the server."""
    env = {
        "PATH": str(python.parent) + os.pathsep + "/usr/bin:/bin",  # no uv: pip it is
        "HOME": str(tmp / "home"),
        "NANO_CACHE_DIR": str(tmp / "cache"),
        "NANO_INSTALLER": "pip",
        "PIP_CONFIG_FILE": os.devnull,
    }
    links = ["--offline", "--find-links", str(wheels)]
    nano = [str(python), "-m", "nanobuild"]
    done = subprocess.run(
        [*nano, "lock", "--workspace", str(root), *links],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    server = start([*nano, "serve", "--workspace", str(root), "--port", "0", *links], log, **env)
    return done, server


def test_serve_runs_on_the_locked_packages_not_the_venvs(
    fresh: tuple[Path, Path], tmp_path: Path
) -> None:
    python, wheels = fresh
    root = tiny_workspace(tmp_path / "tiny")
    _, server = fresh_serve(python, root, wheels, tmp_path / "serve.log", tmp_path)
    try:
        answer = server.call("tiny", "WhichTiny").json()
    finally:
        assert server.stop() == 0, server.log()
    assert answer["tiny"] == "1.0"  # the venv has 2.0: serve never sees it
    assert str(tmp_path / "cache") in answer["msgspec"]  # the stage's, not the venv's
    assert "Traceback" not in (tmp_path / "serve.log").read_text()


def test_serve_runs_the_example_from_a_fresh_venv(fresh: tuple[Path, Path], tmp_path: Path) -> None:
    python, wheels = fresh
    root = tmp_path / "boutique"
    shutil.copytree(
        REPO, root, ignore=shutil.ignore_patterns("__pycache__", "dist", ".*", "tests", "bench")
    )
    done, server = fresh_serve(python, root, wheels, tmp_path / "serve.log", tmp_path)
    assert "installed in the build cache" in done.stderr
    try:
        response = server.call("catalog", "GetProduct", {"id": "OLJCESPC7Z"})
    finally:
        assert server.stop() == 0, server.log()
    assert response.status_code == 200 and response.json()["name"] == "Sunglasses"
