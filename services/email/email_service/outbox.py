"""Rendering confirmations, and the latest ones sent (the demo sends no real mail)."""

from __future__ import annotations

import collections

import msgspec
from money import total

from .kernel import OrderResult


class Sent(msgspec.Struct, frozen=True):
    to: str
    subject: str
    body: str


SENT: collections.deque[Sent] = collections.deque(maxlen=100)


def render(order: OrderResult) -> tuple[str, str]:
    """The subject and plain-text body of ``order``'s confirmation."""
    code = order.shipping_cost.currency_code
    lines = [
        "Thank you for your order!",
        "",
        f"Order: {order.order_id}",
        f"Tracking: {order.shipping_tracking_id}",
        "",
    ]
    for item in order.items:
        line_total = item.cost * item.quantity
        lines.append(f"  {item.quantity} x {item.product_id}  {line_total}")
    lines.append(f"  shipping  {order.shipping_cost}")
    grand = total([i.cost * i.quantity for i in order.items], code) + order.shipping_cost
    lines.append(f"  total  {grand}")
    a = order.shipping_address
    lines += ["", "Ships to:", f"  {a.street_address}", f"  {a.zip_code} {a.city} {a.state}"]
    lines.append(f"  {a.country}")
    return f"Your order {order.order_id}", "\n".join(lines)
