"""The corpus's "process" cases: kernels that hang, crash or linger, files that are not
files, names that are not text, static links that lead away, and what killed builds
leave behind (see tests/corpus.py for what every case asserts).

The cases that ``bundle`` share one stage cache (a module's), so the packages are
staged once; each still runs in a fresh copy of mini.
"""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import SAMPLES
from tests.corpus import Case, check_unique, run_case

KERNEL = "services/users/users/kernel.py"
KERNEL_TEXT = (SAMPLES / "mini" / KERNEL).read_text(encoding="utf-8")
TOML = (SAMPLES / "mini" / "nano.toml").read_text(encoding="utf-8")
STATIC_TOML = TOML.replace('name = "mini"\n', 'name = "mini"\n\n[ingress]\nstatic = "web"\n', 1)
SHORT = {"NANO_KERNEL_TIMEOUT": "1"}
HUNG = f"{KERNEL} did not finish importing in 1 s"


def kernel(extra: str) -> dict[str, str]:
    """mini's users kernel with ``extra`` run at its import."""
    return {KERNEL: KERNEL_TEXT + "\n" + extra + "\n"}


def static(**files: str) -> dict[str, str]:
    """nano.toml serving ``web``, with ``index.html`` and ``files`` in it."""
    return {"nano.toml": STATIC_TOML, "web/index.html": "INDEX"} | {
        f"web/{rel}": text for rel, text in files.items()
    }


def fifo(rel: str) -> Callable[[Path], None]:
    def make(root: Path) -> None:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        os.mkfifo(path)

    return make


def unix_socket(rel: str) -> Callable[[Path], None]:
    def make(root: Path) -> None:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind(str(root / rel))

    return make


def device(rel: str) -> Callable[[Path], None]:
    """A character device like /dev/null (where mknod is allowed; else a FIFO)."""

    def make(root: Path) -> None:
        try:
            os.mknod(root / rel, stat.S_IFCHR | 0o600, os.makedev(1, 3))
        except OSError:
            os.mkfifo(root / rel)

    return make


def named(folder: str, name: bytes) -> Callable[[Path], None]:
    def make(root: Path) -> None:
        path = os.fsencode(root / folder)
        os.makedirs(path, exist_ok=True)
        with open(path + b"/" + name, "w") as f:
            f.write("X = 1\n")

    return make


def link(rel: str, target: str) -> Callable[[Path], None]:
    def make(root: Path) -> None:
        (root / rel).symlink_to(target)

    return make


