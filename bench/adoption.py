"""The shop's gateway request (gateway -> users), before and after adoption, side by side.

Three systems answer ``GET /users/{id}`` on the gateway, which asks users for it:

* original: the example's three apps, one uvicorn process each, the gateway calling
  users over loopback HTTP with its plain ``httpx.AsyncClient``;
* adopted, environment URL: the same files in one binary; the gateway's client is
  still plain httpx, to the ``USERS_URL`` nanobuild sets (loopback, in one process);
* adopted, in memory: a temporary copy of the example whose one client line uses
  ``nanobuild.runtime.httpclient.AsyncClient``, so the call to users never leaves the
  process (the example itself stays plain FastAPI).

Each round times every system in turn (sequential requests over one keep-alive
client); figures are medians per request, ratios medians of the rounds' ratios. The
target: in memory >= 3x faster than the original at the median.

    python bench/adoption.py [--requests 300] [--rounds 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests import shop  # noqa: E402 - the example's own runners
from tests.servers import Binary, Server, build_binary, start  # noqa: E402


def launch(command: list[str], log: Path, *extra: dict[str, str], **env: str) -> Server:
    """``tests.servers.start`` with the environment given as dictionaries too."""
    merged: dict[str, str] = {}
    for part in (*extra, env):
        merged |= part
    starting: Any = start  # its keyword-only cwd would clash with a dict's keys, to mypy
    server: Server = starting(command, log, **merged)
    return server


TARGET = 3.0
ONE_LINE = (
    "return httpx.AsyncClient(base_url=base_url, timeout=10.0)",
    "return __import__('nanobuild.runtime.httpclient').runtime.httpclient"
    ".AsyncClient(base_url=base_url, timeout=10.0)",
)


def timed(url: str, user: int, requests: int) -> float:
    """The median seconds of ``requests`` sequential gateway requests."""
    times = []
    with httpx.Client(base_url=url, timeout=10) as client:
        for _ in range(20):  # warm up
            client.get(f"/users/{user}").raise_for_status()
        for _ in range(requests):
            began = time.perf_counter()
            client.get(f"/users/{user}").raise_for_status()
            times.append(time.perf_counter() - began)
    return statistics.median(times)


def sign_up(url: str) -> int:
    body = {"name": "Ada", "email": f"ada{time.time_ns()}@example.com", "password": "long-enough"}
    answer = httpx.post(f"{url}/signup", json=body, timeout=10)
    answer.raise_for_status()
    return int(answer.json()["id"])


def copy_of_shop(tmp: Path, *, in_memory: bool) -> Path:
    copy = tmp / ("shop-memory" if in_memory else "shop-env")
    shutil.copytree(shop.SHOP, copy, ignore=shutil.ignore_patterns("dist", "data", "__pycache__"))
    if in_memory:
        clients = copy / "gateway" / "clients.py"
        text = clients.read_text()
        assert ONE_LINE[0] in text, "the gateway's client line changed: update ONE_LINE"
        clients.write_text(text.replace(*ONE_LINE))
    return copy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        binaries = {
            name: build_binary(copy_of_shop(tmp / name, in_memory=memory), tmp / f"{name}-build")
            for name, memory in (("env", False), ("memory", True))
        }
        rounds: list[dict[str, float]] = []
        for number in range(args.rounds):
            rounds.append(one_round(tmp / f"round{number}", binaries, args.requests))
    report(rounds)


def one_round(tmp: Path, binaries: dict[str, Binary], requests: int) -> dict[str, float]:
    tmp.mkdir()
    found: dict[str, float] = {}
    (tmp / "original").mkdir()
    with shop.original(tmp / "original") as running:
        url = running["gateway"].url
        found["original"] = timed(url, sign_up(url), requests)
    for name, binary in binaries.items():
        found[name] = serve_and_time(tmp / name, binary, requests)
    return found


def serve_and_time(tmp: Path, binary: Binary, requests: int) -> float:
    tmp.mkdir()
    env = {**shop.service_env(tmp), **binary.env}
    server = launch(binary.command("serve", "--port", "0"), tmp / "log", NANO_STRICT="0", **env)
    try:
        return timed(server.url, sign_up(server.url), requests)
    finally:
        server.stop()


def report(rounds: list[dict[str, float]]) -> None:
    def median(name: str) -> float:
        return statistics.median(r[name] for r in rounds)

    def ratio(of: Callable[[dict[str, float]], float]) -> float:
        return statistics.median(of(r) for r in rounds)

    print(f"gateway GET /users/{{id}} (gateway -> users), median per request, {len(rounds)} rounds")
    for name, label in (
        ("original", "original: three uvicorn processes"),
        ("env", "adopted, environment URL (httpx, loopback)"),
        ("memory", "adopted, nanobuild's client (in memory)"),
    ):
        print(f"  {label:<46} {median(name) * 1e3:8.2f} ms")
    env = ratio(lambda r: r["original"] / r["env"])
    memory = ratio(lambda r: r["original"] / r["memory"])
    verdict = "meets" if memory >= TARGET else "misses"
    print(f"  original / adopted (environment URL)  {env:5.2f}x")
    print(
        f"  original / adopted (in memory)        {memory:5.2f}x"
        f"  ({verdict} the >= {TARGET:g}x target)"
    )


if __name__ == "__main__":
    main()
