"""Helpers for the packing and bootstrap tests: wheels made here, bare Pythons, binaries.

Tests stage offline, from a wheelhouse made on the spot: the runtime's packages are
repacked as wheels from the distributions installed in the test environment itself
(a wheel is a zip of the installed files plus its dist-info), so no test needs a
package index.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

from nanobuild import pack, workspace
from nanobuild.requirements import RUNTIME_REQUIRES
from tests.conftest import REPO, SAMPLES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the 3.10 branch
    import tomli as tomllib

# The generated ingress stands in here for codegen's: its main() reports, as JSON,
# what the binary sees, so these tests do not depend on the real ingress.
STUB_INGRESS = """\
import importlib.util
import json
import os
import sys


def main():
    import msgspec
    import nanobuild.runtime
    import units
    from orders import handlers
    from users.kernel import GetUser
{extra}
    here = os.path.dirname(os.path.abspath(__file__))
    static = os.path.join(here, "nano_static")
    print(json.dumps({{
        "argv": sys.argv[1:],
        "runtime": nanobuild.runtime.__version__,
        "request": msgspec.json.encode(GetUser(id="u1")).decode(),
        "files": {{m.__name__: m.__file__ for m in (nanobuild.runtime, handlers, units, msgspec)}},
        "host": {{
            name: importlib.util.find_spec(name) is not None
            for name in ("typer", "jinja2", "shiv", "rich", "pydantic", "pytest")
            + tuple(n for n in os.environ.get("STUB_PROBE", "").split(",") if n)
        }},
        "static": sorted(os.listdir(static)) if os.path.isdir(static) else None,
        "sys_path": sys.path,
        "extra": EXTRA,
    }}))
    return int(os.environ.get("STUB_EXIT", "0"))
