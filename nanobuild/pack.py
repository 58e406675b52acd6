"""Packing: the services, their libraries, the runtime and their third-party packages
into one reproducible zipapp, ``dist/<name>.pyz``.

``build`` runs three steps, each reported to ``progress`` with its duration:

1. **stage** (``stage (cached)`` when reused): the third-party packages — what the
   runtime needs plus the ``requires`` of the packed services and their libraries —
   installed once per requirement set and cached (``nanobuild.stage``). nanobuild
   itself is not installed there: only its runtime (``nanobuild/__init__.py`` and
   ``nanobuild/runtime/``) is copied in, so the build side (typer, jinja2, shiv,
   rich, packaging) never ships unless a service asks for it.
2. **collect**: the archive's entries, read into memory: the stage, the runtime, each
   packed service's package and each library's, the generated ``nano_ingress.py``
   and the static frontend as ``nano_static/``. A file that cannot be read stops the
   build here, before anything is written.
3. **pack**: the zipapp, written with shiv's builder.

Why not shiv's ``create_archive``: it always packs shiv's own bootstrap and a
``__main__`` that imports it, and that bootstrap extracts into ``~/.shiv`` without
telling a damaged extraction from a good one, keeps the host's site-packages on
``sys.path``, and never removes older builds. So the archive is written with shiv's
lower-level functions (``write_file_prefix``, ``write_to_zipapp``) and carries our
own stdlib-only bootstrap (``nanobuild/runtime/bootstrap.py``) at its root::

    #!/usr/bin/env python3
    __main__.py            checks the bootstrap's CRC, calls its boot(name, build id, ...)
    _nano_bootstrap.py     unpacks site-packages/ once, isolates sys.path, runs main()
    _nano_manifest         the sha256 of every file the bootstrap unpacks
    site-packages/...      everything the app imports

Reproducible: the same inputs give the same bytes, from any folder and under any
umask. Entries are sorted, every timestamp is ``SOURCE_DATE_EPOCH`` (or 1980-01-01,
the zip format's first day), modes are 0644, or 0755 for files with a run bit, the
shebang is ``/usr/bin/env python3``, and the stage holds no ``bin/`` scripts (whose
shebangs name this machine's Python), no bytecode and no installer bookkeeping. The
build id (which names the extraction folder) is the sha256 of the manifest, so of
``site-packages/``.

Atomic: the archive is written to a temporary file beside the target and renamed
over it; on any failure (a full disk included) the temporary file is removed and
``dist/`` is as it was.

The binary runs on the Python it was built with (same implementation, minor version
and platform: the stage may hold compiled extensions); the bootstrap says so clearly
anywhere else.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, NamedTuple

from packaging.requirements import Requirement
from shiv import builder  # type: ignore[import-untyped]  # shiv ships no type hints

import nanobuild
from nanobuild import codes, stage
from nanobuild.diagnostics import Diagnostic, did_you_mean
from nanobuild.errors import PackError
from nanobuild.requirements import RUNTIME_PARTY, RUNTIME_REQUIRES, distribution
from nanobuild.runtime.spec import python_binding
from nanobuild.source import Module, read_package, read_regular, static_files, walk
from nanobuild.workspace import FILENAME, Library, Service, Workspace

Progress = Callable[[str, float], None]

INGRESS = "nano_ingress"  # the generated module, at the top of site-packages
STATIC = "nano_static"  # the static frontend's folder, next to it
ENTRY_POINT = f"{INGRESS}:main"
BOOTSTRAP = "_nano_bootstrap"  # nanobuild/runtime/bootstrap.py, at the archive's root
MANIFEST = "_nano_manifest"  # every file's sha256, at the archive's root
MANIFEST_HEADER = "nanobuild-binary-manifest 1"  # as bootstrap.BINARY_MANIFEST_HEADER
SHEBANG = "/usr/bin/env python3"
SITE = "site-packages"
_EPOCH_1980 = 315532800  # the earliest time a zip entry can carry


class Entry(NamedTuple):
    """One file of the archive."""

    arcname: str  # its path in the archive, with forward slashes
    data: bytes
    executable: bool = False


class Contents(NamedTuple):
    """What goes into a binary, from the workspace."""

    services: list[Service]  # the packed services: all their code, their handlers run here
    callees: list[Service]  # the services they call elsewhere: only the kernel ships
    libraries: list[Library]  # the libraries all of those use
    requirements: dict[str, list[tuple[str, str]]]  # requirement -> (who, nano.toml key)


def build(
    workspace: Workspace,
    services: Sequence[str],
    ingress_source: str,
    target: Path,
    *,
    find_links: Sequence[Path] = (),
    offline: bool = False,
    verbose: bool = False,
    progress: Progress | None = None,
    contents: Contents | None = None,
    staged: stage.Staged | None = None,
) -> Path:
    """Pack ``services`` of ``workspace`` into the zipapp ``target``; returns ``target``.

    The services each of them depends on come along (their callers import their
    kernels even when they run elsewhere), and so do the libraries they all use.
    ``ingress_source`` becomes ``nano_ingress.py``, whose ``main()`` the binary runs.
    ``find_links`` folders of wheels and ``offline`` (no package index) are passed to
    the installer; ``verbose`` echoes its log to stderr; ``contents`` is ``plan``'s
    answer, when the caller has it already. ``staged`` is a stage made already (``bundle``
    stages exactly the pins of ``nano.lock`` before it checks); without it the
    requirements are resolved as they are installed. Any problem raises
    ``PackError`` and leaves ``target`` as it was.
    """
    report = progress or (lambda step, seconds: None)
    contents = contents or plan(workspace, services)
    if staged is None:
        with _timed() as elapsed:
            staged = _stage(workspace, contents, find_links, offline=offline, verbose=verbose)
        report("stage (cached)" if staged.reused else "stage", elapsed())
    with _timed() as elapsed:
        _check_collisions(workspace, contents, stage.top_level_modules(staged.site_packages))
        entries = collect(workspace, contents, staged.site_packages, ingress_source)
    report("collect", elapsed())
    with _timed() as elapsed:
        # the binary's own name, so that boutique.pyz and boutique-checkout.pyz, two
        # apps, never take each other's unpacked files for an older build of their own
        write(entries, target, name=target.stem, pth=_has_pth(staged.site_packages))
    report("pack", elapsed())
    return target


# -- what goes in


def plan(
    workspace: Workspace,
    services: Sequence[str],
    modules: Mapping[str, Sequence[Module]] | None = None,
) -> Contents:
    """The services (with the ones they call), libraries and requirements to pack.

    ``modules`` (per library name, as ``check`` read them) saves reading the
    libraries' code again to see which other libraries they import.
    """
    # ``bundle`` refuses an unknown --only name first (E008); this guards other callers
    unknown = [name for name in services if name not in workspace.services]
    if unknown:
        raise PackError(
            [
                Diagnostic(
                    FILENAME,
                    codes.E407,
                    f"{name} is not a service of this workspace",
                    hint=did_you_mean(name, workspace.services),
                )
                for name in unknown
            ]
        )
    named = [workspace.services[name] for name in services]
    callees = [svc for svc in _with_dependencies(workspace, named) if svc not in named]
    libraries = _libraries(workspace, [*named, *callees], modules or {})
    return Contents(named, callees, libraries, _requirements([*named, *libraries], callees))


def sources(workspace: Workspace, contents: Contents) -> list[Path]:
    """The workspace files that go into the binary (for the inputs hash): the same walk
    ``collect`` makes, links followed."""
    owners: list[Service | Library] = [*contents.services, *contents.libraries]
    files = [path for owner in owners for path in _walk(owner.package_dir)]
    files += [path for svc in contents.callees if not svc.adopted for path in _kernel_files(svc)]
    if workspace.ingress.static is not None and workspace.ingress.static.is_dir():
        files += [path for _, path in static_files(workspace.ingress.static).files]
    return sorted(files)


def _walk(folder: Path) -> list[Path]:
    """Every file under ``folder`` that packing takes, links followed, bytecode left out:
    ``source.walk``'s, the walk ``check`` reads the packages by."""
    return walk(folder).files


