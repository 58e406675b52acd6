"""The boutique as a whole system: fused, split, and as FastAPI microservices, under load.

Every system runs on 127.0.0.1 as real processes: the bundled boutique binary fused
(one process), split one process per service, and split in three groups; the same
services' logic as FastAPI microservices (one uvicorn per service) calling each other
with httpx or with aiohttp; a bare ASGI app answering from memory (the floor of the
server stack); and a raw asyncio server (the floor of the load generator itself).
The load is Online Boutique's own mix (``mix.py``), sent by an open-loop load
generator in its own process (``loadgen.py``) at fixed offered rates, latency counted
from each action's scheduled start. Per system and rate: achieved rate, median and
p99 latency, errors, CPU seconds per 1,000 actions summed over every server process,
and each system's peak RSS and saturation throughput (closed loop). Rounds take the
systems in turn, each round starting with the next, and the figures are medians over
rounds (p99 is taken over every round's latencies pooled); ratios are taken within
each round and their median reported.

    python bench/system.py                   # the full run, < 10 minutes on 2 cores
    python bench/system.py --quick           # a short smoke run
    python bench/system.py --check           # every system gives the same answers
    python bench/system.py --stack uvloop-httptools

Writes bench/results/system.json and the PNGs beside it (not with --check or
--quick). Needs fastapi, httpx, aiohttp and matplotlib (pip install -e ".[bench]").
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import mix
from boutique_fastapi import STACKS, import_paths
from workload import at_least

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "results"
SECRET = "system-bench-secret-504DGxl8T_S5gW1p-BDREA"
CLOCK = os.sysconf("SC_CLK_TCK")

# (label, kind); kind says how the system is started
SYSTEMS = {
    "fused": ("nanobuild fused", "nano"),
    "split": ("nanobuild split, 9 processes", "nano"),
    "split3": ("nanobuild split, 3 groups", "nano"),
    "fastapi-httpx": ("FastAPI + httpx, 9 processes", "fastapi"),
    "fastapi-aiohttp": ("FastAPI + aiohttp, 9 processes", "fastapi"),
    "asgi-floor": ("bare ASGI app from memory (floor)", "floor"),
    "loadgen-floor": ("raw asyncio server (loadgen floor)", "floor"),
}
BOUTIQUE = ["fused", "split", "split3", "fastapi-httpx", "fastapi-aiohttp"]
FASTAPI = ["fastapi-httpx", "fastapi-aiohttp"]

# start-up waves: a process is told where every process of the earlier waves is; the
# last wave's single process is the front door, which reaches every service
LEAVES = ["catalog", "currency", "cart", "ad", "shipping", "payment", "email"]
PER_SERVICE = [[[name] for name in LEAVES], [["recommendation"]], [["checkout"]]]
PLACEMENTS: dict[str, list[list[list[str]]]] = {
    "fused": [[[*LEAVES, "recommendation", "checkout"]]],
    "split": PER_SERVICE,
    "split3": [
        [["catalog", "currency", "cart", "ad", "recommendation"], ["payment", "shipping", "email"]],
        [["checkout"]],
    ],
    "fastapi-httpx": PER_SERVICE,
    "fastapi-aiohttp": PER_SERVICE,
}

COMMON = (0.25, 0.6)  # offered rates every system gets, x the slowest boutique's saturation
OWN = (0.5, 0.85)  # and rates of its own, x its own saturation
FIXED = 1  # the common rate the headline compares at


# -- processes


@dataclass
class Proc:
    """A server process: its output files and, once ready, where it answers."""

    name: str
    popen: subprocess.Popen[bytes]
    out: Path
    err: Path
    services: list[str] = field(default_factory=list)
    url: str = ""
    internal: str = ""

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])


READY = re.compile(r"(?:nanobuild: serving .* at|^listening at) (http://\S+)", re.MULTILINE)
INTERNAL = re.compile(r"internal transport at (tcp://\S+)")


def launch(
    name: str, command: list[str], logs: Path, env: dict[str, str], services: list[str]
) -> Proc:
    out, err = logs / f"{name}.out", logs / f"{name}.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        popen = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL
        )
    return Proc(name, popen, out, err, services)


def wait_ready(procs: Sequence[Proc], timeout: float = 90) -> None:
    """Until every process says where it serves and accepts a connection there."""
    deadline = time.monotonic() + timeout
    waiting = list(procs)
    while waiting and time.monotonic() < deadline:
        for proc in list(waiting):
            if proc.popen.poll() is not None:
                sys.exit(f"{proc.name} exited early:\n{tail(proc.err)}")
            text = proc.out.read_text(errors="replace")
            found, internal = READY.search(text), INTERNAL.search(text)
            if found and accepts(int(found.group(1).rsplit(":", 1)[1])):
                proc.url, proc.internal = found.group(1), internal.group(1) if internal else ""
                waiting.remove(proc)
        time.sleep(0.05)
    if waiting:
        sys.exit(f"{waiting[0].name} did not start in {timeout:.0f} s:\n{tail(waiting[0].err)}")


def accepts(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def stop(procs: Sequence[Proc]) -> None:
    for proc in procs:
        if proc.popen.poll() is None:
            proc.popen.terminate()
    for proc in procs:
        try:
            proc.popen.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.popen.kill()
            proc.popen.wait()


def cpu_seconds(pids: Sequence[int]) -> float:
    """User plus system CPU time of ``pids`` so far (``/proc/<pid>/stat``)."""
    total = 0
    for pid in pids:
        text = Path(f"/proc/{pid}/stat").read_text()
        fields = text[text.rindex(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK


def peak_rss_mib(pids: Sequence[int]) -> float:
    """The sum of every process's peak resident set (VmHWM), in MiB."""
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                total += int(line.split()[1])
    return total / 1024


