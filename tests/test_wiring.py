"""Wiring: AppSpec -> routes, in memory; strict mode; lifecycle hooks."""

from __future__ import annotations

import asyncio
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from nanobuild import describe, workspace
from nanobuild.runtime import BadRequest, Internal, NotFound, call, router
from nanobuild.runtime.errors import StartupFailed, WiringError
from nanobuild.runtime.spec import AppSpec, ServiceSpec
from nanobuild.runtime.wiring import wire
from tests.conftest import REPO

SERVICE = """
import msgspec
from nanobuild.runtime import Contract, NotFound, handler, on_startup, on_shutdown

EVENTS = []

class Echo(msgspec.Struct):
    text: str

class Say(Contract[Echo]):
    text: str

class Fail(Contract[Echo]):
    kind: str

class Lie(Contract[Echo]):
    pass

class Shout(Contract[Echo]):
    text: str

@handler
async def say(req: Say) -> Echo:
    return Echo(req.text)

@handler
def shout(req: Shout) -> Echo:
    return Echo(req.text.upper())

@handler
async def fail(req: Fail) -> Echo:
    if req.kind == "not_found":
        raise NotFound("nothing here")
    raise KeyError("boom")

@handler
async def lie(req: Lie) -> Echo:
    return "not an echo"

@on_startup
def up():
    EVENTS.append("{name} up")

@on_shutdown
async def down():
    EVENTS.append("{name} down")
"""


