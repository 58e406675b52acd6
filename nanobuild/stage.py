"""Staging: the third-party packages a binary carries, installed once and cached.

A stage is the ``site-packages`` tree of one requirement set, fit to ship: installed
with ``uv pip install --target`` when ``uv`` is on PATH (much faster), else with this
Python's pip, then stripped of what must not travel — ``bin/`` scripts (their
shebangs name this machine's Python), bytecode, and the installer's bookkeeping
(``INSTALLER``, ``REQUESTED``, ``direct_url.json``, uv's ``uv_cache.json`` and
``.lock``, and the ``RECORD`` lines of files that are gone).

It is built in a temporary folder beside the cache and renamed into place. A rename
is atomic, so two builds at once never see half a stage, and the loser of that race
simply uses the winner's. The temporary folder is named after the process that makes
it (``.tmp-<pid>-<random>``), so that the next use of the cache removes what a build
that was killed left (its process is gone). A full or read-only disk, the installer's
or ours, is said to be one (E408), naming the folder. Cache layout::

    <root>/stage/<key>/site-packages/   the packages, as they go into a binary
    <root>/stage/<key>/stage.json       what was asked for, for people looking in

A locked stage (``stage_locked``) installs exactly the pins of ``nano.lock``
(``--require-hashes --no-deps``) and lives under ``<root>/stage/lock-<key>/``, its key
hashing only the pins (names, versions, file hashes) and the Python and platform: the
same lock is the same stage whatever folders or flags it was first installed with,
so ``--offline`` reuses it. It also holds ``modules.json``, each top-level module ->
the distribution that brings it, which ``check`` reads instead of the stage itself.

``<root>`` is ``$NANO_CACHE_DIR``, else ``$XDG_CACHE_HOME/nanobuild``, else
``~/.cache/nanobuild``. The key hashes the sorted requirement set, the Python it is
for (implementation, major.minor, ABI flags), the platform tag, and where packages
may come from (``--offline`` and a listing of each ``--find-links`` folder), so a
changed wheelhouse is never masked by an older stage. A stage does not expire: a
range like ``msgspec>=0.18`` stays at the version first installed until the cache
folder is removed.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import importlib.util
import io
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import msgspec
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import nanobuild
from nanobuild import codes
from nanobuild.diagnostics import Diagnostic
from nanobuild.errors import PackError

SITE = "site-packages"
MODULES = "modules.json"  # beside a locked stage's site-packages: module -> distribution
# Folders pip --target leaves beside the packages: a wheel's scripts and data files,
# which belong to an installation prefix, not to an importable tree.
_DATA_FOLDERS = frozenset({"bin", "Scripts", "share", "include", "etc", "man"})
# installer bookkeeping: which installer, whether asked for by name, from where, when
_NOISE = ("INSTALLER", "REQUESTED", "direct_url.json", "uv_cache.json")
_LOG_TAIL = 15
# the lines pip and uv start their complaints with
_ERROR_MARKS = (
    "ERROR:",
    "error:",
    "cause:",
    "hint:",
    "\N{MULTIPLICATION SIGN}",
    "\N{BOX DRAWINGS LIGHT ARC UP AND RIGHT}",
    "Because",
)


class Staged(msgspec.Struct, frozen=True):
    """A stage ready to pack: its ``site-packages`` folder, and whether it was cached."""

    site_packages: Path
    reused: bool


class PinnedFile(msgspec.Struct, frozen=True):
    """One file a pin may be installed from: its name and its sha256 (hex)."""

    name: str
    sha256: str


class Pinned(msgspec.Struct, frozen=True):
    """One distribution at one exact version, and the files that may provide it."""

    name: str
    version: str
    files: tuple[PinnedFile, ...]

    def requirement_line(self) -> str:
        """The pin as a hash-checked requirements-file line."""
        hashes = " ".join(f"--hash=sha256:{f.sha256}" for f in self.files)
        return f"{self.name}=={self.version} {hashes}"


class InstallFailed(Exception):
    """The installer failed. ``pack`` turns it into a diagnostic that names the
    requirement and who needs it; it never reaches the user as it is."""

    def __init__(self, culprit: str | None, log: str) -> None:
        super().__init__(culprit or "the installer failed")
        self.culprit = culprit  # the requirement the installer named, as it wrote it
        self.log = log

    def tail(self, lines: int = _LOG_TAIL) -> list[str]:
        """What the installer said went wrong: its error lines, else its last lines."""
        said = [line.rstrip() for line in self.log.splitlines() if line.strip()]
        errors = [line for line in said if line.lstrip().startswith(_ERROR_MARKS)]
        return (errors or said)[-lines:]


def build_cache() -> Path:
    """Where nanobuild keeps its build cache (stages live under ``stage/``)."""
    if override := os.environ.get("NANO_CACHE_DIR"):
        return Path(override).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "nanobuild"


def normalize(requirements: Iterable[str]) -> list[str]:
    """The requirement set: each written one way (``msgspec >= 0.18`` is
    ``msgspec>=0.18``), sorted, without duplicates."""
    return sorted({str(Requirement(text)) for text in requirements})


def stage(
    requirements: Iterable[str],
    *,
    find_links: Sequence[Path] = (),
    offline: bool = False,
    verbose: bool = False,
) -> Staged:
    """The stage of ``requirements``: from the cache, or installed into it now.

    Raises ``InstallFailed`` when the installer fails, and ``PackError`` when there is
    no installer, a ``--find-links`` folder is missing, or the cache is unusable.
    """
    wanted = normalize(requirements)
    folders = [_find_links_folder(folder) for folder in find_links]
    root = build_cache() / "stage"
    final = root / key(wanted, folders, offline)
    sweep(root)
    if (final / SITE).is_dir():
        return Staged(final / SITE, reused=True)
    work = _workspace_in(root)
    try:
        _install(wanted, work / SITE, folders, offline=offline, verbose=verbose)
        prune(work / SITE)
        _describe(work, wanted, folders, offline)
        _publish(work, final)
    except OSError as exc:  # writing our own files of the stage
        raise _unusable(root, exc) from None
    finally:
        shutil.rmtree(work, ignore_errors=True)  # already renamed away on success
    return Staged(final / SITE, reused=False)


def stage_locked(
    pins: Sequence[Pinned],
    *,
    find_links: Sequence[Path] = (),
    offline: bool = False,
    verbose: bool = False,
) -> Staged:
    """The stage of exactly ``pins``: from the cache, or installed into it now, each
    file checked against its hash and nothing else pulled in.

    Raises as ``stage`` does. ``offline`` installs with no network: from the
    ``find_links`` folders when there are any, else from the installer's own cache.
    """
    folders = [_find_links_folder(folder) for folder in find_links]
    final = locked_path(pins)
    sweep(final.parent)
    if (final / SITE).is_dir():
        return Staged(final / SITE, reused=True)
    work = _workspace_in(final.parent)
    try:
        pinned = work / "locked.txt"
        pinned.write_text("".join(pin.requirement_line() + "\n" for pin in pins))
        command = locked_command(pinned, work / SITE, folders, offline=offline)
        run_installer(command, work, verbose=verbose)
        pinned.unlink()
        prune(work / SITE)
        _describe(work, [f"{pin.name}=={pin.version}" for pin in pins], folders, offline)
        modules = top_level_modules(work / SITE)
        (work / MODULES).write_text(json.dumps(modules, indent=2, sort_keys=True) + "\n")
        _publish(work, final)
    except OSError as exc:  # writing our own files of the stage
        raise _unusable(final.parent, exc) from None
    finally:
        shutil.rmtree(work, ignore_errors=True)  # already renamed away on success
    return Staged(final / SITE, reused=False)


def locked_path(pins: Sequence[Pinned]) -> Path:
    """Where the stage of ``pins`` is, or will be, in the cache."""
    listed = sorted([p.name, p.version, sorted(f.sha256 for f in p.files)] for p in pins)
    text = json.dumps([listed, interpreter(), sysconfig.get_platform()]).encode()
    return build_cache() / "stage" / f"lock-{hashlib.sha256(text).hexdigest()[:32]}"


def runtime_folder() -> Path:
    """A folder that holds only the runtime of the nanobuild running here
    (``nanobuild/__init__.py`` and ``nanobuild/runtime/``, linked to its own files):
    on a child's path, it gives the runtime and never the build side nor this
    Python's packages."""
    package = Path(nanobuild.__file__).resolve().parent
    digest = hashlib.sha256(str(package).encode()).hexdigest()[:16]
    final = build_cache() / "runtime" / digest
    if (final / "nanobuild" / "runtime").is_dir():
        return final
    sweep(final.parent)
    work = _workspace_in(final.parent)
    try:
        (work / "nanobuild").mkdir()
        (work / "nanobuild" / "__init__.py").symlink_to(package / "__init__.py")
        (work / "nanobuild" / "runtime").symlink_to(package / "runtime", target_is_directory=True)
        _publish(work, final)
    except OSError as exc:
        raise _unusable(final.parent, exc) from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final


