"""Money: an amount in one currency, as units plus nanos, and its arithmetic.

The shape follows Online Boutique's ``Money`` message (``google.type.Money``):
``units`` is the whole part, ``nanos`` the fractional part in billionths, and both
carry the same sign. ``Money("USD", 19, 990_000_000)`` is 19.99 US dollars.

Pure Python plus msgspec, so any kernel may use ``Money`` in its contracts.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

import msgspec

__all__ = [
    "NANOS_PER_UNIT",
    "CurrencyMismatch",
    "InvalidMoney",
    "Money",
    "MoneyError",
    "convert",
    "total",
]

NANOS_PER_UNIT = 1_000_000_000
_NANO = Decimal("1e-9")


class MoneyError(ValueError):
    """Base of the errors money arithmetic raises."""


class InvalidMoney(MoneyError):
    """The amount is malformed: bad currency code, nanos out of range, or mixed signs."""


class CurrencyMismatch(MoneyError):
    """Two amounts in different currencies were combined."""


class Money(msgspec.Struct, frozen=True):
    """An amount of money in one currency (ISO 4217 code)."""

    currency_code: str
    units: int = 0
    nanos: int = 0

    # -- construction

    @classmethod
    def zero(cls, currency_code: str) -> Money:
        return cls(currency_code, 0, 0)

    @classmethod
    def from_nanos(cls, currency_code: str, nanos: int) -> Money:
        """The amount ``nanos`` billionths of one unit."""
        units, rest = divmod(abs(nanos), NANOS_PER_UNIT)
        sign = -1 if nanos < 0 else 1
        return cls(currency_code, sign * units, sign * rest)

    @classmethod
    def from_decimal(cls, currency_code: str, amount: Decimal | str | int) -> Money:
        """``amount`` rounded (half to even) to the nearest nano."""
        try:
            value = Decimal(amount).quantize(_NANO, rounding=ROUND_HALF_EVEN)
        except InvalidOperation as exc:
            raise InvalidMoney(f"{amount!r} is not a decimal amount") from exc
        return cls.from_nanos(currency_code, int(value.scaleb(9)))

    # -- inspection

    def to_nanos(self) -> int:
        """The whole amount in billionths of one unit."""
        return self.units * NANOS_PER_UNIT + self.nanos

    def to_decimal(self) -> Decimal:
        return Decimal(self.to_nanos()).scaleb(-9)

    def problem(self) -> str | None:
        """Why this amount is malformed, or None when it is valid."""
        code = self.currency_code
        if len(code) != 3 or not code.isascii() or not code.isalpha() or not code.isupper():
            return f"currency code {code!r} is not three capital letters"
        if not -NANOS_PER_UNIT < self.nanos < NANOS_PER_UNIT:
            return f"nanos {self.nanos} is out of range (-999999999..999999999)"
        if (self.units > 0 and self.nanos < 0) or (self.units < 0 and self.nanos > 0):
            return f"units {self.units} and nanos {self.nanos} have different signs"
        return None

    def is_valid(self) -> bool:
        return self.problem() is None

    def check(self) -> Money:
        """``self`` if valid, else ``InvalidMoney`` saying why."""
        problem = self.problem()
        if problem is not None:
            raise InvalidMoney(problem)
        return self

    def is_zero(self) -> bool:
        return self.units == 0 and self.nanos == 0

    def is_positive(self) -> bool:
        return self.to_nanos() > 0

    def is_negative(self) -> bool:
        return self.to_nanos() < 0

    # -- arithmetic

    def __add__(self, other: Money) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        self.check()
        other.check()
        if other.currency_code != self.currency_code:
            raise CurrencyMismatch(f"cannot add {other.currency_code} to {self.currency_code}")
        return Money.from_nanos(self.currency_code, self.to_nanos() + other.to_nanos())

    def __neg__(self) -> Money:
        return Money(self.currency_code, -self.units, -self.nanos)

    def __sub__(self, other: Money) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        return self + (-other)

    def __mul__(self, factor: int) -> Money:
        if not isinstance(factor, int) or isinstance(factor, bool):
            return NotImplemented
        self.check()
        return Money.from_nanos(self.currency_code, self.to_nanos() * factor)

    __rmul__ = __mul__

    def __str__(self) -> str:
        return f"{self.to_decimal():.2f} {self.currency_code}"


def total(amounts: Iterable[Money], currency_code: str) -> Money:
    """The sum of ``amounts``, all in ``currency_code`` (zero if there are none)."""
    result = Money.zero(currency_code)
    for amount in amounts:
        result = result + amount
    return result


def convert(amount: Money, rate: Decimal | str | int, to_code: str) -> Money:
    """``amount`` times ``rate``, expressed in ``to_code``, rounded to the nearest nano.

    ``rate`` is how many ``to_code`` units one unit of ``amount`` is worth.
    """
    amount.check()
    try:
        factor = Decimal(rate)
    except InvalidOperation as exc:
        raise InvalidMoney(f"rate {rate!r} is not a decimal number") from exc
    if not factor.is_finite() or factor <= 0:
        raise InvalidMoney(f"rate {rate!r} must be a positive number")
    return Money.from_decimal(to_code, amount.to_decimal() * factor).check()
