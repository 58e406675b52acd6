"""Credit card validation: number checksum, card type and expiry."""

from __future__ import annotations

import datetime

from .kernel import CreditCardInfo

ACCEPTED = ("visa", "mastercard")


class CardRefused(ValueError):
    """The card cannot be charged; the message says why."""


def luhn_ok(digits: str) -> bool:
    """Whether ``digits`` passes the Luhn checksum that card numbers carry."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        digit = int(char)
        if position % 2:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def card_type(digits: str) -> str | None:
    """The card network a number belongs to, from its prefix and length."""
    length = len(digits)
    if digits.startswith("4") and length in (13, 16, 19):
        return "visa"
    if length == 16 and (51 <= int(digits[:2]) <= 55 or 2221 <= int(digits[:4]) <= 2720):
        return "mastercard"
    if digits[:2] in ("34", "37") and length == 15:
        return "amex"
    if (digits.startswith("6011") or digits.startswith("65")) and length == 16:
        return "discover"
    return None


def validate(card: CreditCardInfo, today: datetime.date) -> tuple[str, str]:
    """The card's type and its number's last four digits, or CardRefused."""
    digits = card.credit_card_number.replace(" ", "").replace("-", "")
    if not digits.isdigit() or not 12 <= len(digits) <= 19:
        raise CardRefused("credit card number must be 12 to 19 digits")
    if not luhn_ok(digits):
        raise CardRefused("credit card number is invalid (checksum)")
    kind = card_type(digits)
    if kind not in ACCEPTED:
        raise CardRefused(
            f"sorry, we cannot process {kind or 'this kind of'} credit cards: "
            "only VISA or MasterCard is accepted"
        )
    month, year = card.credit_card_expiration_month, card.credit_card_expiration_year
    if not 1 <= month <= 12:
        raise CardRefused(f"expiration month {month} is not a month")
    if (year, month) < (today.year, today.month):
        raise CardRefused(f"the credit card expired on {month:02d}/{year}")
    if not 0 <= card.credit_card_cvv <= 9999:
        raise CardRefused("the CVV must be three or four digits")
    return kind, digits[-4:]
