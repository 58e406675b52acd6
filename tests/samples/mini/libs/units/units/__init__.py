import msgspec


class Quantity(msgspec.Struct, frozen=True):
    amount: int
    unit: str = "piece"
