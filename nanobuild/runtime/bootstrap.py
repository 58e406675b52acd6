"""The first code a binary runs: unpack its packages once, shut out the host's, start it.

``nanobuild bundle`` packs this file at the root of every ``.pyz`` as
``_nano_bootstrap.py``, next to a ``__main__.py`` that calls ``boot``. It uses the
standard library alone, since nothing else is importable yet, and on a warm start it
imports nothing beyond ``os`` and ``sys``.

What ``boot`` promises:

* The archive's ``site-packages/`` is extracted once per build, into
  ``$NANO_APP_CACHE`` or ``$XDG_CACHE_HOME/nanobuild/apps`` or
  ``~/.cache/nanobuild/apps``, as ``<name>-<build id>/``; where that cannot be
  written (a read-only HOME), into ``<tmp>/nanobuild-<uid>/apps``, a folder only this
  user may use.
* Several copies starting at once are safe: each extracts into a temporary folder
  beside the target and renames it into place; whoever loses the race uses the
  winner's folder. A start killed mid-extraction leaves only its temporary folder,
  which never runs, and which the next extraction removes (its lock is free).
* Bytecode is compiled at extraction, so starts stay fast where
  ``PYTHONDONTWRITEBYTECODE`` is set.
* A damaged binary never runs: every file is checked, as it is extracted, against
  the sha256 the binary's manifest (``_nano_manifest``, whose own sha256 is the build
  id) records for it, and zip's CRCs are checked on the way; any damage (flipped
  bytes, a cut file, a garbled table of contents or manifest) stops the start with
  one line naming the member, before anything is installed. (``__main__.py`` checks
  this module's CRC before running it; only ``__main__.py`` itself and the zip's end
  record are read by Python alone, which then refuses the file with its own error.)
* A changed extraction (a file edited, added, removed or truncated) is found by a
  cheap check of a manifest, written last, of every file's and folder's size,
  mtime and ctime as sealed (one ``lstat`` each: an edit changes ctime, which no tool
  can set back), and is extracted again, never run.
* Extracting a build removes the extractions of the same app's other builds.
* The extraction is read-only (no write bit on any file or folder of it, and an
  audit hook that refuses every change inside it, since root ignores write bits), so
  code that writes a file next to itself fails at once, loudly, instead of writing
  into a folder the next build replaces. Data belong in the service's data folder
  (``nanobuild.runtime.data_dir()``), beside the extractions: ``<root>/<name>-data``.
* The host's site-packages (system, user, virtual environment, and whatever their
  ``.pth`` files added) are taken off ``sys.path`` before anything of the app is
  imported: the binary runs on a bare Python and never picks up a host's package.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing's own costs an import on every start
if TYPE_CHECKING:
    import zipfile

SITE = "site-packages"
MANIFEST = "manifest"  # the extraction's, in its folder
BINARY_MANIFEST = "_nano_manifest"  # the binary's, at the archive's root
BINARY_MANIFEST_HEADER = "nanobuild-binary-manifest 1"
_MANIFEST_HEADER = "nanobuild-manifest 2"
_ID_LENGTH = 16  # hex digits of the build id in a folder's name
_STALE_SECONDS = 3600  # a temporary folder this old belongs to no running extraction

booted: dict[str, str] = {}  # the archive and build id this process started from (for `info`)


class BootError(Exception):
    """The binary cannot start; the message says why, in one line."""


class Damaged(BootError):
    """The binary's bytes are not the ones it was built with."""

    def __init__(self, archive: str, member: str, why: str) -> None:
        super().__init__(damaged(archive, member, why))


def damaged(archive: str, member: str, why: str) -> str:
    """The one line a damaged binary is refused with (``__main__.py`` writes the same)."""
    return (
        f"the binary {archive} is damaged: member {member} {why}; rebuild it, or compare "
        f"`sha256sum {archive}` with the sha256 its `info` printed when it was built"
    )


