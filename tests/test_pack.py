"""Packing a workspace into a zipapp: real builds, real archives, run by a bare Python.

Every build stages offline, from a wheelhouse this module makes from the test
environment's own installed packages, into a temporary cache.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from nanobuild import checks, pack, stage, workspace
from nanobuild.diagnostics import render_text
from nanobuild.errors import PackError
from tests.conftest import REPO, Sample
from tests.packing import (
    archive_names,
    build_mini,
    folder_state,
    hermetic_pip,
    report,
    run_binary,
    stub_ingress,
    tiny_wheel,
    tmpfs,
    write_wheel,
)

BUILD_SIDE = ("typer", "jinja2", "shiv", "rich", "packaging")


@pytest.fixture(scope="module")
def tiny_wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny")
    tiny_wheel(folder)
    return folder


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The build cache the tests of this module share (a stage is made once)."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch, cache: Path) -> None:
    hermetic_pip(monkeypatch)
    monkeypatch.setenv("NANO_CACHE_DIR", str(cache))
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)


def with_static(sample: Sample) -> None:
    sample.write("frontend/index.html", "<h1>mini</h1>\n")
    sample.edit(
        "nano.toml",
        '[workspace]\nname = "mini"\n',
        '[workspace]\nname = "mini"\n\n[ingress]\nstatic = "frontend"\n',
    )


def problem(exc: pytest.ExceptionInfo[PackError]) -> str:
    text = render_text(exc.value.diagnostics)
    assert "Traceback" not in text
    assert exc.value.exit_code == 1
    return text


# -- the binary works


def test_binary_runs_on_a_bare_python_from_an_empty_folder(
    mini: Sample, wheelhouse: Path, python: Path, home: Path, tmp_path: Path
) -> None:
    with_static(mini)
    binary = build_mini(mini.root, wheelhouse)
    assert binary == mini.root / "dist" / "mini.pyz"
    assert binary.read_bytes().startswith(b"#!/usr/bin/env python3\n")
    assert os.stat(binary).st_mode & 0o777 == 0o755
    empty = tmp_path / "empty"
    empty.mkdir()
    seen = report(run_binary(python, binary, "info", "--json", home=home, cwd=empty))
    assert seen["argv"] == ["info", "--json"]
    assert seen["request"] == '{"id":"u1"}'
    assert seen["static"] == ["index.html"]
    apps = home / ".cache" / "nanobuild" / "apps"
    for name, file in seen["files"].items():
        assert Path(file).is_relative_to(apps), (name, file)


def test_the_entry_points_return_value_is_the_exit_code(
    mini: Sample, wheelhouse: Path, python: Path, home: Path
) -> None:
    binary = build_mini(mini.root, wheelhouse)
    done = run_binary(python, binary, home=home, env={"STUB_EXIT": "3"})
    assert done.returncode == 3, done.stderr


def test_services_depended_on_come_along_with_only_a_subset(
    mini: Sample, wheelhouse: Path, python: Path, home: Path
) -> None:
    binary = build_mini(mini.root, wheelhouse, services=["orders"])
    names = archive_names(binary)
    assert "site-packages/users/kernel.py" in names  # orders calls users through its kernel
    assert "site-packages/units/__init__.py" in names
    report(run_binary(python, binary, home=home))


def test_the_build_side_stays_out(mini: Sample, wheelhouse: Path) -> None:
    names = archive_names(build_mini(mini.root, wheelhouse))
    tops = {n.split("/")[1] for n in names if n.startswith("site-packages/")}
    for package in BUILD_SIDE:
        assert package not in tops
        assert not any(t.startswith(f"{package}-") for t in tops), package
    ours = {n for n in names if n.startswith("site-packages/nanobuild/")}
    assert "site-packages/nanobuild/__init__.py" in ours
    assert "site-packages/nanobuild/runtime/__init__.py" in ours
    outside = {n for n in ours if not n.startswith("site-packages/nanobuild/runtime/")}
    assert outside == {"site-packages/nanobuild/__init__.py"}
    assert {
        "msgspec",
        "starlette",
        "uvicorn",
        "users",
        "orders",
        "units",
        "nano_ingress.py",
    } <= tops


def test_nothing_of_the_build_machine_is_inside(
    mini: Sample, wheelhouse: Path, cache: Path
) -> None:
    binary = build_mini(mini.root, wheelhouse)
    traces = [str(mini.root), str(cache), str(wheelhouse), sys.prefix, sys.exec_prefix, str(REPO)]
    with zipfile.ZipFile(binary) as zf:
        for info in zf.infolist():
            data = zf.read(info)
            for trace in traces:
                assert trace.encode() not in data, (info.filename, trace)
            assert not data.startswith(b"#!/"), info.filename  # no script with a shebang
            parts = info.filename.split("/")
            assert "bin" not in parts[:2] and "__pycache__" not in parts, info.filename
            assert parts[-1] not in {"direct_url.json", "INSTALLER", "REQUESTED"}
            assert not info.filename.endswith((".pyc", ".pyo"))
            assert info.date_time == (1980, 1, 1, 0, 0, 0)
            assert info.external_attr >> 16 in (0o100644, 0o100755), info.filename


def test_records_list_only_files_that_shipped(mini: Sample, wheelhouse: Path) -> None:
    binary = build_mini(mini.root, wheelhouse)
    with zipfile.ZipFile(binary) as zf:
        names = set(zf.namelist())
        record = zf.read("site-packages/uvicorn-0.54.0.dist-info/RECORD").decode()
    for line in record.splitlines():
        path = line.split(",")[0]
        assert f"site-packages/{path}" in names, path


# -- reproducible


BUILD_SCRIPT = textwrap.dedent(
    """
    import os, shutil, sys
    from pathlib import Path
    os.umask(int(sys.argv[1], 8))
    sys.path.insert(0, sys.argv[5])
    from tests.packing import build_mini, stub_ingress
    source, copy = Path(sys.argv[2]), Path(sys.argv[3])
    shutil.copytree(source, copy)  # files and folders made under this umask
    build_mini(copy, Path(sys.argv[4]), source=stub_ingress())
    """
)


def build_in_subprocess(umask: str, source: Path, copy: Path, wheelhouse: Path) -> Path:
    copy.parent.mkdir(parents=True)
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            BUILD_SCRIPT,
            umask,
            str(source),
            str(copy),
            str(wheelhouse),
            str(REPO),
        ],
        cwd=copy.parent,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return copy / "dist" / "mini.pyz"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_two_builds_from_different_folders_and_umasks_are_identical(
    mini: Sample, wheelhouse: Path, tmp_path: Path
) -> None:
    with_static(mini)
    (mini.root / "services" / "users" / "users" / "__pycache__").mkdir(exist_ok=True)
    (mini.root / "services" / "users" / "users" / "__pycache__" / "junk.pyc").write_bytes(b"x")
    first = build_in_subprocess("022", mini.root, tmp_path / "a" / "mini", wheelhouse)
    second = build_in_subprocess("077", mini.root, tmp_path / "b" / "deeper" / "mini", wheelhouse)
    assert sha256(first) == sha256(second)
    assert os.stat(second).st_mode & 0o777 == 0o755  # the run bit, whatever the umask


def test_source_date_epoch_sets_every_timestamp(
    mini: Sample, wheelhouse: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    binary = build_mini(mini.root, wheelhouse)
    with zipfile.ZipFile(binary) as zf:
        assert {i.date_time for i in zf.infolist()} == {(2023, 11, 14, 22, 13, 20)}


@pytest.mark.parametrize(("value", "epoch"), [("", None), (" 1700000000 ", 1700000000), ("0", 0)])
def test_source_date_epoch_is_read_once_for_everything(
    monkeypatch: pytest.MonkeyPatch, value: str, epoch: int | None
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", value)
    assert pack.source_date_epoch() == epoch


@pytest.mark.parametrize("value", ["abc", "-5", "1.5", "1_700_000_000", "\u0661\u0662"])
def test_a_source_date_epoch_that_is_not_a_number_is_refused(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", value)
    with pytest.raises(PackError) as exc:
        pack.zip_timestamp()
    assert f"SOURCE_DATE_EPOCH: E405 {value!r} is not a number of seconds" in problem(exc)


def test_the_build_id_follows_the_contents(mini: Sample, wheelhouse: Path) -> None:
    def main_py() -> str:
        with zipfile.ZipFile(mini.root / "dist" / "mini.pyz") as zf:
            return zf.read("__main__.py").decode()

    build_mini(mini.root, wheelhouse)
    before = main_py()
    build_mini(mini.root, wheelhouse)
    assert main_py() == before
    mini.edit("services/users/users/handlers.py", '"Ada"', '"Grace"')
    build_mini(mini.root, wheelhouse)
    assert main_py() != before


# -- atomic


def test_a_failed_build_leaves_dist_as_it_was(mini: Sample, wheelhouse: Path) -> None:
    dist = mini.root / "dist"
    dist.mkdir()
    (dist / "mini.pyz").write_bytes(b"the old binary")
    (dist / "notes.txt").write_text("kept")
    before = folder_state(dist)
    (mini.root / "services" / "users" / "users" / "broken.py").symlink_to("nowhere.py")
    with pytest.raises(PackError):
        build_mini(mini.root, wheelhouse)
    assert folder_state(dist) == before
    assert sorted(p.name for p in dist.iterdir()) == ["mini.pyz", "notes.txt"]


def test_a_full_disk_leaves_dist_as_it_was(mini: Sample, wheelhouse: Path) -> None:
    build_mini(mini.root, wheelhouse)  # stages, so the next build only writes the archive
    dist = mini.root / "full"
    with tmpfs(dist, size="256k") as mounted:
        if not mounted:
            _full_disk_by_rlimit(mini, wheelhouse)
            return
        (dist / "mini.pyz").write_bytes(b"the old binary")
        before = folder_state(dist)
        with pytest.raises(PackError) as exc:
            build_mini(mini.root, wheelhouse, target=dist / "mini.pyz")
        assert "E408" in problem(exc) and f"the disk holding {dist} is full" in problem(exc)
        assert "No space left on device" in problem(exc)
        assert folder_state(dist) == before


def _full_disk_by_rlimit(mini: Sample, wheelhouse: Path) -> None:
    """Where no file system can be mounted: a file size limit makes writing fail."""
    dist = mini.root / "dist"
    (dist / "mini.pyz").write_bytes(b"the old binary")
    before = folder_state(dist)
    script = textwrap.dedent(
        """
        import resource, signal, sys
        from pathlib import Path
        sys.path.insert(0, sys.argv[3])
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, 256 * 1024))
        from nanobuild.errors import PackError
        from tests.packing import build_mini
        try:
            build_mini(Path(sys.argv[1]), Path(sys.argv[2]))
        except PackError as exc:
            print(exc)
            sys.exit(1)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(mini.root), str(wheelhouse), str(REPO)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "E405" in done.stdout
    assert folder_state(dist) == before