def staged_modules(pins: Sequence[Pinned]) -> dict[str, str] | None:
    """Module -> distribution label of the stage of ``pins``, if it is built; read from
    the little index written beside it, not from the packages."""
    try:
        found = json.loads((locked_path(pins) / MODULES).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else None


def key(requirements: Sequence[str], find_links: Sequence[Path], offline: bool) -> str:
    """The cache key of a stage (see the module's docstring for what it covers)."""
    doc = {
        "requirements": list(requirements),
        "python": interpreter(),
        "platform": sysconfig.get_platform(),
        "offline": offline,
        "find_links": [_listing(folder) for folder in find_links],
    }
    text = json.dumps(doc, sort_keys=True).encode()
    return hashlib.sha256(text).hexdigest()[:32]


def interpreter() -> str:
    """The Python a stage is for: ``cpython-3.11`` (plus ABI flags, where there are)."""
    major, minor = sys.version_info[:2]
    return f"{sys.implementation.name}-{major}.{minor}{sys.abiflags}"


def top_level_modules(site_packages: Path) -> dict[str, str]:
    """Each top-level module name in a stage -> the distribution that brings it."""
    modules: dict[str, str] = {}
    for info in sorted(site_packages.glob("*.dist-info")):
        label = _distribution_label(info.name)
        for path in _record_paths(info):
            module = _module_name(path.split("/")[0])
            if module:
                modules.setdefault(module, label)
    for entry in sorted(site_packages.iterdir()):
        module = _module_name(entry.name)
        if module:
            modules.setdefault(module, "an unrecorded distribution")
    return modules


def prune(site_packages: Path) -> None:
    """Strip a fresh install of what must not ship (see the module's docstring)."""
    for entry in site_packages.iterdir():
        if entry.name.startswith("."):  # the installer's own, like uv's .lock
            _remove(entry)
        elif entry.name in _DATA_FOLDERS and not (entry / "__init__.py").exists():
            _remove(entry)  # scripts and data files: they belong to a prefix, not here
    for cache in sorted(site_packages.rglob("__pycache__"), reverse=True):
        shutil.rmtree(cache, ignore_errors=True)
    for compiled in [*site_packages.rglob("*.pyc"), *site_packages.rglob("*.pyo")]:
        compiled.unlink(missing_ok=True)
    for info in site_packages.glob("*.dist-info"):
        for noise in _NOISE:
            (info / noise).unlink(missing_ok=True)
        _rewrite_record(info, site_packages)


def _remove(entry: Path) -> None:
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry, ignore_errors=True)
    else:
        entry.unlink(missing_ok=True)