def boot(name: str, build_id: str, *, entry: str, python: str, pth: bool = False) -> None:
    """Run the app ``name``: unpack (or reuse) its packages, isolate, call ``entry``.

    ``entry`` is ``module:function``; its return value is the exit code. ``python``
    is the interpreter the packages were staged for (``sys.implementation.cache_tag``
    and ``sys.platform``); ``pth`` says whether they include ``.pth`` files.
    """
    booted.update(archive=archive_path(), build=build_id)
    try:
        _check_python(python)
        site_packages = locate(name, build_id)
    except (BootError, OSError) as exc:
        sys.stderr.write(f"{name}: {exc}\n")
        raise SystemExit(1) from None
    _hold(os.path.dirname(site_packages))
    guard(os.path.dirname(site_packages))
    isolate(site_packages, pth=pth)
    module, _, function = entry.partition(":")
    __import__(module)
    raise SystemExit(getattr(sys.modules[module], function)())


def python_binding() -> str:
    """What a build's packages are bound to: ``cpython-311 linux``.

    The same two lines as ``nanobuild.runtime.spec.python_binding``, which the builder
    records: this module must run before any package of the binary is importable.
    """
    return f"{sys.implementation.cache_tag} {sys.platform}"


def _check_python(python: str) -> None:
    if python != python_binding():
        raise BootError(
            f"this binary was built for {python}, but this Python is {python_binding()} "
            f"({sys.executable}): run it with the Python it was built with"
        )


# -- where the packages live


def locate(name: str, build_id: str) -> str:
    """The ``site-packages`` folder of this build, extracting it first if needed."""
    folder = f"{name}-{build_id[:_ID_LENGTH]}"
    problems = []
    for root in (app_cache, fallback_root):
        try:
            where = root()
            target = os.path.join(where, folder)
            if intact(target, build_id):
                return os.path.join(target, SITE)
            if os.path.exists(os.path.join(target, MANIFEST)):
                sys.stderr.write(f"{name}: {target} was changed since it was extracted; ")
                sys.stderr.write("extracting it again\n")
            return extract(archive_path(), where, folder, name, build_id)
        except OSError as exc:
            problems.append(f"{exc.filename or root.__name__}: {exc.strerror or exc}")
    raise BootError("cannot unpack the app's packages: " + "; ".join(problems))


def app_cache() -> str:
    """``$NANO_APP_CACHE``, else ``$XDG_CACHE_HOME/nanobuild/apps``, else ``~/.cache/...``."""
    override = os.environ.get("NANO_APP_CACHE")
    if override:
        return os.path.expanduser(override)
    base = os.environ.get("XDG_CACHE_HOME")
    if not base:
        home = os.path.expanduser("~")
        if home == "~":  # not expanded: no HOME, no password entry
            raise OSError("this user has no home folder")
        base = os.path.join(home, ".cache")
    return os.path.join(base, "nanobuild", "apps")


def fallback_root() -> str:
    """A folder of this user's under the temporary folder, for when HOME is read-only."""
    import tempfile  # only here: it costs a few milliseconds to import

    uid = os.getuid() if hasattr(os, "getuid") else 0
    private = os.path.join(tempfile.gettempdir(), f"nanobuild-{uid}")
    try:
        os.mkdir(private, 0o700)
    except FileExistsError:
        _check_private(private, uid)
    return os.path.join(private, "apps")


def _check_private(folder: str, uid: int) -> None:
    # in a shared temporary folder another user could have made it first, to plant code
    st = os.lstat(folder)
    if hasattr(os, "getuid") and (st.st_uid != uid or st.st_mode & 0o077 or os.path.islink(folder)):
        raise BootError(f"{folder} is not a private folder of this user; remove it")


def archive_path() -> str:
    """The ``.pyz`` this code runs from."""
    loader = globals().get("__loader__")
    return str(getattr(loader, "archive", None) or sys.argv[0])


# -- is an extraction whole?


