"""How ``nanobuild check`` scales with the number of services.

Generates synthetic workspaces of N services in a temporary folder, times
``nanobuild check`` on each as a subprocess (an untimed warm-up run, then ``--rounds``
timed runs; every run must exit 0), and prints the median time per size, the time
per service and how the time grows against the size. Run from the
repository root::

    python bench/check_scaling.py                      # N = 50, 100, 200; 3 rounds
    python bench/check_scaling.py --sizes 50,400 --rounds 5

Each service ``sNNN`` lives at ``services/sNNN/sNNN/``: a kernel of 5 contracts
sharing one response struct, and 5 async handlers, each calling the matching
contract of up to 3 dependencies. Service ``i`` depends on ``i-1``, ``i//2`` and
``i//3`` (fewer where these coincide), so the graph is acyclic and every service
but the first has at least one dependency.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from workload import at_least

CONTRACTS = 5  # contracts (and handlers) per service
TARGET_SIZE = 200  # the size the target applies to
TARGET_SECONDS = 2.0


# -- generating a workspace


def service_name(index: int, width: int) -> str:
    return f"s{index:0{width}d}"


def dependencies(index: int) -> list[int]:
    """Up to three distinct lower indices: ``i-1``, ``i//2``, ``i//3``."""
    if index == 0:
        return []
    return sorted(set((index - 1, index // 2, index // 3)), reverse=True)


def kernel_source(name: str) -> str:
    lines = [
        f'"""The public face of {name}: {CONTRACTS} contracts answering one item."""',
        "",
        "import msgspec",
        "",
        "from nanobuild.runtime import Contract",
        "",
        "",
        "class Item(msgspec.Struct, frozen=True):",
        "    id: str",
        "    source: str",
        "    hops: int = 0",
    ]
    for k in range(CONTRACTS):
        lines += [
            "",
            "",
            f"class Get{k}(Contract[Item], frozen=True):",
            f'    """Item {k} of {name}, by id."""',
            "",
            "    id: str",
        ]
    return "\n".join(lines) + "\n"


def handlers_source(name: str, deps: list[str]) -> str:
    contracts = ", ".join([*(f"Get{k}" for k in range(CONTRACTS)), "Item"])
    lines = [f'"""Handlers of {name}: each asks its dependencies, then answers."""', ""]
    for dep in sorted(deps):
        lines += [
            f"from {dep}.kernel import Get{k} as {dep.upper()}Get{k}" for k in range(CONTRACTS)
        ]
    lines += [
        "",
        f"from nanobuild.runtime import {'call, handler' if deps else 'handler'}",
        "",
        f"from .kernel import {contracts}",
    ]
    for k in range(CONTRACTS):
        lines += ["", "", "@handler", f"async def get{k}(req: Get{k}) -> Item:", "    hops = 0"]
        for dep in deps:
            lines.append(f"    hops += (await call({dep.upper()}Get{k}(id=req.id))).hops + 1")
        lines.append(f'    return Item(id=req.id, source="{name}", hops=hops)')
    return "\n".join(lines) + "\n"


def manifest(names: list[str], deps: dict[str, list[str]]) -> str:
    public = ", ".join(f'"Get{k}"' for k in range(CONTRACTS))
    lines = ["[workspace]", 'name = "bench"']
    for name in names:
        depends = ", ".join(f'"{dep}"' for dep in deps[name])
        lines += [
            "",
            f"[services.{name}]",
            f'path = "services/{name}"',
            f"depends = [{depends}]",
            f"public = [{public}]",
        ]
    return "\n".join(lines) + "\n"


def generate(root: Path, size: int) -> None:
    """Write a workspace of ``size`` services into the empty folder ``root``."""
    width = max(3, len(str(size - 1)))
    names = [service_name(i, width) for i in range(size)]
    deps = {names[i]: [names[d] for d in dependencies(i)] for i in range(size)}
    for name in names:
        package = root / "services" / name / name
        package.mkdir(parents=True)
        (package / "__init__.py").write_text(f'"""Synthetic service {name}."""\n')
        (package / "kernel.py").write_text(kernel_source(name))
        (package / "handlers.py").write_text(handlers_source(name, deps[name]))
    (root / "nano.toml").write_text(manifest(names, deps))


# -- timing


def run_check(workspace: Path) -> float:
    """Seconds one ``nanobuild check`` takes; exits loudly if the check does not pass."""
    command = [sys.executable, "-m", "nanobuild", "check", "--workspace", str(workspace)]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        print(f"`nanobuild check` exited {done.returncode} on {workspace}", file=sys.stderr)
        print(done.stdout, done.stderr, sep="\n", file=sys.stderr)
        raise SystemExit(1)
    return elapsed


def measure(base: Path, size: int, rounds: int) -> float:
    """The median seconds of ``rounds`` checks of a fresh ``size``-service workspace."""
    workspace = base / f"n{size}"
    workspace.mkdir()
    generate(workspace, size)
    run_check(workspace)  # warm-up: the first run also proves the workspace is clean
    return statistics.median(run_check(workspace) for _ in range(rounds))


def report(medians: dict[int, float]) -> None:
    first = min(medians)
    header = ("services", "median s", "s/service", "time ratio", "size ratio")
    print("  ".join(f"{word:>10}" for word in header))
    for size, median in sorted(medians.items()):
        print(
            f"{size:>10}  {median:>10.3f}  {median / size:>10.4f}  "
            f"{median / medians[first]:>10.2f}  {size / first:>10.2f}"
        )
    size = TARGET_SIZE if TARGET_SIZE in medians else max(medians)
    verdict = "under" if medians[size] < TARGET_SECONDS else "OVER"
    print(
        f"{size} services: median {medians[size]:.3f} s, {verdict} the {TARGET_SECONDS:g} s target"
    )


def parse_sizes(text: str) -> list[int]:
    sizes = sorted({int(part) for part in text.split(",") if part.strip()})
    if not sizes or sizes[0] < 1:
        raise argparse.ArgumentTypeError("sizes are positive integers, e.g. 50,100,200")
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        type=parse_sizes,
        default=[50, 100, 200],
        help="comma-separated numbers of services (default: 50,100,200)",
    )
    parser.add_argument(
        "--rounds", type=at_least(1), default=3, help="timed runs per size (default: 3)"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the generated workspaces and print where"
    )
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="nanobuild-bench-"))
    try:
        medians = {}
        for size in args.sizes:
            medians[size] = measure(base, size, args.rounds)
            print(f"  {size} services: {medians[size]:.3f} s", file=sys.stderr)
        report(medians)
    finally:
        if args.keep:
            print(f"workspaces kept in {base}", file=sys.stderr)
        else:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
