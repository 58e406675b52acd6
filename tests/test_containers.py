"""The container machinery, proven on real containers: the mini sample's binary in an
image on the locally built base image, two containers that reach each other by name,
and a compose project whose front starts only once both replicas behind one name are
healthy.

Needs podman (``tests/containers.py`` says what; ``.ci/run`` installs it and sets
``NANO_REQUIRE_PODMAN=1``, so in CI a podman that cannot run fails instead of skipping).
"""

from __future__ import annotations

import datetime
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO, SAMPLES
from tests.containers import SAMPLES as CONTAINER_SAMPLES
from tests.containers import Container, Lab, base_image, podman, require_podman, wait_http
from tests.servers import build_binary

SECRET = "containers-" + secrets.token_urlsafe(32)
ORDER = {"user_id": "u1", "quantity": {"amount": 2}}
PLACED = {"user_name": "Ada", "quantity": {"amount": 2, "unit": "piece"}}
SERVE = ["python3", "/app/mini.pyz", "serve", "--host", "0.0.0.0", "--port", "8000"]


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The mini sample's binary in an image on the local base image, for this module."""
    require_podman()
    base_image()
    folder = tmp_path_factory.mktemp("mini-image")
    binary = build_binary(SAMPLES / "mini", folder)
    with Lab(folder, "image") as images:
        yield images.build_image(binary.pyz)


@pytest.fixture
def lab(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Lab]:
    with Lab(tmp_path, request.node.name) as made:
        yield made


def test_the_image_holds_only_the_binary_and_runs_it_as_a_user(image: str) -> None:
    listing = podman("run", "--rm", image, "ls", "-A", "/app")
    assert listing.split() == ["mini.pyz"]
    who = podman(
        "run",
        "--rm",
        image,
        "sh",
        "-c",
        "id -u; python3 -c 'import sys; print(sys.version_info[:2])'",
    )
    assert who.split("\n", 1) == ["10001", f"{tuple(sys.version_info[:2])}\n"]
    config = json.loads(podman("image", "inspect", "--format", "{{json .Config}}", image))
    assert config["Cmd"] == [*SERVE]


def test_two_containers_reach_each_other_by_name(image: str, lab: Lab) -> None:
    network = lab.network()
    env = {"NANO_SECRET": SECRET}
    users = lab.run(image, "users", *SERVE, "--only", "users", "--internal-port", "9100",
                    network=network, env=env, health="/healthz")  # fmt: skip
    front = lab.run(image, "front", *SERVE, "--only", "orders",
                    f"--remote=users=tcp://{users.name}:9100",
                    network=network, env=env, publish=[8000])  # fmt: skip
    wait_http(front.url() + "/readyz")  # ready: users reached too, so the order is sent
    # the host reaches the front by its published port; the front reaches users by name
    placed = httpx.post(front.url() + "/api/orders/PlaceOrder", json=ORDER, timeout=10)
    assert (placed.status_code, placed.json()) == (200, PLACED), front.logs()
    # and from inside a container, plain HTTP to the other one's name
    fetch = (
        "import json, urllib.request as u;"
        f"r = u.Request('http://{users.name}:8000/api/users/GetUser', b'{{\"id\": \"u1\"}}',"
        " {'content-type': 'application/json'});"
        "print(json.load(u.urlopen(r, timeout=5)))"
    )
    assert front.exec("python3", "-c", fetch).strip() == "{'id': 'u1', 'name': 'Ada'}"
    assert _eventually_healthy(users), users.logs()
    assert front.stop() == 0, front.logs()  # SIGTERM to the binary as PID 1: a clean exit


def test_compose_starts_the_front_once_every_replica_is_healthy(image: str, lab: Lab) -> None:
    services = lab.compose_up(CONTAINER_SAMPLES, NANO_TEST_IMAGE=image, NANO_SECRET=SECRET)
    assert sorted((s, len(cs)) for s, cs in services.items()) == [("front", 1), ("users", 2)]
    [front] = services["front"]
    for replica in services["users"]:
        assert replica.health() == "healthy"
        assert _started(front) > _first_healthy(replica), (front.inspect(), replica.inspect())
    # one name, two replicas: the network's DNS answers with both
    resolve = "import socket; print(sorted({a[4][0] for a in socket.getaddrinfo('users', 9100)}))"
    addresses = sorted(r.address() for r in services["users"])
    assert front.exec("python3", "-c", resolve).strip() == str(addresses)
    wait_http(front.url() + "/readyz")
    placed = httpx.post(front.url() + "/api/orders/PlaceOrder", json=ORDER, timeout=10)
    assert (placed.status_code, placed.json()) == (200, PLACED), front.logs()
    assert _eventually_healthy(front), front.logs()  # the lab runs health checks itself
    lab.compose_down()
    assert podman("ps", "-a", "-q", "--filter", f"name={lab.id}").split() == []


def test_lab_removes_what_it_made_when_the_test_fails(image: str, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="the test failed"), Lab(tmp_path, "fails") as made:
        made.run(image, "idle", "sleep", "600", network=made.network())
        made.compose_up(CONTAINER_SAMPLES, NANO_TEST_IMAGE=image, NANO_SECRET=SECRET)
        raise RuntimeError("the test failed")
    for listing in (["ps", "-a"], ["network", "ls"], ["pod", "ps"]):
        assert made.id not in podman(*listing)
    assert podman("images", "-q", "--filter", f"label=nanobuild.test.lab={made.id}") == ""
    saved = sorted(p.name for p in tmp_path.glob("*.log"))
    assert f"{made.id}-idle.log" in saved and len(saved) == 4, saved


def test_podman_missing_is_named(tmp_path: Path) -> None:
    # what a module that needs podman is told on a machine without it
    probe = "from tests.containers import podman_available as a; print(a())"
    env = {**os.environ, "PATH": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert (
        done.stdout.strip()
        == "podman is not installed (apt-get install podman runc netavark aardvark-dns)"
    )
    required = "from tests.containers import require_podman; require_podman()"
    done = subprocess.run([sys.executable, "-c", required], cwd=REPO, env={**env, "NANO_REQUIRE_PODMAN": "1"},
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 1
    assert "RuntimeError: NANO_REQUIRE_PODMAN=1 but podman is not installed" in done.stderr


def _eventually_healthy(container: Container, timeout: float = 30) -> bool:
    deadline = datetime.datetime.now() + datetime.timedelta(seconds=timeout)
    while datetime.datetime.now() < deadline:
        if container.health() == "healthy":
            return True
        subprocess.run(["sleep", "0.5"], check=True)
    return False


def _started(container: Container) -> datetime.datetime:
    return _time(container.inspect()["State"]["StartedAt"])


def _first_healthy(container: Container) -> datetime.datetime:
    """When the first health check that passed ended."""
    log = container.inspect()["State"]["Health"]["Log"]
    return min(_time(entry["End"]) for entry in log if entry["ExitCode"] == 0)


def _time(text: str) -> datetime.datetime:
    # podman writes nanoseconds and a zone name: 2026-12-01T15:30:25.123456789Z or +00:00 UTC
    day, clock = text.split("T") if "T" in text else text.split(" ", 1)
    hms, _, rest = clock.partition(".")
    digits = "".join(ch for ch in rest if ch.isdigit())[:6].ljust(6, "0")
    return datetime.datetime.fromisoformat(f"{day}T{hms}.{digits}")
