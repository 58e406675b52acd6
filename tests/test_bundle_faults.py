"""``bundle`` under faults of the machine: killed midway, a full or read-only disk,
folders it may not read, names that are not text.

Every case runs the real command line as a subprocess, offline from the session's
wheelhouse, with a build cache of its own, and asserts the exit code, the message and
the place it names, and that nothing half-written is left in ``dist/`` or the cache.

Tests here run as root, which ignores permission bits; a folder "without read
permission" is made real by running the command in a user namespace
(``unshare --user --map-user=1000``) where the files' owner, mapped to an ordinary
user, has no capabilities over them, so ``chmod 000`` holds.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import Sample
from tests.packing import folder_state, tmpfs


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def command(sample: Sample, wheelhouse: Path, *args: str) -> list[str]:
    offline = ["--offline", "--find-links", str(wheelhouse)]
    return [sys.executable, "-m", "nanobuild", *args, "--workspace", str(sample.root), *offline]


def run(
    sample: Sample, wheelhouse: Path, cache: Path, *args: str, prefix: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [*prefix, *command(sample, wheelhouse, *args)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NANO_CACHE_DIR": str(cache)},
    )
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    return done


def said(done: subprocess.CompletedProcess[str]) -> str:
    return done.stdout + done.stderr


@pytest.fixture
def locked(mini: Sample, wheelhouse: Path, cache: Path) -> Sample:
    """mini, locked from the wheelhouse (its own lock pins the index's files)."""
    done = run(mini, wheelhouse, cache, "lock")
    assert done.returncode == 0, done.stderr
    return mini


def leftovers(sample: Sample, cache: Path) -> list[str]:
    """Temporary files and folders in dist/ and the stage cache."""
    found = []
    for folder in (sample.root / "dist", cache / "stage"):
        if folder.is_dir():
            found += [f"{folder.name}/{e.name}" for e in folder.iterdir() if "tmp" in e.name]
    return sorted(found)


# -- killed midway


def kill_when(argv: list[str], env: dict[str, str], appears: Path, pattern: str) -> None:
    """Run ``argv`` and SIGKILL it as soon as ``pattern`` matches something in ``appears``."""
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if appears.is_dir() and any(appears.glob(pattern)):
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.002)
        assert proc.wait(timeout=30) == -signal.SIGKILL, "the build ended before it was killed"
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("when", ["staging", "packing"])
def test_what_a_killed_bundle_leaves_the_next_one_removes(
    locked: Sample, wheelhouse: Path, cache: Path, when: str
) -> None:
    env = {**os.environ, "NANO_CACHE_DIR": str(cache)}
    argv = command(locked, wheelhouse, "bundle")
    if when == "packing":
        assert run(locked, wheelhouse, cache, "bundle").returncode == 0  # stage it first
        (locked.root / "dist" / "mini.pyz").unlink()
        kill_when(argv, env, locked.root / "dist", ".mini.pyz.*.tmp")
    else:
        shutil.rmtree(cache / "stage", ignore_errors=True)  # lock staged it: stage again
        kill_when(argv, env, cache / "stage", ".tmp-*")
    assert leftovers(locked, cache), "the kill left nothing: it came too late to test"
    done = run(locked, wheelhouse, cache, "bundle")
    assert done.returncode == 0, done.stderr
    assert leftovers(locked, cache) == []
    assert (locked.root / "dist" / "mini.pyz").is_file()


def test_the_leftovers_of_a_running_build_are_kept(
    locked: Sample, wheelhouse: Path, cache: Path
) -> None:
    """A temporary file naming a process that still runs (this one) is another build's."""
    dist = locked.root / "dist"
    dist.mkdir()
    mine = dist / f".mini.pyz.{os.getpid()}.abc123.tmp"
    mine.write_bytes(b"in the making")
    dead = subprocess.Popen(["true"])  # a process that has ended: its pid runs nothing
    dead.wait()
    stale = dist / f".mini.pyz.{dead.pid}.xyz789.tmp"
    stale.write_bytes(b"left by a killed build")
    other = dist / f".other.pyz.{dead.pid}.abc.tmp"  # not this binary's: not ours to touch
    other.write_bytes(b"x")
    stages = cache / "stage"
    (stages / f".tmp-{os.getpid()}-keep").mkdir(parents=True)
    (stages / f".tmp-{dead.pid}-gone").mkdir()
    done = run(locked, wheelhouse, cache, "bundle")
    assert done.returncode == 0, done.stderr
    assert mine.exists() and other.exists() and (stages / f".tmp-{os.getpid()}-keep").exists()
    assert not stale.exists()
    assert not (stages / f".tmp-{dead.pid}-gone").exists()


# -- a full or read-only disk


def test_a_full_disk_while_staging_is_said_to_be_one(
    locked: Sample, wheelhouse: Path, tmp_path: Path
) -> None:
    small = tmp_path / "small"  # a cache of its own, empty: bundle must stage
    with tmpfs(small, size="512k") as mounted:
        if not mounted:
            pytest.skip("no tmpfs can be mounted here")
        done = run(locked, wheelhouse, small, "bundle")
        assert done.returncode == 1
        assert "E408 cannot stage the packages" in said(done)
        assert f"the disk holding {small / 'stage'} is full" in said(done)
        assert "check the name and version" not in said(done)
        assert [e.name for e in (small / "stage").iterdir()] == []  # no half stage
    assert not (locked.root / "dist").exists()


