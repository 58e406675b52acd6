"""The call seam: interceptors see every call, and the per-call context crosses processes.

In-process tests wire a two-service workspace (``front`` calls ``back``) fused,
strict and split over real TCP on 127.0.0.1; the end-to-end test installs an
interceptor (``NANO_INTERCEPTORS``) in every process of the boutique, in the four
placements the suite runs, and follows one PlaceOrder through all of them.
"""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nanobuild.runtime import CallInfo, NotFound, Proceed, context, router
from nanobuild.runtime.placement import Placement
from nanobuild.runtime.settings import Settings
from nanobuild.runtime.spec import AppSpec, ServiceSpec
from nanobuild.runtime.transports.tcp import TcpServer
from nanobuild.runtime.wiring import wire
from tests.conftest import REPO
from tests.servers import PLACEMENTS, Binary, order, serve, start, start_placement

SECRET = "seam-test-secret-JOnJSZFMHszaupWH3XbTAg"

BACK = """
import msgspec
from nanobuild.runtime import Contract, NotFound, context, handler


class Echo(Contract[dict[str, str]], frozen=True):
    fail: str = ""


@handler
async def echo(req: Echo) -> dict[str, str]:
    if req.fail == "not_found":
        raise NotFound("nothing here")
    if req.fail == "bug":
        raise ZeroDivisionError("a bug")
    return dict(context.current())
"""

FRONT = """
from nanobuild.runtime import Contract, call, handler

from back.kernel import Echo


class Hello(Contract[dict[str, str]], frozen=True):
    fail: str = ""


@handler
async def hello(req: Hello) -> dict[str, str]:
    return await call(Echo(fail=req.fail))
"""

