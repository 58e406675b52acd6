"""``nano.lock``: the one locked set of third-party packages a workspace runs on.

``nanobuild lock`` resolves the ``requires`` of every service and library, plus the
runtime's own (``RUNTIME_REQUIRES``), together, for one Python version and platform,
into exact versions and the sha256 of each file that may provide them. ``bundle``
and ``serve`` install exactly those pins (``stage.stage_locked``), so the binary
and the dev server run the same packages, and two builds a year apart pack the same.

The resolver is uv (``uv pip compile --format pylock.toml --generate-hashes``) where
it is installed, else pip (``pip install --dry-run --report``, which names each
file and its hash; a file with no hash given, such as a local wheel, is hashed
here). Without ``--upgrade``, the versions of the existing lock are kept wherever
the requirements still allow them.

The file is TOML, written by this module only (atomically: a failed ``lock`` leaves
the old file as it was)::

    version = 1
    python = "3.11"
    platform = "linux"
    inputs = "sha256:..."        # the hash of the sorted requirement set

    [requires]                   # what it was made from, per nano.toml table
    runtime = ["msgspec>=0.18", "starlette>=0.37", "uvicorn>=0.29"]
    "services.orders" = ["msgspec>=0.18"]

    [[package]]
    name = "anyio"
    version = "4.6.2"
    files = [
        { name = "anyio-4.6.2-py3-none-any.whl", sha256 = "..." },
    ]

A lock is *stale* when the hash of the current requirement set differs from
``inputs``; the ``[requires]`` table then tells what changed, key by key.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import msgspec
from packaging.utils import canonicalize_name

from nanobuild import codes, stage
from nanobuild.diagnostics import Diagnostic
from nanobuild.errors import PackError
from nanobuild.requirements import RUNTIME_REQUIRES, distribution
from nanobuild.workspace import Library, Service, Workspace, read_toml_text

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the 3.10 branch
    import tomli as tomllib

FILENAME = "nano.lock"
FORMAT = 1
RUNTIME_KEY = "runtime"  # the [requires] key of RUNTIME_REQUIRES
_OURS = {RUNTIME_KEY: "the runtime's requirements"}
_PLATFORMS = {"linux": "linux", "darwin": "macos", "win32": "windows"}
_PYTHON = re.compile(r"3\.\d{1,2}")
_PLATFORM = re.compile(r"[A-Za-z0-9_.-]+")

Notify = Callable[[str], None]


class Lock(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A ``nano.lock``, as read or about to be written."""

    version: int
    python: str
    platform: str
    inputs: str
    requires: dict[str, list[str]] = {}
    package: tuple[stage.Pinned, ...] = ()

    def distributions(self) -> tuple[tuple[str, str], ...]:
        """Each locked distribution and its version, sorted by name."""
        return tuple(sorted((pin.name, pin.version) for pin in self.package))


# -- what a lock is made from


def requirement_sets(ws: Workspace) -> dict[str, list[str]]:
    """Per nano.toml table (and ``runtime``), its requirements, each written one way."""
    owners: list[Service | Library] = [*ws.services.values(), *ws.libraries.values()]
    sets = {RUNTIME_KEY: stage.normalize(RUNTIME_REQUIRES)}
    sets.update({owner.key: stage.normalize(owner.requires) for owner in owners if owner.requires})
    return sets


def inputs_hash(sets: Mapping[str, Iterable[str]]) -> str:
    """The hash of the sorted requirement set: what a lock was resolved for."""
    union = sorted({text for texts in sets.values() for text in texts})
    return "sha256:" + hashlib.sha256(json.dumps(union).encode()).hexdigest()


def changes(lock: Lock, sets: Mapping[str, Sequence[str]]) -> list[str]:
    """What changed since ``lock`` was made, table by table."""
    said = []
    for key in sorted({*lock.requires, *sets}):
        before, now = set(lock.requires.get(key, ())), set(sets.get(key, ()))
        where = _OURS.get(key) or f"{key}.requires"
        said += [f"{where} adds {text}" for text in sorted(now - before)]
        said += [f"{where} drops {text}" for text in sorted(before - now)]
    return said or ["the requirements changed"]


