"""Exchange rates: how many units of each currency one euro buys (``data/rates.json``)."""

from __future__ import annotations

from decimal import Decimal
from importlib.resources import files

import msgspec

_rates: dict[str, Decimal] | None = None


def load() -> dict[str, Decimal]:
    global _rates
    data = (files(__package__) / "data" / "rates.json").read_bytes()
    raw = msgspec.json.decode(data, type=dict[str, str])
    _rates = {code: Decimal(rate) for code, rate in raw.items()}
    return _rates


def rates() -> dict[str, Decimal]:
    """The rate table, loaded on first use if the startup hook has not run."""
    return _rates if _rates is not None else load()