def _kernel_files(service: Service) -> list[Path]:
    """What a caller needs of a service that runs elsewhere: its package's kernel."""
    init = service.package_dir / "__init__.py"
    return [init, service.kernel_file] if init.is_file() else [service.kernel_file]


def _requirements(
    owners: list[Service | Library], callees: Sequence[Service] = ()
) -> dict[str, list[tuple[str, str]]]:
    """The runtime's requirements and the owners', each with who needs it and where
    nano.toml says so. A service only called from here brings none: its handlers are
    not run here, and its kernel needs no third-party package (E207) but pydantic,
    which a kernel of pydantic contracts may import once its service requires it."""
    parties: dict[str, list[tuple[str, str]]] = {}
    for text in RUNTIME_REQUIRES:
        parties.setdefault(str(Requirement(text)), []).append((RUNTIME_PARTY, ""))
    for owner in owners:
        for text in owner.requires:
            need = (owner.label, f"{owner.key}.requires")
            parties.setdefault(str(Requirement(text)), []).append(need)
    for callee in callees:
        for text in callee.requires:
            if not callee.adopted and distribution(text) == "pydantic":
                need = (callee.label, f"{callee.key}.requires")
                parties.setdefault(str(Requirement(text)), []).append(need)
    return parties


def _with_dependencies(workspace: Workspace, named: list[Service]) -> list[Service]:
    """``named`` and every service they depend on, directly or not, in workspace order."""
    wanted = {svc.name for svc in named}
    todo = [dep for svc in named for dep in svc.depends]
    while todo:
        name = todo.pop()
        if name in workspace.services and name not in wanted:
            wanted.add(name)
            todo.extend(workspace.services[name].depends)
    return [svc for name, svc in workspace.services.items() if name in wanted]