def host_python() -> str:
    """This interpreter's version, as a lock names it: ``3.11``."""
    return f"{sys.version_info[0]}.{sys.version_info[1]}"


def host_platform() -> str:
    """This machine's platform, as a lock names it: ``linux``, ``macos``, ``windows``."""
    return _PLATFORMS.get(sys.platform, sys.platform)


def fits_here(lock: Lock) -> bool:
    """Whether ``lock`` was made for this interpreter's Python and platform."""
    family = next((name for name in _PLATFORMS.values() if name in lock.platform.lower()), None)
    return lock.python == host_python() and (family or lock.platform) == host_platform()


# -- reading and checking


def path_of(ws: Workspace) -> Path:
    return ws.root / FILENAME


def read(ws: Workspace) -> Lock | None:
    """The workspace's lock, or None if it has none; a file that cannot be used is a
    ``PackError`` (E504)."""
    path = path_of(ws)
    try:
        text = read_toml_text(path)  # as nano.toml is read: a leading BOM is nothing
    except FileNotFoundError:
        return None
    except OSError as exc:  # its reason alone: the place is the diagnostic's
        raise _unreadable(f"cannot read it: {exc.strerror or exc}") from None
    except UnicodeError as exc:
        raise _unreadable(f"cannot read it: {exc}") from None
    try:
        lock = msgspec.convert(tomllib.loads(text), type=Lock)
    except (tomllib.TOMLDecodeError, msgspec.ValidationError) as exc:
        raise _unreadable(str(exc)) from None
    except RecursionError:  # the parser recurses once per level of nesting
        raise _unreadable("it nests arrays or tables too deeply to be read") from None
    if lock.version != FORMAT:
        raise _unreadable(f"format version {lock.version}; this nanobuild reads {FORMAT}")
    return lock


def _unreadable(why: str) -> PackError:
    return PackError(
        [
            Diagnostic(
                FILENAME,
                codes.E504,
                f"{FILENAME} cannot be used: {why}",
                hint="make it again with `nanobuild lock`; it is written by nanobuild only",
            )
        ]
    )


def require(ws: Workspace) -> Lock:
    """The workspace's lock, checked: present (E501), made from the requirements
    nano.toml has now (E502), and for this Python and platform (E503)."""
    lock = read(ws)
    if lock is None:
        raise PackError(
            [
                ws.at(
                    "",
                    codes.E501,
                    f"there is no {FILENAME} beside {ws.file.name}: the packages to install "
                    "are not pinned",
                    "run `nanobuild lock` (and commit nano.lock) to pin them",
                )
            ]
        )
    check_current(ws, lock)
    return lock


def check_current(ws: Workspace, lock: Lock) -> None:
    """Raise E502 or E503 unless ``lock`` is current and for this interpreter."""
    sets = requirement_sets(ws)
    if lock.inputs != inputs_hash(sets):
        raise PackError(
            [
                Diagnostic(
                    FILENAME,
                    codes.E502,
                    f"{FILENAME} no longer matches {ws.file.name}: "
                    + "; ".join(changes(lock, sets)),
                    hint="run `nanobuild lock` to pin the new requirements "
                    "(`nanobuild lock --upgrade` also moves the others to their newest)",
                )
            ]
        )
    if not fits_here(lock):
        raise PackError(
            [
                Diagnostic(
                    FILENAME,
                    codes.E503,
                    f"{FILENAME} is for Python {lock.python} on {lock.platform}, but this is "
                    f"Python {host_python()} on {host_platform()}",
                    hint=f"run with Python {lock.python}, or lock for this one: "
                    f"`nanobuild lock --python {host_python()} --platform {host_platform()}`",
                )
            ]
        )


# -- making a lock