def intact(target: str, build_id: str | None = None) -> bool:
    """Whether ``target`` holds the extraction of ``build_id`` (any build, if None)
    exactly as it was sealed: every file and folder of its manifest there, with the
    size, mtime and ctime it had. One ``lstat`` each: cheap enough for every start."""
    try:
        with open(os.path.join(target, MANIFEST), encoding="utf-8") as f:
            lines = f.read().split("\n")
    except (OSError, UnicodeDecodeError):
        return False
    header, made_for, count = [*lines[0].rsplit(" ", 2), "", ""][:3]
    entries = lines[1:-1]  # the manifest ends with a newline: a cut one does not
    if header != _MANIFEST_HEADER or lines[-1] != "" or count != str(len(entries)):
        return False
    if build_id is not None and made_for != build_id:
        return False
    join, lstat = os.path.join, os.lstat
    try:
        for line in entries:
            rel = line.split(" ", 3)[3]
            st = lstat(join(target, rel))
            if f"{st.st_size} {st.st_mtime_ns} {st.st_ctime_ns} {rel}" != line:
                return False
    except (OSError, IndexError):
        return False
    return True


def write_manifest(target: str, build_id: str = "-") -> None:
    """List every file and folder under ``target/site-packages`` with its stamp (size,
    mtime, ctime), for the build ``build_id``. Written once the rest is sealed, and
    last, so its presence means the rest is complete."""
    lines = []
    site = os.path.join(target, SITE)
    for folder, _, names in os.walk(site):
        rel = os.path.relpath(folder, target).replace(os.sep, "/")
        lines.append(_stamp(folder, rel + "/"))
        lines += [_stamp(os.path.join(folder, name), f"{rel}/{name}") for name in names]
    lines.sort(key=lambda line: line.split(" ", 3)[3])
    text = f"{_MANIFEST_HEADER} {build_id} {len(lines)}\n" + "".join(f"{x}\n" for x in lines)
    with open(os.path.join(target, MANIFEST), "w", encoding="utf-8") as f:
        f.write(text)


def _stamp(path: str, rel: str) -> str:
    st = os.lstat(path)
    return f"{st.st_size} {st.st_mtime_ns} {st.st_ctime_ns} {rel}"


# -- extracting


def extract(archive: str, root: str, folder: str, name: str, build_id: str = "-") -> str:
    """Unpack ``archive``'s site-packages into ``root/folder``; its site-packages path.

    Every file is checked against the binary's manifest as it is written (``Damaged``
    if one differs, and nothing is installed). Concurrent callers each unpack into a
    folder of their own and rename it into place; the first rename wins and the
    others use its result.
    """
    os.makedirs(root, exist_ok=True)
    target = os.path.join(root, folder)
    work, held = _begin(root, folder)
    try:
        _unzip(archive, work, build_id)
        _compile(os.path.join(work, SITE), os.path.join(target, SITE))
        _seal(os.path.join(work, SITE))
        write_manifest(work, build_id)
        os.unlink(os.path.join(work, _EXTRACTING))  # still held, through ``held``
        _seal_top(work)
        _install(work, target)
    finally:
        _remove(work)  # gone already when the rename succeeded
        if held is not None:
            os.close(held)
    remove_other_builds(root, name, folder)
    return os.path.join(target, SITE)


_EXTRACTING = "extracting.lock"  # in a work folder: held by the start writing it


