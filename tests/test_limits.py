"""The servers' limits, against the real binary on 127.0.0.1: deadlines for request
heads, bodies, idle connections and TCP handshakes, a connection cap that evicts the
slow before it refuses the busy, failed accepts logged once per burst, and a log that
stays small whatever a flood of peers does (asyncio and uvloop stacks alike)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from nanobuild.runtime.errors import SettingsError
from nanobuild.runtime.limits import Gate
from nanobuild.runtime.settings import Limits, Settings
from tests.corpus import address, binary, fd_limit, held_open, serving
from tests.servers import Server, start

STACKS = ["asyncio", "uvloop"]
HALF_HEAD = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "  # never ended
GOOD_USER = {"id": "u1"}
ORDER = {"user_id": "u1", "quantity": {"amount": 2}}


@contextlib.contextmanager
def mini(factory: pytest.TempPathFactory, stack: str, *extra: str, **env: str) -> Iterator[Server]:
    """The mini sample's binary, fused, on ``stack``, with ``env`` (limits) set."""
    built = binary(factory)
    log = factory.mktemp("limits") / "server.log"
    server = start(
        [*built.serve(), *extra],
        log,
        {**built.env, "NANO_SERVER_STACK": stack, **env},
        cwd=built.pyz.parent,
    )
    try:
        yield server
    finally:
        server.stop()


def connected(server: Server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=5)


def closed(sock: socket.socket, within: float) -> bool:
    """Whether the server closed ``sock`` (EOF or reset) within ``within`` seconds."""
    sock.settimeout(within)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except OSError:
        return True  # reset
    return True


def still_open(socks: list[socket.socket]) -> int:
    """How many of ``socks`` the server has not closed (nothing waits to be read)."""
    count = 0
    for sock in socks:
        sock.setblocking(False)
        try:
            count += sock.recv(1) != b""
        except BlockingIOError:
            count += 1
        except OSError:
            pass
    return count


def grown(server: Server, since: int) -> str:
    """What ``server`` logged after byte ``since`` of its log."""
    with server.log_path.open("rb") as log:
        log.seek(since)
        return log.read().decode(errors="replace")


def lines_with(text: str, needle: str) -> list[str]:
    return [line for line in text.splitlines() if needle in line]


def timed_get(url: str, client: httpx.Client | None = None) -> tuple[int, float]:
    """GET ``url`` (on a new connection unless ``client``): its status and seconds."""
    began = time.monotonic()
    if client is None:
        with httpx.Client(timeout=5) as fresh:
            status = fresh.get(url).status_code
    else:
        status = client.get(url).status_code
    return status, time.monotonic() - began


# -- the Done-when case: slowloris


