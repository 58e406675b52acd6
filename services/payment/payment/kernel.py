"""The payment service's public face."""

import msgspec
from money import Money

from nanobuild.runtime import Contract


class CreditCardInfo(msgspec.Struct, frozen=True):
    credit_card_number: str
    credit_card_cvv: int
    credit_card_expiration_year: int
    credit_card_expiration_month: int


class ChargeResult(msgspec.Struct, frozen=True):
    transaction_id: str


class Charge(Contract[ChargeResult], frozen=True):
    """Charge ``amount`` to ``credit_card``; BadRequest if the card is refused."""

    amount: Money
    credit_card: CreditCardInfo
