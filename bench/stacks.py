"""The server stacks the benchmarks compare side by side, and proof of which one a
process really runs (the shared objects it has mapped)."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import sys
from collections.abc import Coroutine, Iterable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

# stack -> (uvicorn's --loop, its --http); NANO_SERVER_STACK's value for the same
STACKS = {"asyncio-h11": ("asyncio", "h11"), "uvloop-httptools": ("uvloop", "httptools")}
NANO_SETTING = {"asyncio-h11": "asyncio", "uvloop-httptools": "uvloop"}
FAST = ("uvloop", "httptools")  # what the second stack loads and the first does not
FAST_REQUIRES = '["uvloop>=0.19", "httptools>=0.6"]'


def installed() -> list[str]:
    """The stacks this Python can run: uvloop-httptools only where both are importable."""
    fast = all(importlib.util.find_spec(name) is not None for name in FAST)
    return list(STACKS) if fast else ["asyncio-h11"]


def stacks_option(text: str) -> list[str]:
    """An argparse type: stacks separated by commas, each known and installed here."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    for name in names:
        if name not in STACKS:
            raise argparse.ArgumentTypeError(f"{name!r} is not one of {', '.join(STACKS)}")
        if name not in installed():
            raise argparse.ArgumentTypeError(f"{name} needs uvloop and httptools installed")
    if not names or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"{text!r}: name each stack once")
    return names


def add_stack_option(parser: argparse.ArgumentParser) -> None:
    default = ",".join(installed())
    parser.add_argument(
        "--stack",
        type=stacks_option,
        default=installed(),
        help=f"stacks to compare, separated by commas (default here: {default})",
    )


def require_fast(toml: Path, service: str) -> None:
    """Make ``service`` of the workspace at ``toml`` require uvloop and httptools.

    ``nanobuild serve`` runs on its lock's packages only, so a workspace that does
    not name them (nor the runtime's own requirements) has neither to serve with.
    """
    header = f"[services.{service}]\n"
    text = toml.read_text()
    if header not in text or "requires" in text.split(header, 1)[1].split("[", 1)[0]:
        sys.exit(f"{toml}: cannot add uvloop and httptools to {service}'s requires")
    toml.write_text(text.replace(header, f"{header}requires = {FAST_REQUIRES}\n"))


def uvicorn_flags(stack: str) -> list[str]:
    loop, http = STACKS[stack]
    return ["--loop", loop, "--http", http]


def nano_env(stack: str) -> dict[str, str]:
    """The environment that makes nanobuild's server run on ``stack``."""
    return {"NANO_SERVER_STACK": NANO_SETTING[stack]}


def run_on(stack: str, main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on the stack's event loop."""
    if STACKS[stack][0] == "uvloop":
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)


def loaded(pid: int) -> set[str]:
    """Which of uvloop and httptools the process has mapped."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return {name for name in FAST if f"/{name}/" in maps}


def descendants(pid: int | None = None) -> list[int]:
    """Every living process below ``pid`` (this one by default), children first."""
    pid = os.getpid() if pid is None else pid
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children = [int(c) for c in (task / "children").read_text().split()]
        except OSError:  # the thread ended meanwhile
            continue
        for child in children:
            found += [child, *descendants(child)]
    return found


def started_as(command: list[str]) -> int:
    """The pid of this process's descendant whose command line is ``command``."""
    wanted = "\0".join(command) + "\0"
    for pid in descendants():
        try:
            if Path(f"/proc/{pid}/cmdline").read_text() == wanted:
                return pid
        except OSError:
            continue
    sys.exit(f"no process runs {' '.join(command)}")


def check(stack: str, pids: Iterable[int], what: str, *, http: bool = True) -> None:
    """Exit unless the processes together load what ``stack`` needs and no more.

    ``http``: they serve HTTP, so the stack's parser counts, not only its loop.
    """
    pids = list(pids)
    has = set().union(*(loaded(pid) for pid in pids)) if pids else set()
    wanted = set(FAST if http else FAST[:1]) if stack == "uvloop-httptools" else set()
    if has != wanted:
        sys.exit(f"{what} runs with {sorted(has) or 'neither'} of uvloop/httptools, not {stack}")
