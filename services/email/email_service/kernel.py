"""The email service's public face, and the shape of a placed order.

Email depends on no other service, so the order it mails is described here with
its own types; checkout answers ``PlaceOrder`` with this ``OrderResult``.
"""

import msgspec
from money import Money

from nanobuild.runtime import Contract


class ShippingAddress(msgspec.Struct, frozen=True):
    """Where the order goes (the same fields as shipping's ``Address``)."""

    street_address: str
    city: str
    state: str
    country: str
    zip_code: int


class OrderItem(msgspec.Struct, frozen=True):
    product_id: str
    quantity: int
    cost: Money  # the price of one, in the order's currency


class OrderResult(msgspec.Struct, frozen=True):
    order_id: str
    shipping_tracking_id: str
    shipping_cost: Money
    shipping_address: ShippingAddress
    items: list[OrderItem]


class SendOrderConfirmation(Contract[None], frozen=True):
    """Mail the confirmation of ``order`` to ``email``."""

    email: str
    order: OrderResult
