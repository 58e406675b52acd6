"""``/healthz`` and ``/readyz`` of real binaries split over processes on 127.0.0.1, and
public error bodies that name a service that is down but never where it runs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest

from tests.conftest import Sample
from tests.corpus import SECRET, binary
from tests.servers import Binary, Server, free_port, start

ORDER = {"user_id": "u1", "quantity": {"amount": 2}}
TRUSTED = {"nano-secret": SECRET}
UNRESOLVABLE = "tcp://no-such-host.invalid:9100"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Binary:
    return binary(tmp_path_factory)  # built once per session, shared with the corpus


def serve(built: Binary, log: Path, *args: str) -> Server:
    """``built`` serving on a port the system picks, with the shared secret."""
    command = built.command("serve", "--port", "0", *args)
    return start(command, log, {**built.env, "NANO_SECRET": SECRET}, cwd=built.pyz.parent)


def users_at(built: Binary, log: Path, port: int) -> Server:
    return serve(built, log, "--only", "users", "--internal-port", str(port))


def orders_to(built: Binary, log: Path, users: str) -> Server:
    return serve(
        built, log, "--only", "orders", "--internal-port", "0", "--remote", f"users={users}"
    )


def answer_of(server: Server, path: str, status: int, within: float) -> httpx.Response:
    """The first answer of ``path`` with ``status``, asked until ``within`` seconds pass."""
    deadline = time.monotonic() + within
    while True:
        response = server.http.get(path)
        if response.status_code == status or time.monotonic() > deadline:
            assert response.status_code == status, response.text
            return response
        time.sleep(0.1)


@pytest.fixture
def stopped(request: pytest.FixtureRequest) -> Iterator[list[Server]]:
    """Servers a test started, stopped at its end however it ends."""
    servers: list[Server] = []
    yield servers
    for server in reversed(servers):
        if server.proc.poll() is None:
            server.stop()


def test_ready_while_the_callee_is_up_not_while_it_is_down_and_again_once_it_is_back(
    built: Binary, tmp_path: Path, stopped: list[Server]
) -> None:
    port = free_port()
    users = users_at(built, tmp_path / "users.log", port)
    orders = orders_to(built, tmp_path / "orders.log", f"tcp://127.0.0.1:{port}")
    stopped += [users, orders]
    ready = orders.http.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json() == {
        "status": "ready",
        "started": True,
        "checked": ["users", "orders"],
        "not_ready": [],
    }
    assert ready.headers["cache-control"] == "no-store"
    assert users.http.get("/readyz").json()["checked"] == ["users"]  # it needs no remote

    assert users.stop() == 0
    down = answer_of(orders, "/readyz", 503, within=3)
    assert down.json() == {
        "status": "not ready",
        "started": True,
        "checked": ["users", "orders"],
        "not_ready": [{"service": "users", "reason": "connection refused"}],
    }
    alive = orders.http.get("/healthz")
    assert alive.status_code == 200 and alive.json()["remote"] == ["users"]

    stopped.append(users_at(built, tmp_path / "users-again.log", port))
    started = time.monotonic()
    answer_of(orders, "/readyz", 200, within=5)
    assert time.monotonic() - started < 5
    assert orders.call("orders", "PlaceOrder", ORDER).status_code == 200
    assert orders.http.get("/healthz").status_code == 200


def test_a_probe_storm_is_answered_in_time_from_one_check(
    built: Binary, tmp_path: Path, stopped: list[Server]
) -> None:
    port = free_port()  # nothing listens there: every check fails
    orders = orders_to(built, tmp_path / "orders.log", f"tcp://127.0.0.1:{port}")
    stopped.append(orders)
    started = time.monotonic()
    answers = [orders.http.get("/readyz") for _ in range(60)]
    elapsed = time.monotonic() - started
    assert {a.status_code for a in answers} == {503}
    assert elapsed < 10, elapsed  # each well within a probe's default second
    # one check per second at most: the cached body comes back as it was
    assert len({a.content for a in answers}) == 1
    assert orders.log().count("cannot reach") == 1  # one line per outage, not per probe


def test_an_unresolvable_remote_at_start_serves_and_is_not_ready(
    built: Binary, tmp_path: Path, stopped: list[Server]
) -> None:
    orders = orders_to(built, tmp_path / "orders.log", UNRESOLVABLE)
    stopped.append(orders)
    assert orders.http.get("/healthz").status_code == 200
    down = orders.http.get("/readyz")
    assert down.status_code == 503, down.text
    [missing] = down.json()["not_ready"]
    assert missing["service"] == "users"
    assert missing["reason"] in ("its host name does not resolve", "no connection within 0.5 s")
    public = orders.call("orders", "PlaceOrder", ORDER)
    assert public.status_code == 503
    for answer in (down, public):
        assert "no-such-host" not in answer.text and "9100" not in answer.text
    assert "no-such-host.invalid" in orders.log()  # the operator's line names it
    assert orders.proc.poll() is None and "Traceback" not in orders.log()


def assert_names_no_address(text: str, port: int) -> None:
    for leak in ("tcp://", "http://", "127.0.0.1", str(port)):
        assert leak not in text, f"{leak!r} in {text}"


def test_public_5xx_bodies_name_the_service_and_class_never_its_address(
    built: Binary, tmp_path: Path, stopped: list[Server]
) -> None:
    port = free_port()  # users is down: nothing listens there
    orders = orders_to(built, tmp_path / "orders.log", f"tcp://127.0.0.1:{port}")
    stopped.append(orders)
    placed = orders.call("orders", "PlaceOrder", ORDER)  # its handler's call to users fails
    direct = orders.call("users", "GetUser", {"id": "u1"})  # reached over TCP from here
    packed = orders.call_msgpack("users", "GetUser", {"id": "u1"})
    for answer in (placed, direct):
        assert answer.status_code == 503, answer.text
        assert_names_no_address(answer.text, port)
        assert answer.json()["error"] == {
            "kind": "unavailable",
            "message": "users is unavailable (Unsent): the call was not sent, so it did not run",
            "service": "users",
            "contract": "GetUser",
        }
    assert packed.status_code == 503
    assert_names_no_address(msgspec.msgpack.decode(packed.content)["error"]["message"], port)
    # operators keep the address: the log, and callers that hold the secret
    assert f"users.GetUser: unavailable: cannot reach tcp://127.0.0.1:{port}" in orders.log()
    trusted = orders.call("users", "GetUser", {"id": "u1"}, headers=TRUSTED)
    assert f"cannot reach tcp://127.0.0.1:{port}" in trusted.json()["error"]["message"]


def test_an_error_from_two_hops_away_reaches_the_public_without_an_address(
    built: Binary, tmp_path: Path, stopped: list[Server]
) -> None:
    port = free_port()  # users is down
    orders = orders_to(built, tmp_path / "orders.log", f"tcp://127.0.0.1:{port}")
    stopped.append(orders)
    # a front door that runs users itself, and reaches orders through its HTTP face
    front = serve(
        built, tmp_path / "front.log", "--only", "users", "--remote", f"orders={orders.url}"
    )
    stopped.append(front)
    assert front.http.get("/readyz").status_code == 200  # orders' /healthz answers
    answer = front.call("orders", "PlaceOrder", ORDER)
    assert answer.status_code == 503, answer.text
    assert_names_no_address(answer.text, port)
    assert answer.json()["error"]["message"].startswith("users is unavailable (Unavailable): ")
    assert f"tcp://127.0.0.1:{port}" in front.log()  # the secret-holding hop was told

    assert orders.stop() == 0
    down = answer_of(front, "/readyz", 503, within=3)
    assert down.json()["not_ready"] == [{"service": "orders", "reason": "connection refused"}]
    assert_names_no_address(down.text, orders.port)


def test_an_app_mounted_at_the_root_does_not_shadow_health(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, stopped: list[Server]
) -> None:
    adopt = binary(tmp_path_factory, "adopt")  # its gateway app is mounted at "/"
    gateway = start(adopt.command("serve", "--port", "0"), tmp_path / "adopt.log", adopt.env)
    stopped.append(gateway)
    alive = gateway.http.get("/healthz")
    assert alive.status_code == 200 and alive.json()["status"] == "ok"
    ready = gateway.http.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert gateway.http.post("/readyz").status_code == 405  # nanobuild's, not the app's 404
    assert gateway.http.get("/profile/u1").json()["models"] == "gateway"  # the app's own
    assert gateway.http.get("/no-such-page").status_code == 404  # the app's 404, as before


def test_a_contract_route_cannot_take_the_readiness_path(mini: Sample) -> None:
    kernel = "services/users/users/kernel.py"
    imports = "from typing import ClassVar\n\nfrom nanobuild.runtime import Contract, Route"
    mini.edit(kernel, "from nanobuild.runtime import Contract", imports)
    declared = '    http: ClassVar[Route] = Route("GET /readyz")\n'
    mini.edit(
        kernel,
        "class GetUser(Contract[User], frozen=True):\n",
        f"class GetUser(Contract[User], frozen=True):\n{declared}",
    )
    d = mini.only("E230")
    assert "/readyz is the HTTP face's own" in d.message
