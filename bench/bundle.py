"""``nanobuild bundle`` of the example workspace: build time, start-up and size.

Measured side by side in one run, medians of ``--rounds``:

* cold bundle (empty staging cache, staged with pip) vs plain shiv packing the same
  content (the same first-party files and requirements, installed by shiv's pip):
  target <= 1.2x; a cold bundle staged with uv is shown too;
* warm rebuild after editing one service file: target <= 0.25x the cold build (pip),
  and < 1 s;
* ``python dist/boutique.pyz info`` warm vs the same command from a source
  checkout (the generated ingress run from the workspace's folders, in this venv):
  target <= 1.2x; first run (extraction into an empty cache): target < 1.5 s;
* binary size vs plain shiv's: target <= 1.05x.

    python bench/bundle.py [--rounds 3]

Needs the network (or a warm pip cache) for the cold builds' package installs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

from workload import at_least

from nanobuild.requirements import RUNTIME_REQUIRES

REPO = Path(__file__).resolve().parent.parent
REQUIRES = list(RUNTIME_REQUIRES)  # what every binary carries, so shiv packs the same


def timed(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def sh(*command: str | Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    done = subprocess.run(
        [str(c) for c in command],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        check=False,
    )
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(map(str, command))}\n{done.stdout}\n{done.stderr}")
    return done.stdout


def copy_workspace(into: Path) -> Path:
    ws = into / "ws"
    ignore = shutil.ignore_patterns("__pycache__", "dist", ".*", "tests", "bench", "*.egg-info")
    shutil.copytree(REPO, ws, ignore=ignore)
    return ws


def bundle(ws: Path, cache: Path, installer: str = "pip") -> Path:
    env = {"NANO_CACHE_DIR": str(cache), "NANO_INSTALLER": installer}
    sh(sys.executable, "-m", "nanobuild", "bundle", "-w", ws, "-q", env=env)
    return ws / "dist" / "boutique.pyz"


def first_party(pyz: Path, into: Path, staged: set[str]) -> Path:
    """The binary's own files (services, runtime, ingress, static), without third-party ones."""
    out = into / "first-party"
    with zipfile.ZipFile(pyz) as archive:
        for name in archive.namelist():
            parts = name.split("/")
            if parts[0] == "site-packages" and len(parts) > 1 and parts[1] not in staged:
                archive.extract(name, into / "unzipped")
    shutil.move(into / "unzipped" / "site-packages", out)
    return out


def third_party_names(cache: Path) -> set[str]:
    [site] = cache.glob("stage/*/site-packages")
    return {entry.name for entry in site.iterdir()}


def plain_shiv(content: Path, out: Path) -> None:
    sh(
        sys.executable, "-m", "shiv", "--site-packages", content, "-o", out,
        "-e", "nano_ingress:main", "--reproducible", "--compile-pyc", "-q", *REQUIRES,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=at_least(1), default=3)
    args = parser.parse_args()
    cold: list[float] = []
    cold_uv: list[float] = []
    shiv: list[float] = []
    warm: list[float] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        ws = copy_workspace(tmp)
        for i in range(args.rounds):
            cache = tmp / f"cache-{i}"
            cold.append(timed(lambda cache=cache: bundle(ws, cache)))  # type: ignore[misc]
            if i == 0:
                pyz = ws / "dist" / "boutique.pyz"
                content = first_party(pyz, tmp, third_party_names(cache))
            out = tmp / f"shiv-{i}.pyz"
            shiv.append(timed(lambda out=out, content=content: plain_shiv(content, out)))  # type: ignore[misc]
            handlers = ws / "services" / "ad" / "ad" / "handlers.py"
            handlers.write_text(handlers.read_text() + f"\n# edit {i}\n")
            warm.append(timed(lambda cache=cache: bundle(ws, cache)))  # type: ignore[misc]
            uv_cache = tmp / f"uv-cache-{i}"
            cold_uv.append(timed(lambda c=uv_cache: bundle(ws, c, "uv")))  # type: ignore[misc]
        pyz = bundle(ws, tmp / "cache-0")
        size, shiv_size = pyz.stat().st_size, (tmp / "shiv-0.pyz").stat().st_size
        first, info, source = start_up(pyz, ws, tmp, args.rounds)

    cold_m, shiv_m, warm_m = (statistics.median(v) for v in (cold, shiv, warm))
    print(f"rounds: {args.rounds} (medians)")
    print(f"cold bundle (pip)    {cold_m:6.2f} s   plain shiv {shiv_m:6.2f} s   "
          f"ratio {cold_m / shiv_m:.2f}x  (target <= 1.2x)")  # fmt: skip
    print(f"cold bundle (uv)     {statistics.median(cold_uv):6.2f} s")
    print(f"warm rebuild         {warm_m:6.2f} s   ratio to cold {warm_m / cold_m:.2f}x  "
          "(target <= 0.25x and < 1 s)")  # fmt: skip
    print(f"first run (extract)  {first:6.3f} s   (target < 1.5 s)")
    print(f"info, warm binary    {info:6.3f} s   from source {source:6.3f} s   "
          f"ratio {info / source:.2f}x  (target <= 1.2x)")  # fmt: skip
    print(f"size                 {size / 2**20:6.2f} MiB plain shiv {shiv_size / 2**20:6.2f} MiB "
          f"ratio {size / shiv_size:.3f}x  (target <= 1.05x)")  # fmt: skip


def start_up(pyz: Path, ws: Path, tmp: Path, rounds: int) -> tuple[float, float, float]:
    """First run, then warm ``info`` of the binary and of the same ingress from source."""
    venv = tmp / "bare"
    sh(sys.executable, "-m", "venv", "--without-pip", venv)
    bare = venv / "bin" / "python"
    home = {"HOME": str(tmp / "home"), "XDG_CACHE_HOME": str(tmp / "home" / ".cache")}
    firsts = []
    for i in range(rounds):
        fresh = {**home, "NANO_APP_CACHE": str(tmp / f"apps-{i}")}
        firsts.append(timed(lambda env=fresh: sh(bare, pyz, "info", env=env)))  # type: ignore[misc]
    source_dir = tmp / "source"
    source_dir.mkdir()
    with zipfile.ZipFile(pyz) as archive:
        (source_dir / "nano_ingress.py").write_bytes(archive.read("site-packages/nano_ingress.py"))
    folders = [p for p in (ws / "services").iterdir() if p.is_dir()] + [ws / "libs" / "money"]
    source_env = {"PYTHONPATH": os.pathsep.join(map(str, [source_dir, *folders]))}
    binary_env = {**home, "NANO_APP_CACHE": str(tmp / "apps-0")}
    info, source = [], []
    for _ in range(max(rounds, 5) * 2):  # alternate, so noise hits both alike
        info.append(timed(lambda: sh(bare, pyz, "info", env=binary_env)))
        source.append(
            timed(lambda: sh(sys.executable, "-m", "nano_ingress", "info", env=source_env))
        )
    return statistics.median(firsts), statistics.median(info), statistics.median(source)


if __name__ == "__main__":
    main()