"""


def stub_ingress(extra: str = "    EXTRA = None") -> str:
    """The stub ingress; ``extra`` is code (indented 4) run in main() that sets EXTRA."""
    return STUB_INGRESS.format(extra=extra)


# -- wheels


def write_wheel(
    folder: Path,
    name: str,
    version: str,
    files: Mapping[str, bytes],
    *,
    tag: str = "py3-none-any",
    metadata: Iterable[str] = (),
    purelib: bool = True,
) -> Path:
    """A wheel of ``files`` (paths inside site-packages), with a fresh dist-info."""
    dist = re.sub(r"[-_.]+", "_", name)
    info = f"{dist}-{version}.dist-info"
    contents = dict(files)
    contents[f"{info}/METADATA"] = "\n".join(
        ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}", *metadata, ""]
    ).encode()
    contents[f"{info}/WHEEL"] = (
        f"Wheel-Version: 1.0\nGenerator: nanobuild-tests\n"
        f"Root-Is-Purelib: {str(purelib).lower()}\nTag: {tag}\n"
    ).encode()
    record = [f"{path},sha256={_digest(data)},{len(data)}" for path, data in contents.items()]
    contents[f"{info}/RECORD"] = ("\n".join([*record, f"{info}/RECORD,,"]) + "\n").encode()
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{dist}-{version}-{tag}.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(contents):
            zf.writestr(path, contents[path])
    return wheel


def _digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


_WRITTEN_AFRESH = ("/METADATA", "/WHEEL", "/RECORD")
_INSTALLER_NOISE = ("/INSTALLER", "/REQUESTED", "/direct_url.json")


def repack_installed(name: str, folder: Path) -> Path:
    """A wheel of the distribution ``name`` as installed in this test environment."""
    dist = importlib.metadata.distribution(name)
    files: dict[str, bytes] = {}
    for path in dist.files or ():
        rel = path.as_posix()
        if rel.startswith("../") or "__pycache__" in rel or rel.endswith(".pyc"):
            continue  # scripts in bin/, bytecode
        if rel.endswith(_WRITTEN_AFRESH) or rel.endswith(_INSTALLER_NOISE):
            continue
        top, _, rest = rel.partition("/")
        if top.endswith(".dist-info"):  # into the dist-info write_wheel names (Jinja2-...)
            dist_name = re.sub(r"[-_.]+", "_", dist.metadata["Name"])
            rel = f"{dist_name}-{dist.version}.dist-info/{rest}"
        files[rel] = Path(str(dist.locate_file(path))).read_bytes()
    wheel_file = dist.read_text("WHEEL") or ""
    tags = re.findall(r"^Tag: (\S+)$", wheel_file, re.MULTILINE)
    metadata = [
        line
        for line in (dist.read_text("METADATA") or "").splitlines()
        if line.startswith("Requires-Dist:")
    ]
    return write_wheel(
        folder,
        dist.metadata["Name"],
        dist.version,
        files,
        tag=_compressed(tags) if tags else "py3-none-any",
        metadata=metadata,
        purelib="Root-Is-Purelib: true" in wheel_file,
    )


def _compressed(tags: list[str]) -> str:
    """Several tags as one, as wheel names write them: ``py2.py3-none-any``."""
    split = [tag.split("-") for tag in tags]  # python, abi, platform: three parts each
    parts = [dict.fromkeys(part) for part in zip(*split, strict=True)]
    return "-".join(".".join(part) for part in parts)


def runtime_closure(requirements: Iterable[str] = RUNTIME_REQUIRES) -> list[str]:
    """The distributions ``requirements`` (the runtime's, by default) pull in, here."""
    seen: set[str] = set()
    todo = [Requirement(text) for text in requirements]
    while todo:
        req = todo.pop()
        key = req.name.lower().replace("_", "-")
        if key in seen or (req.marker is not None and not req.marker.evaluate({"extra": ""})):
            continue
        seen.add(key)
        todo += [Requirement(text) for text in importlib.metadata.requires(req.name) or ()]
    return sorted(seen)


def make_wheelhouse(folder: Path) -> Path:
    for name in runtime_closure():
        repack_installed(name, folder)
    return folder


def tiny_wheel(folder: Path, version: str | None = None) -> Path:
    """The wheel of the tiny local project tests/samples/tinypkg (pure Python); with
    ``version``, that version of it instead, its ``VERSION`` saying which it is."""
    project = SAMPLES / "tinypkg"
    text = (project / "pyproject.toml").read_text()
    name = re.search(r'^name = "([^"]+)"', text, re.MULTILINE)
    found = re.search(r'^version = "([^"]+)"', text, re.MULTILINE)
    assert name and found
    version = version or found.group(1)
    package = project / "nanotiny"
    files = {
        f"nanotiny/{p.relative_to(package).as_posix()}": p.read_bytes()
        for p in sorted(package.rglob("*.py"))
    }
    files["nanotiny/__init__.py"] += f"VERSION = {version!r}\n".encode()
    return write_wheel(folder, name.group(1), version, files)


def nanobuild_wheel(folder: Path) -> Path:
    """A wheel of this nanobuild, from its source (as ``pip install .`` would make):
    the package, its templates, its console script and its requirements."""
    package = REPO / "nanobuild"
    files = {
        f"nanobuild/{p.relative_to(package).as_posix()}": p.read_bytes()
        for p in sorted(package.rglob("*.py"))
    }
    for path in sorted((REPO / "templates").rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            files[f"nanobuild/templates/{path.relative_to(REPO / 'templates').as_posix()}"] = (
                path.read_bytes()
            )
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    info = f"nanobuild-{project['version']}.dist-info"
    files[f"{info}/entry_points.txt"] = b"[console_scripts]\nnanobuild = nanobuild.cli:main\n"
    requires = [f"Requires-Dist: {text}" for text in project["dependencies"]]
    return write_wheel(folder, "nanobuild", project["version"], files, metadata=requires)


def nanobuild_wheelhouse(folder: Path) -> Path:
    """Wheels of nanobuild and of everything it needs, to install it with no index."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for name in runtime_closure([*project["dependencies"], *RUNTIME_REQUIRES]):
        repack_installed(name, folder)
    nanobuild_wheel(folder)
    return folder


# -- fixtures (a plugin of the test session: see conftest.py)


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Wheels of the runtime's requirements, repacked from this environment: builds stage
    offline from it."""
    return make_wheelhouse(tmp_path_factory.mktemp("wheelhouse"))


@pytest.fixture(scope="session")
def python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Python with nothing installed, to run binaries with."""
    return bare_python(tmp_path_factory.mktemp("bare") / "venv")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A HOME of the test's own, for a binary's extraction cache."""
    folder = tmp_path / "home"
    folder.mkdir()
    return folder


# -- environments


def hermetic_pip(monkeypatch: pytest.MonkeyPatch) -> None:
    """pip sees no configuration of this machine's: only what a test passes."""
    for name in list(os.environ):
        if name.startswith(("PIP_", "UV_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)


def bare_python(folder: Path) -> Path:
    """A Python with nothing installed: a fresh venv without even pip."""
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True, timeout=120
    )
    return folder / "bin" / "python"


def run_env(home: Path, **extra: str) -> dict[str, str]:
    """A clean environment for a binary: a HOME of its own, nothing of this test run's."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8"}
    env.update(extra)
    return env


def run_binary(
    python: Path,
    binary: Path,
    *args: str,
    home: Path,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    flags: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    full = run_env(home, **(env or {}))
    return subprocess.run(
        [str(python), *flags, str(binary), *args],
        cwd=cwd or home,
        env=full,
        capture_output=True,
        text=True,
        timeout=120,
    )


def report(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The stub ingress's JSON report; the run must have succeeded."""
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def build_mini(
    root: Path,
    wheelhouse: Path,
    *,
    source: str | None = None,
    target: Path | None = None,
    services: list[str] | None = None,
    find_links: tuple[Path, ...] = (),
    progress: pack.Progress | None = None,
) -> Path:
    """``pack.build`` of the workspace at ``root``, offline from ``wheelhouse``."""
    ws = workspace.load(root)
    return pack.build(
        ws,
        services if services is not None else list(ws.services),
        source or stub_ingress(),
        target or root / "dist" / f"{ws.name}.pyz",
        find_links=(wheelhouse, *find_links),
        offline=True,
        progress=progress,
    )


def archive_names(binary: Path) -> list[str]:
    with zipfile.ZipFile(binary) as zf:
        return zf.namelist()


def folder_state(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` and its bytes: what "left as it was" compares."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@contextmanager
def tmpfs(mountpoint: Path, *, size: str = "1m", readonly: bool = False) -> Iterator[bool]:
    """A small tmpfs mounted at ``mountpoint`` (True), where this process may mount
    one (root with the right to); False, and nothing mounted, elsewhere."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if readonly else "")
    mount = shutil.which("mount")
    if mount is None or os.geteuid() != 0:
        yield False
        return
    done = subprocess.run(
        [mount, "-t", "tmpfs", "-o", options, "tmpfs", str(mountpoint)],
        capture_output=True,
        timeout=30,
    )
    if done.returncode != 0:
        yield False
        return
    try:
        yield True
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True, timeout=30)