# -- installing


def uv_executable() -> str | None:
    """uv, if it is the installer to use (see ``installer_command``); None for pip."""
    return _uv()


def _uv() -> str | None:
    choice = os.environ.get("NANO_INSTALLER", "").strip().lower()
    if choice == "pip":
        return None
    found = shutil.which("uv") or shutil.which("uv", path=os.path.dirname(sys.executable))
    if choice == "uv" and not found:
        raise PackError(
            [Diagnostic("NANO_INSTALLER", codes.E406, "NANO_INSTALLER=uv, but uv is not installed")]
        )
    return found


def installer_command(
    requirements: Sequence[str], target: Path, find_links: Sequence[Path], *, offline: bool
) -> list[str]:
    """The command that installs ``requirements`` into ``target``: uv if found, else pip.

    uv is looked for on PATH and beside this Python (installed in the same venv);
    ``NANO_INSTALLER=pip`` (or ``uv``) makes the choice instead.
    """
    uv = _uv()
    if uv:
        command = [uv, "pip", "install", "--target", str(target), "--python", sys.executable]
        command += ["--link-mode", "copy", "--no-compile"]
        if offline:
            command += ["--no-index", "--offline"]
    elif importlib.util.find_spec("pip") is not None:
        command = [sys.executable, "-m", "pip", "install", "--target", str(target)]
        command += ["--no-compile", "--disable-pip-version-check", "--no-input"]
        command += ["--no-warn-script-location"]
        if offline:
            command += ["--no-index"]
    else:
        raise PackError(
            [
                Diagnostic(
                    sys.executable,
                    codes.E406,
                    "no package installer: uv is not on PATH and this Python has no pip",
                    hint=f"install one: `{sys.executable} -m ensurepip`, or put uv on PATH",
                )
            ]
        )
    for folder in find_links:
        command += ["--find-links", str(folder)]
    return [*command, *requirements]


