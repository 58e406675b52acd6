"""The carts: user id -> product id -> quantity, guarded by a lock."""

from __future__ import annotations

import threading

MAX_QUANTITY = 1000  # of one product in one cart

_lock = threading.Lock()
_carts: dict[str, dict[str, int]] = {}


def add(user_id: str, product_id: str, quantity: int) -> int:
    """Add ``quantity`` of ``product_id``; the new quantity, or ValueError over the cap."""
    with _lock:
        cart = _carts.setdefault(user_id, {})
        new = cart.get(product_id, 0) + quantity
        if new > MAX_QUANTITY:
            raise ValueError(f"at most {MAX_QUANTITY} of one product fit in a cart")
        cart[product_id] = new
        return new


def items(user_id: str) -> list[tuple[str, int]]:
    with _lock:
        return list(_carts.get(user_id, {}).items())


def empty(user_id: str) -> None:
    with _lock:
        _carts.pop(user_id, None)


def clear() -> None:
    """Forget every cart."""
    with _lock:
        _carts.clear()