SPEC = AppSpec(
    "pair",
    (
        ServiceSpec("back", "back", {"Echo": "back.kernel:echo"}),
        ServiceSpec("front", "front", {"Hello": "front.kernel:hello"}, depends=("back",)),
    ),
)


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Any]:
    """The two services' packages, importable for the test's duration."""
    for name, source in (("back", BACK), ("front", FRONT)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("")
        (tmp_path / name / "kernel.py").write_text(textwrap.dedent(source))
    sys.path.insert(0, str(tmp_path))
    before = set(sys.modules)
    import front.kernel  # type: ignore[import-not-found]  # imports back.kernel too

    yield front.kernel.Hello
    sys.path.remove(str(tmp_path))
    for name in set(sys.modules) - before:
        del sys.modules[name]
    router.install({})


class Spy:
    """An interceptor that records every call it sees, and marks the context."""

    def __init__(self, mark: dict[str, str] | None = None) -> None:
        self.mark = mark or {}
        self.seen: list[CallInfo] = []

    async def __call__(self, call: CallInfo, proceed: Proceed) -> object:
        call.context.update(self.mark)
        self.seen.append(call)
        return await proceed()

    def summary(self) -> list[tuple[str, str, str, str, str | None]]:
        return [(c.direction, c.contract, c.placement, c.via, c.outcome) for c in self.seen]


def test_with_no_interceptor_the_route_is_the_handler_itself(pair: Any) -> None:
    node = wire(SPEC, settings=Settings())
    endpoint = node.endpoints[("back", "Echo")]
    assert endpoint.route is endpoint.handler  # nothing between call() and the handler
    assert endpoint.seam is None


@pytest.mark.parametrize("strict", [False, True], ids=["memory", "strict"])
def test_an_interceptor_sees_every_in_memory_call(pair: Any, strict: bool) -> None:
    spy = Spy({"tenant": "acme"})
    wire(SPEC, settings=Settings(strict=strict), interceptors=[spy])
    answer = asyncio.run(router.call(pair()))
    assert answer == {"tenant": "acme"}  # what the interceptor set reached the callee
    via = "strict" if strict else "memory"
    assert spy.summary() == [
        ("outbound", "Hello", "local", via, "ok"),
        ("outbound", "Echo", "local", via, "ok"),
    ]
    assert [c.service for c in spy.seen] == ["front", "back"]
    assert all(c.duration is not None and c.duration > 0 for c in spy.seen)
    # the outer call's duration holds the inner one's
    assert spy.seen[0].duration >= spy.seen[1].duration  # type: ignore[operator]


def test_interceptors_run_in_order_and_see_the_outcome(pair: Any) -> None:
    order: list[str] = []

    def named(name: str) -> Any:
        async def interceptor(call: CallInfo, proceed: Proceed) -> object:
            order.append(f"{name} in")
            try:
                return await proceed()
            finally:
                order.append(f"{name} out: {call.outcome}")

        return interceptor

    wire(SPEC, settings=Settings(), interceptors=[named("a"), named("b")])
    with pytest.raises(NotFound):
        asyncio.run(router.call(pair(fail="not_found")))
    assert order == [
        "a in", "b in", "a in", "b in",
        "b out: not_found", "a out: not_found", "b out: not_found", "a out: not_found",
    ]  # fmt: skip


def test_a_stray_exception_is_an_internal_outcome(pair: Any) -> None:
    spy = Spy()
    wire(SPEC, settings=Settings(), interceptors=[spy])
    with pytest.raises(ZeroDivisionError):
        asyncio.run(router.call(pair(fail="bug")))
    assert [c.outcome for c in spy.seen] == ["internal", "internal"]
    assert isinstance(spy.seen[1].error, ZeroDivisionError)


def test_the_context_from_extended_reaches_the_callee(pair: Any) -> None:
    wire(SPEC, settings=Settings())

    async def scenario() -> dict[str, str]:
        with context.extended({"caller": "test"}):
            answer = await router.call(pair())
        assert context.current() == {}  # the block's values end with it
        return answer

    assert asyncio.run(scenario()) == {"caller": "test"}


def test_a_context_over_the_limits_is_refused_before_it_is_sent() -> None:
    with (
        pytest.raises(Exception, match="over 32"),
        context.extended({f"k{i}": "v" for i in range(33)}),
    ):
        pass


def test_over_tcp_both_ends_see_the_call_and_the_context_crosses(pair: Any) -> None:
    caller_spy, callee_spy = Spy({"trace": "t-1"}), Spy()

    async def scenario() -> dict[str, str]:
        back = wire(SPEC, Placement(local=("back",)), settings=Settings(secret=SECRET),
                    interceptors=[callee_spy])  # fmt: skip
        server = TcpServer(back, secret=SECRET)
        await server.start()
        placement = Placement(local=("front",), remotes={"back": str(server.address)})
        front = wire(SPEC, placement, settings=Settings(secret=SECRET), interceptors=[caller_spy])
        try:
            return await router.call(pair())
        finally:
            await front.shutdown()
            await server.close()

    assert asyncio.run(scenario()) == {"trace": "t-1"}
    assert caller_spy.summary() == [
        ("outbound", "Hello", "local", "memory", "ok"),
        ("outbound", "Echo", "remote", "tcp", "ok"),
    ]
    assert callee_spy.summary() == [("inbound", "Echo", "local", "tcp", "ok")]
    assert callee_spy.seen[0].context == {"trace": "t-1"}


# -- the boutique, in every placement

SPY_MODULE = """
import json, os

async def record(call, proceed):
    try:
        return await proceed()
    finally:
        line = json.dumps({
            "pid": os.getpid(), "service": call.service, "contract": call.contract,
            "placement": call.placement, "direction": call.direction, "via": call.via,
            "context": dict(call.context), "outcome": call.outcome,
        })
        with open(os.environ["SPY_FILE"], "a") as out:
            out.write(line + "\\n")
"""

# what PlaceOrder calls, each from checkout
CALLED = {
    "cart.GetCart", "catalog.GetProduct", "currency.Convert", "shipping.GetQuote",
    "payment.Charge", "shipping.ShipOrder", "cart.EmptyCart", "email.SendOrderConfirmation",
}  # fmt: skip


@pytest.mark.parametrize("placement", ["serve", "fused", "split", "mixed"])
def test_an_interceptor_follows_place_order_through_every_placement(
    placement: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    (tmp_path / "nano_spy.py").write_text(SPY_MODULE)
    spy_file = tmp_path / "calls.jsonl"
    env = {
        "NANO_SECRET": SECRET,
        "NANO_INTERCEPTORS": "nano_spy:record",
        "PYTHONPATH": str(tmp_path),
        "SPY_FILE": str(spy_file),
    }
    if placement == "serve":
        servers = [start(serve(REPO), tmp_path / "serve.log", **env)]
    else:
        binary: Binary = request.getfixturevalue("boutique_binary")
        servers = start_placement(binary, PLACEMENTS[placement], tmp_path, **env).servers
    front = servers[-1]
    trial = str(uuid.uuid4())
    try:
        user = f"u-{trial}"
        item = {"product_id": "66VCHSJNUP", "quantity": 1}
        assert front.call("cart", "AddItem", {"user_id": user, "item": item}).status_code == 200
        spy_file.write_text("")  # only PlaceOrder from here on
        headers = {"nano-secret": SECRET, "nano-context": f"trial={trial}"}
        response = front.call("checkout", "PlaceOrder", order(user), headers=headers)
        assert response.status_code == 200, response.text
    finally:
        codes = [server.stop() for server in reversed(servers)]
    assert codes == [0] * len(servers), [s.log() for s in servers]
    calls = [json.loads(line) for line in spy_file.read_text().splitlines()]

    # every call carries the first caller's context, in whichever process it ran
    # (telemetry, on in `nanobuild serve`, adds its trace context and request id)
    observed = {"traceparent", "tracestate", "request-id"}
    contexts = [{k: v for k, v in c["context"].items() if k not in observed} for c in calls]
    assert calls and all(values == {"trial": trial} for values in contexts)
    assert all(c["outcome"] == "ok" for c in calls)
    # the front door takes PlaceOrder over HTTP; checkout's process runs it (maybe the same)
    groups = PLACEMENTS.get(placement, [sorted(CALLED)])
    [checkout_group] = [set(g) for g in groups if "checkout" in g] or [None]
    entries = [c for c in calls if c["contract"] == "PlaceOrder"]
    front_door = [c for c in entries if c["via"] == "http"]
    assert [(c["direction"], c["service"]) for c in front_door] == [("inbound", "checkout")]
    [ran] = [c for c in entries if c["placement"] == "local"]
    outbound = [c for c in calls if c["direction"] == "outbound"]
    assert {f"{c['service']}.{c['contract']}" for c in outbound} == CALLED
    assert {c["pid"] for c in outbound} == {ran["pid"]}  # checkout makes them all
    for c in outbound:
        runs_here = placement in ("serve", "fused") or c["service"] in (checkout_group or ())
        assert c["placement"] == ("local" if runs_here else "remote"), c
        assert c["via"] == ("strict" if runs_here else "tcp"), c  # the suite runs strict
    # a remote call is seen again where it is served, as inbound over TCP, in another process
    remote = [c for c in entries + outbound if c["placement"] == "remote"]
    inbound = [c for c in calls if c["direction"] == "inbound" and c["via"] == "tcp"]
    name = "{0[service]}.{0[contract]}".format
    assert sorted(map(name, inbound)) == sorted(map(name, remote))
    for c in inbound:
        assert any(name(r) == name(c) and r["pid"] != c["pid"] for r in remote), c
    assert bool(remote) == (placement in ("split", "mixed"))  # the context crossed processes


# -- the context over the HTTP transport, through a real HTTP face

ECHO_KERNEL = """
from nanobuild.runtime import Contract


class Echo(Contract[dict[str, str]], frozen=True):
    pass
"""

ECHO_HANDLERS = """
from nanobuild.runtime import context, handler

from .kernel import Echo


@handler
async def echo(req: Echo) -> dict[str, str]:
    return dict(context.current())
"""


@pytest.fixture(scope="module")
def echo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    root = tmp_path_factory.mktemp("echo")
    (root / "nano.toml").write_text(
        '[workspace]\nname = "echo"\n\n[services.back]\npath = "back"\npublic = ["Echo"]\n'
    )
    package = root / "back" / "back"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "kernel.py").write_text(ECHO_KERNEL)
    (package / "handlers.py").write_text(ECHO_HANDLERS)
    # telemetry off: these tests read the context exactly as the caller sent it
    server = start(serve(root), root / "server.log", NANO_SECRET=SECRET, NANO_METRICS="0")
    sys.path.insert(0, str(root / "back"))
    import back.kernel

    yield server, back.kernel.Echo
    sys.path.remove(str(root / "back"))
    del sys.modules["back.kernel"], sys.modules["back"]
    assert server.stop() == 0, server.log()


def test_the_http_transport_carries_the_context_to_a_trusted_face(echo_server: Any) -> None:
    from nanobuild.runtime.transports.base import remote_route
    from nanobuild.runtime.transports.http import HttpTransport

    server, echo = echo_server

    async def scenario(secret: str) -> object:
        transport = HttpTransport(server.url, secret=secret)
        try:
            with context.extended({"trace": "t-2", "who": "a b,c=d%"}):
                return await remote_route(transport, "back", echo)(echo())
        finally:
            await transport.aclose()

    assert asyncio.run(scenario(SECRET)) == {"trace": "t-2", "who": "a b,c=d%"}
    assert asyncio.run(scenario("")) == {}  # without the secret the face ignores it


def test_the_face_refuses_a_malformed_context_from_a_trusted_caller(echo_server: Any) -> None:
    server, _ = echo_server
    trusted = {"nano-secret": SECRET}
    response = server.call("back", "Echo", headers={**trusted, "nano-context": "no-equals-sign"})
    assert response.status_code == 400
    assert "has no '='" in response.json()["error"]["message"]
    stranger = server.call("back", "Echo", headers={"nano-context": "k=v"})
    assert (stranger.status_code, stranger.json()) == (200, {})
