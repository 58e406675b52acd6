"""The system benchmark's correctness pass: every system it times answers alike.

``bench/system.py --check`` starts the boutique binary fused, split one process per
service and split in three groups, and the FastAPI microservices with httpx and with
aiohttp (and the bare ASGI floor), sends each request of the mix once, and compares
the answers with ids and random picks checked and masked. The timed runs stay out of
the tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"


def test_every_system_answers_the_mix_alike() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH / "system.py"), "--check"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    verdicts = dict(line.split(None, 1) for line in done.stdout.splitlines() if line[:2] == "  ")
    assert verdicts.pop("fused") == "reference"
    assert verdicts.pop("asgi-floor") == "every call answered"
    assert verdicts == dict.fromkeys(
        ["split", "split3", "fastapi-httpx", "fastapi-aiohttp"], "same answers as fused"
    )
    assert "calls per system: same answers" in done.stdout
    assert "Traceback" not in done.stderr


@pytest.fixture(scope="module")
def system() -> Any:
    """bench/system.py as a module, with its siblings importable."""
    sys.path.insert(0, str(BENCH))
    try:
        import system as module  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(BENCH))
    return module


def test_ids_are_masked_but_a_wrong_answer_is_not(system: Any) -> None:
    mix = system.mix
    order = mix.api("checkout", "PlaceOrder", {})
    answer = {
        "order_id": "0b6c1b2e-5d1f-4f63-9a52-1f1b1c9f7a10",
        "shipping_tracking_id": "AB-44123-224567890",
        "items": [{"product_id": "OLJCESPC7Z", "quantity": 2}],
    }
    masked = system.normalised(order, 200, json.dumps(answer).encode())
    assert masked == (200, answer | {"order_id": "<uuid>", "shipping_tracking_id": "<tracking id>"})
    with pytest.raises(ValueError):
        system.normalised(order, 200, json.dumps(answer | {"order_id": "42"}).encode())

    in_cart = mix.PRODUCTS[0]["id"]
    ask = mix.api(
        "recommendation", "ListRecommendations", {"user_id": "u", "product_ids": [in_cart]}
    )
    others = [p["id"] for p in mix.PRODUCTS[1:6]]
    assert system.normalised(ask, 200, json.dumps(others).encode())[1] == (
        "<5 products not in the cart>"
    )
    with pytest.raises(AssertionError):
        system.normalised(ask, 200, json.dumps([in_cart, *others[:4]]).encode())


def test_the_mix_assumptions_are_checked_on_the_answers(system: Any) -> None:
    mix = system.mix
    quote = mix.api("shipping", "GetQuote", {})
    system.assumptions([quote], [(200, json.dumps(mix.FLAT_QUOTE).encode())])
    changed = mix.FLAT_QUOTE | {"units": 9}
    with pytest.raises(AssertionError, match="the quote changed"):
        system.assumptions([quote], [(200, json.dumps(changed).encode())])


def test_every_task_of_the_locustfile_is_in_the_check_script(system: Any) -> None:
    actions = system.mix.check_script("u")
    assert {a.task for a in actions} == set(system.mix.TASKS)
    contracts = {c.contract for a in actions for c in a.calls() if c.method == "POST"}
    assert contracts == {
        "catalog/ListProducts",
        "currency/GetSupportedCurrencies",
        "currency/Convert",
        "cart/GetCart",
        "cart/AddItem",
        "shipping/GetQuote",
        "recommendation/ListRecommendations",
        "ad/GetAds",
        "checkout/PlaceOrder",
    }
