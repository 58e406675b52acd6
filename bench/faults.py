"""The exact accounting of calls through faults: SIGKILL, SIGSTOP past the timeout, resets.

A workspace of two services is generated and bundled: ``ledger``, whose ``Record``
contract is not idempotent (its handler appends the request's id to a file, one line
per run), and ``front``, whose ``Send`` calls ``Record`` and answers which error class
the call raised, if any. It runs fused (one process) and split (front and ledger in two
processes over TCP), on 127.0.0.1 only. For each placement and fault, ``--calls`` calls
with unique ids go to front's HTTP face from ``--workers`` concurrent clients, one
connection each, while the fault repeats:

- ``kill``: SIGKILL of the callee (split: the ledger process; fused: the one process),
  restarted on the same ports at once;
- ``stop``: SIGSTOP of the callee for longer than the call's timeout, then SIGCONT;
- ``reset``: a TCP proxy of this script's own, in the callee's path (split: between
  front and ledger; fused: before the HTTP face), that resets a random connection
  (RST) every ``--reset-every`` seconds.

Each call ends one way, as its client saw it: *succeeded*; failed *unsent* (nothing
left: ``Unsent``, or the connection to the face was refused), which must not have run;
failed *maybe* (``Interrupted``, ``Timeout``, ``Unavailable``, or the face's connection
lost or timed out after the request was written), which may have run once; or failed
with no named error class. Then the ledger's file says how often each id ran. Counted:
*lost* (succeeded but never ran, or unsent but ran), *run twice* (ran more than once),
*unnamed* (a failure with no named class). The targets: all three zero. Bounded: each
phase stops after ``--phase-seconds`` whatever is left (counted as unfinished).

    python bench/faults.py                          # both placements, all three faults
    python bench/faults.py --calls 500 --placements split --faults kill

Exits 1 if any phase has a lost, twice-run or unnamed call. Calls still running when a
phase's time is up are counted as unfinished, and are no failure: a loaded machine is
slow, not wrong.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SECRET = "faults-bench-secret-Qm3v8X1nR5tY7uW9zA2cE4gJ"
CALL_TIMEOUT = 0.5  # seconds front's call to ledger may take (--timeout ledger=...)
CLIENT_TIMEOUT = 5.0  # seconds the bench's client waits for front's answer (split)
# fused, the client's timeout is the only one: shorter than a SIGSTOP, so that it fires
FUSED_CLIENT_TIMEOUT = CALL_TIMEOUT * 2
STOPPED = CALL_TIMEOUT * 3  # how long a SIGSTOP lasts
UNSENT = {"Unsent", "Incompatible", "ConnectionRefused"}
MAYBE = {"Interrupted", "Timeout", "Unavailable", "ConnectionLost", "ClientTimeout"}

NANO_TOML = """\
[workspace]
name = "faults"

[services.ledger]
path = "services/ledger"
requires = ["msgspec>=0.18"]
public = ["Record", "Ping"]

[services.front]
path = "services/front"
depends = ["ledger"]
requires = ["msgspec>=0.18"]
public = ["Send", "Echo"]
"""

LEDGER_KERNEL = """\
import msgspec

from nanobuild.runtime import Contract


class Ack(msgspec.Struct, frozen=True):
    id: str


class Record(Contract[Ack], frozen=True):
    \"\"\"Not idempotent: each run appends the id to the ledger file.\"\"\"

    id: str


class Ping(Contract[Ack], frozen=True):
    id: str
"""

LEDGER_HANDLERS = """\
import os

from nanobuild.runtime import NotFound, handler

from .kernel import Ack, Ping, Record

_FD: list[int] = []


@handler
async def record(req: Record) -> Ack:
    if not _FD:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
        _FD.append(os.open(os.environ["LEDGER_FILE"], flags, 0o644))
    os.write(_FD[0], (req.id + "\\n").encode())  # one write: a whole line, or none
    return Ack(id=req.id)


@handler
async def ping(req: Ping) -> Ack:
    if req.id == "missing":
        raise NotFound("no such id")
    return Ack(id=req.id)
"""

FRONT_KERNEL = """\
import msgspec

from nanobuild.runtime import Contract


class Outcome(msgspec.Struct, frozen=True):
    ok: bool
    error: str = ""
    message: str = ""


class Send(Contract[Outcome], frozen=True):
    id: str


class Echo(Contract[Outcome], frozen=True):
    id: str
"""

FRONT_HANDLERS = """\
from ledger.kernel import Ping, Record
from nanobuild.runtime import NanoError, call, handler

from .kernel import Echo, Outcome, Send