def _begin(root: str, folder: str) -> tuple[str, int | None]:
    """A new work folder for an extraction of ``folder``, with its lock held (None
    where there are no locks), so a later start can tell an extraction still being
    written from one whose process died (a SIGKILL) and remove only the latter."""
    for _ in range(3):
        work = os.path.join(root, f".{folder}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
        os.mkdir(work)
        lock = os.path.join(work, _EXTRACTING)
        try:
            import fcntl
        except ImportError:
            return work, None
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.path.samestat(os.fstat(fd), os.stat(lock)):
                return work, fd
        except FileNotFoundError:
            pass  # a cleaner took it for abandoned before the lock was taken: again
        os.close(fd)
    raise OSError(f"{root}: cannot make a temporary folder to unpack into")


def _unzip(archive: str, work: str, build_id: str) -> None:
    """Write every file of the binary's manifest under ``work``, checking each."""
    import zipfile

    try:
        zf = zipfile.ZipFile(archive)
    except OSError:
        raise
    except Exception as exc:  # BadZipFile, and what a garbled directory makes zipfile raise
        raise Damaged(archive, "(the table of contents)", f"cannot be read: {_why(exc)}") from None
    with zf:
        expected = _expected(zf, archive, build_id)
        made = set()
        for info in _members(zf, archive, expected):
            path = os.path.join(work, *info.filename.split("/"))
            parent = os.path.dirname(path)
            if parent not in made:
                os.makedirs(parent, exist_ok=True)
                made.add(parent)
            if _copy(zf, info, path, archive) != expected[info.filename][0]:
                raise Damaged(archive, info.filename, "does not match its recorded sha256")
            if expected[info.filename][1]:
                os.chmod(path, 0o755)


def _expected(zf: zipfile.ZipFile, archive: str, build_id: str) -> dict[str, tuple[str, bool]]:
    """The binary's manifest: each file's sha256 and run bit, by member name. Its own
    sha256 must be the build id ``__main__.py`` was given."""
    import hashlib

    try:
        data = zf.read(BINARY_MANIFEST)
    except KeyError:
        raise Damaged(archive, BINARY_MANIFEST, "is missing") from None
    except Exception as exc:
        raise Damaged(archive, BINARY_MANIFEST, f"cannot be read: {_why(exc)}") from None
    if hashlib.sha256(data).hexdigest() != build_id:
        raise Damaged(archive, BINARY_MANIFEST, "does not match the build id")
    # it matches the build id, so only a broken builder could have written it wrong
    lines = data.decode("utf-8", "replace").split("\n")
    if lines[0] != f"{BINARY_MANIFEST_HEADER} {len(lines) - 2}" or lines[-1]:
        raise Damaged(archive, BINARY_MANIFEST, "is not a manifest this bootstrap reads")
    expected = {}
    for line in lines[1:-1]:
        digest, flag, member = [*line.split(" ", 2), "", ""][:3]
        parts = member.split("/")
        if parts[0] != SITE or ".." in parts or "" in parts:
            raise Damaged(archive, BINARY_MANIFEST, f"lists {member!r}, outside {SITE}/")
        expected[member] = (digest, flag == "x")
    return expected


def _members(
    zf: zipfile.ZipFile, archive: str, expected: dict[str, tuple[str, bool]]
) -> list[zipfile.ZipInfo]:
    """The archive's files under site-packages: exactly the manifest's, each once."""
    found: dict[str, zipfile.ZipInfo] = {}
    for info in zf.infolist():
        name = info.filename
        if name.split("/")[0] != SITE or info.is_dir():
            continue
        if name not in expected or name in found:
            why = "is listed twice" if name in found else "is not in the binary's manifest"
            raise Damaged(archive, name, why)
        found[name] = info
    for name in expected:
        if name not in found:
            raise Damaged(archive, name, "is missing")
    return list(found.values())


def _copy(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: str, archive: str) -> str:
    """Write the member ``info`` to ``path``; the sha256 of what was written. A member
    that cannot be read (bad CRC, bad compressed data, a cut file) is ``Damaged``;
    an error of writing (a full disk) is the ``OSError`` it is."""
    import hashlib

    digest = hashlib.sha256()
    name = info.filename
    with open(path, "wb") as dst:
        try:
            src = zf.open(info)
        except Exception as exc:
            raise Damaged(archive, name, f"cannot be read: {_why(exc)}") from None
        with src:
            while True:
                try:
                    chunk = src.read(1 << 20)
                except Exception as exc:
                    raise Damaged(archive, name, f"cannot be read: {_why(exc)}") from None
                if not chunk:
                    break
                digest.update(chunk)
                dst.write(chunk)
    return digest.hexdigest()


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _compile(site_packages: str, final: str) -> None:
    import compileall

    # ddir: tracebacks name the files where they will live, not this temporary folder
    compileall.compile_dir(site_packages, ddir=final, quiet=2, workers=1)


def _seal(folder: str) -> None:
    """Take the write bits off every file and folder under ``folder``, bottom up."""
    for where, _, names in os.walk(folder, topdown=False):
        for entry in names:
            _read_only(os.path.join(where, entry))
        _read_only(where)


def _seal_top(work: str) -> None:
    """Seal the manifest and ``work`` itself, once the manifest is written.

    The lock file is made first and stays writable: every start takes a lock on it.
    """
    os.close(os.open(os.path.join(work, _LOCK), os.O_RDWR | os.O_CREAT, 0o600))
    _read_only(os.path.join(work, MANIFEST))
    _read_only(work)


# the audit events of the standard library that change a file or folder at their path
# arguments (open is judged by its mode or flags)
_CHANGES = {
    "os.remove": 1, "os.rmdir": 1, "os.mkdir": 1, "os.truncate": 1, "os.chmod": 1,
    "os.chown": 1, "os.utime": 1, "os.rename": 2, "os.link": 2, "os.symlink": 2,
    "shutil.rmtree": 1, "shutil.move": 2,
}  # fmt: skip
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC


def guard(folder: str) -> None:
    """Refuse every change inside the extraction ``folder``, for root too.

    Its write bits are off already, but root ignores those; an audit hook sees every
    open for writing, rename, removal... that Python code makes, and raises
    ``PermissionError`` for a path inside it (the lock file excepted), so a file
    written next to the code fails loudly for everyone. It costs one call per audit
    event, and those are rare once a process serves.
    """
    root = os.path.realpath(folder) + os.sep
    lock = os.path.join(os.path.realpath(folder), _LOCK)

    def inside(path: object) -> str | None:
        if not isinstance(path, (str, bytes, os.PathLike)):
            return None  # a file descriptor
        where = os.path.realpath(os.fsdecode(path))
        return where if where.startswith(root) and where != lock else None

    def refuse(event: str, args: tuple[object, ...]) -> None:
        if event == "open":
            path, mode, flags = args[0], args[1], args[2]
            writes = any(c in mode for c in "wax+") if isinstance(mode, str) else False
            if not writes and isinstance(flags, int) and flags & _WRITE_FLAGS:
                writes = True
            paths: tuple[object, ...] = (path,) if writes else ()
        else:
            paths = args[: _CHANGES.get(event, 0)]
        for path in paths:
            where = inside(path)
            if where is not None:
                raise PermissionError(
                    f"{where} is inside the binary's extraction, which is read-only: "
                    "write to the service's data folder (data_dir()) instead"
                )

    sys.addaudithook(refuse)


def _read_only(path: str) -> None:
    mode = os.lstat(path).st_mode
    if mode & 0o170000 != 0o120000:  # a link has no mode of its own to change
        os.chmod(path, mode & ~0o222)


def _remove(path: str) -> None:
    """Remove the folder ``path`` (sealed or not), as far as it can be removed."""
    import contextlib
    import shutil

    if not os.path.lexists(path):
        return
    for folder, _, _ in os.walk(path):
        with contextlib.suppress(OSError):
            os.chmod(folder, 0o700)  # a sealed folder's entries cannot be unlinked
    shutil.rmtree(path, ignore_errors=True)


def _install(work: str, target: str) -> None:
    """Rename ``work`` to ``target``; a damaged ``target`` in the way is moved aside."""
    for _ in range(3):
        try:
            os.rename(work, target)
            return
        except OSError:
            if intact(target):
                return  # a concurrent start won the race: use its extraction
        aside = f"{target}.{os.getpid()}.{os.urandom(4).hex()}.old"
        try:
            os.rename(target, aside)
        except FileNotFoundError:
            continue  # someone else moved it already
        _remove(aside)
    os.rename(work, target)  # let the error say why


_LOCK = "in-use.lock"
_held: list[int] = []  # the lock this process holds on its build, for its whole life


def _hold(folder: str) -> None:
    """Mark ``folder`` in use (a shared lock), so a newer build never removes it under us."""
    try:
        import fcntl

        fd = os.open(os.path.join(folder, _LOCK), os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_SH)
    except (ImportError, OSError):
        return  # no locks here: removal then stays as careful as it can without them
    _held.append(fd)


def _in_use(folder: str) -> bool:
    """Whether a running process holds ``folder`` (its shared lock blocks ours)."""
    try:
        import fcntl

        fd = os.open(os.path.join(folder, _LOCK), os.O_RDWR)
    except (ImportError, OSError):
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # and with it the exclusive lock, if we got it
    return False


def remove_other_builds(root: str, name: str, keep: str) -> None:
    """Remove the other builds of app ``name`` in ``root``, and its stale temporary
    folders; other apps' folders are left alone."""
    import time

    now = time.time()
    for entry in os.listdir(root):
        path = os.path.join(root, entry)
        if entry == keep or _app_of(entry) != name:
            continue
        if entry.endswith(".tmp"):
            _remove_abandoned(path, now)
            continue
        stale = entry.endswith(".old")
        if stale and now - os.lstat(path).st_mtime < _STALE_SECONDS:
            continue  # perhaps another start is extracting there right now
        if not stale and _in_use(path):
            continue  # an older build still running: its files must stay
        _remove(path)


def _remove_abandoned(work: str, now: float) -> None:
    """Remove the work folder ``work`` if no start is writing it: its lock is free (its
    process died mid-extraction) or, with no lock to tell, it is an hour old."""
    try:
        import fcntl

        fd = os.open(os.path.join(work, _EXTRACTING), os.O_RDWR)
    except (ImportError, OSError):
        try:
            if now - os.lstat(work).st_mtime >= _STALE_SECONDS:
                _remove(work)
        except FileNotFoundError:
            pass  # another start removed it first
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return  # a start is writing it now
    else:
        _remove(work)  # with the lock held: a start taking it waits, then finds it gone
    finally:
        os.close(fd)


def _app_of(entry: str) -> str | None:
    """The app an entry of the cache belongs to: ``shop-<id>``, ``.shop-<id>.<pid>.<x>.tmp``."""
    if entry.endswith((".tmp", ".old")):
        entry = entry.lstrip(".").rsplit(".", 3)[0]
    app, _, build = entry.rpartition("-")
    hexdigits = "0123456789abcdef"
    if len(build) != _ID_LENGTH or any(c not in hexdigits for c in build):
        return None
    return app


# -- isolation


def isolate(site_packages: str, *, pth: bool = False) -> None:
    """Put ``site_packages`` on ``sys.path`` in place of the host's site folders.

    What stays before it: the archive, ``PYTHONPATH``, and the standard library. What
    goes: every other entry (site-packages, user site, ``.pth`` additions), the import
    finders and modules those brought in.
    """
    pythonpath = _pythonpath()
    kept = [p for i, p in enumerate(sys.path) if i == 0 or _is_own(p, pythonpath)]
    dropped = [p for p in sys.path if p not in kept]
    sys.path[:] = kept
    if pth:
        import site

        site.addsitedir(site_packages)  # runs the packages' .pth files, as pip would
    else:
        sys.path.append(site_packages)
    _forget(dropped)


def _is_own(path: str, pythonpath: set[str]) -> bool:
    """Whether a ``sys.path`` entry is the standard library's or the user's PYTHONPATH."""
    full = os.path.normcase(os.path.abspath(path or os.curdir))
    if full in pythonpath:
        return True
    parts = full.replace("\\", "/").split("/")
    if "site-packages" in parts or "dist-packages" in parts:
        return False
    prefixes = {sys.base_prefix, sys.base_exec_prefix}
    return any(_under(full, os.path.normcase(os.path.abspath(p))) for p in prefixes)


def _pythonpath() -> set[str]:
    if sys.flags.ignore_environment:
        return set()
    entries = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    return {os.path.normcase(os.path.abspath(p)) for p in entries if p}


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _forget(dropped: list[str]) -> None:
    """Drop what the host's site folders already put in: finders and imported modules."""
    if not dropped:
        return
    folders = [os.path.normcase(os.path.abspath(p)) for p in dropped]

    def from_host(module: object) -> bool:
        where = getattr(module, "__file__", None)
        if not isinstance(where, str):
            return False
        where = os.path.normcase(os.path.abspath(where))
        return any(_under(where, folder) for folder in folders)

    # finders first: they are recognised by the module they come from
    sys.meta_path[:] = [f for f in sys.meta_path if not from_host(sys.modules.get(_module_of(f)))]
    for name, module in list(sys.modules.items()):
        if from_host(module):
            del sys.modules[name]
    for path in dropped:
        sys.path_importer_cache.pop(path, None)


def _module_of(finder: object) -> str:
    owner = finder if isinstance(finder, type) else type(finder)
    return owner.__module__
