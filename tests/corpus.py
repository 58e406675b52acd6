"""The hostile-input corpus: broken workspaces and hostile requests, each run for real.

Every case module is ``tests/test_corpus_<area>.py``; it lists its cases and runs each
through this harness, which asserts the same things of all of them: the exit code (or
HTTP status), the diagnostic code, that the output names the place, that no
``Traceback`` was printed, that the run ended within its deadline (a hang kills the
process group and fails the case by name), that no process of the run outlived it, and
that nothing was half-written.

Adding a workspace case (the CLI, run as ``python -m nanobuild ARGS --workspace ROOT``
in ROOT, a copy of ``tests/samples/mini``)::

    from tests.corpus import Case, check_unique, run_case

    CASES = [
        Case(
            "bom-in-nano-toml",                     # unique id, kebab-case, across ALL areas
            files={"nano.toml": "\\ufeff[workspace]\\n..."},  # written over the copy (str or bytes)
            args=["check"],                          # the CLI's arguments
            exit=2,                                  # the expected exit code
            code="E001",                             # the expected diagnostic code, or None
            names=["nano.toml"],                     # substrings the output must hold (the place)
        ),
    ]
    check_unique(CASES)

    @pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
    def test_case(case: Case, tmp_path: Path) -> None:
        run_case(case, tmp_path)

The other fields of :class:`Case` (all optional): ``remove`` (paths to delete from the
copy first), ``prepare`` (a callable given the root, for what ``files`` cannot write: a
FIFO, a chmod, a symlink, a file name of bad bytes), ``deadline`` (20 s), ``sample``
(another folder of ``tests/samples``, or ``"boutique"`` for the repository's own),
``env`` (extra environment), ``stdin``, ``absent`` (substrings the output must not
hold), ``workspace`` (False: do not append ``--workspace ROOT``; ``{root}`` in an
argument is replaced by ROOT either way), ``signal`` (``(seconds, signum)``: send it to
the CLI that long after the start, e.g. SIGTERM to ``check``; the expected ``exit`` is
then ``-signum`` if it dies of it), ``tidy`` (False: skip the half-written check, for
a run killed on purpose that a second run must clean up) and ``allow`` (glob patterns
of files the tidy check lets stay). ``run_case`` returns a :class:`Result` (exit,
stdout, stderr, the root) for assertions of a case's own; ``run_case(case, tmp_path,
root=...)`` runs a second case in the same workspace (its edits applied over it), and
``cache=`` shares a stage cache (``NANO_CACHE_DIR``) between runs; by default each
case has an empty one of its own under ``tmp_path``. ``workspace(tmp_path, case)``
only makes the copy, for a test that runs something else in it.

A case's literal ``code=`` counts as a test producing that code for
``tests/test_codes.py``, since ``run_case`` asserts it.

A binary's own command line is a :class:`BinaryCase` (``args``, ``exit`` (2),
``names``, ``absent``, ``stdin``, ``env``, ``deadline``, ``signal``), run by
``run_binary_case(case, binary(tmp_path_factory), tmp_path)`` with the same checks but
the tidy one.

Hostile requests go to a started binary. One per module, from a module-scoped
fixture (building is cached for the session, per sample)::

    @pytest.fixture(scope="module")
    def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
        with serving(tmp_path_factory) as cluster:   # the mini binary, all fused
            yield cluster.front

    HTTP_CASES = [HttpCase("deep-json", body=b"[" * 5000, status=400, names=["depth"])]

    @pytest.mark.parametrize("case", HTTP_CASES, ids=lambda c: c.name)
    def test_http_case(case: HttpCase, server: Server) -> None:
        run_http_case(case, server)

An :class:`HttpCase` is sent byte for byte on a socket (``raw``, or a request made of
``method``, ``target``, ``headers`` and ``body``: ``Host``, ``Content-Length`` and
``Connection: close`` are added unless given); it asserts the status (``None``: the
server may close without one), ``names`` in the response, no 5xx unless expected, no
traceback in the response or in the lines the server logged meanwhile, and that the
server is still alive and answers a good request afterwards.
``serving(factory, sample, groups=[["users"], ["orders"]])`` starts one process per
group instead (split, over TCP, sharing the secret ``SECRET``); ``cluster.servers[0].internal`` is then the first
group's internal address (``tcp://127.0.0.1:PORT``), for the raw TCP helpers
``tcp_exchange`` (send bytes, read what comes back until the peer closes or goes
quiet), ``http_exchange`` (the same for the HTTP face, parsed) and ``held_open``
(many connections left half-sent, for the slowloris and flood cases).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import os
import re
import secrets
import shutil
import signal as signals
import socket
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from tests.servers import Binary, Cluster, Server, build_binary, start_placement

TESTS = Path(__file__).parent
SAMPLES = TESTS / "samples"
REPO = TESTS.parent
CASE_NAME = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")
# what a temporary or partial file is named: by us (.x.pyz.xxxx.tmp, .tmp-xxxx), by
# tempfile (tmp and 8 random characters), by downloaders
TEMPORARY = ("*.tmp", ".tmp*", "tmp" + "[a-z0-9_]" * 8, "*.partial", "*.part", "*.incomplete")
# grace for the children of a finished run to go before they count as left behind
SURVIVOR_GRACE = 2.0
# the secret split processes started here share (tests pass another in env to differ)
SECRET = secrets.token_urlsafe(32)


@dataclasses.dataclass(frozen=True)
class Case:
    """One run of the ``nanobuild`` CLI on a broken copy of a sample workspace."""

    name: str
    files: Mapping[str, str | bytes] = dataclasses.field(default_factory=dict)
    args: Sequence[str] = ("check",)
    exit: int = 1
    code: str | None = None
    names: Sequence[str] = ()
    remove: Sequence[str] = ()
    deadline: float = 20.0
    prepare: Callable[[Path], None] | None = None
    sample: str = "mini"
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    stdin: str | bytes | None = None
    absent: Sequence[str] = ()
    workspace: bool = True
    signal: tuple[float, int] | None = None
    tidy: bool = True
    allow: Sequence[str] = ()


@dataclasses.dataclass(frozen=True)
class Result:
    """What a case's run printed and how it ended."""

    exit: int
    stdout: str
    stderr: str
    root: Path

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@dataclasses.dataclass(frozen=True)
class BinaryCase:
    """One run of a built binary's own command line (``python app.pyz ARGS``)."""

    name: str
    args: Sequence[str]
    exit: int = 2
    code: str | None = None
    names: Sequence[str] = ()
    absent: Sequence[str] = ()
    deadline: float = 20.0
    stdin: str | bytes | None = None
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    signal: tuple[float, int] | None = None


