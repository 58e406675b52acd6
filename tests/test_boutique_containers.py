"""The boutique's own placement as real containers: what `nano.toml` says (front;
catalog with two replicas; basket), bundled, `nanobuild deploy compose` run for real,
the image built from the Containerfile it wrote on the local base image, and the
compose.yaml it wrote brought up. Over HTTP, through the front door: an order is
placed; one catalog replica is SIGKILLed and orders keep succeeding; the whole catalog
group is stopped and the front door's ``/readyz`` says 503, naming the group's
services, until the group returns, when it says 200 and orders go through again.

The tests run in order, on one deployment made once for the module. Needs podman
(``tests/containers.py`` says what; ``.ci/run`` installs it and sets
``NANO_REQUIRE_PODMAN=1``, so in CI a podman that cannot run fails instead of skipping).
"""

from __future__ import annotations

import dataclasses
import os
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import REPO
from tests.containers import Container, Lab, podman, require_podman, wait_http
from tests.servers import build_binary, order

GROUPS = {"basket": 1, "catalog": 2, "front": 1}  # nano.toml's placement: group -> replicas
CATALOG_GROUP = ["ad", "catalog", "recommendation"]  # its [placement.catalog] services
INTERNAL_PORT = 9100  # where a group answers the others: the placement's default
HTTP_TIMEOUT = 20.0  # one request through the front door, however the groups fare
ORDERS_AFTER_A_KILL = 6


@dataclasses.dataclass
class Boutique:
    """The running deployment: its lab, the front door and the catalog replicas."""

    lab: Lab
    front: Container
    catalog: list[Container]
    http: httpx.Client  # to the front door's published port
    products: list[str]  # three product ids, put in each order's cart


