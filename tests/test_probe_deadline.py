"""The kernel probe under kernels that hang, crash or linger, and under a killed parent.

Every case runs the real ``nanobuild`` command as a subprocess, with a short
``NANO_KERNEL_TIMEOUT`` so that a hang costs about a second, and asserts that the
kernel at fault is named, that nothing hangs, and that no probe process outlives
the command.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import Sample

USERS_KERNEL = "services/users/users/kernel.py"
ORDERS_KERNEL = "services/orders/orders/kernel.py"
SHORT = {"NANO_KERNEL_TIMEOUT": "1"}


def nanobuild(
    *args: str, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "nanobuild", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    assert "Traceback" not in said(done), done.stderr
    return done


def said(done: subprocess.CompletedProcess[str]) -> str:
    """Everything the command printed (problems that stop a run go to stderr)."""
    return done.stdout + done.stderr


def append(sample: Sample, rel: str, code: str) -> None:
    path = sample.root / rel
    path.write_text(path.read_text() + "\n" + code + "\n")


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(word) for word in text.split()]


@pytest.mark.parametrize(
    "code",
    [
        "import time\ntime.sleep(300)",
        "while True:\n    pass",
        "import threading\nthreading.Event().wait()",
    ],
    ids=["sleeps", "loops", "waits"],
)
def test_a_kernel_that_hangs_is_named_within_its_deadline(mini: Sample, code: str) -> None:
    append(mini, USERS_KERNEL, code)
    started = time.monotonic()
    done = nanobuild("check", "-w", str(mini.root), env=SHORT)
    assert time.monotonic() - started < 15
    assert done.returncode == 1
    assert f"{USERS_KERNEL}: E211 {USERS_KERNEL} did not finish importing in 1 s" in said(done)
    assert "NANO_KERNEL_TIMEOUT" in said(done)


def test_each_kernel_has_its_own_clock(mini: Sample) -> None:
    """Two kernels of 0.6 s each pass a 1 s deadline: it is per kernel, not for all."""
    append(mini, USERS_KERNEL, "import time\ntime.sleep(0.6)")
    append(mini, ORDERS_KERNEL, "import time\ntime.sleep(0.6)")
    done = nanobuild("check", "-w", str(mini.root), env=SHORT)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_second_kernel_is_named_when_it_is_the_one_that_hangs(mini: Sample) -> None:
    append(mini, ORDERS_KERNEL, "import time\ntime.sleep(300)")
    done = nanobuild("check", "-w", str(mini.root), env=SHORT)
    assert f"E211 {ORDERS_KERNEL} did not finish importing in 1 s" in said(done)
    assert USERS_KERNEL not in said(done)


def test_a_kernel_that_ends_the_child_is_named(mini: Sample) -> None:
    append(mini, USERS_KERNEL, "import os, sys\nprint('going', file=sys.stderr)\nos._exit(3)")
    done = nanobuild("check", "-w", str(mini.root))
    assert done.returncode == 1
    assert f"E211 importing {USERS_KERNEL} ended the child Python (exit status 3)" in said(done)
    assert "going" in said(done)  # what it said last comes along, as the hint


def test_a_kernel_that_crashes_the_interpreter_is_named(mini: Sample) -> None:
    append(mini, USERS_KERNEL, "import ctypes\nctypes.string_at(0)")
    done = nanobuild("check", "-w", str(mini.root))
    assert done.returncode == 1
    assert f"E211 importing {USERS_KERNEL} ended the child Python (killed by SIGSEGV)" in said(done)


def test_a_kernel_that_leaves_a_thread_running_is_named(mini: Sample) -> None:
    append(
        mini,
        USERS_KERNEL,
        "import threading, time\n"
        "threading.Thread(target=time.sleep, args=(300,), name='poller').start()",
    )
    started = time.monotonic()
    done = nanobuild("check", "-w", str(mini.root))
    assert time.monotonic() - started < 15
    assert done.returncode == 1
    assert f"E211 {USERS_KERNEL} leaves a non-daemon thread running after its import" in said(done)
    assert "(poller)" in said(done)


def test_a_thread_that_ends_soon_or_a_daemon_is_fine(mini: Sample) -> None:
    append(
        mini,
        USERS_KERNEL,
        "import threading, time\n"
        "threading.Thread(target=time.sleep, args=(0.05,)).start()\n"
        "threading.Thread(target=time.sleep, args=(300,), daemon=True).start()",
    )
    done = nanobuild("check", "-w", str(mini.root))
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_hung_kernels_own_processes_go_with_it(mini: Sample, tmp_path: Path) -> None:
    """A kernel that starts a process holding the child's stderr, then hangs: the deadline
    still ends the check, and that process is killed with the child's group."""
    pid_file = tmp_path / "grandchild"
    append(
        mini,
        USERS_KERNEL,
        "import subprocess, sys, time\n"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(p.pid))\n"
        "time.sleep(300)",
    )
    done = nanobuild("check", "-w", str(mini.root), env=SHORT)
    assert f"E211 {USERS_KERNEL} did not finish importing in 1 s" in said(done)
    grandchild = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(grandchild)