def run_binary_case(case: BinaryCase, built: Binary, tmp_path: Path) -> Result:
    """Run ``case`` with ``built`` (from ``binary(factory)``), in ``tmp_path``, and
    assert its exit, names, no traceback, the deadline and no survivors."""
    environment = {**os.environ, **built.env, **case.env}  # its HOME: one extraction
    result = _run(case, [*built.command(*case.args)], tmp_path, environment)
    _assert_outcome(case, result)
    return result


def check_unique(cases: Sequence[Case | HttpCase | BinaryCase]) -> None:
    """Fail at import (collection) when two cases share a name or one is not kebab-case."""
    seen: set[str] = set()
    for case in cases:
        assert CASE_NAME.fullmatch(case.name), f"case name {case.name!r} is not kebab-case"
        assert case.name not in seen, f"two cases are named {case.name!r}"
        seen.add(case.name)


# -- workspace cases


def workspace(tmp_path: Path, case: Case | None = None) -> Path:
    """A copy of the case's sample (mini by default) at ``tmp_path/ws``, its edits made."""
    sample = case.sample if case is not None else "mini"
    root = tmp_path / "ws"
    shutil.copytree(
        REPO if sample == "boutique" else SAMPLES / sample,
        root,
        ignore=shutil.ignore_patterns("__pycache__", "dist", ".*", "tests", "bench", "*.egg-info"),
        symlinks=True,
    )
    if case is not None:
        _edit(root, case)
    return root


def _edit(root: Path, case: Case) -> None:
    for rel in case.remove:
        path = root / rel
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    for rel, content in case.files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    if case.prepare is not None:
        case.prepare(root)