def test_an_unwritable_dist_is_a_clear_error(mini: Sample, wheelhouse: Path) -> None:
    dist = mini.root / "dist"
    with tmpfs(dist, readonly=True) as mounted:
        if not mounted:
            if os.geteuid() == 0:
                pytest.skip("root here, and no read-only file system can be mounted")
            dist.chmod(0o555)
        with pytest.raises(PackError) as exc:
            build_mini(mini.root, wheelhouse)
        text = problem(exc)
        # a read-only file system is E408, a folder without the right to write E405
        assert ("E408 cannot write" if mounted else "E405 cannot write") in text
        assert "mini.pyz" in text
        assert list(dist.iterdir()) == []


def test_an_output_path_that_is_a_folder_is_a_clear_error(mini: Sample, wheelhouse: Path) -> None:
    (mini.root / "dist" / "mini.pyz").mkdir(parents=True)
    with pytest.raises(PackError) as exc:
        build_mini(mini.root, wheelhouse)
    assert "mini.pyz: it is a folder" in problem(exc)


# -- the workspace's files


def test_a_file_that_cannot_be_read_is_named(mini: Sample, wheelhouse: Path) -> None:
    (mini.root / "services" / "users" / "users" / "broken.py").symlink_to("nowhere.py")
    with pytest.raises(PackError) as exc:
        build_mini(mini.root, wheelhouse)
    text = problem(exc)
    assert "E404 cannot pack services/users/users/broken.py: No such file or directory" in text


