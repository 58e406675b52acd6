"""The cart service's public face."""

import msgspec

from nanobuild.runtime import Contract


class CartItem(msgspec.Struct, frozen=True):
    product_id: str
    quantity: int


class Cart(msgspec.Struct, frozen=True):
    user_id: str
    items: list[CartItem] = []


class AddItem(Contract[None], frozen=True):
    """Add ``item`` to the user's cart; the quantity adds up with what is there."""

    user_id: str
    item: CartItem


class GetCart(Contract[Cart], frozen=True):
    """The user's cart; a user who never added anything has an empty one."""

    user_id: str


class EmptyCart(Contract[None], frozen=True):
    """Remove every item from the user's cart."""

    user_id: str
