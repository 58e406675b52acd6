"""The shipping service's public face.

Shipping depends on no other service, so it names the goods it ships with its own
``ShipmentItem`` (the same fields as the cart's ``CartItem``).
"""

import msgspec
from money import Money

from nanobuild.runtime import Contract


class Address(msgspec.Struct, frozen=True):
    street_address: str
    city: str
    state: str
    country: str
    zip_code: int


class ShipmentItem(msgspec.Struct, frozen=True):
    product_id: str
    quantity: int


class ShipOrderResult(msgspec.Struct, frozen=True):
    tracking_id: str


class GetQuote(Contract[Money], frozen=True):
    """What shipping ``items`` to ``address`` costs, in USD."""

    address: Address
    items: list[ShipmentItem]


class ShipOrder(Contract[ShipOrderResult], frozen=True):
    """Ship ``items`` to ``address``; the answer carries the tracking id."""

    address: Address
    items: list[ShipmentItem]