@pytest.fixture(scope="module")
def boutique(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Boutique]:
    require_podman()
    tmp = tmp_path_factory.mktemp("boutique-containers")
    binary = build_binary(REPO, tmp)  # bundles a copy of the workspace in tmp/ws
    workspace, out = tmp / "ws", tmp / "ws" / "deploy"
    deployed = subprocess.run(
        [sys.executable, "-m", "nanobuild", "deploy", "compose", "--workspace", str(workspace),
         "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert deployed.returncode == 0, deployed.stderr
    _write_secret(out / "nano_secret", binary.command("secret"), binary.env)
    with Lab(tmp, "boutique") as lab:
        image = lab.build_containerfile(out / "Containerfile", workspace)
        _for_this_machine(out / "compose.yaml", image)
        services = lab.compose_up(out)
        assert {name: len(cs) for name, cs in services.items()} == GROUPS
        [front] = services["front"]
        wait_http(front.url() + "/healthz")
        with httpx.Client(base_url=front.url(), timeout=HTTP_TIMEOUT) as http:
            listed = http.post("/api/catalog/ListProducts", json={})
            assert listed.status_code == 200, f"{listed.text}\n{front.logs()}"
            products = [p["id"] for p in listed.json()[:3]]
            yield Boutique(lab, front, services["catalog"], http, products)


def _write_secret(path: Path, command: list[str], env: dict[str, str]) -> None:
    """The binary's own fresh secret, readable by the containers' user (uid 10001)."""
    made = subprocess.run(
        command, capture_output=True, text=True, timeout=60, env={**os.environ, **env}
    )
    assert made.returncode == 0, made.stderr
    path.write_text(made.stdout)
    path.chmod(0o644)


def _for_this_machine(compose: Path, image: str) -> None:
    """The two changes a shared test machine needs in the generated file: the image this
    lab built (removed with it) and a host port the system picks, not 8000."""
    text = compose.read_text()
    for old, new, count in [
        ('image: "localhost/boutique:latest"', f'image: "{image}"', len(GROUPS)),
        ('- "8000:8000"', '- "127.0.0.1::8000"', 1),
    ]:
        assert text.count(old) == count, f"{old!r} is not {count}x in:\n{text}"
        text = text.replace(old, new)
    compose.write_text(text)


def test_an_order_goes_through_the_front_door(boutique: Boutique) -> None:
    ready = boutique.http.get("/readyz")
    assert ready.status_code == 200, ready.text
    # the front door's name of the group behind it answers with both replicas
    resolve = (
        "import socket; "
        f"print(sorted({{a[4][0] for a in socket.getaddrinfo('catalog', {INTERNAL_PORT})}}))"
    )
    addresses = sorted(r.address() for r in boutique.catalog)
    assert boutique.front.exec("python3", "-c", resolve).strip() == str(addresses)
    placed = _order(boutique, "ada")
    assert placed.status_code == 200, f"{placed.text}\n{boutique.front.logs()}"
    assert sorted(i["product_id"] for i in placed.json()["items"]) == sorted(boutique.products)


def test_orders_keep_succeeding_with_a_catalog_replica_killed(boutique: Boutique) -> None:
    survivor, victim = boutique.catalog
    # the front door spreads calls over both replicas: connected to each before the kill
    both = {survivor.address(), victim.address()}
    _until(
        lambda: _peers(boutique.front) >= both,
        "the front door is connected to both catalog replicas",
        nudge=lambda: _get_product(boutique),
    )
    victim.kill()  # SIGKILL: no goodbye to its callers
    assert not victim.running() and survivor.running()
    answers = [_order(boutique, f"after-kill-{i}") for i in range(ORDERS_AFTER_A_KILL)]
    failed = [(a.status_code, a.text) for a in answers if a.status_code != 200]
    assert failed == [], f"{failed}\n{boutique.front.logs()}"
    assert survivor.running()
    body = _until_ready(boutique, 200)  # one replica is enough to be ready
    assert body["not_ready"] == [], body


def test_a_stopped_group_is_not_ready_until_it_returns(boutique: Boutique) -> None:
    running = [replica for replica in boutique.catalog if replica.running()]
    internal = ["tcp://", boutique.front.address(), *(r.address() for r in running)]
    exits = [replica.stop() for replica in running]
    body = _until_ready(boutique, 503)
    assert sorted(entry["service"] for entry in body["not_ready"]) == CATALOG_GROUP, body
    # an order now fails at once as unavailable, and shows no internal address
    refused = _order(boutique, "while-down")
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"]["kind"] == "unavailable", refused.text
    assert not any(a in refused.text for a in internal), refused.text

    for replica in boutique.catalog:
        replica.start()
    _until_ready(boutique, 200, timeout=90)
    placed = _order(boutique, "after-return")
    assert placed.status_code == 200, f"{placed.text}\n{boutique.front.logs()}"
    # both replicas adopted again, at the addresses they came back with
    back = {replica.address() for replica in boutique.catalog}
    _until(
        lambda: _peers(boutique.front) >= back,
        "the front door is connected to both returned catalog replicas",
        nudge=lambda: _get_product(boutique),
    )
    assert set(exits) == {0}, [r.logs() for r in boutique.catalog]  # SIGTERM: a clean exit


# -- helpers


def _order(boutique: Boutique, user: str) -> httpx.Response:
    """Put the three products in ``user``'s cart and place the order (checkout runs in
    the front group: it prices each item at a catalog replica)."""
    for product in boutique.products:
        item = {"product_id": product, "quantity": 1}
        added = boutique.http.post("/api/cart/AddItem", json={"user_id": user, "item": item})
        assert added.status_code == 200, added.text
    return boutique.http.post("/api/checkout/PlaceOrder", json=order(user))


def _get_product(boutique: Boutique) -> None:
    boutique.http.post("/api/catalog/GetProduct", json={"id": boutique.products[0]})


def _until_ready(boutique: Boutique, status: int, timeout: float = 30) -> dict[str, Any]:
    """``/readyz``'s body once it answers ``status``; fail, showing the last, if it never does."""
    seen: list[httpx.Response] = []

    def answers() -> bool:
        seen.append(boutique.http.get("/readyz"))
        return seen[-1].status_code == status

    _until(answers, f"/readyz answers {status}", timeout=timeout, shown=lambda: seen[-1].text)
    body: dict[str, Any] = seen[-1].json()
    return body


def _until(
    check: Callable[[], bool],
    what: str,
    *,
    timeout: float = 30,
    nudge: Callable[[], object] | None = None,
    shown: Callable[[], str] = lambda: "",
) -> None:
    """Wait until ``check()`` holds (calling ``nudge`` before each look); fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        if nudge is not None:
            nudge()
        if check():
            return
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout:.0f} s: {what} {shown()}")
        time.sleep(0.25)


def _peers(container: Container, port: int = INTERNAL_PORT) -> set[str]:
    """The addresses ``container`` has an established IPv4 TCP connection to, at ``port``."""
    found = set()
    for row in podman("exec", container.name, "cat", "/proc/net/tcp").splitlines()[1:]:
        remote, state = row.split()[2:4]
        host, _, hexport = remote.partition(":")
        if state == "01" and int(hexport, 16) == port:  # 01: ESTABLISHED
            found.add(socket.inet_ntoa(struct.pack("<I", int(host, 16))))
    return found
