"""Requests per second of the HTTP face vs the same handler as a FastAPI route.

Both servers run under the same uvicorn, one worker, access logs off, as
subprocesses on 127.0.0.1; wrk drives each with the same POST for a few seconds
at 16 connections. Each runs on every stack asked for (``--stack``: uvicorn's
event loop and HTTP parser, asyncio + h11 and uvloop + httptools; nanobuild's by
``NANO_SERVER_STACK``), and the script checks the stack each process has loaded.
Every round measures every server, starting one later each round, so machine
noise hits all alike; each ratio is the median of the rounds' ratios. The
target: nanobuild >= 1.5x FastAPI on the same stack.

nanobuild runs with telemetry off (``NANO_METRICS=0``), as a binary does by default.
``--observe`` measures a third server in the same rounds: nanobuild with metrics on
(``NANO_METRICS=1``) and tracing exporting every span over OTLP/HTTP to a receiver in
this script that takes and drops them; the target there: it keeps at least 85% of the
requests/s of nanobuild off.

    python bench/http_throughput.py [--seconds 5] [--rounds 3] [--connections 16]
                                    [--stack asyncio-h11,uvloop-httptools] [--observe]

Needs wrk on PATH and FastAPI installed (pip install -e ".[bench]").
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import stacks
from workload import PATH, at_least, free_port, running, write_workspace

TARGET = 1.5
OBSERVED_TARGET = 0.85  # observed / off, the requests/s kept with metrics and tracing on
OBSERVED = "nanobuild+observe"
BODY = '{"name": "Ada"}'

WRK_SCRIPT = f"""
wrk.method = "POST"
wrk.body = '{BODY}'
wrk.headers["Content-Type"] = "application/json"
"""


def wrk(port: int, seconds: int, connections: int, script: Path) -> float:
    done = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}{PATH}",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", done.stdout)
    if errors:
        sys.exit(f"wrk saw {errors.group(1)} error answers:\n{done.stdout}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", done.stdout)
    assert match, done.stdout
    return float(match.group(1))


Command = Callable[[int], list[str]]


def nanobuild_command(root: Path) -> Command:
    def command(port: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "nanobuild",
            "serve",
            "--workspace",
            str(root),
            "--port",
            str(port),
        ]

    return command


def fastapi_command(stack: str) -> Command:
    def command(port: int) -> list[str]:
        return [
            *(sys.executable, "-m", "uvicorn", "fastapi_app:app", "--port", str(port)),
            *("--no-access-log", "--log-level", "warning", *stacks.uvicorn_flags(stack)),
        ]

    return command


Servers = dict[tuple[str, str], tuple[Command, dict[str, str]]]


def servers(root: Path, stack_names: list[str], otlp: str | None = None) -> Servers:
    """(server, stack) -> its command for a port, and its environment; with ``otlp``,
    nanobuild observed too, exporting its spans there."""
    table: Servers = {}
    for stack in stack_names:
        off = {**stacks.nano_env(stack), "NANO_METRICS": "0"}  # serve records unless told
        table[("nanobuild", stack)] = (nanobuild_command(root), off)
        if otlp is not None:
            on = {**off, "NANO_METRICS": "1", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": otlp}
            table[(OBSERVED, stack)] = (nanobuild_command(root), on)
        table[("fastapi", stack)] = (fastapi_command(stack), {})
    return table


class Sink:
    """An OTLP/HTTP receiver on 127.0.0.1 that takes every export and drops it."""

    def __init__(self) -> None:
        self.requests = 0
        sink = self

        class Handle(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keeps the connection, as a collector does

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["content-length"]))
                sink.requests += 1
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handle)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def measure(
    root: Path, args: argparse.Namespace, otlp: str | None = None
) -> list[dict[tuple[str, str], float]]:
    """Each round's requests/s of every (server, stack)."""
    table = servers(root, args.stack, otlp)
    order = list(table)
    rounds = []
    for index in range(args.rounds):
        turn = order[index % len(order) :] + order[: index % len(order)]
        result = {}
        for key in turn:
            command, env = table[key]
            port = free_port()
            with running(command(port), port, root, env=env):
                wrk(port, 1, args.connections, root / "post.lua")  # warm-up
                stacks.check(key[1], stacks.descendants(), f"{key[0]} ({key[1]})")
                result[key] = wrk(port, args.seconds, args.connections, root / "post.lua")
        rounds.append(result)
    return rounds