def test_a_full_disk_while_packing_leaves_dist_as_it_was(
    locked: Sample, wheelhouse: Path, cache: Path
) -> None:
    assert run(locked, wheelhouse, cache, "bundle").returncode == 0  # staged
    dist = locked.root / "dist"
    shutil.rmtree(dist)
    with tmpfs(dist, size="256k") as mounted:
        if not mounted:
            pytest.skip("no tmpfs can be mounted here")
        (dist / "mini.pyz").write_bytes(b"the old binary")
        before = folder_state(dist)
        done = run(locked, wheelhouse, cache, "bundle")
        assert done.returncode == 1
        assert f"E408 cannot write {dist / 'mini.pyz'}: the disk holding {dist} is full" in (
            said(done)
        )
        assert folder_state(dist) == before


@pytest.mark.parametrize("where", ["dist", "cache"])
def test_a_read_only_disk_is_said_to_be_one(
    locked: Sample, wheelhouse: Path, tmp_path: Path, where: str
) -> None:
    folder = locked.root / "dist" if where == "dist" else tmp_path / "ro-cache"
    cache = tmp_path / "cache" if where == "dist" else folder
    if where == "dist":
        assert run(locked, wheelhouse, cache, "bundle").returncode == 0
        shutil.rmtree(folder)
    with tmpfs(folder, readonly=True) as mounted:
        if not mounted:
            pytest.skip("no read-only file system can be mounted here")
        done = run(locked, wheelhouse, cache, "bundle")
        assert done.returncode == 1
        assert "E408" in said(done)
        assert "is read-only" in said(done) and str(folder) in said(done)


# -- what cannot be read


def as_owner_without_rights() -> tuple[str, ...]:
    """A prefix that runs a command where permission bits bind this user (see the module)."""
    if os.geteuid() != 0:
        return ()
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("root here, and no unshare to run as someone permission bits bind")
    probe = subprocess.run(
        [unshare, "--user", "--map-user=1000", "--map-group=1000", "true"], capture_output=True
    )
    if probe.returncode != 0:
        pytest.skip("no user namespace here")
    return (unshare, "--user", "--map-user=1000", "--map-group=1000")


@pytest.mark.parametrize(
    ("folder", "code"),
    [
        ("services/users/users/private", "E114"),
        ("libs/units/units/private", "E114"),
        ("web/private", "E404"),
    ],
    ids=["service", "library", "static"],
)
def test_a_folder_that_cannot_be_read_stops_bundle(
    locked: Sample, wheelhouse: Path, cache: Path, folder: str, code: str
) -> None:
    prefix = as_owner_without_rights()
    if folder.startswith("web/"):
        locked.edit("nano.toml", 'name = "mini"\n', 'name = "mini"\n\n[ingress]\nstatic = "web"\n')
        locked.write("web/index.html", "INDEX")
    locked.write(f"{folder}/data.txt", "X")
    assert run(locked, wheelhouse, cache, "bundle").returncode == 0  # readable, it packs
    (locked.root / folder).chmod(0)
    try:
        done = run(locked, wheelhouse, cache, "bundle", prefix=prefix)
    finally:
        (locked.root / folder).chmod(0o755)
    assert done.returncode == 1
    assert f"{folder}: {code} cannot " in said(done)
    assert "Permission denied" in said(done)
    assert leftovers(locked, cache) == []


@pytest.mark.parametrize("where", ["services/users/users", "web"])
def test_a_name_that_is_not_text_is_refused_shown_escaped(
    locked: Sample, wheelhouse: Path, cache: Path, where: str
) -> None:
    if where == "web":
        locked.edit("nano.toml", 'name = "mini"\n', 'name = "mini"\n\n[ingress]\nstatic = "web"\n')
        locked.write("web/index.html", "INDEX")
    (locked.root / where).mkdir(parents=True, exist_ok=True)
    with open(os.fsencode(locked.root / where) + b"/caf\xe9.py", "w") as f:
        f.write("X = 1\n")
    done = run(locked, wheelhouse, cache, "bundle")
    assert done.returncode == 1
    assert f"{where}/caf\\xe9.py: its name is not UTF-8 text" in said(done)
    assert not (locked.root / "dist").exists()


def test_a_fifo_in_the_static_folder_is_refused_not_waited_on(
    locked: Sample, wheelhouse: Path, cache: Path
) -> None:
    locked.edit("nano.toml", 'name = "mini"\n', 'name = "mini"\n\n[ingress]\nstatic = "web"\n')
    locked.write("web/index.html", "INDEX")
    os.mkfifo(locked.root / "web" / "app.js")
    done = run(locked, wheelhouse, cache, "bundle")
    assert done.returncode == 1
    assert "web/app.js: E404 cannot pack web/app.js: it is not a regular file" in said(done)


def test_reading_a_fifo_for_a_regular_file_is_refused_at_once(tmp_path: Path) -> None:
    """The reader every workspace file can go through (``source.read_regular``)."""
    from nanobuild.source import NotRegular, read_regular

    os.mkfifo(tmp_path / "nano.toml")
    started = time.monotonic()
    with pytest.raises(NotRegular, match="it is not a regular file"):
        read_regular(tmp_path / "nano.toml")
    assert time.monotonic() - started < 1
    (tmp_path / "plain.toml").write_text("a = 1\n")
    assert read_regular(tmp_path / "plain.toml") == b"a = 1\n"
