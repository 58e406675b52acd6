"""``def`` handlers run on the worker pool, and ``call_sync`` is the blocking ``call``."""

from __future__ import annotations

import asyncio
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nanobuild.runtime import NotFound, call, call_sync, context, router
from nanobuild.runtime.errors import SettingsError
from nanobuild.runtime.settings import DEFAULT_THREADS, Settings
from nanobuild.runtime.spec import AppSpec, ServiceSpec
from nanobuild.runtime.wiring import wire

SERVICES = """
import threading, time
import msgspec
from nanobuild.runtime import Contract, NotFound, call, call_sync, context, handler

class Text(msgspec.Struct):
    text: str
    thread: str = ""

class Slow(Contract[Text]):
    seconds: float

class Upper(Contract[Text]):
    text: str

class Relay(Contract[Text]):
    text: str

class Missing(Contract[Text]):
    pass

class OnLoop(Contract[Text]):
    pass

@handler
def slow(req: Slow) -> Text:
    time.sleep(req.seconds)  # blocks its worker thread, never the loop
    return Text("slept", threading.current_thread().name)

@handler
async def upper(req: Upper) -> Text:
    tenant = context.current().get("tenant", "")
    return Text(req.text.upper() + tenant, threading.current_thread().name)

@handler
def relay(req: Relay) -> Text:
    answer = call_sync(Upper(text=req.text))   # another service, from a worker thread
    return Text(answer.text, threading.current_thread().name)

@handler
def missing(req: Missing) -> Text:
    return call_sync(Slow(seconds=-1))  # the callee raises: the caller sees it

@handler
async def on_loop(req: OnLoop) -> Text:
    return call_sync(Upper(text="x"))  # on the loop's own thread: refused
"""


@pytest.fixture
def mod(tmp_path: Path) -> Iterator[Any]:
    (tmp_path / "syncsvc.py").write_text(textwrap.dedent(SERVICES))
    sys.path.insert(0, str(tmp_path))
    import syncsvc

    contracts = ["Slow", "Upper", "Relay", "Missing", "OnLoop"]
    targets = {c: f"syncsvc:{'on_loop' if c == 'OnLoop' else c.lower()}" for c in contracts}
    spec = AppSpec("t", (ServiceSpec("svc", "syncsvc", targets),))
    node = wire(spec, settings=Settings(threads=4))
    yield syncsvc
    asyncio.run(node.shutdown())
    sys.path.remove(str(tmp_path))
    del sys.modules["syncsvc"]
    router.install({})


def test_a_blocking_def_handler_leaves_the_loop_free(mod: Any) -> None:

    async def main() -> tuple[list[float], list[str]]:
        ticks: list[float] = []

        async def ticker() -> None:
            for _ in range(10):
                ticks.append(time.perf_counter())
                await asyncio.sleep(0.02)

        started = time.perf_counter()
        results = await asyncio.gather(ticker(), *(call(mod.Slow(seconds=0.3)) for _ in range(3)))
        elapsed = time.perf_counter() - started
        # three 0.3 s sleeps side by side, not one after the other
        assert elapsed < 0.8, elapsed
        return [t - started for t in ticks], [r.thread for r in results[1:]]

    ticks, threads = asyncio.run(main())
    assert ticks[-1] < 0.5, ticks  # the ticker kept its pace while the handlers slept
    assert all(name.startswith("nano-handler") for name in threads), threads
    assert threading.current_thread().name not in threads


def test_call_sync_from_a_def_handler_reaches_another_handler_with_the_context(
    mod: Any,
) -> None:

    async def main() -> object:
        with context.extended({"tenant": "@acme"}):
            return await call(mod.Relay(text="hi"))

    answer = asyncio.run(main())
    assert answer.text == "HI@acme"
    assert answer.thread.startswith("nano-handler")


def test_call_sync_raises_what_the_callee_raised(mod: Any) -> None:
    with pytest.raises(ValueError, match="sleep length must be non-negative"):
        asyncio.run(call(mod.Missing()))


def test_call_sync_on_the_loop_thread_is_a_clear_error_not_a_deadlock(mod: Any) -> None:
    started = time.perf_counter()
    with pytest.raises(RuntimeError, match=r"event loop's own thread.*await call"):
        asyncio.run(call(mod.OnLoop()))
    assert time.perf_counter() - started < 1


def test_call_sync_outside_any_loop_runs_the_call_in_one_of_its_own(mod: Any) -> None:
    assert call_sync(mod.Upper(text="ok")).text == "OK"


def test_call_sync_timeout_raises_timeout(mod: Any) -> None:
    from nanobuild.runtime import Timeout

    with pytest.raises(Timeout, match=r"within 0\.05 s"):
        call_sync(mod.Slow(seconds=0.5), timeout=0.05)


def test_an_unrouted_contract_still_says_so_through_call_sync(mod: Any) -> None:
    router.install({})
    with pytest.raises(NotFound, match="no service in this process answers Upper"):
        call_sync(mod.Upper(text="x"))


def test_nano_threads_sizes_the_pool() -> None:
    assert Settings.from_env({}).threads == DEFAULT_THREADS
    assert Settings.from_env({"NANO_THREADS": "3"}).threads == 3
    with pytest.raises(SettingsError, match="NANO_THREADS must be a positive number of threads"):
        Settings.from_env({"NANO_THREADS": "0"})