def _libraries(
    workspace: Workspace, services: list[Service], modules: Mapping[str, Sequence[Module]]
) -> list[Library]:
    """The libraries the services list, and the libraries those import (a library may
    import another without declaring it)."""
    by_package = {lib.package: lib for lib in workspace.libraries.values()}
    wanted = {name for svc in services for name in svc.libraries if name in workspace.libraries}
    todo = list(wanted)
    while todo:
        library = workspace.libraries[todo.pop()]
        read = modules.get(library.name)
        if read is None:
            read = read_package(library.package_dir, library.package)
        for top in {imp.top for module in read for imp in module.imports}:
            other = by_package.get(top)
            if other is not None and other.name not in wanted:
                wanted.add(other.name)
                todo.append(other.name)
    return [lib for name, lib in workspace.libraries.items() if name in wanted]


# -- staging


def _stage(
    workspace: Workspace,
    contents: Contents,
    find_links: Sequence[Path],
    *,
    offline: bool,
    verbose: bool,
) -> stage.Staged:
    try:
        return stage.stage(
            list(contents.requirements), find_links=find_links, offline=offline, verbose=verbose
        )
    except stage.InstallFailed as exc:
        raise PackError([_install_failure(workspace, contents, exc, offline)]) from None


def _install_failure(
    workspace: Workspace, contents: Contents, exc: stage.InstallFailed, offline: bool
) -> Diagnostic:
    """The installer's failure, blamed on the requirement it names and who needs it,
    at the line of nano.toml that asks for it."""
    blamed = _blamed(contents, exc.culprit)
    who = sorted({w for text in blamed for w, _ in contents.requirements[text]})
    keys = [k for text in blamed for _, k in contents.requirements[text] if k]
    message = f"cannot install {_what(blamed, exc.culprit)}, needed by {_join(who)}"
    where = (
        "--offline installs only the wheels in the --find-links folders: add one there"
        if offline
        else "check the name and version on the package index"
    )
    hint = where + "; the installer said:\n" + "\n".join(f"        {t}" for t in exc.tail())
    return workspace.at(keys[0] if keys else "", codes.E401, message, hint)


