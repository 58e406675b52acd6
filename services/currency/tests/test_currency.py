import asyncio

import pytest
from currency import rates
from currency.handlers import convert_money, get_supported_currencies, load_rates
from currency.kernel import Convert, GetSupportedCurrencies
from money import Money

from nanobuild.runtime import BadRequest


def run(coro):
    return asyncio.run(coro)


def test_supported_currencies_are_sorted_and_include_the_usual_ones():
    codes = run(get_supported_currencies(GetSupportedCurrencies()))
    assert codes == sorted(codes)
    assert {"EUR", "USD", "JPY", "GBP", "CAD"} <= set(codes)


def test_convert_from_euro_uses_the_rate_directly():
    result = run(convert_money(Convert(from_=Money("EUR", 10, 0), to_code="USD")))
    assert result == Money("USD", 11, 305_000_000)


def test_convert_between_two_non_euro_currencies_goes_through_the_euro():
    result = run(convert_money(Convert(from_=Money("USD", 19, 990_000_000), to_code="JPY")))
    assert result.currency_code == "JPY"
    # 19.99 / 1.1305 * 126.40 = 2235.0641...
    assert result.units == 2235
    assert 60_000_000 < result.nanos < 70_000_000


def test_round_trip_stays_within_a_nano_or_two():
    start = Money("USD", 123, 450_000_000)
    there = run(convert_money(Convert(from_=start, to_code="GBP")))
    back = run(convert_money(Convert(from_=there, to_code="USD")))
    assert abs(back.to_nanos() - start.to_nanos()) <= 2


def test_same_currency_is_unchanged():
    money = Money("CHF", 5, 500_000_000)
    assert run(convert_money(Convert(from_=money, to_code="CHF"))) == money


@pytest.mark.parametrize(
    ("source", "to_code", "message"),
    [
        (Money("USD", 1, 0), "XYZ", "unsupported currency 'XYZ'"),
        (Money("ABC", 1, 0), "USD", "unsupported currency 'ABC'"),
        (Money("USD", 1, -5), "EUR", "different signs"),
        (Money("USD", 0, 2_000_000_000), "EUR", "out of range"),
    ],
)
def test_bad_conversions_are_bad_requests(source, to_code, message):
    with pytest.raises(BadRequest, match=message):
        run(convert_money(Convert(from_=source, to_code=to_code)))


def test_startup_hook_and_lazy_load_give_the_same_table():
    rates._rates = None
    lazy = dict(rates.rates())
    rates._rates = None
    load_rates()
    assert rates._rates == lazy
    assert lazy["EUR"] == 1
