"""Currency handlers: conversion goes through the euro, like the original service."""

from money import Money, MoneyError, convert

from nanobuild.runtime import BadRequest, handler, on_startup

from . import rates
from .kernel import Convert, GetSupportedCurrencies


@on_startup
def load_rates() -> None:
    rates.load()


@handler
async def get_supported_currencies(req: GetSupportedCurrencies) -> list[str]:
    return sorted(rates.rates())


@handler
async def convert_money(req: Convert) -> Money:
    table = rates.rates()
    source = req.from_
    problem = source.problem()
    if problem is not None:
        raise BadRequest(f"invalid amount: {problem}")
    for code in (source.currency_code, req.to_code):
        if code not in table:
            raise BadRequest(f"unsupported currency {code!r}")
    if source.currency_code == req.to_code:
        return source
    try:
        return convert(source, table[req.to_code] / table[source.currency_code], req.to_code)
    except MoneyError as exc:
        raise BadRequest(f"cannot convert {source}: {exc}") from exc
