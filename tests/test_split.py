"""Split mode with the real binary: placement refusals, and faults — a remote killed
with SIGKILL mid-service and restarted — with the callers recovering on their own."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import BOUTIQUE, Binary, Cluster, Server, order, start, start_placement

SECRET = "split-secret-THn04mfAha-zsl6LA4Jb-w"
GROUP_A = ["ad", "cart", "catalog", "currency", "recommendation"]
GROUP_B = ["email", "payment", "shipping", "checkout"]
TIMEOUT = 2.0  # seconds a call to a remote service may take, for these tests


def run(binary: Binary, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        binary.command(*args),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=binary.pyz.parent,
        env={"PATH": "/usr/bin:/bin", **binary.env, **env},
    )


def test_a_process_missing_an_address_refuses_to_start(boutique_binary: Binary) -> None:
    done = run(boutique_binary, "serve", "--only", "checkout", "--port", "0", NANO_SECRET=SECRET)
    assert done.returncode == 2
    assert "cannot start checkout: it calls cart, catalog, currency, email, payment, shipping" in (
        done.stderr
    )
    assert "--remote cart=tcp://HOST:PORT" in done.stderr and "NANO_REMOTE_CART" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--only", "chekout"],
            "--only names chekout, which is not a service of this binary (did you mean checkout?)",
        ),
        (
            ["--only", "recommendation", "--remote", "catalog"],
            "--remote 'catalog': write NAME=tcp://HOST:PORT",
        ),
        (
            ["--only", "recommendation", "--remote", "catalog=tcp://h"],
            "the address of catalog: bad remote address 'tcp://h'",
        ),
        (
            ["--only", "recommendation", "--remote", "recommendation=tcp://h:1"],
            "recommendation runs in this process",
        ),
        (
            ["--only", "ad", "--timeout", "ad=soon"],
            "--timeout ad must be a positive number of seconds",
        ),
        (["--port", "70000"], "--port 70000 is not a TCP port"),
    ],
)
def test_bad_placements_are_refused_in_one_line(
    boutique_binary: Binary, args: list[str], message: str
) -> None:
    done = run(boutique_binary, "serve", *args, NANO_SECRET=SECRET)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "args", [["--only", "recommendation", "--remote=catalog=tcp://h:1"], ["--only", "ad"]]
)
def test_split_mode_needs_the_secret(boutique_binary: Binary, args: list[str]) -> None:
    done = run(boutique_binary, "serve", *args)
    assert done.returncode == 2 and "NANO_SECRET" in done.stderr
    assert "Traceback" not in done.stderr


def test_services_shows_where_each_service_runs(boutique_binary: Binary) -> None:
    done = run(
        boutique_binary, "services", "--only", "recommendation", "--remote=catalog=tcp://h:9"
    )
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line for line in done.stdout.splitlines()[1:]}
    assert set(rows) == set(BOUTIQUE)
    assert "local" in rows["recommendation"]
    assert "remote: tcp://h:9" in rows["catalog"]
    assert "ListRecommendations*" in rows["recommendation"]


def test_remote_addresses_from_the_environment(boutique_binary: Binary, tmp_path: Path) -> None:
    catalog = start(
        boutique_binary.command(
            "serve", "--only", "catalog", "--port", "0", "--internal-port", "0"
        ),
        tmp_path / "catalog.log",
        cwd=boutique_binary.pyz.parent,
        NANO_SECRET=SECRET,
        **boutique_binary.env,
    )
    try:
        assert catalog.internal
        recommend = start(
            boutique_binary.command("serve", "--only", "recommendation", "--port", "0"),
            tmp_path / "recommendation.log",
            cwd=boutique_binary.pyz.parent,
            NANO_SECRET=SECRET,
            NANO_REMOTE_CATALOG=catalog.internal,
            **boutique_binary.env,
        )
        try:
            answer = recommend.call(
                "recommendation", "ListRecommendations", {"user_id": "u", "product_ids": []}
            )
            assert answer.status_code == 200, answer.text
            assert answer.json()  # product ids, fetched from the catalog process
        finally:
            assert recommend.stop() == 0
    finally:
        assert catalog.stop() == 0


# -- faults


ORDER = order("faulty-user", currency="USD")


@pytest.fixture
def mixed(boutique_binary: Binary, tmp_path: Path) -> Iterator[Cluster]:
    timeouts = [f"--timeout={name}={TIMEOUT}" for name in GROUP_A]
    cluster = start_placement(
        boutique_binary, [GROUP_A, GROUP_B], tmp_path, *timeouts, NANO_SECRET=SECRET
    )
    yield cluster
    cluster.stop()


def restart_like(binary: Binary, dead: Server, tmp_path: Path) -> Server:
    """Start group A again, on the internal port the others know it by."""
    assert dead.internal
    port = dead.internal.rsplit(":", 1)[1]
    command = binary.command(
        "serve", "--only", ",".join(GROUP_A), "--port", "0", "--internal-port", port
    )
    return start(
        command, tmp_path / "again.log", cwd=binary.pyz.parent, NANO_SECRET=SECRET, **binary.env
    )


def test_a_killed_remote_gives_unavailable_in_time_and_calls_recover(
    boutique_binary: Binary, mixed: Cluster, tmp_path: Path
) -> None:
    back, front = mixed.servers
    products = front.call("catalog", "ListProducts").json()
    cart_item = {"product_id": products[0]["id"], "quantity": 1}
    assert front.call("cart", "AddItem", {"user_id": "faulty-user", "item": cart_item}).is_success
    assert front.call("checkout", "PlaceOrder", ORDER).status_code == 200

    back.proc.send_signal(signal.SIGKILL)
    back.proc.wait(timeout=10)
    for service, contract, body in [
        ("catalog", "ListProducts", {}),
        ("checkout", "PlaceOrder", ORDER),  # checkout runs here; its call to cart fails
    ]:
        started = time.monotonic()
        answer = front.call(service, contract, body)
        elapsed = time.monotonic() - started
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"]["kind"] == "unavailable"
        assert elapsed < TIMEOUT + 1.0, elapsed  # no call hangs past its timeout
    assert front.http.get("/healthz").status_code == 200  # the caller itself is fine

    again = restart_like(boutique_binary, back, tmp_path)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            answer = front.call("catalog", "ListProducts")
            if answer.status_code == 200:
                break
            time.sleep(0.1)
        assert answer.status_code == 200, answer.text  # recovered, the caller not restarted
        assert answer.json() == products
        assert front.call(
            "cart", "AddItem", {"user_id": "faulty-user", "item": cart_item}
        ).is_success
        order = front.call("checkout", "PlaceOrder", ORDER)
        assert order.status_code == 200, order.text
    finally:
        assert again.stop() == 0


def test_a_remote_that_dies_mid_call_never_leaves_the_caller_hanging(
    mixed: Cluster,
) -> None:
    back, front = mixed.servers
    assert front.call("catalog", "ListProducts").status_code == 200  # connected
    back.proc.send_signal(signal.SIGSTOP)  # alive but silent: the call must time out
    try:
        started = time.monotonic()
        answer = front.call("catalog", "ListProducts")
        elapsed = time.monotonic() - started
        assert answer.status_code == 504, answer.text
        assert answer.json()["error"]["kind"] == "timeout"
        assert TIMEOUT - 0.5 < elapsed < TIMEOUT + 1.5, elapsed
    finally:
        back.proc.send_signal(signal.SIGCONT)
    assert front.call("catalog", "ListProducts").status_code == 200