def lock(
    ws: Workspace,
    *,
    upgrade: bool = False,
    python: str | None = None,
    platform: str | None = None,
    find_links: Sequence[Path] = (),
    offline: bool = False,
    verbose: bool = False,
) -> Lock:
    """Resolve the workspace's requirements, write ``nano.lock``, and return it.

    Raises ``PackError``: E505 when the requirements cannot be resolved, E506 when
    the file cannot be written, E507 for a Python or platform it cannot lock for.
    """
    python, platform = _target(python, platform)
    folders = [_folder(folder) for folder in find_links]
    sets = requirement_sets(ws)
    previous = None if upgrade else _previous(ws)
    wanted = sorted({text for texts in sets.values() for text in texts})
    pins = resolve(
        ws, wanted, python=python, platform=platform, find_links=folders, offline=offline,
        previous=previous, verbose=verbose,
    )  # fmt: skip
    made = Lock(FORMAT, python, platform, inputs_hash(sets), sets, tuple(pins))
    write(path_of(ws), made)
    return made


def _target(python: str | None, platform: str | None) -> tuple[str, str]:
    python = python or host_python()
    platform = platform or host_platform()
    if not _PYTHON.fullmatch(python):
        raise _bad_target(f"--python {python!r}: expected a version like 3.11")
    if not _PLATFORM.fullmatch(platform):
        raise _bad_target(f"--platform {platform!r}: expected linux, macos, windows or a target")
    return python, platform


def _bad_target(message: str) -> PackError:
    return PackError([Diagnostic("--python" if "python" in message else "--platform",
                                 codes.E507, message)])  # fmt: skip


def _folder(folder: Path) -> Path:
    if not folder.is_dir():
        raise PackError(
            [Diagnostic(str(folder), codes.E406, f"--find-links {folder}: no such folder")]
        )
    return folder.resolve()


def _previous(ws: Workspace) -> Lock | None:
    """The lock there is, to keep its versions; one that cannot be read is replaced."""
    try:
        return read(ws)
    except PackError:
        return None


def resolve(
    ws: Workspace,
    requirements: Sequence[str],
    *,
    python: str,
    platform: str,
    find_links: Sequence[Path],
    offline: bool,
    previous: Lock | None,
    verbose: bool,
) -> list[stage.Pinned]:
    """The pins that satisfy ``requirements`` together, by uv if found, else pip."""
    uv = stage.uv_executable()
    with tempfile.TemporaryDirectory(prefix="nanobuild-lock-") as tmp:
        work = Path(tmp)
        (work / "requirements.in").write_text("".join(r + "\n" for r in requirements))
        try:
            if uv:
                return _by_uv(uv, work, python, platform, find_links, offline, previous, verbose)
            return _by_pip(work, python, platform, find_links, offline, previous, verbose)
        except stage.InstallFailed as exc:
            raise PackError([_unresolved(ws, exc, offline)]) from None


def _by_uv(
    uv: str,
    work: Path,
    python: str,
    platform: str,
    find_links: Sequence[Path],
    offline: bool,
    previous: Lock | None,
    verbose: bool,
) -> list[stage.Pinned]:
    out = work / "pylock.toml"
    if previous is not None:  # uv prefers the versions of the file it is to write
        out.write_text(_preferences(previous))
    command = [uv, "pip", "compile", "requirements.in", "--format", "pylock.toml"]
    command += ["-o", str(out), "--generate-hashes", "--no-header", "--quiet"]
    command += ["--python-version", python, "--python-platform", platform]
    if offline:
        command += ["--offline", *(["--no-index"] if find_links else [])]
    for folder in find_links:
        command += ["--find-links", str(folder)]
    stage.run_installer(command, work, verbose=verbose)
    found = tomllib.loads(out.read_text(encoding="utf-8"))
    return sorted((_pin_of_pylock(entry) for entry in found.get("packages", [])), key=_by_name)


def _preferences(previous: Lock) -> str:
    lines = ['lock-version = "1.0"', 'created-by = "nanobuild"', ""]
    for pin in previous.package:
        lines += ["[[packages]]", f"name = {json.dumps(pin.name)}"]
        lines += [f"version = {json.dumps(pin.version)}", ""]
    return "\n".join(lines)