def _what(blamed: list[str], culprit: str | None) -> str:
    if culprit is None:
        return "the requirements"
    if [distribution(text) for text in blamed] == [distribution(culprit)]:
        return f"`{blamed[0]}`"  # as nano.toml writes it
    return f"`{culprit}` (for {', '.join(blamed)})"  # a dependency of a requirement


def _blamed(contents: Contents, culprit: str | None) -> list[str]:
    """Our requirements behind the installer's ``culprit``: itself, or the one it came
    from (pip's ``anyio<5 (from starlette)``); all of them when that cannot be told."""
    if culprit:
        named = [culprit.partition(" ")[0], *culprit.partition("(from ")[2].rstrip(")").split(",")]
        names = {distribution(text) for text in named if text.strip()}
        ours = [text for text in contents.requirements if distribution(text) in names]
        if ours:
            return ours
    return list(contents.requirements)


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _check_collisions(workspace: Workspace, contents: Contents, staged: dict[str, str]) -> None:
    """No packed package may share a top-level name with a staged module, nor with what
    the binary adds itself: ``site-packages/`` holds one module per name, so one of the
    two would silently replace the other and the binary would import the wrong code."""
    ours = {"nanobuild": "the nanobuild runtime", INGRESS: "the generated ingress"}
    ours[STATIC] = "the static frontend"
    problems = [
        workspace.at(
            "",
            codes.E402,
            f"a requirement installs {staged[name]}, whose module {name} is {what}",
            "drop that requirement: the binary brings that module itself",
        )
        for name, what in ours.items()
        if name in staged
    ]
    owners: list[Service | Library] = [*contents.services, *contents.libraries]
    for owner in owners:
        other = staged.get(owner.package) or ours.get(owner.package)
        if other:
            problems.append(
                workspace.at(
                    owner.key,
                    codes.E402,
                    f"{owner.label} and {other} both provide the module {owner.package}",
                    f"set `{owner.key}.package` to a name of its own",
                )
            )
    if problems:
        raise PackError(problems)


def _has_pth(site_packages: Path) -> bool:
    return any(site_packages.glob("*.pth"))


# -- collecting


def collect(
    workspace: Workspace, contents: Contents, site_packages: Path, ingress_source: str
) -> list[Entry]:
    """Every ``site-packages/`` entry of the archive, sorted by name."""
    entries = list(_tree(site_packages, SITE, shown=str(site_packages)))
    entries += runtime_entries()
    owners: list[Service | Library] = [*contents.services, *contents.libraries]
    for owner in owners:
        entries += _tree(
            owner.package_dir,
            f"{SITE}/{owner.package.replace('.', '/')}",  # an adopted one: _nanoasgi/<name>
            shown=workspace.rel(owner.package_dir),
            sealed=True,
        )
    for callee in contents.callees:
        if callee.adopted:
            continue  # reached by its URL: nothing of it is needed here
        for path in _kernel_files(callee):
            shown = workspace.rel(path)
            _check_inside(path, workspace.root, shown)
            arcname = f"{SITE}/{callee.package}/{path.name}"
            entries.append(Entry(arcname, _read(path, shown), _is_executable(path)))
    entries.append(Entry(f"{SITE}/{INGRESS}.py", ingress_source.encode("utf-8")))
    if workspace.ingress.static is not None:
        entries += _static(workspace, workspace.ingress.static)
    return _unique(entries)


