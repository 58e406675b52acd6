"""How shipping prices and tracks parcels (the original's flat rate and id format)."""

from __future__ import annotations

import random
import string

from money import Money

from .kernel import Address, ShipmentItem

FLAT_RATE = Money("USD", 8, 990_000_000)
_REQUIRED = ("street_address", "city", "country")


def address_problem(address: Address) -> str | None:
    missing = [name for name in _REQUIRED if not getattr(address, name).strip()]
    if missing:
        return f"address is missing {', '.join(missing)}"
    if address.zip_code < 0:
        return f"zip code {address.zip_code} is negative"
    return None


def items_problem(items: list[ShipmentItem]) -> str | None:
    for item in items:
        if item.quantity <= 0:
            return f"quantity of {item.product_id!r} must be positive, not {item.quantity}"
    return None


def quote(items: list[ShipmentItem]) -> Money:
    """A flat rate for any non-empty shipment; nothing costs nothing."""
    count = sum(item.quantity for item in items)
    return FLAT_RATE if count else Money.zero("USD")


def tracking_id(address: Address, rng: random.Random | None = None) -> str:
    """Like ``CD-1234-5678901``: two letters, then numbers salted by the address."""
    rng = rng or random.Random()
    salt = f"{address.street_address}, {address.city}, {address.state}"
    letters = "".join(rng.choice(string.ascii_uppercase) for _ in range(2))
    digits = "".join(rng.choice(string.digits) for _ in range(10))
    return f"{letters}-{len(salt)}{digits[:3]}-{len(salt) // 2}{digits[3:]}"
