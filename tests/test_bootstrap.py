"""The bootstrap inside every binary: extraction once, races, fallbacks, repair, isolation.

Each test runs a real binary (built once for this module) as a subprocess of a bare
Python, with a HOME of its own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from nanobuild.runtime import bootstrap
from tests.conftest import SAMPLES
from tests.packing import (
    build_mini,
    hermetic_pip,
    report,
    run_binary,
    run_env,
    stub_ingress,
    tmpfs,
)


@pytest.fixture(scope="module")
def workspace_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ws") / "mini"
    shutil.copytree(SAMPLES / "mini", root)
    return root


@pytest.fixture(scope="module")
def builder(
    tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path, workspace_copy: Path
) -> Iterator[None]:
    """Builds in this module stage offline into a cache of its own."""
    with pytest.MonkeyPatch.context() as mp:
        hermetic_pip(mp)
        mp.setenv("NANO_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        mp.delenv("SOURCE_DATE_EPOCH", raising=False)
        yield


@pytest.fixture(scope="module")
def binary(builder: None, wheelhouse: Path, workspace_copy: Path) -> Path:
    return build_mini(workspace_copy, wheelhouse)


@pytest.fixture(scope="module")
def other_build(builder: None, wheelhouse: Path, workspace_copy: Path) -> Path:
    """The same app, built again from changed code: another build id."""
    source = stub_ingress("    EXTRA = 'second build'")
    return build_mini(
        workspace_copy, wheelhouse, source=source, target=workspace_copy / "dist2" / "mini.pyz"
    )


def apps(home: Path) -> Path:
    return home / ".cache" / "nanobuild" / "apps"


def extraction(home: Path) -> Path:
    (folder,) = apps(home).glob("mini-*")
    return folder


# -- once, and again


def test_the_first_run_extracts_and_the_next_reuse_it(
    binary: Path, python: Path, home: Path
) -> None:
    first = report(run_binary(python, binary, "one", home=home))
    folder = extraction(home)
    assert (folder / "manifest").is_file()
    assert Path(first["files"]["orders.handlers"]).is_relative_to(folder / "site-packages")
    (folder / "marker").write_text("a re-extraction would sweep this away")
    manifest = (folder / "manifest").stat()
    second = report(run_binary(python, binary, "two", home=home))
    assert second["argv"] == ["two"]
    assert (folder / "marker").exists()
    assert (folder / "manifest").stat().st_ino == manifest.st_ino
    assert sorted(p.name for p in apps(home).iterdir()) == [folder.name]


def test_concurrent_first_runs_all_succeed(binary: Path, python: Path, home: Path) -> None:
    runs = [
        subprocess.Popen(
            [str(python), str(binary), str(n)],
            cwd=home,
            env=run_env(home),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(4)
    ]
    for n, run in enumerate(runs):
        out, err = run.communicate(timeout=120)
        assert run.returncode == 0, err
        assert f'"argv": ["{n}"]' in out
    assert [p.name for p in apps(home).iterdir()] == [extraction(home).name]  # no leftovers
    assert bootstrap.intact(str(extraction(home)))


def test_an_unwritable_home_falls_back_to_a_private_temporary_folder(
    binary: Path, python: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    with tmpfs(home, readonly=True) as mounted:
        if not mounted:
            if os.geteuid() == 0:
                home.rmdir()
                home.write_text("a file: nothing can be made under it")
            else:
                home.chmod(0o555)
        env = {"TMPDIR": str(temporary)}
        for _ in range(2):  # the first extracts there, the second finds it there
            seen = report(run_binary(python, binary, home=home, cwd=tmp_path, env=env))
        private = temporary / f"nanobuild-{os.getuid()}"
        assert Path(seen["files"]["units"]).is_relative_to(private / "apps")
        assert private.stat().st_mode & 0o777 == 0o700


def test_a_shared_fallback_folder_is_refused(binary: Path, python: Path, tmp_path: Path) -> None:
    temporary = tmp_path / "tmp"
    planted = temporary / f"nanobuild-{os.getuid()}"
    planted.mkdir(parents=True)
    planted.chmod(0o777)  # anyone could have put code in there
    env = {"NANO_APP_CACHE": str(tmp_path / "file" / "apps"), "TMPDIR": str(temporary)}
    (tmp_path / "file").write_text("not a folder")
    done = run_binary(python, binary, home=tmp_path, env=env)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "is not a private folder of this user" in done.stderr
    assert done.stderr.count("\n") == 1


@pytest.mark.parametrize("variable", ["NANO_APP_CACHE", "XDG_CACHE_HOME"])
def test_the_cache_folder_can_be_chosen(
    binary: Path, python: Path, home: Path, tmp_path: Path, variable: str
) -> None:
    chosen = tmp_path / "chosen"
    seen = report(run_binary(python, binary, home=home, env={variable: str(chosen)}))
    where = chosen if variable == "NANO_APP_CACHE" else chosen / "nanobuild" / "apps"
    assert Path(seen["files"]["units"]).is_relative_to(where)
    assert not (home / ".cache").exists()


def test_a_new_build_removes_the_older_ones(
    binary: Path, other_build: Path, python: Path, home: Path
) -> None:
    report(run_binary(python, binary, home=home))
    old = extraction(home)
    others = ["mini-admin-0123456789abcdef", "minis-0123456789abcdef", "mini-notanid"]
    for name in others:
        (apps(home) / name).mkdir()
    seen = report(run_binary(python, other_build, home=home))
    assert seen["extra"] == "second build"
    new = Path(seen["files"]["units"]).parents[2]  # <app>/site-packages/units/__init__.py
    assert new.parent == apps(home) and new != old
    assert not old.exists()
    assert sorted(p.name for p in apps(home).iterdir()) == sorted([*others, new.name])


def test_an_older_build_still_running_is_kept(
    binary: Path, other_build: Path, python: Path, home: Path
) -> None:
    import fcntl

    report(run_binary(python, binary, home=home))
    old = extraction(home)
    # what a running binary holds for its whole life: a shared lock on its build
    with (old / "in-use.lock").open("r+b") as held:
        fcntl.flock(held, fcntl.LOCK_SH)
        seen = report(run_binary(python, other_build, home=home))
        assert old.exists()
    new = Path(seen["files"]["units"]).parents[2]
    assert new != old and new.exists()


# -- damage


def damage_and_rerun(
    binary: Path, python: Path, home: Path, rel: str, *, truncate: bool
) -> dict[str, object]:
    report(run_binary(python, binary, home=home))
    target = extraction(home) / rel
    size = target.stat().st_size
    if truncate:
        with target.open("r+b") as f:
            f.truncate(size // 2)
    else:
        target.unlink()
    seen = report(run_binary(python, binary, home=home))
    assert target.stat().st_size == size  # extracted again
    return seen


@pytest.mark.parametrize(
    ("rel", "truncate"),
    [
        ("site-packages/users/kernel.py", False),
        ("site-packages/msgspec/__init__.py", True),
        ("site-packages/users/__pycache__/kernel.cpython-311.pyc", True),
        ("manifest", True),
    ],
)
def test_a_damaged_extraction_is_extracted_again(
    binary: Path, python: Path, home: Path, rel: str, truncate: bool
) -> None:
    if sys.implementation.cache_tag != "cpython-311":
        rel = rel.replace("cpython-311", sys.implementation.cache_tag)
    damage_and_rerun(binary, python, home, rel, truncate=truncate)


# -- isolation


def test_the_hosts_packages_are_not_importable(binary: Path, home: Path, tmp_path: Path) -> None:
    """Run by this test environment's own Python, whose site-packages has typer, pytest,
    pydantic and an editable nanobuild: the binary sees none of them."""
    seen = report(run_binary(Path(sys.executable), binary, home=home))
    assert not any(seen["host"].values()), seen["host"]
    assert Path(seen["files"]["nanobuild.runtime"]).is_relative_to(apps(home))
    assert not any(
        p.endswith("site-packages") and "nanobuild/apps" not in p for p in seen["sys_path"]
    )


def test_a_user_site_package_is_not_importable(binary: Path, home: Path) -> None:
    base = Path(getattr(sys, "_base_executable", sys.executable))
    user_site = subprocess.run(
        [str(base), "-c", "import site; print(site.getusersitepackages())"],
        env=run_env(home),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(user_site).mkdir(parents=True)
    (Path(user_site) / "hostonly.py").write_text("print('imported from the host')\n")
    seen = report(run_binary(base, binary, home=home, env={"STUB_PROBE": "hostonly"}))
    assert seen["host"]["hostonly"] is False


def test_pythonpath_is_still_honoured(
    binary: Path, python: Path, home: Path, tmp_path: Path
) -> None:
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "mine.py").write_text("")
    env = {"PYTHONPATH": str(extra), "STUB_PROBE": "mine"}
    assert report(run_binary(python, binary, home=home, env=env))["host"]["mine"] is True


def test_bytecode_from_extraction_is_used_without_writing_any(
    binary: Path, python: Path, home: Path
) -> None:
    env = {"PYTHONDONTWRITEBYTECODE": "1"}
    report(run_binary(python, binary, home=home, env=env))
    cached = extraction(home) / "site-packages" / "users" / "__pycache__"
    compiled = cached / f"kernel.{sys.implementation.cache_tag}.pyc"
    assert compiled.is_file()
    done = run_binary(python, binary, home=home, env=env, flags=("-v",))
    assert f"code object from '{compiled}'" in done.stderr


# -- refusing to start


def test_a_binary_for_another_python_says_so(
    binary: Path, python: Path, home: Path, tmp_path: Path
) -> None:
    foreign = tmp_path / "foreign.pyz"
    with zipfile.ZipFile(binary) as src, zipfile.ZipFile(foreign, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "__main__.py":
                data = data.replace(bootstrap.python_binding().encode(), b"cpython-399 plan9")
            dst.writestr(info, data)
    done = run_binary(python, foreign, home=home)
    assert done.returncode == 1
    assert done.stderr.startswith("mini: this binary was built for cpython-399 plan9, but this ")
    assert "Traceback" not in done.stderr
    assert not apps(home).exists()


# -- the pieces


def test_an_app_is_told_from_its_neighbours_by_name() -> None:
    digest = "0123456789abcdef"
    assert bootstrap._app_of(f"shop-{digest}") == "shop"
    assert bootstrap._app_of(f"shop-admin-{digest}") == "shop-admin"
    assert bootstrap._app_of(f".shop.v2-{digest}.123.cafe0001.tmp") == "shop.v2"
    assert bootstrap._app_of(f"shop-{digest}.99.beef.old") == "shop"
    assert bootstrap._app_of("shop-notanid") is None


def test_intact_checks_every_file_and_the_manifest_itself(tmp_path: Path) -> None:
    site = tmp_path / "site-packages" / "pkg"
    site.mkdir(parents=True)
    (site / "a.py").write_text("A = 1\n")
    assert not bootstrap.intact(str(tmp_path))  # no manifest yet
    bootstrap.write_manifest(str(tmp_path))
    assert bootstrap.intact(str(tmp_path))
    manifest = tmp_path / "manifest"
    text = manifest.read_text()
    manifest.write_text(text[:-1])  # cut short
    assert not bootstrap.intact(str(tmp_path))
    manifest.write_text(text)
    (site / "a.py").write_text("A = 10\n")
    assert not bootstrap.intact(str(tmp_path))


def test_the_bootstrap_binds_to_the_python_the_builder_records() -> None:
    from nanobuild.runtime import spec

    assert bootstrap.python_binding() == spec.python_binding()  # two copies, one meaning


def test_intact_sees_a_changed_stamp_a_new_file_and_another_build(tmp_path: Path) -> None:
    site = tmp_path / "site-packages" / "pkg"
    site.mkdir(parents=True)
    module = site / "a.py"
    module.write_text("A = 1\n")
    bootstrap.write_manifest(str(tmp_path), "build-1")
    assert bootstrap.intact(str(tmp_path), "build-1")
    assert not bootstrap.intact(str(tmp_path), "build-2")
    module.chmod(0o444)  # the same bytes and mtime: only its ctime changes
    assert not bootstrap.intact(str(tmp_path), "build-1")
    bootstrap.write_manifest(str(tmp_path), "build-1")
    (site / "planted.py").write_text("")  # a file no manifest line names: its folder tells
    assert not bootstrap.intact(str(tmp_path), "build-1")


def test_only_an_abandoned_work_folder_is_removed(tmp_path: Path) -> None:
    import fcntl
    import time

    def work(name: str, lock: bool) -> Path:
        folder = tmp_path / name
        (folder / "site-packages").mkdir(parents=True)
        if lock:
            (folder / "extracting.lock").write_text("")
        return folder

    dead = work("dead", lock=True)
    alive = work("alive", lock=True)
    young = work("young", lock=False)
    with (alive / "extracting.lock").open("r+b") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # what a start writing it holds
        for folder in (dead, alive, young):
            bootstrap._remove_abandoned(str(folder), time.time())
    assert not dead.exists()
    assert alive.exists() and young.exists()
    bootstrap._remove_abandoned(str(young), time.time() + 2 * 3600)
    assert not young.exists()