def ratio(
    rounds: list[dict[tuple[str, str], float]], top: tuple[str, str], bottom: tuple[str, str]
) -> str:
    ratios = [r[top] / r[bottom] for r in rounds]
    return f"{statistics.median(ratios):.2f}x (rounds {min(ratios):.2f}-{max(ratios):.2f})"


def report(rounds: list[dict[tuple[str, str], float]], stack_names: list[str]) -> None:
    """Medians per server and stack, then the ratios taken within each round."""
    print(f"{'':32}" + "".join(f"{stack:>20}" for stack in stack_names))
    names = ["nanobuild", *([OBSERVED] if (OBSERVED, stack_names[0]) in rounds[0] else [])]
    for name in (*names, "fastapi"):
        medians = [statistics.median(r[(name, stack)] for r in rounds) for stack in stack_names]
        print(f"{name + ' req/s (median)':32}" + "".join(f"{m:>20,.0f}" for m in medians))
    for stack in stack_names:
        runs = ", ".join(
            f"{r[('nanobuild', stack)]:,.0f}/{r[('fastapi', stack)]:,.0f}" for r in rounds
        )
        print(f"  rounds, {stack} (nanobuild/fastapi): {runs}")
    print()
    for stack in stack_names:
        ratios = [r[("nanobuild", stack)] / r[("fastapi", stack)] for r in rounds]
        verdict = "meets" if statistics.median(ratios) >= TARGET else "MISSES"
        text = ratio(rounds, ("nanobuild", stack), ("fastapi", stack))
        print(f"nanobuild/fastapi on {stack:18} {text}  ({verdict} the >= {TARGET}x target)")
    observed = (OBSERVED, stack_names[0]) in rounds[0]
    for stack in stack_names if observed else []:
        kept = statistics.median(r[(OBSERVED, stack)] / r[("nanobuild", stack)] for r in rounds)
        verdict = "meets" if kept >= OBSERVED_TARGET else "MISSES"
        text = ratio(rounds, (OBSERVED, stack), ("nanobuild", stack))
        print(f"observed/off on {stack:23} {text}  ({verdict} the >= {OBSERVED_TARGET}x target)")
    if len(stack_names) == 2:
        slow, fast = stack_names
        for name in ("nanobuild", "fastapi"):
            print(
                f"{name} {fast}/{slow}: {ratio(rounds, (name, fast), (name, slow))} the requests/s"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=at_least(1), default=5)
    parser.add_argument("--rounds", type=at_least(1), default=3)
    parser.add_argument("--connections", type=at_least(1), default=16)
    parser.add_argument(
        "--observe", action="store_true", help="measure nanobuild with metrics and tracing on too"
    )
    stacks.add_stack_option(parser)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not on PATH (Debian: apt-get install wrk)")

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_workspace(root)
        if "uvloop-httptools" in args.stack:
            stacks.require_fast(root / "nano.toml", "greeter")
        (root / "post.lua").write_text(WRK_SCRIPT)
        sink = Sink() if args.observe else None
        rounds = measure(root, args, sink.url if sink else None)
    print(f"wrk: 1 thread, {args.connections} connections, {args.seconds} s x {args.rounds} rounds")
    report(rounds, args.stack)
    if sink is not None:
        print(f"OTLP exports received (and dropped): {sink.requests}")


if __name__ == "__main__":
    main()