def run_case(
    case: Case,
    tmp_path: Path,
    *,
    root: Path | None = None,
    cache: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Result:
    """Run ``case`` and assert all it expects (see the module's docstring)."""
    if root is None:
        root = workspace(tmp_path, case)
    else:
        _edit(root, case)
    cache = cache or tmp_path / "stage-cache"
    command = [
        sys.executable,
        "-m",
        "nanobuild",
        *(a.replace("{root}", str(root)) for a in case.args),
    ]
    if case.workspace:
        command += ["--workspace", str(root)]
    environment = {
        **os.environ,
        "NANO_CACHE_DIR": str(cache),
        "NANO_APP_CACHE": str(tmp_path / "app-cache"),
        "NANO_DATA_DIR": str(tmp_path / "data"),
        **(env or {}),
        **case.env,
    }
    result = _run(case, command, root, environment)
    _assert_outcome(case, result)
    if case.tidy:
        assert_tidy(root, cache, case.name, allow=case.allow)
    return result


def _run(case: Case | BinaryCase, command: list[str], cwd: Path, env: Mapping[str, str]) -> Result:
    """Run ``command`` in a process group of its own, within the case's deadline."""
    proc = subprocess.Popen(
        command,
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.PIPE if case.stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    if case.signal is not None:
        _signal_later(proc, *case.signal)
    stdin = case.stdin.encode() if isinstance(case.stdin, str) else case.stdin
    try:
        out, err = proc.communicate(stdin, timeout=case.deadline)
    except subprocess.TimeoutExpired:
        finished = proc.poll() is not None
        _kill_group(proc.pid)
        out, err = proc.communicate()
        why = (
            "exited but left a process holding its output"
            if finished
            else f"did not finish within {case.deadline:g} s"
        )
        pytest.fail(f"case {case.name}: `{' '.join(command)}` {why}\n{_text(out)}{_text(err)}")
    survivors = _survivors(proc.pid)
    assert not survivors, (
        f"case {case.name}: processes outlived the run: {survivors}\n{_text(out)}{_text(err)}"
    )
    return Result(proc.returncode, _text(out), _text(err), cwd)


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _signal_later(proc: subprocess.Popen[bytes], seconds: float, signum: int) -> None:
    """Send ``signum`` to ``proc`` after ``seconds``, unless it has ended by then."""

    def send() -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signum)

    timer = threading.Timer(seconds, send)
    timer.daemon = True
    timer.start()


def _survivors(pgid: int) -> list[str]:
    """The processes of group ``pgid`` still alive after the grace (they are then killed)."""
    deadline = time.monotonic() + SURVIVOR_GRACE
    while time.monotonic() < deadline:
        alive = _group_members(pgid)
        if not alive:
            return []
        time.sleep(0.05)
    _kill_group(pgid)
    return alive


def _group_members(pgid: int) -> list[str]:
    """``pid: command line`` of each live (not zombie) process in group ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[2]) != pgid or fields[0] == "Z":
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        members.append(f"{entry.name}: {cmdline.strip()}")
    return members


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signals.SIGKILL)


def _assert_outcome(case: Case | BinaryCase, result: Result) -> None:
    said = f"case {case.name}: exit {result.exit}\n--- stdout\n{result.stdout}--- stderr\n{result.stderr}"
    assert "Traceback" not in result.output, said
    assert result.exit == case.exit, said
    if case.code is not None:
        assert re.search(rf"\b{case.code}\b", result.output), f"no {case.code}: {said}"
    for name in case.names:
        assert name in result.output, f"the output does not name {name!r}: {said}"
    for name in case.absent:
        assert name not in result.output, f"the output names {name!r}: {said}"


# -- nothing half-written


def assert_tidy(root: Path, cache: Path, name: str = "", allow: Sequence[str] = ()) -> None:
    """``dist/`` holds only complete binaries, and no temporary file is left in the
    workspace or the stage cache (but those matching ``allow``: globs or paths)."""
    dist = root / "dist"
    if dist.is_dir():
        for path in sorted(dist.iterdir()):
            assert path.suffix == ".pyz" and path.is_file(), (
                f"case {name}: dist/ holds {path.name}, not a binary"
            )
            assert_complete(path, name)
    left = [p for p in _temporaries(root, cache) if not _allowed(p, allow)]
    assert left == [], f"case {name}: temporary files left behind: {left}"


def assert_complete(binary: Path, name: str = "") -> None:
    """``binary`` is a whole zip archive: every member reads back with its CRC."""
    try:
        with zipfile.ZipFile(binary) as zf:
            bad = zf.testzip()
    except (zipfile.BadZipFile, OSError) as exc:
        pytest.fail(f"case {name}: {binary.name} is not a complete binary: {exc}")
    assert bad is None, f"case {name}: {binary.name} has a damaged member {bad}"


def _temporaries(*folders: Path) -> list[str]:
    """Paths (as strings) under ``folders`` named like temporary or partial files."""
    found = []
    for folder in folders:
        if not folder.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(folder, onerror=lambda _: None):
            for entry in [*dirnames, *filenames]:
                if any(fnmatch.fnmatch(entry, pattern) for pattern in TEMPORARY):
                    found.append(os.path.join(dirpath, entry))
    return sorted(found)


def _allowed(path: str, allow: Sequence[str]) -> bool:
    return any(path == pattern or fnmatch.fnmatch(path, pattern) for pattern in allow) or any(
        fnmatch.fnmatch(os.path.basename(path), pattern) for pattern in allow
    )


# -- started binaries

_BUILT: dict[str, Binary] = {}


def binary(factory: pytest.TempPathFactory, sample: str = "mini") -> Binary:
    """The binary of a sample (``"boutique"``: the repository's own workspace), built
    once per test session."""
    if sample not in _BUILT:
        source = REPO if sample == "boutique" else SAMPLES / sample
        _BUILT[sample] = build_binary(source, factory.mktemp(f"corpus-{sample}"))
    return _BUILT[sample]


@contextlib.contextmanager
def serving(
    factory: pytest.TempPathFactory,
    sample: str = "mini",
    groups: list[list[str]] | None = None,
    *extra: str,
    **env: str,
) -> Iterator[Cluster]:
    """The sample's binary serving on 127.0.0.1: one process (fused), or one per group
    (split: each told where the groups before it are); stopped at the end."""
    built = binary(factory, sample)
    placement = groups or [["fused"]]  # one group: no --only, every service here
    if len(placement) > 1:  # split processes must share a (strong) secret
        env = {"NANO_SECRET": SECRET, **env}
    cluster = start_placement(built, placement, factory.mktemp("corpus-logs"), *extra, **env)
    try:
        yield cluster
    finally:
        with contextlib.suppress(Exception):
            cluster.stop()


# -- hostile requests


@dataclasses.dataclass(frozen=True)
class HttpCase:
    """One hostile request to a started binary's HTTP face."""

    name: str
    method: str = "POST"
    target: str = "/api/users/GetUser"
    headers: Mapping[str, str] = dataclasses.field(
        default_factory=lambda: {"Content-Type": "application/json"}
    )
    body: bytes | str = b""
    raw: bytes | None = None
    status: int | None = 400
    names: Sequence[str] = ()
    deadline: float = 10.0
    # a good request the server must still answer afterwards, and its status
    probe: tuple[str, bytes, int] = ("/api/users/GetUser", b'{"id": "u1"}', 200)


@dataclasses.dataclass(frozen=True)
class HttpAnswer:
    """A response read off a socket; ``status`` None if the server closed without one."""

    status: int | None
    headers: dict[str, str]
    body: bytes
    seconds: float


def request_bytes(case: HttpCase) -> bytes:
    """The bytes ``case`` sends: its ``raw``, or its parts as one HTTP/1.1 request."""
    if case.raw is not None:
        return case.raw
    body = case.body.encode() if isinstance(case.body, str) else case.body
    given = {key.lower() for key in case.headers}
    headers = dict(case.headers)
    if "host" not in given:
        headers["Host"] = "127.0.0.1"
    if "content-length" not in given and "transfer-encoding" not in given:
        headers["Content-Length"] = str(len(body))
    if "connection" not in given:
        headers["Connection"] = "close"
    head = f"{case.method} {case.target} HTTP/1.1\r\n" + "".join(
        f"{key}: {value}\r\n" for key, value in headers.items()
    )
    return head.encode("latin-1") + b"\r\n" + body


def run_http_case(case: HttpCase, server: Server) -> HttpAnswer:
    """Send ``case`` to ``server`` and assert all it expects (see the module's docstring)."""
    logged = server.log_path.stat().st_size
    answer = http_exchange(server.port, request_bytes(case), timeout=case.deadline)
    said = f"case {case.name}: {answer.status} {answer.body[:2000]!r}"
    assert answer.seconds < case.deadline, f"case {case.name}: no answer within {case.deadline} s"
    assert case.status is None or answer.status == case.status, said
    if answer.status is not None and case.status is not None:
        assert answer.status < 500 or case.status >= 500, said
    text = answer.body.decode("utf-8", errors="replace")
    assert "Traceback" not in text, said
    for name in case.names:
        assert name in text, f"the answer does not name {name!r}: {said}"
    assert_alive(server, case.name, case.probe)
    with server.log_path.open("rb") as log:
        log.seek(logged)
        grown = log.read().decode(errors="replace")
    assert "Traceback" not in grown, f"case {case.name}: the server logged\n{grown[-4000:]}"
    return answer


def assert_alive(
    server: Server, name: str = "", probe: tuple[str, bytes, int] = HttpCase.probe
) -> None:
    """``server`` still runs and answers a good request with the expected status."""
    assert server.proc.poll() is None, f"case {name}: the server died:\n{server.log()[-4000:]}"
    target, body, status = probe
    good = HttpCase("probe", target=target, body=body, status=status)
    answer = http_exchange(server.port, request_bytes(good), timeout=10)
    assert answer.status == status, f"case {name}: the good request after it got {answer}"


def http_exchange(port: int, data: bytes, *, timeout: float = 10.0) -> HttpAnswer:
    """Send ``data`` to 127.0.0.1:``port``; read the answer until the server closes,
    goes quiet for ``timeout``, or a whole response (by Content-Length) has come."""
    start = time.monotonic()
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        with contextlib.suppress(OSError):
            sock.sendall(data)
        with contextlib.suppress(OSError):
            while not _whole(received):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
    return _parse(received, time.monotonic() - start)


def _whole(data: bytes) -> bool:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    match = re.search(rb"(?im)^content-length:\s*(\d+)\s*$", head)
    return match is not None and len(body) >= int(match.group(1))


def _parse(data: bytes, seconds: float) -> HttpAnswer:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split() if lines and lines[0] else []
    if len(parts) < 2 or not parts[1].isdigit():
        return HttpAnswer(None, {}, data, seconds)
    headers = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    return HttpAnswer(int(parts[1]), headers, body, seconds)


def address(internal: str) -> tuple[str, int]:
    """``tcp://host:port`` (a server's ``internal``) as (host, port)."""
    host, _, port = internal.removeprefix("tcp://").rpartition(":")
    return host, int(port)


def tcp_exchange(
    target: str | tuple[str, int], data: bytes, *, timeout: float = 5.0, quiet: float = 1.0
) -> bytes:
    """Send ``data`` to a TCP address (``tcp://host:port`` or a pair); return what comes
    back until the peer closes, sends nothing for ``quiet`` seconds, or ``timeout`` passes."""
    host, port = address(target) if isinstance(target, str) else target
    received = b""
    deadline = time.monotonic() + timeout
    with socket.create_connection((host, port), timeout=timeout) as sock:
        with contextlib.suppress(OSError):
            sock.sendall(data)
        sock.settimeout(quiet)
        with contextlib.suppress(OSError):
            while time.monotonic() < deadline:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
    return received


@contextlib.contextmanager
def held_open(
    target: str | tuple[str, int], count: int, payload: bytes = b"", *, timeout: float = 10.0
) -> Iterator[list[socket.socket]]:
    """``count`` connections to ``target``, each sent ``payload`` (half a request) and
    held open for the block; those the server refused or closed are left out."""
    host, port = address(target) if isinstance(target, str) else target
    held: list[socket.socket] = []
    try:
        for _ in range(count):
            try:
                sock = socket.create_connection((host, port), timeout=timeout)
                if payload:
                    sock.sendall(payload)
            except OSError:
                continue
            held.append(sock)
        yield held
    finally:
        for sock in held:
            sock.close()


def fd_limit(wanted: int) -> int:
    """Raise this process's open-file limit toward ``wanted``; the limit it has now."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