def leftover_of_a_dead_build(root: Path) -> None:
    """dist/ as a build killed midway leaves it: its temporary binary, named after it."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    (root / "dist").mkdir()
    (root / "dist" / f".mini.pyz.{dead.pid}.k1ll3d.tmp").write_bytes(b"PK half a zip")


CASES = [
    # -- kernels that hang: each is named within its deadline
    Case(
        "proc-kernel-sleeps",
        files=kernel("import time\ntime.sleep(300)"),
        env=SHORT,
        code="E211",
        names=[HUNG, "NANO_KERNEL_TIMEOUT"],
    ),
    Case(
        "proc-kernel-loops",
        files=kernel("while True:\n    pass"),
        env=SHORT,
        code="E211",
        names=[HUNG],
    ),
    Case(
        "proc-kernel-waits-for-ever",
        files=kernel("import threading\nthreading.Event().wait()"),
        env=SHORT,
        code="E211",
        names=[HUNG],
    ),
    Case(
        "proc-kernel-reads-stdin",
        files=kernel("input()"),
        env=SHORT,
        code="E211",
        names=[HUNG],
    ),
    Case(
        "proc-kernel-starts-a-process-and-hangs",
        files=kernel(
            "import subprocess, sys, time\n"
            "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'])\n"
            "time.sleep(300)"
        ),
        env=SHORT,
        code="E211",
        names=[HUNG],
    ),
    Case(
        "proc-kernel-leaves-a-thread",
        files=kernel(
            "import threading, time\n"
            "threading.Thread(target=time.sleep, args=(300,), name='poller').start()"
        ),
        code="E211",
        names=[f"{KERNEL} leaves a non-daemon thread running", "(poller)"],
    ),
    # -- kernels that end the interpreter: the kernel and how are named
    Case(
        "proc-kernel-os-exit",
        files=kernel("import os\nos._exit(3)"),
        code="E211",
        names=[f"importing {KERNEL} ended the child Python (exit status 3)"],
    ),
    Case(
        "proc-kernel-segfaults",
        files=kernel("import ctypes\nctypes.string_at(0)"),
        code="E211",
        names=[f"importing {KERNEL} ended the child Python (killed by SIGSEGV)"],
    ),
    Case(
        "proc-kernel-kills-itself",
        files=kernel("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"),
        code="E211",
        names=[f"importing {KERNEL} ended the child Python (killed by SIGKILL)"],
    ),
    # -- kernels that are noisy but fine: the report survives them
    Case(
        "proc-kernel-floods-stderr",
        files=kernel("import sys\nsys.stderr.write('x' * 20_000_000)"),
        exit=0,
        names=["all checks passed"],
    ),
    Case(
        "proc-kernel-writes-to-fd-1",
        files=kernel("import os\nos.write(1, b'R{not the report}\\n')"),
        exit=0,
        names=["all checks passed"],
    ),
    Case(
        "proc-kernel-closes-stdout",
        files=kernel("import sys\nsys.stdout.close()"),
        exit=0,
        names=["all checks passed"],
    ),
    Case(
        "proc-kernel-forks",
        files=kernel("import os\nos.fork()"),
        exit=0,
        names=["all checks passed"],
    ),
    Case(
        "proc-kernel-timeout-not-a-number",
        env={"NANO_KERNEL_TIMEOUT": "soon"},
        exit=2,
        code="E122",
        names=["NANO_KERNEL_TIMEOUT='soon'"],
    ),
    # -- the same hangs under bundle and serve
    Case(
        "proc-bundle-kernel-sleeps",
        args=["bundle"],
        files=kernel("import time\ntime.sleep(300)"),
        env=SHORT,
        code="E211",
        names=[HUNG],
        deadline=60,
    ),
    Case(
        "proc-serve-kernel-sleeps",
        args=["serve", "--port", "0"],
        files=kernel("import time\ntime.sleep(300)"),
        env=SHORT,
        code="E211",
        names=[HUNG],
        deadline=60,
    ),
    # -- check killed while a kernel spins: it dies at once, and so does its probe
    Case(
        "proc-check-sigterm-while-a-kernel-spins",
        files=kernel("while True:\n    pass"),
        env={"NANO_KERNEL_TIMEOUT": "60"},
        signal=(1.5, signal.SIGTERM),
        exit=-signal.SIGTERM,
    ),
    Case(
        "proc-check-sigkill-while-a-kernel-spins",
        files=kernel("while True:\n    pass"),
        env={"NANO_KERNEL_TIMEOUT": "60"},
        signal=(1.5, signal.SIGKILL),
        exit=-signal.SIGKILL,
    ),
    # -- what is not a regular file is refused, never opened and waited on
    Case(
        "proc-fifo-module-in-a-package",
        prepare=fifo("services/users/users/pipe.py"),
        code="E114",
        names=["services/users/users/pipe.py: it is not a regular file"],
    ),
    Case(
        "proc-fifo-as-the-kernel",
        prepare=fifo(KERNEL),
        code="E114",
        names=[f"{KERNEL}: it is not a regular file"],
    ),
    Case(
        "proc-fifo-bundle",
        args=["bundle"],
        prepare=fifo("libs/units/units/pipe.py"),
        code="E114",
        names=["libs/units/units/pipe.py: it is not a regular file"],
        deadline=60,
    ),
    Case(
        "proc-fifo-as-nano-toml",
        prepare=fifo("nano.toml"),
        exit=2,
        code="E001",
        names=["nano.toml: it is not a regular file"],
    ),
    Case(
        "proc-fifo-as-nano-lock-bundle",
        args=["bundle"],
        prepare=fifo("nano.lock"),
        exit=1,
        code="E504",
        names=["nano.lock cannot be used: cannot read it: it is not a regular file"],
    ),
    Case(
        "proc-socket-in-a-package",
        prepare=unix_socket("services/users/users/sock.py"),
        code="E114",
        names=["services/users/users/sock.py: it is not a regular file"],
    ),
    Case(
        "proc-device-in-a-package",
        prepare=device("services/users/users/null.py"),
        code="E114",
        names=["services/users/users/null.py: it is not a regular file"],
    ),
    Case(
        "proc-fifo-in-the-static-folder",
        args=["bundle"],
        files=static(),
        prepare=fifo("web/app.js"),
        code="E404",
        names=["web/app.js: it is not a regular file"],
        deadline=60,
    ),
    # -- names that are not text: refused, shown with their escapes
    Case(
        "proc-module-name-not-utf8",
        prepare=named("services/users/users", b"caf\xe9.py"),
        code="E114",
        names=["services/users/users/caf\\xe9.py: its name is not UTF-8 text"],
    ),
    Case(
        "proc-module-name-not-utf8-bundle",
        args=["bundle"],
        prepare=named("libs/units/units", b"\xff\xfe.py"),
        code="E114",
        names=["libs/units/units/\\xff\\xfe.py: its name is not UTF-8 text"],
        deadline=60,
    ),
    Case(
        "proc-static-name-not-utf8",
        args=["bundle"],
        files=static(),
        prepare=named("web", b"logo-\xe9.png"),
        code="E404",
        names=["web/logo-\\xe9.png: its name is not UTF-8 text"],
        deadline=60,
    ),
    Case(
        "proc-file-name-with-a-newline",
        prepare=named("services/users/users", b"a\nE999 forged.py"),
        code="E114",
        names=["services/users/users/a\\nE999 forged.py: its name holds a control character"],
    ),
    # -- static links: what leaves the folder is neither packed nor served
    Case(
        "proc-static-link-to-nano-toml",
        args=["bundle"],
        files=static(),
        prepare=link("web/config.toml", "../nano.toml"),
        code="E409",
        names=["web/config.toml links to nano.toml, outside the static folder web"],
        deadline=60,
    ),
    Case(
        "proc-static-link-out-of-the-workspace",
        args=["bundle"],
        files=static(),
        prepare=link("web/passwd", "/etc/passwd"),
        code="E409",
        names=["web/passwd links to /etc/passwd, outside the static folder web"],
        deadline=60,
    ),
    Case(
        "proc-static-dangling-link",
        args=["bundle"],
        files=static(),
        prepare=link("web/gone.js", "nowhere.js"),
        code="E409",
        names=["web/gone.js links to nothing"],
        deadline=60,
    ),
    Case(
        "proc-static-link-loop",
        args=["bundle"],
        files=static(),
        prepare=link("web/loop", "loop"),
        code="E409",
        names=["web/loop links to nothing"],
        deadline=60,
    ),
    Case(
        "proc-static-dotfiles-and-links-in-pack",
        args=["bundle"],
        files=static(**{".env": "SECRET=1", "app.js": "APP", ".well-known/security.txt": "x"}),
        prepare=link("web/alias.js", "app.js"),
        exit=0,
        names=["dist/mini.pyz"],
        deadline=60,
    ),
    # -- what killed builds leave, and where the binary cannot go
    Case(
        "proc-leftover-of-a-killed-build-is-swept",
        args=["bundle"],
        prepare=leftover_of_a_dead_build,
        exit=0,
        names=["dist/mini.pyz"],
        deadline=60,
    ),
    Case(
        "proc-dist-is-a-file",
        args=["bundle"],
        files={"dist": "not a folder"},
        code="E405",
        names=["dist/mini.pyz"],
        deadline=60,
        tidy=False,  # dist/ is that file, as it was
    ),
    Case(
        "proc-binary-path-is-a-folder",
        args=["bundle"],
        files={"dist/mini.pyz/keep": ""},
        code="E405",
        names=["mini.pyz: it is a folder"],
        deadline=60,
        tidy=False,  # dist/mini.pyz is that folder, as it was
    ),
]
check_unique(CASES)


@pytest.fixture(scope="module")
def stage_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One stage cache for the module's bundles: the packages are staged once."""
    return tmp_path_factory.mktemp("process-stage-cache")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_case(case: Case, tmp_path: Path, stage_cache: Path) -> None:
    result = run_case(case, tmp_path, cache=stage_cache)
    if case.name == "proc-static-dotfiles-and-links-in-pack":
        import zipfile

        with zipfile.ZipFile(result.root / "dist" / "mini.pyz") as archive:
            names = set(archive.namelist())
        static = "site-packages/nano_static/"
        assert {f"{static}alias.js", f"{static}.well-known/security.txt"} <= names
        assert f"{static}.env" not in names
    if case.name == "proc-leftover-of-a-killed-build-is-swept":
        assert sorted(p.name for p in (result.root / "dist").iterdir()) == ["mini.pyz"]
