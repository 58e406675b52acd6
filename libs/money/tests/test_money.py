from decimal import Decimal

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from money import CurrencyMismatch, InvalidMoney, Money, convert, total

amounts = st.integers(min_value=-(10**15), max_value=10**15)


def usd(units: int, nanos: int = 0) -> Money:
    return Money("USD", units, nanos)


def test_add_carries_nanos_into_units():
    assert usd(1, 600_000_000) + usd(2, 500_000_000) == usd(4, 100_000_000)


def test_add_keeps_signs_consistent():
    result = usd(1, 0) + usd(-1, -500_000_000)
    assert result == usd(0, -500_000_000)
    assert result.is_valid()
    assert result.is_negative()


def test_subtract():
    assert usd(10) - usd(2, 10_000_000) == usd(7, 990_000_000)


def test_multiply_by_quantity():
    assert usd(19, 990_000_000) * 3 == usd(59, 970_000_000)
    assert 3 * usd(19, 990_000_000) == usd(59, 970_000_000)
    assert usd(5) * 0 == usd(0)


def test_multiply_refuses_non_integers():
    with pytest.raises(TypeError):
        usd(1) * 1.5  # type: ignore[operator]
    with pytest.raises(TypeError):
        usd(1) * True  # type: ignore[operator]


def test_currency_mismatch():
    with pytest.raises(CurrencyMismatch, match="cannot add EUR to USD"):
        usd(1) + Money("EUR", 1, 0)


@pytest.mark.parametrize(
    ("money", "reason"),
    [
        (Money("usd", 1, 0), "three capital letters"),
        (Money("", 1, 0), "three capital letters"),
        (Money("USD", 1, 1_000_000_000), "out of range"),
        (Money("USD", 1, -1), "different signs"),
        (Money("USD", -1, 1), "different signs"),
    ],
)
def test_invalid_amounts(money, reason):
    assert not money.is_valid()
    assert reason in (money.problem() or "")
    with pytest.raises(InvalidMoney, match=reason):
        money + usd(0)


def test_total():
    assert total([usd(1, 500_000_000), usd(2, 500_000_000), usd(3)], "USD") == usd(7)
    assert total([], "JPY") == Money("JPY", 0, 0)
    with pytest.raises(CurrencyMismatch):
        total([Money("EUR", 1, 0)], "USD")


def test_decimal_round_trip():
    money = Money.from_decimal("EUR", "12.345678901")
    assert money == Money("EUR", 12, 345_678_901)
    assert money.to_decimal() == Decimal("12.345678901")
    assert Money.from_decimal("EUR", "-0.5") == Money("EUR", 0, -500_000_000)
    with pytest.raises(InvalidMoney):
        Money.from_decimal("EUR", "twelve")


def test_convert_rounds_to_the_nearest_nano():
    # 10 EUR at 1.1305 USD per EUR
    assert convert(Money("EUR", 10, 0), "1.1305", "USD") == usd(11, 305_000_000)
    # 1 USD at 1/3: 0.333333333(33...) rounds down
    third = Decimal(1) / Decimal(3)
    assert convert(usd(1), third, "XXX") == Money("XXX", 0, 333_333_333)


def test_convert_refuses_bad_rates():
    for rate in ("0", "-1", "NaN", "abc"):
        with pytest.raises(InvalidMoney):
            convert(usd(1), rate, "EUR")


def test_str():
    assert str(usd(19, 990_000_000)) == "19.99 USD"


def test_money_crosses_the_wire():
    money = usd(-3, -250_000_000)
    data = msgspec.json.encode(money)
    assert data == b'{"currency_code":"USD","units":-3,"nanos":-250000000}'
    assert msgspec.json.decode(data, type=Money) == money


@given(amounts, amounts)
def test_add_matches_integer_arithmetic(a, b):
    x, y = Money.from_nanos("USD", a), Money.from_nanos("USD", b)
    result = x + y
    assert result.is_valid()
    assert result.to_nanos() == a + b


@given(amounts, st.integers(min_value=-1000, max_value=1000))
def test_multiply_matches_integer_arithmetic(a, n):
    result = Money.from_nanos("USD", a) * n
    assert result.is_valid()
    assert result.to_nanos() == a * n


@given(amounts)
def test_from_nanos_is_always_valid(a):
    money = Money.from_nanos("USD", a)
    assert money.is_valid()
    assert money.to_nanos() == a