def loaded(pid: int) -> set[str]:
    """Which of uvloop and httptools the process has loaded (``/proc/<pid>/maps``)."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return {name for name in ("uvloop", "httptools") if f"/{name}/" in maps}


# -- the systems


@dataclass
class System:
    name: str
    procs: list[Proc] = field(default_factory=list)

    @property
    def label(self) -> str:
        return SYSTEMS[self.name][0]

    @property
    def front(self) -> Proc:
        return self.procs[-1]

    @property
    def pids(self) -> list[int]:
        return [proc.popen.pid for proc in self.procs]


def bundle(tmp: Path, stack: str) -> Path:
    """The boutique binary, bundled from a copy of the repository's workspace.

    For the uvloop-httptools stack the copy's catalog also requires both, so that they
    are staged into the binary and uvicorn (which picks them when it can import them)
    serves with them, as the FastAPI processes do.
    """
    copy = tmp / "ws"
    ignore = shutil.ignore_patterns("__pycache__", "dist", ".*", "tests", "bench", "*.egg-info")
    shutil.copytree(REPO, copy, ignore=ignore)
    if stack == "uvloop-httptools":
        toml = copy / "nano.toml"
        text, count = re.subn(
            r"(\[services\.catalog\][^\[]*?requires = )\[\]",
            r'\1["uvloop>=0.17", "httptools>=0.5"]',
            toml.read_text(),
        )
        if count != 1:
            sys.exit("cannot add uvloop and httptools to the catalog's requires in nano.toml")
        toml.write_text(text)
    nanobuild = [sys.executable, "-m", "nanobuild"]
    if _has_lock_command() and (stack != "asyncio-h11" or not (copy / "nano.lock").exists()):
        _run([*nanobuild, "lock", "--workspace", str(copy)])  # pins what this copy needs
    _run([*nanobuild, "bundle", "--workspace", str(copy), "--quiet"])
    [built] = (copy / "dist").glob("*.pyz")
    return built


def _has_lock_command() -> bool:
    done = subprocess.run(
        [sys.executable, "-m", "nanobuild", "lock", "--help"], capture_output=True, check=False
    )
    return done.returncode == 0


def _run(command: list[str], env: dict[str, str] | None = None) -> None:
    done = subprocess.run(
        command, capture_output=True, text=True, check=False, timeout=600, env=env
    )
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(command)}\n{done.stdout}{done.stderr}")


class Fleet:
    """Every system's processes, started wave by wave, all systems at once."""

    def __init__(self, names: Sequence[str], stack: str, tmp: Path) -> None:
        self.names = list(names)
        self.stack = stack
        self.tmp = tmp
        self.logs = tmp / "logs"
        self.logs.mkdir()
        self.systems = {name: System(name) for name in names}
        self.pyz = bundle(tmp, stack) if any(SYSTEMS[n][1] == "nano" for n in names) else None
        if self.pyz is not None:  # extract the binary once, before processes race to
            _run([sys.executable, str(self.pyz), "info"], self.env("nano"))

    def env(self, kind: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env |= {"NANO_SECRET": SECRET, "NANO_STRICT": "0", "NANO_APP_CACHE": str(self.tmp / "apps")}
        if kind != "nano":  # the binary carries its own code; the others run the repo's
            env["PYTHONPATH"] = os.pathsep.join([*import_paths(), str(BENCH), str(REPO)])
        else:  # it carries both stacks and would pick uvloop + httptools by itself
            env["NANO_SERVER_STACK"] = "asyncio" if self.stack == "asyncio-h11" else "uvloop"
        return env

    def start(self) -> None:
        waves = max(len(PLACEMENTS.get(name, [[]])) for name in self.names)
        for wave in range(waves):
            started: list[Proc] = []
            for name in self.names:
                started += self._wave(name, wave)
            wait_ready(started)
        self._check_stack()

    def _wave(self, name: str, wave: int) -> list[Proc]:
        system, kind = self.systems[name], SYSTEMS[name][1]
        if kind == "floor":
            if wave:
                return []
            script = "boutique_fastapi.py" if name == "asgi-floor" else "loadgen.py"
            option = "--floor" if name == "asgi-floor" else "--serve-floor"
            command = [sys.executable, str(BENCH / script), option, "--stack", self.stack]
            if name == "loadgen-floor":
                command = command[:3]
            procs = [launch(name, command, self.logs, self.env(kind), [])]
        else:
            placement = PLACEMENTS[name]
            if wave >= len(placement):
                return []
            last = wave == len(placement) - 1
            procs = [self._service(name, kind, group, front=last) for group in placement[wave]]
        system.procs += procs
        return procs

    def _service(self, name: str, kind: str, group: list[str], *, front: bool) -> Proc:
        earlier = self.systems[name].procs
        label = f"{name}-{'-'.join(group) if len(group) < 9 else 'all'}"
        if kind == "nano":
            assert self.pyz is not None
            command = [sys.executable, str(self.pyz), "serve", "--port", "0"]
            if name != "fused":
                command += ["--only", ",".join(group), "--internal-port", "0"]
                command += [f"--remote={s}={p.internal}" for p in earlier for s in p.services]
        else:
            [service] = group
            client = name.removeprefix("fastapi-")
            command = [sys.executable, str(BENCH / "boutique_fastapi.py"), "--service", service]
            command += ["--client", client, "--stack", self.stack]
            command += [f"--peer={s}={p.url}" for p in earlier for s in p.services]
            if front:
                command.append("--front")
        return launch(label, command, self.logs, self.env(kind), group)

    def _check_stack(self) -> None:
        """Every server runs on the stack asked for (the loadgen floor is the client's)."""
        wanted = set() if self.stack == "asyncio-h11" else {"uvloop", "httptools"}
        for system in self.systems.values():
            if system.name == "loadgen-floor":
                continue
            for proc in system.procs:
                if loaded(proc.popen.pid) != wanted:
                    sys.exit(
                        f"{proc.name} runs with {sorted(loaded(proc.popen.pid)) or 'neither'} of "
                        f"uvloop/httptools, not the {self.stack} stack"
                    )

    def stop(self) -> None:
        stop([p for s in self.systems.values() for p in reversed(s.procs)])


# -- the load generator


class Loadgen:
    """``loadgen.py`` in its own process, one JSON command and answer a line."""

    def __init__(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(BENCH)}
        self.popen = subprocess.Popen(
            [sys.executable, str(BENCH / "loadgen.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )
        self.loop = self._read()["loop"]

    def _read(self) -> dict[str, Any]:
        assert self.popen.stdout is not None
        line = self.popen.stdout.readline()
        if not line:
            sys.exit("the load generator died")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def ask(self, **command: Any) -> dict[str, Any]:
        stdin: IO[str] | None = self.popen.stdin
        assert stdin is not None
        stdin.write(json.dumps(command) + "\n")
        stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.popen.stdin is not None:
            self.popen.stdin.close()
        self.popen.wait(timeout=30)


# -- the correctness pass


def exchange(port: int, actions: Sequence[mix.Action], probes: Sequence[mix.Call]) -> list[Any]:
    """Every call of ``actions``, phase by phase, then the probes: (status, body) each."""
    import asyncio

    import loadgen

    failed: list[bytes] = []

    async def one(pool: loadgen.Pool, call: mix.Call) -> tuple[int, bytes]:
        if failed:  # one call went unanswered: the rest would wait as long each
            return 0, failed[0]
        try:
            return await pool.request(loadgen.raw(call))
        except OSError as exc:  # no answer (in time): a status no server sends
            failed.append(f"{call.contract}: {exc!r}".encode())
            return 0, failed[0]

    async def run() -> list[Any]:
        pool = loadgen.Pool(port)
        answers: list[Any] = []
        for action in actions:
            for phase in action.phases:
                answers += await asyncio.gather(*(one(pool, c) for c in phase))
        for probe in probes:
            answers.append(await one(pool, probe))
        pool.close()
        return answers

    return asyncio.run(run())


ADS = json.loads((REPO / "services/ad/ad/data/ads.json").read_text())
EVERY_AD = [ad for group in ADS.values() for ad in group]
TRACKING = re.compile(r"^[A-Z]{2}-\d+-\d+$")


def normalised(call: mix.Call, status: int, body: bytes) -> Any:
    """What must be equal across systems: ids and random picks checked, then masked."""
    if call.method == "GET":
        return status, body.decode(errors="replace")
    value: Any = json.loads(body) if body else None
    request = json.loads(call.body)
    if status != 200:
        return status, value
    if call.contract == "checkout/PlaceOrder":
        uuid.UUID(value["order_id"])
        assert TRACKING.match(value["shipping_tracking_id"]), value["shipping_tracking_id"]
        value |= {"order_id": "<uuid>", "shipping_tracking_id": "<tracking id>"}
    elif call.contract == "recommendation/ListRecommendations":
        excluded = set(request["product_ids"])
        assert len(set(value)) == len(value) == min(5, len(mix.PRODUCTS) - len(excluded)), value
        assert all(p in mix.BY_ID and p not in excluded for p in value), value
        value = f"<{len(value)} products not in the cart>"
    elif call.contract == "ad/GetAds" and not request["context_keys"]:
        assert len(value) == 2 and all(ad in EVERY_AD for ad in value), value
        value = "<2 random ads>"
    return status, value


def assumptions(calls: Sequence[mix.Call], answers: Sequence[Any]) -> None:
    """What the mix takes for granted about the boutique, checked on its answers."""
    for call, (status, body) in zip(calls, answers, strict=True):
        if call.contract == "catalog/ListProducts":
            assert status == 200 and json.loads(body) == mix.PRODUCTS, "the product list moved"
        if call.contract == "shipping/GetQuote":
            assert status == 200 and json.loads(body) == mix.FLAT_QUOTE, "the quote changed"


def check(fleet: Fleet) -> dict[str, Any]:
    """Each request of the mix once on every system; every boutique answers alike."""
    actions, probes = mix.check_script("check-user"), mix.probes("check-empty")
    calls = [c for a in actions for c in a.calls()] + list(probes)
    reference: list[Any] | None = None
    report: dict[str, Any] = {"calls": len(calls), "systems": {}}
    failed = []
    for name, system in fleet.systems.items():
        if name == "loadgen-floor":
            continue
        answers = exchange(system.front.port, actions, probes)
        unanswered = [body.decode() for status, body in answers if status == 0]
        if unanswered:
            report["systems"][name] = f"failed: no answer to {unanswered[0]}"
            failed.append(name)
            continue
        if name == "asgi-floor":  # canned answers: each of the mix's must be there
            mixed = zip(calls[: -len(probes)], answers[: -len(probes)], strict=True)
            bad = [c.path for c, (status, _) in mixed if status != 200]
            report["systems"][name] = "every call answered" if not bad else f"failed: {bad}"
            failed += [name] if bad else []
            continue
        try:
            assumptions(calls, answers)
            seen = [
                normalised(c, status, body)
                for c, (status, body) in zip(calls, answers, strict=True)
            ]
        except (AssertionError, ValueError, KeyError, TypeError) as exc:
            report["systems"][name] = f"failed: {exc!r}"
            failed.append(name)
            continue
        if reference is None:
            reference, first = seen, name
            report["systems"][name] = "reference"
            continue
        wrong = [
            f"{calls[i].contract}: {first} {ref!r} vs {got!r}"
            for i, (ref, got) in enumerate(zip(reference, seen, strict=True))
            if ref != got
        ]
        report["systems"][name] = f"same answers as {first}" if not wrong else wrong[:3]
        failed += [name] if wrong else []
    report["ok"] = not failed
    return report


# -- measuring


@dataclass
class Config:
    rounds: int
    seconds: float
    warmup: float
    saturation_seconds: float
    actions_per_user: int
    saturation_users: int

    def users(self, rate: float) -> int:
        """Open-loop users at ``rate``: as many as give each the same number of actions
        per run, so that carts fill alike and the mix is the same at every rate."""
        return max(1, round(rate * (self.warmup + self.seconds) / self.actions_per_user))


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def saturation(fleet: Fleet, gen: Loadgen, config: Config) -> dict[str, list[dict[str, Any]]]:
    """Closed loop, ``saturation_users`` users back to back: completed actions per second."""
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in fleet.systems}
    for r in range(config.rounds):
        for name in rotated(list(fleet.systems), r):
            system = fleet.systems[name]
            common = {"port": system.front.port, "users": config.saturation_users, "seed": r}
            session = f"sat{r}"
            gen.ask(op="closed", session=session, seconds=config.warmup, **common)
            before = cpu_seconds(system.pids)
            answer = gen.ask(
                op="closed", session=session, seconds=config.saturation_seconds, **common
            )
            answer["server_cpu"] = cpu_seconds(system.pids) - before
            gen.ask(op="close", session=session)
            results[name].append(answer)
            print(f"  saturation round {r + 1}: {name:16} {answer['achieved']:8.1f} actions/s")
    return results


def rates_for(saturated: dict[str, float]) -> dict[str, list[tuple[str, float]]]:
    """Each system's offered rates: the common ones, then its own up to its saturation."""
    slowest = (
        min(saturated[n] for n in BOUTIQUE if n in saturated)
        if any(n in saturated for n in BOUTIQUE)
        else min(saturated.values())
    )
    common = [(f"common {f:g}", max(1.0, round(slowest * f, 1))) for f in COMMON]
    return {
        name: common + [(f"own {f:g}", max(1.0, round(sat * f, 1))) for f in OWN]
        for name, sat in saturated.items()
    }


def sweep(
    fleet: Fleet, gen: Loadgen, config: Config, rates: dict[str, list[tuple[str, float]]]
) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Open loop at each system's rates, rounds taking the systems in turn."""
    results: dict[str, dict[str, list[dict[str, Any]]]] = {
        name: {key: [] for key, _ in rates[name]} for name in fleet.systems
    }
    for r in range(config.rounds):
        for name in rotated(list(fleet.systems), r):
            system = fleet.systems[name]
            for k, (key, rate) in enumerate(rates[name]):
                session = f"r{r}k{k}"  # the same users and actions for every system
                common = {
                    "port": system.front.port,
                    "users": config.users(rate),
                    "seed": 1000 * r + k,
                }
                gen.ask(op="open", session=session, rate=rate, seconds=config.warmup, **common)
                before = cpu_seconds(system.pids)
                answer = gen.ask(
                    op="open", session=session, rate=rate, seconds=config.seconds, **common
                )
                answer["server_cpu"] = cpu_seconds(system.pids) - before
                answer["offered"] = rate
                gen.ask(op="close", session=session)
                results[name][key].append(answer)
            print(f"  rates round {r + 1}: {name:16} done")
    return results


def rotated(names: list[str], r: int) -> list[str]:
    return names[r % len(names) :] + names[: r % len(names)]


def per_1000(answer: dict[str, Any]) -> float:
    done = answer["actions"] + answer["errors"]
    return 1000 * answer["server_cpu"] / done if done else float("nan")


def point(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One system at one rate: medians over rounds, percentiles over their pooled latencies."""
    pooled = [x for a in rounds for x in a["latencies_ms"]]
    return {
        "offered": rounds[0]["offered"],
        "achieved": statistics.median(a["achieved"] for a in rounds),
        "p50_ms": statistics.median(percentile(a["latencies_ms"], 50) for a in rounds),
        "p90_ms": percentile(pooled, 90),
        "p99_ms": percentile(pooled, 99),
        "errors": sum(a["errors"] for a in rounds),
        "actions": sum(a["actions"] for a in rounds),
        "requests": sum(a["requests"] for a in rounds),
        "cpu_s_per_1000": statistics.median(per_1000(a) for a in rounds),
        "loadgen_cpu_s_per_1000": statistics.median(
            1000 * a["loadgen_cpu"] / max(1, a["actions"]) for a in rounds
        ),
        "rounds": [
            {
                "achieved": a["achieved"],
                "p50_ms": percentile(a["latencies_ms"], 50),
                "p99_ms": percentile(a["latencies_ms"], 99),
                "errors": a["errors"],
                "cpu_s_per_1000": per_1000(a),
                "task_p50_ms": a["task_p50_ms"],
            }
            for a in rounds
        ],
    }


# -- reporting


def ratios(summary: dict[str, Any], fixed: str) -> dict[str, Any]:
    """Ratios within each round, their median and range: at the fixed common rate for
    latency and CPU, and of the saturation throughputs.

    Each is named ``metric: numerator / denominator``. Against the better FastAPI
    variant (the one with the better median for that metric) the numerator is the
    worse one, so that the ratio says how many times better nanobuild is; against the
    floor it is nanobuild, so that it says how far above the floor it stands.
    """
    systems = summary["systems"]

    def rounds_of(name: str, metric: str) -> list[float]:
        if metric == "saturation":
            return [a["achieved"] for a in systems[name]["saturation"]["rounds"]]
        return [a[metric] for a in systems[name]["rates"][fixed]["rounds"]]

    out: dict[str, Any] = {}
    present = [n for n in FASTAPI if n in systems]
    for metric, higher in (("p50_ms", False), ("cpu_s_per_1000", False), ("saturation", True)):
        pairs: list[tuple[str, str]] = []
        if present:
            key = {n: statistics.median(rounds_of(n, metric)) for n in present}
            best = (max if higher else min)(present, key=key.__getitem__)
            for ours in ("fused", "split", "split3"):
                pairs.append((ours, best) if higher else (best, ours))
        pairs.append(("asgi-floor", "fused") if higher else ("fused", "asgi-floor"))
        for top, bottom in pairs:
            if top in systems and bottom in systems:
                each = [
                    t / b
                    for t, b in zip(rounds_of(top, metric), rounds_of(bottom, metric), strict=True)
                ]
                out[f"{metric}: {top} / {bottom}"] = {
                    "median": statistics.median(each),
                    "min": min(each),
                    "max": max(each),
                }
    return out


def table(summary: dict[str, Any], fixed: str) -> str:
    """The headline table (Markdown, to paste as it is), every rate, and the ratios."""
    rate = next(iter(summary["systems"].values()))["rates"][fixed]["offered"]
    lines = [
        f"at the fixed rate of {rate:g} actions/s ({fixed} x the slowest boutique's saturation);"
        f" an action is one page task, {summary['mix']['mean_requests_per_action']:.1f}"
        " HTTP requests on average",
        "",
        "| system | processes | saturation, actions/s | p50 ms | p99 ms | errors "
        "| CPU s / 1,000 actions | cores used | CPU s / 1,000 at saturation | peak RSS MiB |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for s in summary["systems"].values():
        at = s["rates"][fixed]
        cores = at["cpu_s_per_1000"] * at["achieved"] / 1000
        lines.append(
            f"| {s['label']} | {s['processes']} | {s['saturation']['median']:.0f} "
            f"| {at['p50_ms']:.1f} | {at['p99_ms']:.1f} | {at['errors']} "
            f"| {at['cpu_s_per_1000']:.1f} | {cores:.2f} "
            f"| {s['saturation']['cpu_s_per_1000']:.1f} | {s['peak_rss_mib']:.0f} |"
        )
    lines += ["", "every rate (offered -> achieved actions/s: p50 / p99 ms, CPU s per 1,000):"]
    for s in summary["systems"].values():
        cells = [
            f"{p['offered']:g}->{p['achieved']:.0f}: {p['p50_ms']:.1f}/{p['p99_ms']:.1f}, "
            f"{p['cpu_s_per_1000']:.1f}"
            for p in sorted(s["rates"].values(), key=lambda p: p["offered"])
        ]
        lines.append(f"  {s['name']:16} " + "; ".join(cells))
    lines += ["", "ratios (the median of the rounds' ratios, and their range):"]
    for label, r in summary["ratios"].items():
        lines.append(f"  {label:44} {r['median']:6.2f}x  ({r['min']:.2f}-{r['max']:.2f})")
    return "\n".join(lines)


def plots(summary: dict[str, Any], fixed: str) -> list[Path]:
    """system_latency.png (percentiles per offered rate, one panel a system, and every
    system's median together) and system_cpu.png (CPU per 1,000 actions)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    systems = list(summary["systems"].values())
    columns = 4
    rows = (len(systems) + 1 + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3.4 * rows), squeeze=False)
    panels = list(axes.flat)
    for ax, s in zip(panels, systems, strict=False):
        points = sorted(s["rates"].values(), key=lambda p: p["offered"])
        x = [p["offered"] for p in points]
        for key, style in (("p50_ms", "o-"), ("p90_ms", "s--"), ("p99_ms", "^:")):
            ax.plot(x, [p[key] for p in points], style, label=key.removesuffix("_ms"))
        ax.axvline(s["saturation"]["median"], color="grey", lw=0.8, ls="--")
        ax.set_title(s["label"], fontsize=9)
        ax.legend(fontsize=7)
    overview = panels[len(systems)]
    for s in systems:
        points = sorted(s["rates"].values(), key=lambda p: p["offered"])
        overview.plot([p["offered"] for p in points], [p["p50_ms"] for p in points], "o-")
    overview.set_title("p50, every system", fontsize=9)
    overview.legend([s["name"] for s in systems], fontsize=6)
    for ax in panels[: len(systems) + 1]:
        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_formatter(ScalarFormatter())
            axis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("offered actions/s")
        ax.set_ylabel("latency, ms")
    for ax in panels[len(systems) + 1 :]:
        ax.axis("off")
    fig.suptitle("latency of an action per offered rate (grey: closed-loop saturation)")
    fig.tight_layout()
    latency = RESULTS / "system_latency.png"
    fig.savefig(latency, dpi=110)
    plt.close(fig)
    return [latency, cpu_plot(systems, fixed, plt)]


def cpu_plot(systems: list[dict[str, Any]], fixed: str, plt: Any) -> Path:
    """CPU per 1,000 actions at the fixed rate (range of the rounds) and at saturation."""
    fig, ax = plt.subplots(figsize=(9, 4.5))
    rows = range(len(systems))
    values = [s["rates"][fixed]["cpu_s_per_1000"] for s in systems]
    spans = [[r["cpu_s_per_1000"] for r in s["rates"][fixed]["rounds"]] for s in systems]
    low = [v - min(sp) for v, sp in zip(values, spans, strict=True)]
    high = [max(sp) - v for v, sp in zip(values, spans, strict=True)]
    rate = systems[0]["rates"][fixed]["offered"]
    ax.barh([y - 0.2 for y in rows], values, 0.4, xerr=[low, high], label=f"at {rate:g} actions/s")
    saturated = [s["saturation"]["cpu_s_per_1000"] for s in systems]
    ax.barh([y + 0.2 for y in rows], saturated, 0.4, label="at saturation (closed loop)")
    ax.set_yticks(list(rows), [s["label"] for s in systems])
    ax.invert_yaxis()
    ax.set_xlabel("server CPU seconds per 1,000 actions, every process of the system")
    ax.legend()
    fig.tight_layout()
    path = RESULTS / "system_cpu.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def summarise(
    fleet: Fleet,
    sat: dict[str, list[dict[str, Any]]],
    swept: dict[str, dict[str, list[dict[str, Any]]]],
) -> dict[str, Any]:
    systems = {}
    for name, system in fleet.systems.items():
        systems[name] = {
            "name": name,
            "label": system.label,
            "processes": len(system.procs),
            "peak_rss_mib": peak_rss_mib(system.pids),
            "saturation": {
                "median": statistics.median(a["achieved"] for a in sat[name]),
                "cpu_s_per_1000": statistics.median(per_1000(a) for a in sat[name]),
                "rounds": [{"achieved": a["achieved"], "errors": a["errors"]} for a in sat[name]],
            },
            "rates": {key: point(rounds) for key, rounds in swept[name].items()},
        }
    return {"systems": systems}


@contextmanager
def fleet_of(names: Sequence[str], stack: str) -> Iterator[Fleet]:
    with tempfile.TemporaryDirectory(prefix="nano-system-") as tmp:
        fleet = Fleet(names, stack, Path(tmp))
        try:
            fleet.start()
            yield fleet
        finally:
            fleet.stop()


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": os.getloadavg(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def run_check(names: Sequence[str], stack: str) -> int:
    began = time.perf_counter()
    with fleet_of(names, stack) as fleet:
        print(
            f"started {sum(len(s.procs) for s in fleet.systems.values())} processes "
            f"in {time.perf_counter() - began:.1f} s ({stack})"
        )
        report = check(fleet)
    for name, verdict in report["systems"].items():
        print(f"  {name:16} {verdict}")
    if not report["ok"] and stack != "asyncio-h11" and {"split", "split3"} & set(names):
        print(
            "  (nanobuild's split transport refuses uvloop's transports for now: try "
            "--systems fused,fastapi-httpx,fastapi-aiohttp,asgi-floor,loadgen-floor)"
        )
    status = "same answers" if report["ok"] else "DIFFERENT ANSWERS"
    print(
        f"check: {report['calls']} calls per system: {status} ({time.perf_counter() - began:.1f} s)"
    )
    return 0 if report["ok"] else 1


def run_bench(names: Sequence[str], stack: str, config: Config, *, write: bool) -> int:
    began = time.perf_counter()
    start_machine = machine()
    gen = Loadgen()
    try:
        with fleet_of(names, stack) as fleet:
            print(
                f"started {sum(len(s.procs) for s in fleet.systems.values())} processes "
                f"({stack}; load generator on {gen.loop})"
            )
            report = check(fleet)
            if not report["ok"]:
                print(json.dumps(report["systems"], indent=2))
                return 1
            print(f"check: {report['calls']} calls, every boutique answers alike")
            sat = saturation(fleet, gen, config)
            saturated = {n: statistics.median(a["achieved"] for a in sat[n]) for n in sat}
            rates = rates_for(saturated)
            swept = sweep(fleet, gen, config, rates)
            summary = summarise(fleet, sat, swept)
    finally:
        gen.close()
    fixed = f"common {COMMON[FIXED]:g}"
    summary["ratios"] = ratios(summary, fixed)
    summary |= {
        "machine": start_machine,
        "load_average_after": os.getloadavg(),
        "stack": stack,
        "loadgen_loop": gen.loop,
        "config": vars(config),
        "mix": {"tasks": mix.TASKS, "mean_requests_per_action": mix.mean_calls()},
        "fixed_rate": fixed,
        "check": report,
        "seconds": time.perf_counter() - began,
    }
    print()
    print(table(summary, fixed))
    print(f"\n{summary['seconds']:.0f} s; load average before {start_machine['load_average']}")
    if write:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "system.json").write_text(json.dumps(summary, indent=1) + "\n")
        written = [RESULTS / "system.json", *plots(summary, fixed)]
        print("wrote " + ", ".join(str(p.relative_to(REPO)) for p in written))
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only the correctness pass")
    parser.add_argument("--quick", action="store_true", help="a short smoke run, nothing written")
    parser.add_argument("--stack", choices=sorted(STACKS), default="asyncio-h11")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated subset")
    parser.add_argument("--rounds", type=at_least(1), default=3)
    parser.add_argument("--seconds", type=at_least(1), default=3, help="per rate and round")
    parser.add_argument(
        "--actions-per-user",
        type=at_least(1),
        default=6,
        help="open loop: each user's actions in a run (the users' count follows the rate)",
    )
    parser.add_argument(
        "--saturation-users", type=at_least(1), default=16, help="closed loop: concurrent users"
    )
    args = parser.parse_args()
    names = [n for n in args.systems.split(",") if n]
    unknown = [n for n in names if n not in SYSTEMS]
    if unknown or not names:
        parser.error(f"--systems: unknown {', '.join(unknown)}; choose from {', '.join(SYSTEMS)}")
    if args.stack != "asyncio-h11":
        missing = [m for m in ("uvloop", "httptools") if not _importable(m)]
        if missing:
            parser.error(f"--stack {args.stack} needs {' and '.join(missing)} installed")
    if args.check:
        sys.exit(run_check(names, args.stack))
    quick = args.quick
    config = Config(
        rounds=1 if quick else args.rounds,
        seconds=1 if quick else args.seconds,
        warmup=0.5 if quick else 1,
        saturation_seconds=1 if quick else args.seconds,
        actions_per_user=args.actions_per_user,
        saturation_users=args.saturation_users,
    )
    sys.exit(run_bench(names, args.stack, config, write=not quick))


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


if __name__ == "__main__":
    main()
