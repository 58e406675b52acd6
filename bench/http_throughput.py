"""Requests per second of the HTTP face vs the same handler as a FastAPI route.

Both servers run under the same uvicorn, one worker, access logs off, as
subprocesses on 127.0.0.1; wrk drives each with the same POST for a few seconds
at 16 connections. Rounds alternate between the two servers so machine noise hits
both alike; the medians are compared. The issue's target: nanobuild >= 1.5x FastAPI.

    python bench/http_throughput.py [--seconds 5] [--rounds 3] [--connections 16]

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
from collections.abc import Callable
from pathlib import Path

from workload import PATH, at_least, free_port, running, write_workspace

TARGET = 1.5
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=at_least(1), default=5)
    parser.add_argument("--rounds", type=at_least(1), default=3)
    parser.add_argument("--connections", type=at_least(1), default=16)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not on PATH (Debian: apt-get install wrk)")

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_workspace(root)
        (root / "post.lua").write_text(WRK_SCRIPT)
        servers: dict[str, Callable[[int], list[str]]] = {
            "nanobuild": lambda port: [
                sys.executable,
                "-m",
                "nanobuild",
                "serve",
                "--workspace",
                str(root),
                "--port",
                str(port),
            ],
            "fastapi": lambda port: [
                sys.executable,
                "-m",
                "uvicorn",
                "fastapi_app:app",
                "--port",
                str(port),
                "--no-access-log",
                "--log-level",
                "warning",
            ],
        }
        rps: dict[str, list[float]] = {name: [] for name in servers}
        for _ in range(args.rounds):
            for name, command in servers.items():
                port = free_port()
                with running(command(port), port, root):
                    wrk(port, 1, args.connections, root / "post.lua")  # warm-up
                    rps[name].append(wrk(port, args.seconds, args.connections, root / "post.lua"))

    print(f"wrk: 1 thread, {args.connections} connections, {args.seconds} s x {args.rounds} rounds")
    for name, values in rps.items():
        runs = ", ".join(f"{v:,.0f}" for v in values)
        print(f"{name:10} median {statistics.median(values):10,.0f} req/s   ({runs})")
    ratio = statistics.median(rps["nanobuild"]) / statistics.median(rps["fastapi"])
    verdict = "meets" if ratio >= TARGET else "MISSES"
    print(f"ratio nanobuild/fastapi: {ratio:.2f}x  ({verdict} the >= {TARGET}x target)")


if __name__ == "__main__":
    main()