def _pin_of_pylock(entry: dict[str, Any]) -> stage.Pinned:
    files = entry.get("wheels") or ([entry["sdist"]] if "sdist" in entry else [])
    pinned = [
        stage.PinnedFile(_file_name(f), f["hashes"]["sha256"])
        for f in files
        if isinstance(f, dict) and "sha256" in f.get("hashes", {})
    ]
    name = str(canonicalize_name(entry["name"]))
    return stage.Pinned(name, str(entry["version"]), tuple(sorted(pinned, key=_by_file)))


def _file_name(entry: dict[str, Any]) -> str:
    if "name" in entry:
        return str(entry["name"])
    where = str(entry.get("url") or entry.get("path") or "")
    return unquote(urlparse(where).path).rpartition("/")[2] or where


def _by_pip(
    work: Path,
    python: str,
    platform: str,
    find_links: Sequence[Path],
    offline: bool,
    previous: Lock | None,
    verbose: bool,
) -> list[stage.Pinned]:
    if importlib.util.find_spec("pip") is None:
        stage.installer_command([], work, find_links, offline=offline)  # raises E406
    if platform != host_platform():
        raise _bad_target(
            f"--platform {platform}: pip locks only for this machine's platform "
            f"({host_platform()}); put uv on PATH to lock for another"
        )
    command = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed"]
    command += ["--report", "report.json", "--quiet", "--disable-pip-version-check"]
    command += ["--no-input", "-r", "requirements.in"]
    if python != host_python():
        command += ["--python-version", python, "--only-binary=:all:"]
    if offline:
        command += ["--no-index"]
    for folder in find_links:
        command += ["--find-links", str(folder)]
    if previous is not None:  # keep the locked versions if the requirements allow them
        (work / "previous.txt").write_text("".join(
            f"{pin.name}=={pin.version}\n" for pin in previous.package))  # fmt: skip
        try:
            stage.run_installer([*command, "-c", "previous.txt"], work, verbose=verbose)
        except stage.InstallFailed:
            stage.run_installer(command, work, verbose=verbose)
    else:
        stage.run_installer(command, work, verbose=verbose)
    report = json.loads((work / "report.json").read_text(encoding="utf-8"))
    return sorted((_pin_of_report(item) for item in report.get("install", [])), key=_by_name)


def _pin_of_report(item: dict[str, Any]) -> stage.Pinned:
    info = item["download_info"]
    url = str(info["url"])
    archive = info.get("archive_info", {})
    digest = archive.get("hashes", {}).get("sha256")
    if digest is None and str(archive.get("hash", "")).startswith("sha256="):
        digest = archive["hash"].partition("=")[2]
    if digest is None and url.startswith("file:"):
        digest = hashlib.sha256(Path(unquote(urlparse(url).path)).read_bytes()).hexdigest()
    if digest is None:
        raise stage.InstallFailed(None, f"error: the index gave no sha256 for {url}")
    name = str(canonicalize_name(item["metadata"]["name"]))
    file = stage.PinnedFile(unquote(urlparse(url).path).rpartition("/")[2], str(digest))
    return stage.Pinned(name, str(item["metadata"]["version"]), (file,))


def _by_name(pin: stage.Pinned) -> str:
    return pin.name


def _by_file(file: stage.PinnedFile) -> str:
    return file.name


def _unresolved(ws: Workspace, exc: stage.InstallFailed, offline: bool) -> Diagnostic:
    """The resolver's failure, at the nano.toml key that asks for what it names."""
    named = distribution(exc.culprit) if exc.culprit else None
    key, who = "", ""
    for where, texts in requirement_sets(ws).items():
        if where != RUNTIME_KEY and any(distribution(t) == named for t in texts):
            key, who = f"{where}.requires", where.replace("services.", "service ", 1)
            who = f", needed by {who.replace('libraries.', 'library ', 1)}"
            break
    said = "\n".join(f"        {line}" for line in exc.tail())
    where_from = (
        "--offline resolves only from the --find-links folders (or the installer's cache)"
        if offline
        else "check the names and version ranges in nano.toml"
    )
    return ws.at(
        key,
        codes.E505,
        f"cannot lock the requirements{f': {exc.culprit}' if exc.culprit else ''}{who}",
        f"{where_from}; the resolver said:\n{said}",
    )