def runtime_entries() -> list[Entry]:
    """The runtime as it ships: ``nanobuild/__init__.py`` and ``nanobuild/runtime/``,
    read from the nanobuild that runs this build."""
    package = Path(nanobuild.__file__).parent
    init = package / "__init__.py"
    entries = [Entry(f"{SITE}/nanobuild/__init__.py", _read(init, str(init)))]
    runtime = package / "runtime"
    entries += _tree(runtime, f"{SITE}/nanobuild/runtime", shown=str(runtime))
    return entries


def _static(workspace: Workspace, folder: Path) -> list[Entry]:
    if not folder.is_dir():
        raise PackError(
            [
                workspace.at(
                    "ingress.static",
                    codes.E403,
                    f"the static folder {workspace.rel(folder)} does not exist",
                    "build the frontend first, or remove `ingress.static` from nano.toml",
                )
            ]
        )
    found = static_files(folder)  # the rule serve keeps too: see source.static_files
    rel = workspace.rel
    problems = [_unreadable(rel(path), why) for path, why in found.unreadable]
    problems += [
        _static_link(rel(link), f"links to {rel(real)}, outside the static folder {rel(folder)}")
        for link, real in found.outside
    ]
    problems += [_static_link(rel(link), "links to nothing") for link in found.dangling]
    if problems:
        raise PackError(problems)
    return [
        Entry(f"{SITE}/{STATIC}/{name}", _read(path, rel(path)), _is_executable(path))
        for name, path in found.files
    ]


def _static_link(shown: str, what: str) -> Diagnostic:
    return Diagnostic(
        shown,
        codes.E409,
        f"{shown} {what}: neither serve nor the binary serves it",
        hint="copy the file into the static folder, or remove the link",
    )


def _tree(folder: Path, prefix: str, *, shown: str, sealed: bool = False) -> Iterator[Entry]:
    """The files under ``folder`` as entries under ``prefix``, bytecode left out.

    Links are followed, but where ``sealed`` none may lead out of ``folder`` (a package
    holds its own files only, as ``check`` requires: E113). What cannot be read stops
    the packing, named.
    """
    found = walk(folder, sealed=sealed)
    problems = [_unreadable(f"{shown}/{_rel(p, folder)}", why) for p, why in found.unreadable]
    if sealed:
        problems += [
            _unreadable(f"{shown}/{_rel(link, folder)}", f"it links to {real}, outside its package")
            for link, real in found.outside
        ]
    if problems:
        raise PackError(problems)
    for path in found.files:
        rel = _rel(path, folder)
        where = f"{shown}/{rel}"
        yield Entry(f"{prefix}/{rel}", _read(path, where), _is_executable(path))


def _rel(path: Path, folder: Path) -> str:
    return path.relative_to(folder).as_posix()


def _check_inside(path: Path, inside: Path, shown: str) -> None:
    real = Path(os.path.realpath(path))
    if not real.is_relative_to(inside):
        raise PackError([_unreadable(shown, f"it links to {real}, outside the workspace")])


def _read(path: Path, shown: str) -> bytes:
    """The bytes of a regular file; anything else (a broken link, a FIFO, no access)
    is a ``PackError`` naming the file."""
    if "\n" in shown or not shown.isprintable():
        raise PackError([_unreadable(shown, "its name cannot be packed")])
    try:
        return read_regular(path)  # a FIFO is refused, never waited on
    except OSError as exc:
        raise PackError([_unreadable(shown, exc.strerror or str(exc))]) from None


def _unreadable(shown: str, why: str) -> Diagnostic:
    return Diagnostic(shown, codes.E404, f"cannot pack {shown}: {why}")


def _is_executable(path: Path) -> bool:
    try:
        return bool(path.stat().st_mode & 0o111)
    except OSError:
        return False


def _unique(entries: list[Entry]) -> list[Entry]:
    by_name: dict[str, Entry] = {}
    for entry in entries:
        if entry.arcname in by_name:
            # _check_collisions refuses clashing packages, so this is a clash inside one
            raise PackError(
                [Diagnostic(entry.arcname, codes.E402, f"two files would be {entry.arcname}")]
            )
        by_name[entry.arcname] = entry
    return [by_name[name] for name in sorted(by_name)]