def test_a_fifo_is_refused_not_waited_on(mini: Sample, wheelhouse: Path) -> None:
    os.mkfifo(mini.root / "services" / "users" / "users" / "pipe.py")
    with pytest.raises(PackError) as exc:
        build_mini(mini.root, wheelhouse)
    assert "services/users/users/pipe.py: it is not a regular file" in problem(exc)


UNREADABLE_SCRIPT = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, sys.argv[2])
    from pathlib import Path
    from nanobuild import pack
    os.setgid(65534)  # imports done: the interpreter's own files may be out of reach now
    os.setuid(65534)
    try:
        pack._read(Path(sys.argv[1]), "services/users/users/secret.py")
    except pack.PackError as exc:
        print(exc)
    """
)


@pytest.mark.skipif(not hasattr(os, "setuid"), reason="needs POSIX users")
def test_a_file_without_read_permission_is_named(mini: Sample, tmp_path: Path) -> None:
    """chmod 000 does not stop root, so the reading runs as another user, where it does."""
    secret = mini.root / "services" / "users" / "users" / "secret.py"
    secret.write_text("KEY = 1\n")
    secret.chmod(0)
    if os.geteuid() != 0:
        with pytest.raises(PackError) as exc:
            pack._read(secret, "services/users/users/secret.py")
        assert "Permission denied" in problem(exc)
        return
    modes = {f: f.stat().st_mode for f in secret.parents if f != Path(f.anchor)}
    try:
        for folder, mode in modes.items():
            folder.chmod(mode | 0o001)  # that user may pass through, and no more
        done = subprocess.run(
            [sys.executable, "-c", UNREADABLE_SCRIPT, str(secret), str(REPO)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        for folder, mode in modes.items():
            folder.chmod(mode)
    assert "E404 cannot pack services/users/users/secret.py: Permission denied" in done.stdout, (
        done.stdout + done.stderr
    )


def test_a_link_out_of_the_workspace_is_refused(
    mini: Sample, wheelhouse: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside.py"
    outside.write_text("SECRET = 1\n")
    (mini.root / "libs" / "units" / "units" / "leak.py").symlink_to(outside)
    with pytest.raises(PackError) as exc:
        build_mini(mini.root, wheelhouse)
    assert "libs/units/units/leak.py: it links to" in problem(exc)


def test_a_missing_static_folder_is_a_clear_error(mini: Sample, wheelhouse: Path) -> None:
    with_static(mini)
    ws = workspace.load(mini.root)
    (mini.root / "frontend" / "index.html").unlink()
    (mini.root / "frontend").rmdir()
    with pytest.raises(PackError) as exc:
        pack.build(
            ws,
            list(ws.services),
            stub_ingress(),
            mini.root / "dist" / "mini.pyz",
            find_links=[wheelhouse],
            offline=True,
        )
    assert "E403 the static folder frontend does not exist" in problem(exc)
    assert not (mini.root / "dist" / "mini.pyz").exists()


# -- staging


def test_the_stage_is_cached(
    mini: Sample, wheelhouse: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NANO_CACHE_DIR", str(tmp_path / "fresh-cache"))
    steps: list[tuple[str, float]] = []

    def progress(step: str, seconds: float) -> None:
        steps.append((step, seconds))

    build_mini(mini.root, wheelhouse, progress=progress)
    stages = list((tmp_path / "fresh-cache" / "stage").iterdir())
    assert [s.name.startswith(".tmp-") for s in stages] == [False]  # no temporary left
    installed_at = (stages[0] / "stage.json").stat().st_mtime_ns
    build_mini(mini.root, wheelhouse, progress=progress)
    assert [name for name, _ in steps] == [
        "stage",
        "collect",
        "pack",
        "stage (cached)",
        "collect",
        "pack",
    ]
    assert steps[3][1] < 0.5  # the installer did not run again: nothing was rewritten
    assert (stages[0] / "stage.json").stat().st_mtime_ns == installed_at
    assert list((tmp_path / "fresh-cache" / "stage").iterdir()) == stages


def test_concurrent_stagings_keep_one_whole_stage(
    wheelhouse: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NANO_CACHE_DIR", str(tmp_path / "cache"))
    script = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        sys.path.insert(0, sys.argv[2])
        from nanobuild import stage
        from nanobuild.requirements import RUNTIME_REQUIRES
        done = stage.stage(RUNTIME_REQUIRES, find_links=[Path(sys.argv[1])], offline=True)
        print(done.site_packages)
        """
    )
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(wheelhouse), str(REPO)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    results = [run.communicate(timeout=300) for run in runs]
    assert all(run.returncode == 0 for run in runs), results
    assert len({out for out, _ in results}) == 1
    folders = list((tmp_path / "cache" / "stage").iterdir())
    assert len(folders) == 1 and (folders[0] / "site-packages" / "msgspec").is_dir()