@pytest.mark.parametrize("value", ["soon", "0", "-1", "nan", "inf", "7200"])
def test_a_timeout_that_is_not_a_number_of_seconds_is_refused(mini: Sample, value: str) -> None:
    done = nanobuild("check", "-w", str(mini.root), env={"NANO_KERNEL_TIMEOUT": value})
    assert done.returncode == 2
    assert f"NANO_KERNEL_TIMEOUT: E122 NANO_KERNEL_TIMEOUT={value!r} is not a number" in said(done)


def test_a_longer_timeout_lets_a_slow_kernel_pass(mini: Sample) -> None:
    append(mini, USERS_KERNEL, "import time\ntime.sleep(1.3)")
    assert nanobuild("check", "-w", str(mini.root), env=SHORT).returncode == 1
    done = nanobuild("check", "-w", str(mini.root), env={"NANO_KERNEL_TIMEOUT": "5"})
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_the_probe_never_outlives_check(mini: Sample, signum: signal.Signals) -> None:
    """``check`` killed while a kernel spins: its probe child goes too, at once."""
    append(mini, USERS_KERNEL, "while True:\n    pass")
    check = subprocess.Popen(
        [sys.executable, "-m", "nanobuild", "check", "-w", str(mini.root)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "NANO_KERNEL_TIMEOUT": "60"},
    )
    try:
        deadline = time.monotonic() + 20
        while not children(check.pid):
            assert time.monotonic() < deadline, "check never started its probe"
            time.sleep(0.05)
        [child] = children(check.pid)
        time.sleep(1.0)  # well into the kernel's loop
        assert alive(child)
        check.send_signal(signum)
        check.wait(timeout=10)
        deadline = time.monotonic() + 5
        while alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(child), "the probe outlived check"
    finally:
        check.kill()
        check.wait()


def test_bundle_names_a_hanging_kernel_and_writes_nothing(mini: Sample) -> None:
    append(mini, USERS_KERNEL, "import time\ntime.sleep(300)")
    done = nanobuild("bundle", "-w", str(mini.root), env=SHORT, timeout=120)
    assert done.returncode == 1
    assert f"E211 {USERS_KERNEL} did not finish importing in 1 s" in said(done)
    assert not (mini.root / "dist").exists() or not list((mini.root / "dist").iterdir())


def test_serve_names_a_hanging_kernel_and_does_not_serve(mini: Sample) -> None:
    append(mini, USERS_KERNEL, "import time\ntime.sleep(300)")
    done = nanobuild("serve", "-w", str(mini.root), "--port", "0", env=SHORT, timeout=120)
    assert done.returncode == 1
    assert f"E211 {USERS_KERNEL} did not finish importing in 1 s" in said(done)