@handler
async def send(req: Send) -> Outcome:
    try:
        await call(Record(id=req.id))
    except NanoError as exc:  # the class itself, which the wire folds into `unavailable`
        return Outcome(ok=False, error=type(exc).__name__, message=exc.message)
    return Outcome(ok=True)


@handler
async def echo(req: Echo) -> Outcome:
    answer = await call(Ping(id=req.id))
    return Outcome(ok=answer.id == req.id)
"""

FILES = {
    "nano.toml": NANO_TOML,
    "services/ledger/ledger/__init__.py": "",
    "services/ledger/ledger/kernel.py": LEDGER_KERNEL,
    "services/ledger/ledger/handlers.py": LEDGER_HANDLERS,
    "services/front/front/__init__.py": "",
    "services/front/front/kernel.py": FRONT_KERNEL,
    "services/front/front/handlers.py": FRONT_HANDLERS,
}


def build(tmp: Path) -> Path:
    """The two-service workspace written under ``tmp``, locked and bundled: its binary."""
    root = tmp / "ws"
    for rel, text in FILES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    nanobuild = [sys.executable, "-m", "nanobuild"]
    for command in (["lock"], ["bundle", "--quiet"]):
        done = subprocess.run(
            [*nanobuild, *command, "--workspace", str(root)],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode != 0:
            sys.exit(f"nanobuild {command[0]} failed:\n{done.stdout}{done.stderr}")
    return root / "dist" / "faults.pyz"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def accepts(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


# -- the servers


@dataclass
class Server:
    """One process of the binary on fixed ports, restartable on the same ones."""

    name: str
    command: list[str]
    env: dict[str, str]
    port: int  # where it is ready: its HTTP port
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> None:
        with self.log.open("ab") as log:
            self.popen = subprocess.Popen(
                self.command, env=self.env, stdout=log, stderr=log, stdin=subprocess.DEVNULL
            )
        deadline = time.monotonic() + timeout
        while not accepts(self.port):
            if self.popen.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"{self.name} did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.02)

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def signal(self, signum: int) -> None:
        if self.popen is not None and self.popen.poll() is None:
            os.kill(self.popen.pid, signum)

    def stop(self) -> None:
        if self.popen is None:
            return
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


@dataclass
class Placement:
    """The processes of one placement: ``front`` answers HTTP, ``callee`` takes faults."""

    servers: list[Server]
    front_port: int  # where the bench's clients connect
    callee: Server
    proxy_target: int  # the port the reset proxy stands before
    proxy_port: int

    def start(self) -> None:
        for server in self.servers:
            server.start()

    def stop(self) -> None:
        for server in reversed(self.servers):
            server.stop()


def placement(name: str, pyz: Path, tmp: Path, ledger: Path, fault: str) -> Placement:
    """Fused or split, on fresh ports; with ``reset``, the callee is reached through
    the proxy's port instead of its own."""
    env = {
        **{k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        "NANO_SECRET": SECRET,
        "NANO_APP_CACHE": str(tmp / "apps"),
        "LEDGER_FILE": str(ledger),
    }
    python, proxy = sys.executable, free_port()
    logs = tmp / "logs"
    logs.mkdir(exist_ok=True)
    if name == "fused":
        port = free_port()
        server = Server(
            "fused",
            [python, str(pyz), "serve", "--port", str(port)],
            env,
            port,
            logs / f"fused-{fault}.log",
        )
        entry = proxy if fault == "reset" else port
        return Placement([server], entry, server, port, proxy)
    ledger_http, ledger_tcp, front_http = free_port(), free_port(), free_port()
    reached = proxy if fault == "reset" else ledger_tcp
    callee = Server(
        "ledger",
        [
            python,
            str(pyz),
            "serve",
            "--only",
            "ledger",
            "--port",
            str(ledger_http),
            "--internal-port",
            str(ledger_tcp),
        ],
        env,
        ledger_http,
        logs / f"ledger-{fault}.log",
    )
    front = Server(
        "front",
        [
            python, str(pyz), "serve", "--only", "front", "--port", str(front_http),
            "--internal-port", "0", f"--remote=ledger=tcp://127.0.0.1:{reached}",
            f"--timeout=ledger={CALL_TIMEOUT}",
        ],
        env,
        front_http,
        logs / f"front-{fault}.log",
    )  # fmt: skip
    return Placement([callee, front], front_http, callee, ledger_tcp, proxy)


# -- the reset proxy


class ResetProxy:
    """Forwards 127.0.0.1:``port`` to ``target``; ``reset_one`` resets a random pair."""

    def __init__(self, port: int, target: int) -> None:
        self.port = port
        self.target = target
        self.pairs: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self.resets = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            _reset(writer)
            return
        pair = (writer, up_writer)
        self.pairs.append(pair)
        try:
            await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))
        except asyncio.CancelledError:
            pass  # the run is over
        finally:
            with contextlib.suppress(ValueError):
                self.pairs.remove(pair)
            for side in pair:
                side.close()

    def reset_one(self) -> None:
        if self.pairs:
            pair = self.pairs.pop(random.randrange(len(self.pairs)))
            for side in pair:
                _reset(side)
            self.resets += 1

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for pair in list(self.pairs):
            for side in pair:
                _reset(side)
        await asyncio.sleep(0.2)  # the pumps see their ends and finish


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(OSError):
        writer.close()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with an RST (linger 0), as a dropped connection arrives, not a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