@pytest.mark.parametrize("read_by_check", [False, True], ids=["read-here", "read-by-check"])
def test_a_library_that_a_packed_library_imports_is_packed_too(
    mini: Sample, read_by_check: bool
) -> None:
    mini.edit(
        "nano.toml",
        '[libraries.units]\npath = "libs/units"',
        '[libraries.units]\npath = "libs/units"\n\n[libraries.conv]\npath = "libs/conv"',
    )
    mini.write("libs/conv/conv/__init__.py", "FACTOR = 100\n")
    mini.write("libs/units/units/scale.py", "from conv import FACTOR\n")
    ws = mini.load()
    modules = checks.Context.read(ws).modules if read_by_check else None
    contents = pack.plan(ws, ["orders"], modules)
    assert [lib.name for lib in contents.libraries] == ["units", "conv"]
    assert [lib.name for lib in pack.plan(ws, ["users"], modules).libraries] == []


def test_packing_a_service_the_workspace_lacks(mini: Sample, tmp_path: Path) -> None:
    target = tmp_path / "dist" / "mini.pyz"
    with pytest.raises(PackError) as exc:
        pack.build(mini.load(), ["users", "ordrs"], stub_ingress(), target)
    assert "nano.toml: E407 ordrs is not a service of this workspace" in problem(exc)
    assert [d.hint for d in exc.value.diagnostics] == ["did you mean `orders`?"]
    assert not target.parent.exists()  # refused before staging or writing anything


