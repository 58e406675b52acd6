"""Test doubles for service code: answer the contracts a service calls without their services.

A service's unit tests fake what it calls, by construction rather than by patching::

    from nanobuild.runtime.testing import fake

    async def test_recommends_from_the_catalog():
        with fake({ListProducts: lambda req: [Product(id="A", ...)]}):
            assert await recommend(...) == [...]

Inside the block, ``call(ListProducts(...))`` runs the fake (a function of the
request, ``def`` or ``async def``, returning the response or raising a ``NanoError``);
every other contract is routed as it was before, and the routes in place before the
block are back after it, however it ends. The route table is one per process, so
``fake`` blocks nest as ``with`` blocks do: one test (or task) fakes at a time.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from nanobuild.runtime import router
from nanobuild.runtime.contracts import is_contract

Fake = Callable[[Any], Any]


@contextmanager
def fake(answers: Mapping[type, Fake]) -> Iterator[None]:
    """Answer each contract class in ``answers`` with its function, inside the block."""
    for contract in answers:
        if not is_contract(contract):
            raise TypeError(f"fake() takes contract classes, not {contract!r}")
    before = router.installed()
    router.install({**before, **{c: _route(fn) for c, fn in answers.items()}})
    try:
        yield
    finally:
        router.install(before)


def _route(fn: Fake) -> Callable[[Any], Awaitable[Any]]:
    async def answer(request: Any) -> Any:
        result = fn(request)  # a def, an async def, or an object with an async __call__
        return await result if inspect.isawaitable(result) else result

    return answer
