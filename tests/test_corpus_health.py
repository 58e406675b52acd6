"""The corpus's health cases: odd requests to ``/healthz`` and ``/readyz`` of a split pair
(orders here, users in a process of its own), and a process whose remote's host name
does not resolve, which must serve, say it is not ready, and name no internal address
(see tests/corpus.py for the harness)."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from tests.corpus import (
    SECRET,
    BinaryCase,
    HttpCase,
    binary,
    check_unique,
    run_binary_case,
    run_http_case,
    serving,
)
from tests.servers import Server, start

UNRESOLVABLE = "no-such-host.invalid"
ORDER = b'{"user_id": "u1", "quantity": {"amount": 2}}'
# what no answer of a process with an unresolvable remote may hold
ADDRESSES = (UNRESOLVABLE, "9100", "tcp://", "127.0.0.1")


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serving(tmp_path_factory, "mini", [["users"], ["orders"]]) as cluster:
        yield cluster.front  # orders, which reaches users over TCP


@pytest.fixture(scope="module")
def stranded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """orders, told that users runs at a host name that does not resolve."""
    built = binary(tmp_path_factory)
    remote = f"users=tcp://{UNRESOLVABLE}:9100"
    command = built.command("serve", "--port", "0", "--only", "orders", "--remote", remote)
    log = tmp_path_factory.mktemp("corpus-health") / "stranded.log"
    server = start(command, log, {**built.env, "NANO_SECRET": SECRET}, cwd=built.pyz.parent)
    yield server
    server.stop()


GET = {"Accept": "*/*"}

SPLIT_CASES = [
    HttpCase(
        "readyz-get-split",
        method="GET",
        target="/readyz",
        headers=GET,
        status=200,
        names=['"status":"ready"', '"checked":["users","orders"]', '"not_ready":[]'],
    ),
    HttpCase("readyz-head", method="HEAD", target="/readyz", headers=GET, status=200),
    HttpCase("readyz-post", target="/readyz", body=b"{}", status=405, names=["use GET"]),
    HttpCase("healthz-delete", method="DELETE", target="/healthz", headers=GET, status=405),
    HttpCase(
        "readyz-query-string",
        method="GET",
        target="/readyz?verbose=1&x=" + "a" * 4000,
        headers=GET,
        status=200,
        names=['"status":"ready"'],
    ),
    HttpCase("readyz-trailing-slash", method="GET", target="/readyz/", headers=GET, status=404),
    HttpCase(
        "readyz-http10",
        raw=b"GET /readyz HTTP/1.0\r\n\r\n",
        status=200,
        names=['"status":"ready"'],
    ),
    HttpCase(
        "readyz-with-a-body",
        method="GET",
        target="/readyz",
        headers={"Content-Type": "application/json"},
        body=b'{"x": "' + b"y" * 100_000 + b'"}',
        status=200,
        names=['"status":"ready"'],
    ),
    HttpCase(
        "readyz-chunked-body-never-ended",
        raw=b"GET /readyz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
        status=200,
        names=['"status":"ready"'],
    ),
    HttpCase(
        "healthz-absolute-form",
        raw=b"GET http://127.0.0.1/healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        status=200,
        names=['"status":"ok"'],
    ),
    HttpCase(
        "readyz-with-a-wrong-secret",
        method="GET",
        target="/readyz",
        headers={"nano-secret": "not-the-secret"},
        status=200,
        names=['"status":"ready"'],
    ),
]

STRANDED_PROBE = ("/api/users/GetUser", b'{"id": "u1"}', 503)
STRANDED_CASES = [
    HttpCase(
        "readyz-remote-host-unresolvable",
        method="GET",
        target="/readyz",
        headers=GET,
        status=503,
        names=['"status":"not ready"', '"service":"users"', '"started":true'],
        probe=STRANDED_PROBE,
    ),
    HttpCase(
        "healthz-remote-host-unresolvable",
        method="GET",
        target="/healthz",
        headers=GET,
        status=200,
        names=['"status":"ok"', '"remote":["users"]'],
        probe=STRANDED_PROBE,
    ),
    HttpCase(
        "public-call-remote-host-unresolvable",
        target="/api/orders/PlaceOrder",
        body=ORDER,
        status=503,
        names=["users is unavailable (Unsent): the call was not sent, so it did not run"],
        probe=STRANDED_PROBE,
    ),
    HttpCase(
        "public-msgpack-call-remote-host-unresolvable",
        target="/api/users/GetUser",
        headers={"Content-Type": "application/msgpack"},
        body=msgspec.msgpack.encode({"id": "u1"}),
        status=503,
        names=["users is unavailable (Unsent)"],
        probe=STRANDED_PROBE,
    ),
    HttpCase(
        "public-call-wrong-secret-remote-host-unresolvable",
        target="/api/users/GetUser",
        headers={"Content-Type": "application/json", "nano-secret": "not-the-secret"},
        body=b'{"id": "u1"}',
        status=503,
        names=["users is unavailable (Unsent)"],
        probe=STRANDED_PROBE,
    ),
]
check_unique([*SPLIT_CASES, *STRANDED_CASES])


@pytest.mark.parametrize("case", SPLIT_CASES, ids=lambda c: c.name)
def test_split_case(case: HttpCase, split: Server) -> None:
    run_http_case(case, split)


@pytest.mark.parametrize("case", STRANDED_CASES, ids=lambda c: c.name)
def test_stranded_case(case: HttpCase, stranded: Server) -> None:
    answer = run_http_case(case, stranded)
    for leak in ADDRESSES:
        assert leak.encode() not in answer.body, f"case {case.name} names {leak}: {answer.body!r}"


# -- starting with a remote whose host name does not resolve: serve, then stop cleanly

SERVE = ["serve", "--port", "0", "--only", "orders"]
BINARY_CASES = [
    BinaryCase(
        "serve-tcp-remote-host-unresolvable",
        args=[*SERVE, "--remote", f"users=tcp://{UNRESOLVABLE}:9100"],
        env={"NANO_SECRET": SECRET},
        signal=(6.0, signal.SIGTERM),
        exit=0,
        names=["serving mini (orders) at http://127.0.0.1:"],
    ),
    BinaryCase(
        "serve-http-remote-host-unresolvable",
        args=[*SERVE, "--remote", f"users=http://{UNRESOLVABLE}:8000"],
        env={"NANO_SECRET": SECRET},
        signal=(6.0, signal.SIGTERM),
        exit=0,
        names=["serving mini (orders) at http://127.0.0.1:"],
    ),
    BinaryCase(
        "serve-remote-unresolvable-from-the-environment",
        args=SERVE,
        env={"NANO_SECRET": SECRET, "NANO_REMOTE_USERS": f"tcp://{UNRESOLVABLE}:9100"},
        signal=(6.0, signal.SIGTERM),
        exit=0,
        names=["serving mini (orders) at http://127.0.0.1:"],
    ),
]
check_unique(BINARY_CASES)


@pytest.mark.parametrize("case", BINARY_CASES, ids=lambda c: c.name)
def test_binary_case(
    case: BinaryCase, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    run_binary_case(case, binary(tmp_path_factory), tmp_path)
