"""Damaged and edited binaries: refused in one line or run correctly; never a traceback,
never a hang, never damaged, half-extracted or edited code.

Two binaries. A small one written by ``pack.write`` (the real writer and bootstrap
around a few files) is cheap enough to start once per flipped byte: a byte in every
field of every member, and at random offsets (a fixed seed). The mini workspace built
for real is flipped at fewer random offsets, and its extraction is edited, killed
mid-way and raced.

What may run after a flip: a byte nothing reads (the shebang line, timestamps, the
"version made by" and attribute fields, a local header's copy of the CRC and sizes,
which zipfile takes from the table of contents) leaves the binary as good as it was,
so it runs, and must answer exactly as the intact one. Everything else is refused with
the bootstrap's one line. Python alone reads ``__main__.py``, its entry in the table of
contents, the zip's end record and the fields of every entry that zipimport checks
while it walks the table (signatures, lengths, offsets: 14 bytes an entry), before any
code of ours runs: a flip there may end in Python's own error (the limit README's
"Verifying a binary" states), but even there nothing of the app runs and nothing is
extracted.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from nanobuild import pack
from tests.packing import build_mini, hermetic_pip, report, run_env, stub_ingress

SEED = 13  # the random offsets are the same on every run

TINY_INGRESS = """\
import json
import os


def main():
    import tinyapp
    from tinyapp import core

    here = os.path.dirname(os.path.abspath(core.__file__))
    with open(os.path.join(here, "data.txt"), encoding="utf-8") as f:
        data = f.read()
    tool = os.path.join(here, "tool.sh")
    print(json.dumps({"answer": core.answer(), "version": tinyapp.VERSION,
                      "data": len(data), "tool": os.access(tool, os.X_OK)}))
    return 0