def test_the_requirement_set(mini: Sample) -> None:
    mini.edit(
        "nano.toml",
        '[libraries.units]\npath = "libs/units"',
        '[libraries.units]\npath = "libs/units"\nrequires = ["idna >= 3"]',
    )
    contents = pack.plan(mini.load(), ["orders"])
    assert sorted(contents.requirements) == [
        "httptools>=0.6",
        "idna>=3",
        "msgspec>=0.18",
        "starlette>=0.37",
        "uvicorn>=0.29",
        'uvloop>=0.19; sys_platform != "win32" and platform_python_implementation == "CPython"',
    ]
    assert contents.requirements["msgspec>=0.18"] == [
        ("the nanobuild runtime", ""),
        ("service orders", "services.orders.requires"),
    ]
    assert contents.requirements["idna>=3"] == [("library units", "libraries.units.requires")]


def test_a_local_wheel_offline(
    mini: Sample, wheelhouse: Path, tiny_wheels: Path, python: Path, home: Path
) -> None:
    mini.edit(
        "nano.toml",
        'path = "services/users"',
        'path = "services/users"\nrequires = ["nanotiny==1.0"]',
    )
    source = stub_ingress("    import nanotiny\n    EXTRA = nanotiny.GREETING")
    binary = build_mini(mini.root, wheelhouse, source=source, find_links=(tiny_wheels,))
    assert "site-packages/nanotiny/__init__.py" in archive_names(binary)
    assert report(run_binary(python, binary, home=home))["extra"] == "hello from nanotiny"


def test_a_requirement_that_does_not_exist(mini: Sample, wheelhouse: Path) -> None:
    mini.edit(
        "nano.toml",
        'path = "services/users"',
        'path = "services/users"\nrequires = ["nanobuild-no-such-package>=1"]',
    )
    with pytest.raises(PackError) as exc:
        build_mini(mini.root, wheelhouse)
    text = problem(exc)
    assert text.startswith(
        "nano.toml:7: E401 cannot install `nanobuild-no-such-package>=1`, needed by service users"
    )
    assert "the installer said:" in text and "nanobuild-no-such-package" in text.split("said:")[1]
    assert not (mini.root / "dist").exists()


def test_a_missing_wheelhouse_is_named(mini: Sample, tmp_path: Path) -> None:
    with pytest.raises(PackError) as exc:
        build_mini(mini.root, tmp_path / "no-such-wheels")
    assert "E406 --find-links" in problem(exc)


def test_a_service_package_colliding_with_a_staged_module(
    mini: Sample, wheelhouse: Path, tiny_wheels: Path
) -> None:
    mini.edit(
        "nano.toml",
        'path = "services/users"',
        'path = "services/users"\nrequires = ["nanotiny==1.0"]',
    )
    mini.edit(
        "nano.toml",
        '[libraries.units]\npath = "libs/units"',
        '[libraries.units]\npath = "libs/units"\npackage = "nanotiny"',
    )
    (mini.root / "libs" / "units" / "units").rename(mini.root / "libs" / "units" / "nanotiny")
    with pytest.raises(PackError) as exc:
        build_mini(mini.root, wheelhouse, find_links=(tiny_wheels,))
    text = problem(exc)
    assert "E402 library units and nanotiny 1.0 both provide the module nanotiny" in text


