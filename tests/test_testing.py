"""``nanobuild.runtime.testing.fake``: the test seam that answers contracts without their services."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

from nanobuild.runtime import (
    Conflict,
    Contract,
    Interrupted,
    NanoError,
    NotFound,
    UnknownContract,
    call,
    router,
)
from nanobuild.runtime.testing import fake


class Ping(Contract[str], frozen=True):
    text: str = "ping"


class Pong(Contract[str], frozen=True):
    text: str = "pong"


class NotAContract(msgspec.Struct, frozen=True):
    pass


@pytest.fixture(autouse=True)
def clean_routes() -> Iterator[None]:
    """Whatever a test installs, the next one starts from an empty route table."""
    yield
    router.install({})


def ask(request: Contract[str]) -> str:
    """``await call(request)``, run to its end."""

    async def asking() -> str:
        return await call(request)

    return asyncio.run(asking())


def answers(request: Contract[str]) -> str:
    """What answers ``request`` now: its response, or ``"unrouted"``."""
    try:
        return ask(request)
    except UnknownContract:
        return "unrouted"


async def routed_ping(req: Ping) -> str:
    return f"routed {req.text}"


def test_an_async_fake_answers_inside_the_block() -> None:
    seen: list[Ping] = []

    async def answer(req: Ping) -> str:
        seen.append(req)
        await asyncio.sleep(0)
        return f"async {req.text}"

    with fake({Ping: answer}):
        assert ask(Ping("hello")) == "async hello"
    assert seen == [Ping("hello")]


def test_a_sync_fake_answers_inside_the_block() -> None:
    seen: list[Ping] = []

    def answer(req: Ping) -> str:
        seen.append(req)
        return f"sync {req.text}"

    with fake({Ping: answer, Pong: lambda req: req.text.upper()}):
        assert ask(Ping("hello")) == "sync hello"
        assert ask(Pong("hello")) == "HELLO"
    assert seen == [Ping("hello")]


@pytest.mark.parametrize("error", [NotFound, Conflict, Interrupted])
@pytest.mark.parametrize("style", ["sync", "async"])
def test_a_nano_error_a_fake_raises_reaches_the_caller_as_that_class(
    error: type[NanoError], style: str
) -> None:
    def sync_answer(req: Ping) -> str:
        raise error(f"no {req.text}")

    async def async_answer(req: Ping) -> str:
        raise error(f"no {req.text}")

    with fake({Ping: sync_answer if style == "sync" else async_answer}):
        with pytest.raises(NanoError) as raised:
            ask(Ping("thing"))
        # neither widened to a base class nor turned into another error
        assert raised.type is error
        assert raised.value.message == "no thing"
        # the fake is still in place after it raised
        with pytest.raises(error):
            ask(Ping())


def test_contracts_not_faked_keep_their_routes_inside_the_block() -> None:
    router.install({Ping: routed_ping})
    with fake({Pong: lambda req: "faked pong"}):
        assert ask(Ping()) == "routed ping"
        assert ask(Pong()) == "faked pong"


def test_nested_blocks_restore_each_level_exactly() -> None:
    router.install({Ping: routed_ping})
    before = router.installed()
    assert answers(Ping()) == "routed ping"
    assert answers(Pong()) == "unrouted"

    # the outer block fakes another contract than the routed one
    with fake({Pong: lambda req: "outer pong"}):
        assert answers(Ping()) == "routed ping"
        assert answers(Pong()) == "outer pong"
        outer = router.installed()

        # the inner block fakes the routed contract and the outer block's one
        with fake({Ping: lambda req: "inner ping", Pong: lambda req: "inner pong"}):
            assert answers(Ping()) == "inner ping"
            assert answers(Pong()) == "inner pong"

        assert router.installed() == outer
        assert answers(Ping()) == "routed ping"
        assert answers(Pong()) == "outer pong"

    assert router.installed() == before
    assert router.installed()[Ping] is routed_ping
    assert answers(Ping()) == "routed ping"
    assert answers(Pong()) == "unrouted"


def test_the_same_contract_faked_twice_answers_with_the_innermost_fake() -> None:
    with fake({Ping: lambda req: "outer"}):
        with fake({Ping: lambda req: "inner"}):
            assert answers(Ping()) == "inner"
        assert answers(Ping()) == "outer"
    assert answers(Ping()) == "unrouted"


def test_routes_are_restored_when_the_block_raises() -> None:
    router.install({Ping: routed_ping})
    before = router.installed()

    with (
        pytest.raises(RuntimeError, match="the test broke"),
        fake({Pong: lambda req: "outer pong"}),
    ):
        assert answers(Pong()) == "outer pong"
        with fake({Ping: lambda req: "inner ping"}):
            assert answers(Ping()) == "inner ping"
            raise RuntimeError("the test broke")

    assert router.installed() == before
    assert answers(Ping()) == "routed ping"
    assert answers(Pong()) == "unrouted"


def test_routes_are_restored_when_a_fake_error_escapes_the_block() -> None:
    router.install({Ping: routed_ping})
    before = router.installed()

    def refuse(req: Pong) -> str:
        raise Conflict("no pong today")

    with pytest.raises(Conflict, match="no pong today"), fake({Pong: refuse}):
        ask(Pong())

    assert router.installed() == before
    assert answers(Ping()) == "routed ping"
    assert answers(Pong()) == "unrouted"


def test_a_contract_unrouted_before_is_unrouted_again_after() -> None:
    with fake({Pong: lambda req: "faked"}):
        assert ask(Pong()) == "faked"
    assert router.installed() == {}
    with pytest.raises(UnknownContract, match="Pong"):
        ask(Pong())


@pytest.mark.parametrize(
    ("key", "named"),
    [
        ("Ping", "'Ping'"),
        (Ping(), "Ping(text='ping')"),
        (Contract, "Contract"),
        (NotAContract, "NotAContract"),
    ],
    ids=["a-string", "a-request", "Contract-itself", "a-plain-struct"],
)
def test_what_is_not_a_contract_class_is_refused_by_name(key: Any, named: str) -> None:
    router.install({Ping: routed_ping})
    before = router.installed()
    entered = False

    with (
        pytest.raises(TypeError, match="takes contract classes") as raised,
        fake({Pong: lambda req: "faked pong", key: lambda req: "never"}),
    ):
        entered = True

    assert named in str(raised.value)
    assert not entered
    # refused whole: not even the valid entries were installed
    assert router.installed() == before
    assert answers(Ping()) == "routed ping"
    assert answers(Pong()) == "unrouted"