@pytest.fixture
def modules(tmp_path: Path) -> Iterator[Path]:
    """A folder on sys.path for throwaway service modules, cleaned up afterwards."""
    sys.path.insert(0, str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    sys.path.remove(str(tmp_path))
    for name in set(sys.modules) - before:
        del sys.modules[name]
    router.install({})


def write_service(
    folder: Path,
    name: str,
    extra: str = "",
    more: dict[str, str] | None = None,
    hooks: tuple[str, ...] = (),
) -> ServiceSpec:
    more = more or {}
    (folder / f"{name}.py").write_text(
        textwrap.dedent(SERVICE).replace("{name}", name) + textwrap.dedent(extra)
    )
    handlers = {"Say": "say", "Shout": "shout", "Fail": "fail", "Lie": "lie"}
    handlers |= {contract: fn for contract, fn in more.items()}
    return ServiceSpec(
        name=name,
        package=name,
        handlers={contract: f"{name}:{fn}" for contract, fn in handlers.items()},
        hooks=(f"{name}:up", f"{name}:down", *(f"{name}:{fn}" for fn in hooks)),
        public=("Say",),
    )


def spec_of(*services: ServiceSpec) -> AppSpec:
    return AppSpec(name="test", services=services)


def test_in_memory_call_is_the_handlers_own_coroutine(
    modules: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NANO_STRICT", "0")
    node = wire(spec_of(write_service(modules, "alpha")))
    alpha = sys.modules["alpha"]
    pending = call(alpha.Say(text="hi"))
    assert pending.cr_code is alpha.say.__code__  # type: ignore[attr-defined]
    assert asyncio.run(pending) == alpha.Echo("hi")
    assert node.endpoints[("alpha", "Say")].public
    assert not node.endpoints[("alpha", "Shout")].public


def test_sync_handlers_are_awaited_like_async_ones(modules: Path) -> None:
    wire(spec_of(write_service(modules, "alpha")))
    alpha = sys.modules["alpha"]
    assert asyncio.run(call(alpha.Shout(text="hi"))) == alpha.Echo("HI")


@pytest.mark.parametrize("strict", ["0", "1"])
def test_errors_reach_the_caller_as_the_same_class(
    modules: Path, monkeypatch: pytest.MonkeyPatch, strict: str
) -> None:
    monkeypatch.setenv("NANO_STRICT", strict)
    wire(spec_of(write_service(modules, "alpha")))
    alpha = sys.modules["alpha"]
    with pytest.raises(NotFound, match="nothing here") as info:
        asyncio.run(call(alpha.Fail(kind="not_found")))
    if strict == "1":
        assert (info.value.service, info.value.contract) == ("alpha", "Fail")


def test_strict_mode_maps_stray_exceptions_and_wrong_returns_to_internal(
    modules: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NANO_STRICT", "1")
    wire(spec_of(write_service(modules, "alpha")))
    alpha = sys.modules["alpha"]
    with pytest.raises(Internal, match="unexpected KeyError in the handler"):
        asyncio.run(call(alpha.Fail(kind="other")))
    with pytest.raises(Internal, match="returned a str, not the contract's response type Echo"):
        asyncio.run(call(alpha.Lie()))


def test_strict_mode_copies_requests_as_the_wire_would(
    modules: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NANO_STRICT", "1")
    extra = """
    class Keep(Contract[bool]):
        items: list[int]

    SEEN = []

    @handler
    async def keep(req: Keep) -> bool:
        SEEN.append(req)
        return True
    """
    wire(spec_of(write_service(modules, "alpha", extra, more={"Keep": "keep"})))
    alpha = sys.modules["alpha"]
    req = alpha.Keep(items=[1])
    assert asyncio.run(call(req)) is True
    assert alpha.SEEN[0] == req and alpha.SEEN[0] is not req


def test_hooks_run_in_dependency_order_and_reverse(modules: Path) -> None:
    first = write_service(modules, "base")
    second = write_service(modules, "top")
    node = wire(spec_of(first, second))
    events = sys.modules["base"].EVENTS + sys.modules["top"].EVENTS
    assert events == []

    async def lifecycle() -> list[str]:
        await node.startup()
        await node.shutdown()
        return sys.modules["base"].EVENTS, sys.modules["top"].EVENTS

    base, top = asyncio.run(lifecycle())
    assert base == ["base up", "base down"] and top == ["top up", "top down"]
    assert node.started == []


def test_failing_startup_names_the_service_and_stops(modules: Path) -> None:
    extra = """
    @on_startup
    def broken():
        raise OSError("database is gone")
    """
    good = write_service(modules, "good")
    bad = write_service(modules, "bad", extra, hooks=("broken",))
    node = wire(spec_of(good, bad))
    with pytest.raises(
        StartupFailed, match="service bad failed to start: OSError: database is gone"
    ):
        asyncio.run(node.startup())
    assert node.started == ["good"]  # so shutdown stops only what started


def test_wiring_older_than_the_code_is_refused(modules: Path) -> None:
    with pytest.raises(WiringError, match=r"should handle alpha\.Say but takes"):
        wire(spec_of(write_service(modules, "alpha", more={"Say": "shout"})))
    with pytest.raises(WiringError, match="alpha has no vanished"):
        wire(spec_of(write_service(modules, "alpha", more={"Gone": "vanished"})))


def test_boutique_order_flows_in_memory() -> None:
    ws = workspace.load(REPO)
    node = wire(describe.describe(ws))
    from cart.kernel import AddItem, CartItem, GetCart
    from catalog.kernel import ListProducts
    from checkout.kernel import PlaceOrder

    async def shop() -> object:
        await node.startup()
        products = await call(ListProducts())
        await call(AddItem(user_id="u1", item=CartItem(product_id=products[0].id, quantity=2)))
        assert len((await call(GetCart(user_id="u1"))).items) == 1
        order = await call(PlaceOrder(**_order_fields("u1")))
        assert (await call(GetCart(user_id="u1"))).items == []
        with pytest.raises(BadRequest):
            await call(PlaceOrder(**_order_fields("u1")))  # the cart is empty now
        await node.shutdown()
        return order

    order = asyncio.run(shop())
    assert order.order_id  # type: ignore[attr-defined]
    router.install({})


def _order_fields(user: str) -> dict[str, object]:
    from payment.kernel import CreditCardInfo
    from shipping.kernel import Address

    return {
        "user_id": user,
        "user_currency": "EUR",
        "email": "someone@example.com",
        "address": Address(
            street_address="1600 Amphitheatre Parkway",
            city="Mountain View",
            state="CA",
            country="United States",
            zip_code=94043,
        ),
        "credit_card": CreditCardInfo(
            credit_card_number="4432-8015-6152-0454",
            credit_card_cvv=672,
            credit_card_expiration_year=2039,
            credit_card_expiration_month=1,
        ),
    }


def test_a_handler_module_that_fails_to_import_is_a_wiring_error(modules: Path) -> None:
    (modules / "broken.py").write_text("raise RuntimeError('no database driver')\n")
    spec = spec_of(ServiceSpec(name="broken", package="broken", handlers={"X": "broken:x"}))
    with pytest.raises(WiringError, match="cannot import broken: RuntimeError: no database driver"):
        wire(spec)


def test_every_shutdown_hook_runs_even_after_one_fails(modules: Path) -> None:
    extra = """
    @on_shutdown
    def broken_down():
        raise OSError("cannot flush")
    """
    first = write_service(modules, "first")
    second = write_service(modules, "second", extra, hooks=("broken_down",))
    node = wire(spec_of(first, second))

    async def lifecycle() -> None:
        await node.startup()
        await node.shutdown()

    with pytest.raises(OSError, match="cannot flush"):
        asyncio.run(lifecycle())
    assert sys.modules["first"].EVENTS == ["first up", "first down"]  # still ran


def test_fused_processes_do_not_load_the_transports() -> None:
    import subprocess

    code = (
        "import sys, nanobuild.runtime.placement, nanobuild.runtime.binary, "
        "nanobuild.runtime.server; "
        "sys.exit('nanobuild.runtime.transports' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_placement_default_timeout_matches_the_transports() -> None:
    from nanobuild.runtime import placement
    from nanobuild.runtime.transports import base

    assert placement.DEFAULT_TIMEOUT == base.DEFAULT_TIMEOUT