"""
TEXT = "".join(f"line {n}: the quick brown fox jumps over the lazy dog\n" for n in range(60))
TINY = {
    "nano_ingress.py": TINY_INGRESS,
    "tinyapp/__init__.py": 'VERSION = "1.0"\n',
    "tinyapp/core.py": f"TEXT = {TEXT!r}\n\n\ndef answer():\n    return len(TEXT.split())\n",
    "tinyapp/data.txt": TEXT,
}
EXPECTED = {"answer": len(TEXT.split()), "version": "1.0", "data": len(TEXT), "tool": True}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    entries = [pack.Entry(f"{pack.SITE}/{rel}", text.encode()) for rel, text in TINY.items()]
    entries.append(pack.Entry(f"{pack.SITE}/tinyapp/tool.sh", b"#!/bin/sh\necho hi\n", True))
    target = tmp_path_factory.mktemp("tiny") / "tiny.pyz"
    pack.write(sorted(entries), target, name="tiny")
    return target


class Layout(NamedTuple):
    """Where each part of a zip lies, as offsets in the file."""

    members: list[tuple[str, int, int, int]]  # name, local header, data start, data end
    directory: list[tuple[str, int, int]]  # name, its entry's start and end
    end_record: int  # where the end of central directory record starts

    def python_reads(self, offset: int) -> bool:
        """Whether Python judges the byte at ``offset`` before any code of ours runs:
        ``__main__.py`` and its entry in the table of contents, the end record, and in
        every entry the fields zipimport checks as it reads the table (a bad one makes
        it take the file for no zip at all)."""
        _, header, _, end = self.members[0]  # __main__.py: the first entry
        _, entry_start, entry_end = self.directory[0]
        if header <= offset < end or entry_start <= offset < entry_end:
            return True
        for _, start, _ in self.directory:
            if 0 <= offset - start < 46:
                return offset - start in ZIPIMPORT_CHECKS
        return offset >= self.end_record


# the bytes of a table of contents entry zipimport reads to walk the table: its
# signature, flags (UTF-8 names), name, extra and comment lengths, local header offset
ZIPIMPORT_CHECKS = {*range(4), 8, 9, *range(28, 34), *range(42, 46)}


def layout(binary: Path) -> Layout:
    with zipfile.ZipFile(binary) as zf:
        infos = zf.infolist()
        start = zf.start_dir
    members, directory = [], []
    for info in infos:
        local = info.header_offset
        with binary.open("rb") as f:
            f.seek(local + 26)
            name_length, extra_length = (int.from_bytes(f.read(2), "little") for _ in "ne")
        data = local + 30 + name_length + extra_length
        members.append((info.filename, local, data, data + info.compress_size))
        length = 46 + len(info.filename.encode()) + len(info.extra) + len(info.comment)
        directory.append((info.filename, start, start + length))
        start += length
    assert members[0][0] == "__main__.py"
    return Layout(members, directory, start)


def flipped(binary: Path, offset: int, mask: int, folder: Path) -> Path:
    data = bytearray(binary.read_bytes())
    data[offset] ^= mask
    copy = folder / binary.name
    copy.write_bytes(bytes(data))
    return copy


def start(python: Path, binary: Path, cache: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = run_env(cache.parent, NANO_APP_CACHE=str(cache))
    return subprocess.run(
        [str(python), str(binary), *args],
        cwd=cache.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,  # a hang is a failure, not a stuck run
    )


def outcome(done: subprocess.CompletedProcess[str], binary: Path, cache: Path, where: str) -> str:
    """``ran`` (and exactly as the intact binary) or ``refused`` (one line, nothing
    extracted); anything else fails, naming ``where``."""
    said = f"{where}: exit {done.returncode}\n{done.stdout}{done.stderr}"
    assert "Traceback" not in done.stdout + done.stderr, said
    if done.returncode == 0:
        return "ran"
    assert done.returncode == 1, said
    assert done.stdout == "", said
    lines = done.stderr.splitlines()
    assert len(lines) == 1, said
    prefix = f"{binary.stem}: the binary {binary} is damaged: member "
    assert lines[0].startswith(prefix), said
    assert "; rebuild it, or compare `sha256sum" in lines[0], said
    assert nothing_extracted(cache), f"{where}: {sorted(os.listdir(cache))}"
    return "refused"


def nothing_extracted(cache: Path) -> bool:
    return not cache.exists() or not any(cache.iterdir())


def python_outcome(done: subprocess.CompletedProcess[str], cache: Path, where: str) -> str:
    """A flip Python reads first: it may run (a comment), else Python says why, and
    nothing of the app ran and nothing was extracted."""
    if done.returncode == 0:
        return "ran"
    said = f"{where}: exit {done.returncode}\n{done.stdout}{done.stderr}"
    assert done.stdout == "", said
    assert nothing_extracted(cache), said
    return "python"


def try_flip(python: Path, binary: Path, offset: int, mask: int, tmp: Path, where: str) -> str:
    folder = tmp / f"at-{offset}-{mask}"
    folder.mkdir()
    copy = flipped(binary, offset, mask, folder)
    cache = folder / "cache"
    done = start(python, copy, cache)
    if layout(binary).python_reads(offset):
        return python_outcome(done, cache, where)
    seen = outcome(done, copy, cache, where)
    if seen == "ran":
        assert json.loads(done.stdout) == EXPECTED, f"{where}: {done.stdout}"
    return seen


# -- the small binary, byte by byte


def test_the_intact_small_binary_runs(python: Path, tiny: Path, tmp_path: Path) -> None:
    done = start(python, tiny, tmp_path / "cache")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == EXPECTED


# the fields of a member that a flip tests: (what, where from the member's offsets)
FIELDS = {
    "local header's CRC": lambda local, data, end, entry: local + 14,
    "local header's name": lambda local, data, end, entry: local + 30,
    "first byte of data": lambda local, data, end, entry: data,
    "middle of data": lambda local, data, end, entry: (data + end) // 2,
    "last byte of data": lambda local, data, end, entry: end - 1,
    "directory's CRC": lambda local, data, end, entry: entry + 16,
    "directory's sizes": lambda local, data, end, entry: entry + 20,
    "directory's offset": lambda local, data, end, entry: entry + 43,
    "directory's name": lambda local, data, end, entry: entry + 46,
}


@pytest.mark.parametrize("field", list(FIELDS))
def test_a_flip_in_every_member_is_refused_or_harmless(
    python: Path, tiny: Path, tmp_path: Path, field: str
) -> None:
    where = layout(tiny)
    seen = {}
    for (name, local, data, end), (_, entry, _) in zip(where.members, where.directory, strict=True):
        offset = FIELDS[field](local, data, end, entry)
        seen[name] = try_flip(python, tiny, offset, 0x55, tmp_path, f"{field} of {name}")
    caught = {name for name in seen if name != "__main__.py"}  # Python's to judge
    if field == "directory's CRC":  # zipimport reads none: the bootstrap's is __main__'s
        caught.discard(f"{pack.BOOTSTRAP}.py")
    if field in ("first byte of data", "middle of data", "directory's CRC"):
        assert {name for name in caught if seen[name] != "refused"} == set(), seen
    if field == "local header's CRC":  # a copy nothing reads
        assert set(seen.values()) == {"ran"}, seen


def test_random_flips_are_refused_or_harmless(python: Path, tiny: Path, tmp_path: Path) -> None:
    rng = random.Random(SEED)
    size = tiny.stat().st_size
    seen: dict[str, int] = {}
    for _ in range(60):
        offset, mask = rng.randrange(size), rng.randrange(1, 256)
        result = try_flip(python, tiny, offset, mask, tmp_path, f"offset {offset} ^ {mask:#x}")
        seen[result] = seen.get(result, 0) + 1
    assert seen.get("refused", 0) > 30, seen  # most bytes are data: a flip there is caught


def test_a_cut_binary_is_refused_by_python_and_runs_nothing(
    python: Path, tiny: Path, tmp_path: Path
) -> None:
    """The documented limit: with its end cut off a file is no zip, so Python runs it
    as a script and stops at its first NUL byte, before any code of ours."""
    data = tiny.read_bytes()
    for keep in (len(data) - 1, len(data) - 30, len(data) // 2, 200):
        copy = tmp_path / f"cut-{keep}" / "tiny.pyz"
        copy.parent.mkdir()
        copy.write_bytes(data[:keep])
        done = start(python, copy, copy.parent / "cache")
        assert done.returncode == 1
        assert "source code cannot contain null bytes" in done.stderr
        assert done.stdout == ""
        assert nothing_extracted(copy.parent / "cache")


def test_a_garbage_manifest_is_refused(python: Path, tiny: Path, tmp_path: Path) -> None:
    copy = tmp_path / "tiny.pyz"
    rewrite(tiny, copy, {pack.MANIFEST: b"\x00garbage\n" * 40})
    done = start(python, copy, tmp_path / "cache")
    assert outcome(done, copy, tmp_path / "cache", "garbage manifest") == "refused"
    assert "member _nano_manifest does not match the build id" in done.stderr


def test_a_member_added_or_left_out_is_refused(python: Path, tiny: Path, tmp_path: Path) -> None:
    added = tmp_path / "added" / "tiny.pyz"
    added.parent.mkdir()
    rewrite(tiny, added, {f"{pack.SITE}/planted.py": b"print('planted')\n"})
    done = start(python, added, added.parent / "cache")
    assert outcome(done, added, added.parent / "cache", "added") == "refused"
    assert "site-packages/planted.py is not in the binary's manifest" in done.stderr
    left_out = tmp_path / "left-out" / "tiny.pyz"
    left_out.parent.mkdir()
    rewrite(tiny, left_out, {f"{pack.SITE}/tinyapp/data.txt": None})
    done = start(python, left_out, left_out.parent / "cache")
    assert outcome(done, left_out, left_out.parent / "cache", "left out") == "refused"
    assert "member site-packages/tinyapp/data.txt is missing" in done.stderr


def rewrite(binary: Path, target: Path, changes: dict[str, bytes | None]) -> None:
    """A copy of ``binary`` with members replaced, added, or (None) left out."""
    with zipfile.ZipFile(binary) as src, target.open("wb") as out:
        out.write(b"#!/usr/bin/env python3\n")
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
            for info in src.infolist():
                data = changes.pop(info.filename, src.read(info))
                if data is not None:
                    dst.writestr(info, data)
            for name, data in changes.items():
                if data is not None:
                    dst.writestr(name, data)


# -- the real binary


@pytest.fixture(scope="module")
def mini_binary(tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path) -> Iterator[Path]:
    import shutil

    from tests.conftest import SAMPLES

    root = tmp_path_factory.mktemp("ws") / "mini"
    shutil.copytree(SAMPLES / "mini", root)
    with pytest.MonkeyPatch.context() as mp:
        hermetic_pip(mp)
        mp.setenv("NANO_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        mp.delenv("SOURCE_DATE_EPOCH", raising=False)
        yield build_mini(root, wheelhouse, source=stub_ingress())


def test_random_flips_of_a_real_binary_are_refused_or_harmless(
    python: Path, mini_binary: Path, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    size = mini_binary.stat().st_size
    where = layout(mini_binary)
    seen = []
    for _ in range(8):
        offset, mask = rng.randrange(size), rng.randrange(1, 256)
        folder = tmp_path / f"at-{offset}"
        folder.mkdir()
        copy = flipped(mini_binary, offset, mask, folder)
        done = start(python, copy, folder / "cache")
        label = f"offset {offset} ^ {mask:#x}"
        if where.python_reads(offset):
            seen.append(python_outcome(done, folder / "cache", label))
        else:
            seen.append(outcome(done, copy, folder / "cache", label))
            if seen[-1] == "ran":
                report(done)
    assert "refused" in seen, seen


def apps(cache: Path) -> list[str]:
    return sorted(os.listdir(cache)) if cache.exists() else []


def extraction_of(cache: Path) -> Path:
    (folder,) = [cache / name for name in apps(cache) if name.startswith("mini-")]
    return folder


def edit(path: Path, data: bytes) -> None:
    """Write ``data`` over a sealed file as a determined user would: write bits back
    on for a moment (its folder left alone), and its mtime set back after, so only its
    ctime tells."""
    st = path.stat()
    path.chmod(0o644)
    path.write_bytes(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    path.chmod(st.st_mode & 0o777)


def same_size_code(source: str, size: int, header: bytes) -> bytes:
    """A ``.pyc`` of ``source`` padded to exactly ``size`` bytes, with ``header``."""
    import marshal

    for pad in range(size):
        code = compile(f"PAD = {'x' * pad!r}\n{source}\n", "<x>", "exec")  # PAD first: live
        data = header + marshal.dumps(code)
        if len(data) == size:
            return data
    raise AssertionError(f"cannot pad {source!r} to {size} bytes")


def test_an_edited_pyc_in_the_extraction_is_never_run(
    python: Path, mini_binary: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    report(start(python, mini_binary, cache))
    tag = sys.implementation.cache_tag
    pyc = extraction_of(cache) / "site-packages/orders/__pycache__" / f"handlers.{tag}.pyc"
    original = pyc.read_bytes()
    tampered = "import sys\nsys.stderr.write('TAMPERED CODE RAN\\n')"
    edit(pyc, same_size_code(tampered, len(original), original[:16]))
    done = start(python, mini_binary, cache)
    assert "TAMPERED" not in done.stdout + done.stderr
    report(done)
    assert "was changed since it was extracted; extracting it again" in done.stderr
    again = extraction_of(cache) / pyc.relative_to(extraction_of(cache))
    assert again.read_bytes()[16:] == original[16:]  # compiled afresh: its header's times differ


def test_a_file_planted_in_the_extraction_is_never_imported(
    python: Path, mini_binary: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    report(start(python, mini_binary, cache))
    site = extraction_of(cache) / "site-packages"
    site.chmod(0o755)
    (site / "planted.py").write_text("print('planted')\n")
    site.chmod(0o555)
    env_start = run_env(tmp_path, NANO_APP_CACHE=str(cache), STUB_PROBE="planted")
    done = subprocess.run(
        [str(python), str(mini_binary)], env=env_start, capture_output=True, text=True, timeout=60
    )
    assert report(done)["host"]["planted"] is False
    assert not (extraction_of(cache) / "site-packages" / "planted.py").exists()


def test_a_warm_start_checks_no_more_than_stamps(
    python: Path, mini_binary: Path, tmp_path: Path
) -> None:
    """An extraction left as it was is used as it is: no re-extraction, no notice."""
    cache = tmp_path / "cache"
    report(start(python, mini_binary, cache))
    manifest = extraction_of(cache) / "manifest"
    before = manifest.stat().st_ino
    done = start(python, mini_binary, cache)
    report(done)
    assert done.stderr == ""
    assert manifest.stat().st_ino == before


# -- killed and raced


def wait_for_work_folder(cache: Path, proc: subprocess.Popen[str]) -> Path:
    """The temporary folder the start ``proc`` extracts into, once files are in it."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        for name in apps(cache):
            site = cache / name / "site-packages"
            if name.endswith(".tmp") and site.is_dir() and any(site.iterdir()):
                return cache / name
        time.sleep(0.005)
    pytest.fail(f"no extraction was seen under way (exit {proc.poll()})")


def popen(python: Path, binary: Path, cache: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(python), str(binary)],
        cwd=cache.parent,
        env=run_env(cache.parent, NANO_APP_CACHE=str(cache)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_start_killed_mid_extraction_leaves_nothing_that_runs(
    python: Path, mini_binary: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    first = popen(python, mini_binary, cache)
    work = wait_for_work_folder(cache, first)
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=30)
    assert apps(cache) == [work.name]  # only the temporary folder, never installed
    done = start(python, mini_binary, cache)
    report(done)
    assert [name for name in apps(cache)] == [extraction_of(cache).name]  # the dead one gone


def test_a_second_start_finishes_when_the_first_is_killed_mid_extraction(
    python: Path, mini_binary: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    first = popen(python, mini_binary, cache)
    wait_for_work_folder(cache, first)
    second = popen(python, mini_binary, cache)
    time.sleep(0.2)  # under way too
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=30)
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    assert "Traceback" not in err
    assert json.loads(out)["argv"] == []
    report(start(python, mini_binary, cache))  # and it is whole: a warm start uses it