# -- writing


def manifest(entries: Sequence[Entry]) -> bytes:
    """The binary's manifest, ``_nano_manifest``: a header, then one line per entry,
    sorted, ``<sha256> <x if it runs, else -> <name>``. The bootstrap checks every file
    it extracts against it; its own sha256 is the build id."""
    lines = [
        f"{hashlib.sha256(entry.data).hexdigest()} {'x' if entry.executable else '-'} "
        f"{entry.arcname}\n"
        for entry in sorted(entries)
    ]
    return f"{MANIFEST_HEADER} {len(lines)}\n{''.join(lines)}".encode()


def build_id(entries: Sequence[Entry]) -> str:
    """The sha256 of the entries' manifest: their names, run bits and contents."""
    return hashlib.sha256(manifest(entries)).hexdigest()


def write(entries: Sequence[Entry], target: Path, *, name: str, pth: bool = False) -> str:
    """Write the zipapp of ``entries`` (site-packages) to ``target``, atomically; its
    build id.

    ``__main__.py`` is stored, not compressed: Python runs it before any check of ours
    can, so a flipped byte there changes one character instead of the whole file.
    """
    listed = manifest(entries)
    identity = hashlib.sha256(listed).hexdigest()
    bootstrap = bootstrap_source()
    root = [
        Entry("__main__.py", main_source(name, identity, pth=pth, bootstrap=bootstrap)),
        Entry(f"{BOOTSTRAP}.py", bootstrap),
        Entry(MANIFEST, listed),
    ]
    stamp = zip_timestamp()
    with atomic_output(target) as out:
        builder.write_file_prefix(out, SHEBANG)
        with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for entry in sorted([*root, *entries]):
                builder.write_to_zipapp(
                    archive,
                    entry.arcname,
                    entry.data,
                    stamp,
                    zipfile.ZIP_STORED if entry.arcname == "__main__.py" else zipfile.ZIP_DEFLATED,
                    stat=_mode(entry.executable),
                )
    return identity


# The archive's __main__.py. It runs the bootstrap only once its bytes match their
# CRC (zipimport checks none, and a flipped byte can inflate to other valid code);
# zlib is loaded already, to inflate it. The refusal is bootstrap.damaged()'s line.
_MAIN = """\
# Generated by nanobuild: start {name}, unpacking its packages on the first run.
import sys
import zlib

try:
    source = __loader__.get_data("{bootstrap}.py")
except Exception:  # its bytes do not inflate, or the table of contents lost it
    source = b""
if zlib.crc32(source) != {crc}:
    archive = __loader__.archive
    sys.exit(
        f"{name}: the binary {{archive}} is damaged: member {bootstrap}.py does not match"
        f" its CRC; rebuild it, or compare `sha256sum {{archive}}` with the sha256 its"
        " `info` printed when it was built"
    )
module = type(sys)("{bootstrap}")
module.__file__ = __loader__.archive + "/{bootstrap}.py"
module.__loader__ = __loader__
sys.modules["{bootstrap}"] = module
exec(compile(source, module.__file__, "exec", dont_inherit=True), vars(module))
module.boot(
    {name!r},
    {identity!r},
    entry={entry!r},
    python={python!r},
    pth={pth!r},
)
"""


def main_source(name: str, identity: str, *, pth: bool, bootstrap: bytes) -> bytes:
    """The archive's ``__main__.py``: check the ``bootstrap``'s bytes, hand over to it."""
    return _MAIN.format(
        name=name,
        identity=identity,
        bootstrap=BOOTSTRAP,
        crc=zlib.crc32(bootstrap),
        entry=ENTRY_POINT,
        python=python_binding(),
        pth=pth,
    ).encode()


def bootstrap_source() -> bytes:
    path = Path(nanobuild.__file__).parent / "runtime" / "bootstrap.py"
    return _read(path, str(path))