def test_pruning_strips_what_must_not_ship(tmp_path: Path) -> None:
    site = tmp_path / "site-packages"
    info = site / "demo-1.0.dist-info"
    for rel in (
        "demo/__init__.py",
        "demo/__pycache__/x.cpython-311.pyc",
        "bin/demo",
        "share/man/demo.1",
        f"{info.name}/INSTALLER",
        f"{info.name}/REQUESTED",
        f"{info.name}/direct_url.json",
        f"{info.name}/METADATA",
    ):
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_text("x")
    (info / "RECORD").write_text(
        "demo/__init__.py,sha256=a,1\n../../bin/demo,sha256=b,1\n"
        f"{info.name}/INSTALLER,sha256=c,1\n{info.name}/RECORD,,\n"
    )
    stage.prune(site)
    left = sorted(p.relative_to(site).as_posix() for p in site.rglob("*") if p.is_file())
    assert left == [f"{info.name}/METADATA", f"{info.name}/RECORD", "demo/__init__.py"]
    assert (info / "RECORD").read_text() == (f"demo/__init__.py,sha256=a,1\n{info.name}/RECORD,,\n")
    assert stage.top_level_modules(site) == {"demo": "demo 1.0"}


def test_uv_stages_when_on_path(
    mini: Sample,
    wheelhouse: Path,
    python: Path,
    home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NANO_INSTALLER", "uv")  # uv is a test dependency
    monkeypatch.setenv("NANO_CACHE_DIR", str(tmp_path / "uv-cache"))
    command = stage.installer_command(["x"], tmp_path, [wheelhouse], offline=True)
    assert Path(command[0]).name == "uv"
    binary = build_mini(mini.root, wheelhouse)
    report(run_binary(python, binary, home=home))


def test_pip_stages_when_asked(
    mini: Sample,
    wheelhouse: Path,
    python: Path,
    home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NANO_INSTALLER", "pip")
    monkeypatch.setenv("NANO_CACHE_DIR", str(tmp_path / "pip-cache"))
    command = stage.installer_command(["x"], tmp_path, [wheelhouse], offline=True)
    assert command[:3] == [sys.executable, "-m", "pip"]
    binary = build_mini(mini.root, wheelhouse)
    report(run_binary(python, binary, home=home))


def test_pth_files_of_staged_packages_are_honoured(
    mini: Sample, wheelhouse: Path, python: Path, home: Path, tmp_path: Path
) -> None:
    """A package that puts a folder on sys.path through a .pth file works in a binary."""
    wheels = tmp_path / "wheels"
    write_wheel(
        wheels,
        "nanovendor",
        "2.0",
        {
            "nanovendor.pth": b"nanovendor_lib\n",
            "nanovendor_lib/vendored.py": b"WHO = 'vendored'\n",
        },
    )
    mini.edit(
        "nano.toml", 'path = "services/users"', 'path = "services/users"\nrequires = ["nanovendor"]'
    )
    source = stub_ingress("    import vendored\n    EXTRA = vendored.WHO")
    binary = build_mini(mini.root, wheelhouse, source=source, find_links=(wheels,))
    assert report(run_binary(python, binary, home=home))["extra"] == "vendored"


def test_verbose_shows_the_installers_log(
    mini: Sample,
    wheelhouse: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("NANO_CACHE_DIR", str(tmp_path / "fresh-cache"))
    ws = mini.load()
    pack.build(
        ws,
        list(ws.services),
        stub_ingress(),
        mini.root / "dist" / "mini.pyz",
        find_links=[wheelhouse],
        offline=True,
        verbose=True,
    )
    assert "msgspec" in capfd.readouterr().err


def test_the_packer_writes_the_manifest_the_bootstrap_reads() -> None:
    """The build side may not import the bootstrap, so each names the manifest: alike."""
    from nanobuild.runtime import bootstrap

    assert (pack.MANIFEST, pack.MANIFEST_HEADER) == (
        bootstrap.BINARY_MANIFEST,
        bootstrap.BINARY_MANIFEST_HEADER,
    )