@pytest.mark.parametrize("stack", STACKS)
def test_2000_half_open_connections_leave_every_answer_within_a_second(
    stack: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    if fd_limit(4500) < 4200:
        pytest.skip("this process may not open 2,000 connections (ulimit -n)")
    with mini(tmp_path_factory, stack) as server:
        regular = httpx.Client(base_url=server.url, timeout=5)  # a kept-alive client
        assert regular.post("/api/users/GetUser", json=GOOD_USER).status_code == 200
        logged = server.log_path.stat().st_size
        with held_open(("127.0.0.1", server.port), 2000, HALF_HEAD) as held:
            assert len(held) == 2000
            times = []
            for _ in range(6):  # over three seconds, while all are held
                status, seconds = timed_get(f"{server.url}/healthz")
                assert status == 200
                times.append(seconds)
                began = time.monotonic()
                answer = regular.post("/api/users/GetUser", json=GOOD_USER)
                assert answer.status_code == 200 and answer.json()["name"] == "Ada"
                times.append(time.monotonic() - began)
                time.sleep(0.5)
            assert max(times) < 1.0, times
            assert still_open(held) == 2000  # served beside them, not by dropping them
        regular.close()
        assert len(grown(server, logged).encode()) < 100 * 1024


@pytest.mark.parametrize("stack", STACKS)
def test_heads_that_never_end_are_closed_at_the_header_timeout_in_one_line(
    stack: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    if fd_limit(3000) < 2200:
        pytest.skip("this process may not open 2,000 connections (ulimit -n)")
    with mini(tmp_path_factory, stack, NANO_HEADER_TIMEOUT="1") as server:
        logged = server.log_path.stat().st_size
        with (
            held_open(("127.0.0.1", server.port), 1000, HALF_HEAD) as half,
            held_open(("127.0.0.1", server.port), 1000) as silent,
        ):
            assert timed_get(f"{server.url}/healthz")[0] == 200  # its head came in time
            time.sleep(2.5)
            assert still_open(half) == 0 and still_open(silent) == 0
        log = grown(server, logged)
        assert len(lines_with(log, "sent no whole request head")) == 1, log
        assert len(log.encode()) < 10 * 1024
        assert timed_get(f"{server.url}/healthz")[0] == 200


def test_a_kept_alive_head_has_its_deadline_from_its_first_byte(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    with (
        mini(tmp_path_factory, "asyncio", NANO_HEADER_TIMEOUT="1", NANO_KEEP_ALIVE="30") as server,
        connected(server) as sock,
    ):
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        time.sleep(1.5)  # idle, under NANO_KEEP_ALIVE: no head under way, no deadline
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        began = time.monotonic()
        assert closed(sock, within=3)
        assert 0.8 < time.monotonic() - began < 2.5


# -- bodies


@pytest.mark.parametrize("stack", STACKS)
def test_a_body_that_trickles_past_the_body_timeout_is_answered_408(
    stack: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    with mini(tmp_path_factory, stack, NANO_BODY_TIMEOUT="1") as server:
        logged = server.log_path.stat().st_size
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(
                b"POST /api/users/GetUser HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
            )
            began, answer = time.monotonic(), b""
            sock.settimeout(0.2)
            while time.monotonic() - began < 4:  # a byte every 0.2 s: 20 s for the body
                with contextlib.suppress(OSError):
                    sock.sendall(b" ")
                try:
                    chunk = sock.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    break
                if not chunk:
                    break
                answer += chunk
            seconds = time.monotonic() - began
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert b"did not arrive in time" in answer
        assert 0.8 < seconds < 3
        log = grown(server, logged)
        assert "Traceback" not in log
        assert len(lines_with(log, "answered 408")) == 1, log
        assert timed_get(f"{server.url}/healthz")[0] == 200


def test_a_slow_body_within_the_timeout_is_served(tmp_path_factory: pytest.TempPathFactory) -> None:
    with mini(tmp_path_factory, "uvloop", NANO_BODY_TIMEOUT="3") as server:
        body = b'{"id": "u1"}'
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(
                b"POST /api/users/GetUser HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
            )
            for byte in body:  # 1.2 s in all
                time.sleep(0.1)
                sock.sendall(bytes([byte]))
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200"), answer
        assert b'"Ada"' in answer


# -- idle and oversized


def test_an_idle_kept_alive_connection_is_closed_after_keep_alive(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    with mini(tmp_path_factory, "uvloop", NANO_KEEP_ALIVE="1") as server, connected(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        began = time.monotonic()
        assert closed(sock, within=4)
        assert 0.8 < time.monotonic() - began < 3


@pytest.mark.parametrize("stack", STACKS)
def test_a_head_over_64_kib_is_answered_431(
    stack: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    with mini(tmp_path_factory, stack) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            with contextlib.suppress(OSError):  # the server may close before all is sent
                for _ in range(100):
                    sock.sendall(b"X-Pad: " + b"a" * 1000 + b"\r\n")
            answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 431"), answer
        whole = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 70_000 + b"\r\n\r\n"
        with connected(server) as sock:  # in one write: the server may read it whole
            sock.sendall(whole)
            assert sock.recv(65536).startswith(b"HTTP/1.1 431")
        assert "Traceback" not in server.log()
        assert timed_get(f"{server.url}/healthz")[0] == 200


# -- the connection cap


@pytest.mark.parametrize("stack", STACKS)
def test_at_the_cap_the_oldest_waiting_gives_way_and_kept_alive_clients_stay(
    stack: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    with mini(tmp_path_factory, stack, NANO_MAX_CONNECTIONS="20") as server:
        regular = httpx.Client(base_url=server.url, timeout=5)
        assert regular.get("/healthz").status_code == 200
        logged = server.log_path.stat().st_size
        with held_open(("127.0.0.1", server.port), 60, HALF_HEAD) as held:
            time.sleep(0.3)
            assert still_open(held) <= 19  # the kept-alive client holds the 20th place
            for _ in range(5):  # newcomers take the places of half-open ones
                assert timed_get(f"{server.url}/healthz")[0] == 200
            local = regular.get("/healthz")  # on the connection it already had
            assert local.status_code == 200
        regular.close()
        log = grown(server, logged)
        said = lines_with(log, "closed connections to make room")
        assert len(said) == 1 and "waiting for a request head longest" in said[0], log


@pytest.mark.parametrize("stack", STACKS)
def test_at_the_cap_with_no_one_waiting_the_longest_idle_gives_way(
    stack: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    with mini(tmp_path_factory, stack, NANO_MAX_CONNECTIONS="3", NANO_KEEP_ALIVE="30") as server:
        idle = []
        for _ in range(3):  # each served once, then kept alive
            sock = connected(server)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
            idle.append(sock)
        try:
            assert timed_get(f"{server.url}/healthz")[0] == 200
            assert closed(idle[0], within=2)  # the first to go idle made room
            assert still_open(idle[1:]) == 2
        finally:
            for sock in idle:
                sock.close()
        said = lines_with(server.log(), "closed connections to make room")
        assert len(said) == 1 and "the one idle longest" in said[0]


def busy(port: int) -> socket.socket:
    """A connection with a request under way: its head sent, its body awaited."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(
        b"POST /api/users/GetUser HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\nContent-Length: 50\r\n\r\n"
    )
    return sock


@pytest.mark.parametrize("stack", STACKS)
def test_when_every_place_is_busy_a_newcomer_is_answered_503_at_once(
    stack: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    with mini(tmp_path_factory, stack, NANO_MAX_CONNECTIONS="10") as server:
        working = [busy(server.port) for _ in range(10)]
        try:
            time.sleep(0.3)
            began = time.monotonic()
            status, _ = timed_get(f"{server.url}/healthz")
            assert status == 503
            assert time.monotonic() - began < 1
        finally:
            for sock in working:
                sock.close()
        time.sleep(0.3)
        assert timed_get(f"{server.url}/healthz")[0] == 200
        assert len(lines_with(server.log(), "refused connections")) == 1


# -- failed accepts (no file descriptor left)


def open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.mark.skipif(shutil.which("prlimit") is None, reason="needs prlimit (util-linux)")
@pytest.mark.parametrize("stack", STACKS)
def test_failed_accepts_are_one_line_per_burst_and_the_server_answers_after(
    stack: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    with mini(tmp_path_factory, stack) as server:
        pid = server.proc.pid
        limit = open_files(pid) + 30
        subprocess.run(["prlimit", f"--pid={pid}", f"--nofile={limit}:{limit}"], check=True)
        logged = server.log_path.stat().st_size
        with held_open(("127.0.0.1", server.port), 100, timeout=2):
            time.sleep(2.5)  # asyncio retries accept() each second: a burst of them
            log = grown(server, logged)
        failures = lines_with(log, "cannot accept connections")
        # asyncio logs the burst once; uvloop's libuv closes what it cannot accept, silently
        assert len(failures) == (1 if stack == "asyncio" else 0), log
        assert "Traceback" not in log and len(log.encode()) < 4096
        # the 70 it could not take wait in the backlog, closed by now: asyncio accepts
        # them (and they go) as descriptors come free, before the good request
        deadline = time.monotonic() + 15
        status = 0
        while status != 200 and time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                status = timed_get(f"{server.url}/healthz")[0]
        assert status == 200, "the server no longer answers"


@pytest.mark.skipif(shutil.which("prlimit") is None, reason="needs prlimit (util-linux)")
def test_a_low_open_file_limit_lowers_the_cap_and_says_so(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    built = binary(tmp_path_factory)
    log = tmp_path_factory.mktemp("limits") / "server.log"
    server = start(
        ["prlimit", "--nofile=600:600", *built.serve()],
        log,
        {**built.env, "NANO_SERVER_STACK": "uvloop"},
        cwd=built.pyz.parent,
    )
    try:
        assert "at most 172 connections per port, not 4096 (NANO_MAX_CONNECTIONS)" in server.log()
        with held_open(("127.0.0.1", server.port), 400, HALF_HEAD) as held:
            time.sleep(0.3)
            assert still_open(held) <= 172
            assert timed_get(f"{server.url}/healthz")[0] == 200
    finally:
        server.stop()


# -- the internal TCP port


@pytest.mark.parametrize("stack", STACKS)
def test_a_flood_of_the_internal_port_is_capped_and_a_real_peer_gets_in(
    stack: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    groups = [["users"], ["orders"]]
    env = {"NANO_SERVER_STACK": stack, "NANO_MAX_CONNECTIONS": "20"}
    with serving(tmp_path_factory, "mini", groups, **env) as cluster:
        users, front = cluster.servers[0], cluster.front
        assert users.internal is not None
        logged = users.log_path.stat().st_size
        with held_open(address(users.internal), 200) as held:
            time.sleep(0.3)
            assert still_open(held) <= 20
            # orders' first call opens its connection now: it takes a stranger's place
            answer = front.call("orders", "PlaceOrder", ORDER)
            assert answer.status_code == 200, answer.text
            assert answer.json()["user_name"] == "Ada"
        log = grown(users, logged)
        assert len(lines_with(log, "tcp internal port: closed connections to make room")) == 1, log
        assert len(log.encode()) < 4096


def test_a_peer_that_never_shakes_hands_is_dropped_at_the_handshake_timeout(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    groups = [["users"], ["orders"]]
    with serving(tmp_path_factory, "mini", groups, NANO_HANDSHAKE_TIMEOUT="1") as cluster:
        users = cluster.servers[0]
        assert users.internal is not None
        logged = users.log_path.stat().st_size
        with held_open(address(users.internal), 100) as held:
            time.sleep(2)
            assert still_open(held) == 0
        log = grown(users, logged)
        assert len(lines_with(log, "no handshake within 1 s")) == 1, log
        assert cluster.front.call("orders", "PlaceOrder", ORDER).status_code == 200


# -- the settings


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        ("NANO_HEADER_TIMEOUT", "soon", "a positive number of seconds, not 'soon'"),
        ("NANO_BODY_TIMEOUT", "0", "a positive number of seconds, not '0'"),
        ("NANO_KEEP_ALIVE", "-1", "a positive number of seconds, not '-1'"),
        ("NANO_HANDSHAKE_TIMEOUT", "inf", "a positive number of seconds, not 'inf'"),
        ("NANO_MAX_CONNECTIONS", "many", "a positive number of connections, not 'many'"),
    ],
)
def test_a_bad_limit_names_its_variable(variable: str, value: str, said: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({variable: value})
    assert str(raised.value) == f"{variable} must be {said}"


def test_the_limits_are_read(tmp_path_factory: pytest.TempPathFactory) -> None:
    environ = {
        "NANO_HEADER_TIMEOUT": "2.5",
        "NANO_BODY_TIMEOUT": "60",
        "NANO_KEEP_ALIVE": "1",
        "NANO_HANDSHAKE_TIMEOUT": "0.5",
        "NANO_MAX_CONNECTIONS": " 100 ",
    }
    assert Settings.from_env(environ).limits == Limits(2.5, 60.0, 1.0, 0.5, 100)
    assert Settings.from_env({}).limits == Limits(10.0, 30.0, 5.0, 5.0, 4096)


def test_the_binary_refuses_a_bad_limit_in_one_line(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    built = binary(tmp_path_factory)
    done = subprocess.run(
        built.serve(),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=built.pyz.parent,
        env={**os.environ, **built.env, "NANO_BODY_TIMEOUT": "slow"},
    )
    assert done.returncode == 2
    assert "NANO_BODY_TIMEOUT must be a positive number of seconds, not 'slow'" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


# -- the gate itself


class Peer:
    """A connection as the gate sees one: it records being evicted."""

    def __init__(self) -> None:
        self.evicted = False

    def evict(self) -> None:
        self.evicted = True


def test_the_gate_evicts_the_longest_waiting_then_the_longest_idle_never_the_busy() -> None:
    gate = Gate(3, "test")
    first, second, third = Peer(), Peer(), Peer()
    for peer in (first, second, third):
        assert gate.admit(peer)
    gate.busy(first)  # a request under way
    gate.busy(second)
    gate.wait(second)  # its next head began after third began waiting
    newcomer = Peer()
    assert gate.admit(newcomer)
    assert third.evicted and not first.evicted and not second.evicted
    assert gate.admit(Peer()) and second.evicted
    gate.busy(newcomer)
    gate.rest(newcomer)  # answered, kept alive: evicted only when no one waits
    late = Peer()
    assert gate.admit(late)  # the one admitted just before was waiting: it gives way
    assert not newcomer.evicted
    gate.busy(late)
    assert gate.admit(Peer()) and newcomer.evicted  # no one waits: the idle one goes
    for peer in list(gate.members):
        gate.busy(peer)
    assert len(gate.members) == 3
    refused = Peer()
    assert not gate.admit(refused)  # every place busy: refused, nobody evicted
    assert not first.evicted and not late.evicted
    gate.leave(first)
    assert gate.admit(refused)
