import asyncio
import random
import re

import msgspec
import pytest
from money import Money
from shipping import rules
from shipping.handlers import get_quote, ship_order
from shipping.kernel import Address, GetQuote, ShipmentItem, ShipOrder

from nanobuild.runtime import BadRequest

HOME = Address(
    street_address="1600 Amphitheatre Parkway",
    city="Mountain View",
    state="CA",
    country="United States",
    zip_code=94043,
)
ITEMS = [ShipmentItem("OLJCESPC7Z", 2), ShipmentItem("6E92ZMYYFZ", 1)]


def run(coro):
    return asyncio.run(coro)


def test_quote_is_a_flat_usd_rate():
    quote = run(get_quote(GetQuote(address=HOME, items=ITEMS)))
    assert quote == Money("USD", 8, 990_000_000)
    assert run(get_quote(GetQuote(address=HOME, items=ITEMS[:1]))) == quote


def test_quote_for_nothing_is_zero():
    assert run(get_quote(GetQuote(address=HOME, items=[]))) == Money("USD", 0, 0)


def test_ship_order_returns_a_tracking_id():
    result = run(ship_order(ShipOrder(address=HOME, items=ITEMS)))
    assert re.fullmatch(r"[A-Z]{2}-\d+-\d+", result.tracking_id)
    other = run(ship_order(ShipOrder(address=HOME, items=ITEMS)))
    assert other.tracking_id != result.tracking_id


def test_tracking_id_is_salted_by_the_address():
    salt = "1600 Amphitheatre Parkway, Mountain View, CA"
    tracking = rules.tracking_id(HOME, random.Random(7))
    assert tracking == rules.tracking_id(HOME, random.Random(7))
    letters, first, second = tracking.split("-")
    assert len(letters) == 2
    assert first.startswith(str(len(salt))) and len(first) == len(str(len(salt))) + 3
    assert second.startswith(str(len(salt) // 2))


def test_shipping_nothing_is_a_bad_request():
    with pytest.raises(BadRequest, match="nothing to ship"):
        run(ship_order(ShipOrder(address=HOME, items=[])))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"street_address": ""}, "missing street_address"),
        ({"city": " ", "country": ""}, "missing city, country"),
        ({"zip_code": -1}, "negative"),
    ],
)
def test_bad_addresses_are_bad_requests(changes, message):
    address = msgspec.structs.replace(HOME, **changes)
    for contract, handle in ((GetQuote, get_quote), (ShipOrder, ship_order)):
        with pytest.raises(BadRequest, match=message):
            run(handle(contract(address=address, items=ITEMS)))


def test_non_positive_quantities_are_bad_requests():
    with pytest.raises(BadRequest, match="must be positive"):
        run(get_quote(GetQuote(address=HOME, items=[ShipmentItem("X", 0)])))