# -- the faults


async def inject(
    fault: str,
    where: Placement,
    proxy: ResetProxy | None,
    done: asyncio.Event,
    args: argparse.Namespace,
) -> int:
    """Repeat ``fault`` until ``done``; how many times it struck."""
    struck = 0
    loop = asyncio.get_running_loop()
    while not done.is_set():
        await _sleep_unless(
            done, args.fault_every if fault != "reset" else random.expovariate(1 / args.reset_every)
        )
        if done.is_set():
            break
        if fault == "kill":
            where.callee.signal(signal.SIGKILL)
            assert where.callee.popen is not None
            await loop.run_in_executor(None, where.callee.popen.wait)
            await loop.run_in_executor(None, where.callee.start)
        elif fault == "stop":
            where.callee.signal(signal.SIGSTOP)
            await asyncio.sleep(STOPPED)  # past the call's timeout
            where.callee.signal(signal.SIGCONT)
        elif proxy is not None:
            proxy.reset_one()
        struck += 1
    return struck


async def _sleep_unless(done: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), seconds)


# -- the client


def request(call_id: str) -> bytes:
    body = json.dumps({"id": call_id}).encode()
    head = (
        "POST /api/front/Send HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


async def send(port: int, call_id: str, timeout: float) -> str:
    """One call; the error class it failed with ("" if it succeeded)."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    except (OSError, TimeoutError):
        return "ConnectionRefused"  # no connection: nothing was sent
    try:
        writer.write(request(call_id))
        data = await asyncio.wait_for(reader.read(), timeout)
    except TimeoutError:
        return "ClientTimeout"
    except OSError:
        return "ConnectionLost"
    finally:
        writer.transport.abort()
    return _outcome(data)


def _outcome(data: bytes) -> str:
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 "):
        return "ConnectionLost"  # closed before a whole answer: it may have run
    status = int(head[9:12])
    length = re.search(rb"(?im)^content-length:\s*(\d+)\s*$", head)
    if length is not None and len(body) < int(length.group(1)):
        return "ConnectionLost"  # the answer was cut short: the server died writing it
    try:
        doc = json.loads(body)
    except ValueError:
        return f"unnamed HTTP {status}"
    if status == 200:
        return "" if doc.get("ok") else str(doc.get("error") or "unnamed 200")
    kind = doc.get("error", {}).get("kind", "") if isinstance(doc, dict) else ""
    return {"unavailable": "Unavailable", "timeout": "Timeout"}.get(
        kind, f"unnamed {kind or status}"
    )


@dataclass
class Phase:
    placement: str
    fault: str
    outcomes: dict[str, str] = field(default_factory=dict)  # id -> error ("" ok)
    runs: collections.Counter[str] = field(default_factory=collections.Counter)
    struck: int = 0
    unfinished: int = 0
    seconds: float = 0.0

    def tally(self) -> dict[str, int]:
        t = collections.Counter(
            sent=len(self.outcomes) + self.unfinished, unfinished=self.unfinished
        )
        for call_id, error in self.outcomes.items():
            ran = self.runs[call_id]
            t["succeeded" if not error else "failed"] += 1
            if ran > 1:
                t["run twice"] += 1
            if (not error and ran == 0) or (error in UNSENT and ran > 0):
                t["lost"] += 1
            if error and error not in UNSENT | MAYBE:
                t["unnamed"] += 1
            if error in MAYBE and ran:
                t["failed, ran once"] += 1
        t["stray"] = len(set(self.runs) - set(self.outcomes))
        return dict(t)

    def errors(self) -> dict[str, int]:
        return dict(collections.Counter(e for e in self.outcomes.values() if e))


async def clients(port: int, phase: Phase, calls: int, workers: int) -> None:
    ids = iter(f"{phase.placement}-{phase.fault}-{i}" for i in range(calls))
    timeout = FUSED_CLIENT_TIMEOUT if phase.placement == "fused" else CLIENT_TIMEOUT

    async def worker() -> None:
        for call_id in ids:
            phase.outcomes[call_id] = await send(port, call_id, timeout)

    await asyncio.gather(*(worker() for _ in range(workers)))


async def run_phase(where: Placement, phase: Phase, args: argparse.Namespace) -> None:
    proxy = None
    if phase.fault == "reset":
        proxy = ResetProxy(where.proxy_port, where.proxy_target)
        await proxy.start()
    done = asyncio.Event()
    injector = asyncio.create_task(inject(phase.fault, where, proxy, done, args))
    begun = time.monotonic()
    load = asyncio.create_task(clients(where.front_port, phase, args.calls, args.workers))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(load), args.phase_seconds)
    load.cancel()
    phase.unfinished = args.calls - len(phase.outcomes)
    phase.seconds = time.monotonic() - begun
    done.set()
    phase.struck = await injector
    where.callee.signal(signal.SIGCONT)
    await asyncio.sleep(STOPPED + 1)  # a call held up by SIGSTOP runs now, or never
    if proxy is not None:
        await proxy.close()


def measure(pyz: Path, tmp: Path, name: str, fault: str, args: argparse.Namespace) -> Phase:
    ledger = tmp / f"ledger-{name}-{fault}.txt"
    ledger.touch()
    where = placement(name, pyz, tmp, ledger, fault)
    phase = Phase(name, fault)
    where.start()
    try:
        asyncio.run(run_phase(where, phase, args))
    finally:
        where.stop()
    phase.runs.update(line for line in ledger.read_text().splitlines() if line)
    return phase


COLUMNS = [
    "sent",
    "succeeded",
    "failed",
    "failed, ran once",
    "lost",
    "run twice",
    "unnamed",
    "unfinished",
]


def table(phases: list[Phase]) -> str:
    rows = [["placement", "fault", "struck", *COLUMNS, "failures by class"]]
    for p in phases:
        t = p.tally()
        named = ", ".join(f"{k} {v}" for k, v in sorted(p.errors().items())) or "-"
        rows.append(
            [p.placement, p.fault, str(p.struck), *(str(t.get(c, 0)) for c in COLUMNS), named]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join(
            cell.rjust(w) if i > 1 else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(r, widths, strict=False))
        )
        + "  "
        + r[-1]
        for r in rows
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=10000, help="calls per phase (default 10000)")
    parser.add_argument("--workers", type=int, default=32, help="concurrent clients (default 32)")
    parser.add_argument("--placements", default="fused,split", help="fused,split")
    parser.add_argument("--faults", default="kill,stop,reset", help="kill,stop,reset")
    parser.add_argument(
        "--fault-every", type=float, default=0.5, help="seconds between kills and stops"
    )
    parser.add_argument(
        "--reset-every", type=float, default=0.05, help="mean seconds between resets"
    )
    parser.add_argument("--phase-seconds", type=float, default=90.0, help="bound of one phase")
    parser.add_argument("--json", action="store_true", help="print the tallies as JSON too")
    parser.add_argument("--keep", action="store_true", help="keep the folder of logs and ledgers")
    args = parser.parse_args()
    with scratch(keep=args.keep) as tmp:
        pyz = build(tmp)
        subprocess.run(
            [sys.executable, str(pyz), "info"],
            capture_output=True,
            check=True,
            env={**os.environ, "NANO_APP_CACHE": str(tmp / "apps")},
        )
        phases = []
        for name in args.placements.split(","):
            for fault in args.faults.split(","):
                phases.append(measure(pyz, tmp, name, fault, args))
                print(
                    f"  done {name} {fault}: {phases[-1].seconds:.1f} s",
                    file=sys.stderr,
                    flush=True,
                )
    print(table(phases))
    if args.json:
        print(
            json.dumps(
                [
                    {"placement": p.placement, "fault": p.fault, **p.tally(), "errors": p.errors()}
                    for p in phases
                ]
            )
        )
    bad = [
        p
        for p in phases
        if any(p.tally().get(k, 0) for k in ("lost", "run twice", "unnamed", "stray"))
    ]
    print(
        "target (zero lost, zero run twice, every failure named):", "met" if not bad else "NOT met"
    )
    sys.exit(1 if bad else 0)


@contextlib.contextmanager
def scratch(*, keep: bool = False) -> Iterator[Path]:
    """A temporary folder, removed at the end unless ``keep`` (then its path is printed)."""
    folder = Path(tempfile.mkdtemp(prefix="nanobuild-faults-"))
    try:
        yield folder
    finally:
        if keep:
            print(f"kept {folder}", file=sys.stderr)
        else:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