def locked_command(
    requirements_file: Path, target: Path, find_links: Sequence[Path], *, offline: bool
) -> list[str]:
    """The command that installs exactly the hash-pinned ``requirements_file``.

    Offline, uv installs from the ``find_links`` folders only when there are any, and
    else from its own cache; pip, which has no cache of its own to install from,
    needs the folders.
    """
    command = installer_command([], target, find_links, offline=False)
    command += ["--require-hashes", "--no-deps", "-r", str(requirements_file)]
    if offline:
        uv = os.path.basename(command[0]).startswith("uv")
        command += ["--offline"] if uv else []
        command += ["--no-index"] if find_links or not uv else []
    return command


def run_installer(command: list[str], cwd: Path, *, verbose: bool) -> None:
    """Run an installer; its log is echoed to stderr when ``verbose``, kept either way."""
    process = subprocess.Popen(
        command,
        cwd=cwd,  # so a requirement never reads as a folder of the caller's
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )
    assert process.stdout is not None
    log = io.StringIO()
    for line in process.stdout:
        log.write(line)
        if verbose:
            sys.stderr.write(line)
    if process.wait() != 0:
        _disk_said(log.getvalue(), cwd.parent)
        raise InstallFailed(_culprit(log.getvalue()), log.getvalue())


# How a full or read-only disk reads: its errno -> what it says of the disk, and the
# words pip (Python's strerror) and uv (Rust's "os error N") print for it.
_DISK = {
    errno.ENOSPC: ("is full", ("No space left on device", "os error 28")),
    getattr(errno, "EDQUOT", 122): ("is over its quota", ("Disk quota exceeded", "os error 122")),
    errno.EROFS: ("is read-only", ("Read-only file system", "os error 30")),
}


def disk_trouble(exc: OSError) -> str | None:
    """What an error says of its disk (``is full``...), if it is a full or read-only disk."""
    found = _DISK.get(exc.errno or 0)
    return found[0] if found else None


def disk_error(folder: Path, doing: str, state: str, said: str = "") -> PackError:
    """E408: ``doing`` failed because the disk holding ``folder`` is full or read-only;
    ``said`` is the installer's line that says so."""
    hint = "free some space there (or make it writable), or use another folder "
    hint += "(NANO_CACHE_DIR for the build cache)"
    return PackError(
        [
            Diagnostic(
                str(folder),
                codes.E408,
                f"{doing}: the disk holding {folder} {state}",
                hint=f"{hint}; the installer said: {said}" if said else hint,
            )
        ]
    )


def _disk_said(log: str, folder: Path) -> None:
    """A ``disk_error`` if the installer's log says it ran out of disk or hit a read-only
    one, with the line that says so (it often names a folder of the installer's own)."""
    for state, marks in _DISK.values():
        said = [line.strip() for line in log.splitlines() if any(m in line for m in marks)]
        if said:
            raise disk_error(folder, "cannot stage the packages", state, said[-1][:300])


def _install(
    requirements: Sequence[str],
    target: Path,
    find_links: Sequence[Path],
    *,
    offline: bool,
    verbose: bool,
) -> None:
    """Run the installer; its log is echoed to stderr when ``verbose``, kept either way."""
    command = installer_command(requirements, target, find_links, offline=offline)
    run_installer(command, target.parent, verbose=verbose)


# pip: "Could not find a version that satisfies the requirement nopkg>=1 (from x) ..."
#      "No matching distribution found for nopkg>=1"
# uv:  "Because nopkg was not found in the package registry and you require nopkg, ..."
_CULPRIT = (
    re.compile(r"satisfies the requirement (\S+(?: \(from (?!versions)[^)]+\))?)"),
    re.compile(r"No matching distribution found for (\S+)"),
    re.compile(r"Because (\S+?) was not found"),
)


def _culprit(log: str) -> str | None:
    for pattern in _CULPRIT:
        if match := pattern.search(log):
            return match.group(1)
    return None


# -- the cache


def _find_links_folder(folder: Path) -> Path:
    if not folder.is_dir():
        raise PackError(
            [Diagnostic(str(folder), codes.E406, f"--find-links {folder}: no such folder")]
        )
    return folder.resolve()