def zip_timestamp() -> tuple[int, int, int, int, int, int]:
    """Every entry's time: ``SOURCE_DATE_EPOCH`` if set, else the zip format's first day
    (also the earliest time a zip entry can carry)."""
    epoch = source_date_epoch()
    stamp = _EPOCH_1980 if epoch is None else max(epoch, _EPOCH_1980)
    year, month, day, hour, minute, second = time.gmtime(stamp)[:6]
    return (year, month, day, hour, minute, second)


def source_date_epoch() -> int | None:
    """``SOURCE_DATE_EPOCH``, the build's time in seconds since 1970, or None if unset.

    Both the archive's timestamps and the ingress's ``built_at`` come from here, so a
    value is used by both or refused by both: anything but decimal digits, as
    ``date +%s`` prints them, is a ``PackError``.
    """
    text = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not text:
        return None
    if not (text.isascii() and text.isdigit()):
        raise PackError(
            [
                Diagnostic(
                    "SOURCE_DATE_EPOCH",
                    codes.E405,
                    f"{text!r} is not a number of seconds",
                    hint="set it to the build's time as `date +%s` prints it, or unset it",
                )
            ]
        )
    return int(text)


def _mode(executable: bool) -> os.stat_result:
    # what shiv's builder turns into the entry's permissions: fixed, whatever the umask
    mode = stat.S_IFREG | (0o755 if executable else 0o644)
    return os.stat_result((mode, 0, 0, 0, 0, 0, 0, 0, 0, 0))


@contextmanager
def atomic_output(target: Path) -> Iterator[IO[bytes]]:
    """A file to write ``target`` through: renamed over it (with its run bit) when the
    block ends well, removed when it does not. It is ``.<name>.<pid>.<random>.tmp``
    beside ``target``, so that what a killed build leaves is known for a leftover
    (``sweep``) by the next one."""
    if target.is_dir():
        raise PackError([_unwritable(target, "it is a folder")])
    sweep(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(
            dir=target.parent, prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp"
        )
    except OSError as exc:
        raise PackError([_write_failure(target, exc)]) from None
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o755)
        os.replace(temporary, target)
    except BaseException as exc:
        Path(temporary).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise PackError([_write_failure(target, exc)]) from None
        raise


def sweep(target: Path) -> None:
    """Remove the temporary files of ``target`` that builds which are gone left: those of
    a process that no longer runs (``atomic_output`` names them after it), and older
    ones, named after none, once a day old."""
    leftover = re.compile(rf"\.{re.escape(target.name)}\.(?:(\d+)\.)?[a-z0-9_]+\.tmp")
    try:
        entries = [e for e in os.scandir(target.parent) if e.name.endswith(".tmp")]
    except OSError:
        return  # no folder yet, or one we cannot list: nothing of ours to remove
    for entry in entries:
        found = leftover.fullmatch(entry.name)
        if found is None or not entry.is_file(follow_symlinks=False):
            continue
        pid = found.group(1)
        if stage.left_over(entry, int(pid) if pid is not None else None):
            Path(entry.path).unlink(missing_ok=True)


def _write_failure(target: Path, exc: OSError) -> Diagnostic:
    """E408 for a full or read-only disk, naming its folder; E405 for anything else."""
    state = stage.disk_trouble(exc)
    if state is None:
        return _unwritable(target, exc.strerror or str(exc))
    why = f"the disk holding {target.parent} {state} ({exc.strerror})"
    return Diagnostic(str(target), codes.E408, f"cannot write {target}: {why}")


def _unwritable(target: Path, why: str) -> Diagnostic:
    return Diagnostic(str(target), codes.E405, f"cannot write {target}: {why}")


@contextmanager
def _timed() -> Iterator[Callable[[], float]]:
    start = time.perf_counter()
    end: list[float] = []
    yield lambda: (end[0] if end else time.perf_counter()) - start
    end.append(time.perf_counter())
