"""The currency service's public face."""

from money import Money

from nanobuild.runtime import Contract


class GetSupportedCurrencies(Contract[list[str]], frozen=True):
    """The ISO 4217 codes ``Convert`` accepts, sorted."""


class Convert(Contract[Money], frozen=True):
    """``from_`` expressed in the currency ``to_code``."""

    from_: Money
    to_code: str