def _listing(folder: Path) -> list[tuple[str, int, int]]:
    # what is on offer there: a new or rebuilt wheel changes the key
    entries = sorted(folder.iterdir())
    return [(e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in entries if e.is_file()]


def _workspace_in(root: Path) -> Path:
    """A fresh temporary folder in the cache (same file system: the rename stays atomic),
    named after this process (see ``sweep``)."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f"{_TEMPORARY}{os.getpid()}-", dir=root))
    except OSError as exc:
        raise _unusable(root, exc) from None


def _unusable(root: Path, exc: OSError) -> PackError:
    """The cache at ``root`` cannot be written: E408 for a full or read-only disk, else E406."""
    state = disk_trouble(exc)
    if state is not None:
        return disk_error(root, f"cannot write the build cache {root}", state)
    return PackError(
        [
            Diagnostic(
                str(root),
                codes.E406,
                f"cannot use the build cache {root}: {exc.strerror or exc}",
                hint="set NANO_CACHE_DIR to a writable folder",
            )
        ]
    )


_TEMPORARY = ".tmp-"  # the start of a temporary folder's name: .tmp-<pid>-<random>
_STALE = 24 * 3600.0  # seconds after which a temporary folder naming no process is stale


def sweep(root: Path) -> None:
    """Remove the temporary folders under ``root`` that builds which are gone left: those
    of a process that no longer runs, and those naming none (made before they named
    one) once a day old. Best effort: what cannot be removed now is left for later."""
    try:
        entries = [e for e in os.scandir(root) if e.name.startswith(_TEMPORARY)]
    except OSError:
        return  # no cache yet, or one we cannot list: nothing of ours to remove
    for entry in entries:
        pid = entry.name[len(_TEMPORARY) :].partition("-")[0]
        named = pid.isdigit() and "-" in entry.name[len(_TEMPORARY) :]
        if left_over(entry, int(pid) if named else None):
            shutil.rmtree(entry.path, ignore_errors=True)


def left_over(entry: os.DirEntry[str], pid: int | None) -> bool:
    """Whether a temporary file or folder a build made is left over: the process it is
    named after (``pid``) no longer runs, or, named after none, it is a day old. The one
    rule of every sweep (this one, ``pack.sweep``)."""
    return not alive(pid) if pid is not None else _age(entry) > _STALE


def alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this machine (this one does)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's: it runs
        return True
    return True


def _age(entry: os.DirEntry[str]) -> float:
    try:
        return time.time() - entry.stat(follow_symlinks=False).st_mtime
    except OSError:
        return 0.0


def _describe(
    work: Path, requirements: Sequence[str], find_links: Sequence[Path], offline: bool
) -> None:
    doc = {
        "requirements": list(requirements),
        "python": interpreter(),
        "platform": sysconfig.get_platform(),
        "offline": offline,
        "find_links": [str(folder) for folder in find_links],
    }
    (work / "stage.json").write_text(json.dumps(doc, indent=2) + "\n")


def _publish(work: Path, final: Path) -> None:
    """Rename the finished stage into place, unless a concurrent build got there first."""
    try:
        os.rename(work, final)
    except OSError as exc:
        if not (final / SITE).is_dir() and not (final / "nanobuild").is_dir():
            state = disk_trouble(exc)
            if state is not None:
                raise disk_error(final.parent, "cannot store the stage", state) from None
            raise PackError(
                [Diagnostic(str(final), codes.E406, f"cannot store the stage: {exc.strerror}")]
            ) from exc


# -- dist-info bookkeeping


def _record_paths(info: Path) -> list[str]:
    """The paths a distribution's RECORD lists inside site-packages."""
    try:
        text = (info / "RECORD").read_text(encoding="utf-8")
    except OSError:
        return []
    paths = [row[0] for row in csv.reader(text.splitlines()) if row]
    return [p for p in paths if not p.startswith(("/", "../")) and ".." not in p.split("/")]


def _rewrite_record(info: Path, site_packages: Path) -> None:
    """Keep only the RECORD lines of files that are still there."""
    record = info / "RECORD"
    try:
        rows = list(csv.reader(record.read_text(encoding="utf-8").splitlines()))
    except OSError:
        return
    kept = [row for row in rows if row and _inside(site_packages, row[0])]
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(kept)
    record.write_text(out.getvalue(), encoding="utf-8")


def _inside(site_packages: Path, path: str) -> bool:
    if path.startswith("/") or ".." in path.split("/"):
        return False
    return (site_packages / path).exists()


def _distribution_label(dist_info: str) -> str:
    name, _, version = dist_info.removesuffix(".dist-info").partition("-")
    return f"{canonicalize_name(name)} {version}".strip()


def _module_name(entry: str) -> str | None:
    """The module a top-level site-packages entry provides, if it provides one."""
    if entry.endswith((".dist-info", ".data", ".egg-info", ".pth")) or entry in _DATA_FOLDERS:
        return None
    stem = entry.split(".")[0]
    if "." in entry and not entry.endswith((".py", ".so", ".pyd")):
        return None
    return stem if stem.isidentifier() else None
