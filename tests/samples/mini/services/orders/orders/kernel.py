import msgspec

from nanobuild.runtime import Contract
from units import Quantity


class Order(msgspec.Struct, frozen=True):
    user_name: str
    quantity: Quantity


class PlaceOrder(Contract[Order], frozen=True):
    user_id: str
    quantity: Quantity
