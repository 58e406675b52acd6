"""The corpus's tampering cases: a real binary (the mini workspace, bundled) damaged or
edited one way each, then started (see tests/corpus.py for the harness).

Each case damages a copy of the binary (or, once started, its extraction) and starts
it with a HOME of its own, so nothing is extracted yet: a damaged binary is refused in
one line naming the member, and nothing is left extracted; an edited extraction is
extracted again and the edit never runs. Where Python reads the bytes before any code
of the binary's does (a cut file: no zip end record), Python's own one line is the
answer, and no traceback.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from nanobuild import pack
from tests.corpus import BinaryCase, binary, check_unique, run_binary_case
from tests.servers import Binary
from tests.test_tamper import edit, layout, rewrite, same_size_code

MEMBER = "site-packages/nano_ingress.py"  # the generated ingress: read on every start


@dataclasses.dataclass(frozen=True)
class Tamper:
    """One damaged binary: ``damage`` edits the copy at ``pyz`` (given the binary as it
    will be run, with its HOME), then ``args`` run it."""

    name: str
    damage: Callable[[Path, Binary], None]
    names: Sequence[str]
    exit: int = 1
    args: Sequence[str] = ("info",)
    absent: Sequence[str] = ()
    refused: bool = True  # by the bootstrap's line, naming the binary


def flip(member: str, where: str, mask: int = 0x55) -> Callable[[Path, Binary], None]:
    """Flip a byte of ``member``: in its data (``data``), or its directory entry's CRC
    (``crc``), compression method (``method``), flags (``flags``) or name (``name``)."""

    def damage(pyz: Path, run: Binary) -> None:
        parts = layout(pyz)
        index = [name for name, *_ in parts.members].index(member)
        _, _, data, end = parts.members[index]
        _, entry, _ = parts.directory[index]
        offsets = {"data": (data + end) // 2, "crc": entry + 16, "method": entry + 10}
        offsets |= {"flags": entry + 8, "name": entry + 46 + len(member) - 4}
        raw = bytearray(pyz.read_bytes())
        raw[offsets[where]] ^= mask
        pyz.write_bytes(bytes(raw))

    return damage


def replace(changes: dict[str, bytes | None]) -> Callable[[Path, Binary], None]:
    def damage(pyz: Path, run: Binary) -> None:
        original = pyz.with_suffix(".orig")
        pyz.rename(original)
        rewrite(original, pyz, dict(changes))

    return damage


def cut(keep: Callable[[int], int]) -> Callable[[Path, Binary], None]:
    def damage(pyz: Path, run: Binary) -> None:
        data = pyz.read_bytes()
        pyz.write_bytes(data[: keep(len(data))])

    return damage


def edited_extraction(pyz: Path, run: Binary) -> None:
    """Start the binary once, then replace a compiled module of its extraction by one
    of the same size that says it ran, its mtime set back."""
    started = subprocess.run(run.command("info"), env=run.env, capture_output=True, timeout=60)
    assert started.returncode == 0, started.stderr
    tag = sys.implementation.cache_tag
    apps = Path(run.env["XDG_CACHE_HOME"]) / "nanobuild" / "apps"
    (pyc,) = apps.glob(f"*/site-packages/__pycache__/nano_ingress.{tag}.pyc")
    original = pyc.read_bytes()
    code = "import sys\nsys.stderr.write('TAMPERED CODE RAN\\n')\nraise SystemExit(0)"
    edit(pyc, same_size_code(code, len(original), original[:16]))


def garbage_manifest(pyz: Path, run: Binary) -> None:
    replace({pack.MANIFEST: b"\x00\xff garbage " * 100})(pyz, run)


CASES = [
    Tamper(
        "tamper-flip-bootstrap",
        flip(f"{pack.BOOTSTRAP}.py", "data"),
        names=["is damaged: member _nano_bootstrap.py does not match its CRC"],
    ),
    Tamper(
        "tamper-flip-manifest",
        flip(pack.MANIFEST, "data"),
        names=["is damaged: member _nano_manifest cannot be read"],
    ),
    Tamper(
        "tamper-flip-ingress-data",
        flip(MEMBER, "data"),
        names=[f"is damaged: member {MEMBER} cannot be read"],
    ),
    Tamper(
        "tamper-flip-runtime-data",
        flip("site-packages/nanobuild/runtime/binary.py", "data"),
        names=["member site-packages/nanobuild/runtime/binary.py"],
    ),
    Tamper(
        "tamper-wrong-crc-in-directory",
        flip(MEMBER, "crc"),
        names=[f"member {MEMBER} cannot be read: BadZipFile: Bad CRC-32"],
    ),
    Tamper(
        "tamper-unknown-compression-method",
        flip(MEMBER, "method", mask=0x10),
        names=[f"member {MEMBER} cannot be read: NotImplementedError"],
    ),
    Tamper(
        "tamper-encrypted-flag-set",
        flip(MEMBER, "flags", mask=0x01),
        names=[f"member {MEMBER} cannot be read", "encrypted"],
    ),
    Tamper(
        "tamper-renamed-in-directory",
        flip(MEMBER, "name", mask=0x20),  # nano_ingress.py -> nano_ingresS.py
        names=["is damaged: member site-packages/nano_ingresS.py is not in the binary's manifest"],
    ),
    Tamper(
        "tamper-garbage-manifest",
        garbage_manifest,
        names=["is damaged: member _nano_manifest does not match the build id"],
    ),
    Tamper(
        "tamper-manifest-missing",
        replace({pack.MANIFEST: None}),
        names=["is damaged: member _nano_manifest is missing"],
    ),
    Tamper(
        "tamper-bootstrap-missing",
        replace({f"{pack.BOOTSTRAP}.py": None}),
        names=["is damaged: member _nano_bootstrap.py does not match its CRC"],
    ),
    Tamper(
        "tamper-member-planted",
        replace({"site-packages/sitecustomize.py": b"print('planted')\n"}),
        names=["member site-packages/sitecustomize.py is not in the binary's manifest"],
        absent=["planted"],
    ),
    Tamper(
        "tamper-member-left-out",
        replace({MEMBER: None}),
        names=[f"is damaged: member {MEMBER} is missing"],
    ),
    Tamper(
        "tamper-member-replaced",
        replace({MEMBER: b"def main():\n    print('replaced')\n"}),
        names=[f"member {MEMBER} does not match its recorded sha256"],
        absent=["replaced"],
    ),
    Tamper(
        "tamper-cut-by-one-byte",
        cut(lambda size: size - 1),
        names=["source code cannot contain null bytes"],
        refused=False,
    ),
    Tamper(
        "tamper-cut-in-half",
        cut(lambda size: size // 2),
        names=["source code cannot contain null bytes"],
        refused=False,
    ),
    Tamper(
        "tamper-edited-extraction",
        edited_extraction,
        exit=0,
        names=["was changed since it was extracted; extracting it again", "sha256 "],
        absent=["TAMPERED"],
        refused=False,
    ),
]
check_unique([BinaryCase(case.name, case.args) for case in CASES])


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Binary:
    return binary(tmp_path_factory)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_case(case: Tamper, built: Binary, tmp_path: Path) -> None:
    pyz = tmp_path / "bin" / built.pyz.name
    pyz.parent.mkdir()
    shutil.copy2(built.pyz, pyz)
    home = tmp_path / "home"
    home.mkdir()
    damaged = Binary(pyz, built.python, home)
    case.damage(pyz, damaged)
    run = BinaryCase(case.name, case.args, exit=case.exit, names=case.names, absent=case.absent)
    result = run_binary_case(run, damaged, tmp_path)
    if case.refused:
        assert f"mini: the binary {pyz} is damaged: member " in result.stderr
        assert result.stderr.count("\n") == 1, result.stderr
    if case.exit != 0:
        apps = home / ".cache" / "nanobuild" / "apps"
        assert not apps.exists() or not any(apps.iterdir()), sorted(apps.iterdir())


def test_info_prints_the_binarys_sha256_and_build_id(built: Binary, tmp_path: Path) -> None:
    """What README's "Verifying a binary" compares with `sha256sum`."""
    run = BinaryCase("tamper-info", ["info", "--json"], exit=0)
    result = run_binary_case(run, built, tmp_path)
    facts = json.loads(result.stdout)
    assert facts["sha256"] == hashlib.sha256(built.pyz.read_bytes()).hexdigest()
    assert facts["binary"] == str(built.pyz)
    with zipfile.ZipFile(built.pyz) as zf:
        assert facts["build"] == hashlib.sha256(zf.read(pack.MANIFEST)).hexdigest()
    text = run_binary_case(BinaryCase("tamper-info-text", ["info"], exit=0), built, tmp_path)
    assert f"sha256     {facts['sha256']}\n" in text.stdout