# -- writing


def render(made: Lock) -> str:
    """The TOML text of a lock: one line per fact, sorted, so diffs read well."""
    lines = [
        f"# {FILENAME}: the exact third-party packages of this workspace, written by",
        "# `nanobuild lock` from the requires of nano.toml. Do not edit it by hand.",
        f"version = {made.version}",
        f"python = {json.dumps(made.python)}",
        f"platform = {json.dumps(made.platform)}",
        f"inputs = {json.dumps(made.inputs)}",
        "",
        "[requires]",
    ]
    for key in sorted(made.requires):
        texts = ", ".join(json.dumps(t) for t in made.requires[key])
        lines.append(f"{json.dumps(key)} = [{texts}]")
    for pin in made.package:
        lines += ["", "[[package]]", f"name = {json.dumps(pin.name)}"]
        lines += [f"version = {json.dumps(pin.version)}", "files = ["]
        lines += [
            f"    {{ name = {json.dumps(f.name)}, sha256 = {json.dumps(f.sha256)} }},"
            for f in pin.files
        ]
        lines.append("]")
    return "\n".join(lines) + "\n"


def write(path: Path, made: Lock) -> None:
    """Write ``made`` to ``path`` atomically: the old file stays until the new is whole."""
    try:
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise _unwritable(path, exc) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(render(made))
            out.flush()
            os.fsync(out.fileno())
        if path.exists():
            shutil.copymode(path, temporary)
        else:
            os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except OSError as exc:
        Path(temporary).unlink(missing_ok=True)
        raise _unwritable(path, exc) from None


def _unwritable(path: Path, exc: OSError) -> PackError:
    why = exc.strerror or str(exc)
    return PackError([Diagnostic(FILENAME, codes.E506, f"cannot write {path.name}: {why}")])


# -- using a lock


def stage_of(
    made: Lock, *, find_links: Sequence[Path] = (), offline: bool = False, verbose: bool = False
) -> stage.Staged:
    """The stage of exactly the lock's pins (cached); an install failure is E401."""
    return stage_pins(made.package, find_links=find_links, offline=offline, verbose=verbose)


def stage_pins(
    pins: Sequence[stage.Pinned],
    *,
    find_links: Sequence[Path] = (),
    offline: bool = False,
    verbose: bool = False,
) -> stage.Staged:
    """``stage.stage_locked``, its failure told as a diagnostic (E401)."""
    try:
        return stage.stage_locked(pins, find_links=find_links, offline=offline, verbose=verbose)
    except stage.InstallFailed as exc:
        said = "\n".join(f"        {line}" for line in exc.tail())
        where = (
            "--offline installs from the --find-links folders, the installer's cache, "
            "or a stage built before"
            if offline
            else "if a hash does not match, the index now serves other files than when "
            "nano.lock was made: run `nanobuild lock --upgrade`"
        )
        raise PackError(
            [
                Diagnostic(
                    FILENAME,
                    codes.E401,
                    "cannot install the locked packages",
                    hint=f"{where}; the installer said:\n{said}",
                )
            ]
        ) from None


def prepare(
    ws: Workspace,
    *,
    create: bool,
    find_links: Sequence[Path] = (),
    offline: bool = False,
    verbose: bool = False,
    notify: Notify | None = None,
) -> tuple[Lock, stage.Staged]:
    """The workspace's checked lock and its stage. With ``create``, a workspace that
    has no lock yet gets one first (``serve``'s first run), and ``notify`` says so."""
    made = read(ws)
    if made is None and create:
        made = lock(ws, find_links=find_links, offline=offline, verbose=verbose)
        if notify:
            notify(f"nanobuild: no {FILENAME} yet: pinned {len(made.package)} packages into it")
    if made is None:
        made = require(ws)  # raises E501
    check_current(ws, made)
    return made, stage_of(made, find_links=find_links, offline=offline, verbose=verbose)
