import asyncio
import datetime
import uuid

import msgspec
import pytest
from money import Money
from payment import cards, handlers
from payment.kernel import Charge, ChargeResult, CreditCardInfo

from nanobuild.runtime import BadRequest

NEXT_YEAR = datetime.date.today().year + 1
VISA = CreditCardInfo(
    credit_card_number="4432-8015-6152-0454",
    credit_card_cvv=672,
    credit_card_expiration_year=NEXT_YEAR,
    credit_card_expiration_month=1,
)
AMOUNT = Money("USD", 42, 500_000_000)


def charge_now(req: Charge) -> ChargeResult:
    return asyncio.run(handlers.charge(req))


def with_number(number: str) -> CreditCardInfo:
    return msgspec.structs.replace(VISA, credit_card_number=number)


def test_charges_a_valid_visa():
    result = charge_now(Charge(amount=AMOUNT, credit_card=VISA))
    assert isinstance(result, ChargeResult)
    uuid.UUID(result.transaction_id)
    assert charge_now(Charge(amount=AMOUNT, credit_card=VISA)) != result


def test_charges_a_valid_mastercard():
    for number in ("5555 5555 5555 4444", "2223003122003222"):
        assert charge_now(Charge(amount=AMOUNT, credit_card=with_number(number))).transaction_id


@pytest.mark.parametrize(
    ("number", "message"),
    [
        ("4432-8015-6152-0455", "checksum"),
        ("4432 8015 6152 045x", "12 to 19 digits"),
        ("1234", "12 to 19 digits"),
        ("378282246310005", "cannot process amex"),
        ("6011111111111117", "cannot process discover"),
    ],
)
def test_refused_numbers_are_bad_requests(number, message):
    with pytest.raises(BadRequest, match=message):
        charge_now(Charge(amount=AMOUNT, credit_card=with_number(number)))


def test_expired_card_is_refused():
    expired = msgspec.structs.replace(VISA, credit_card_expiration_year=2019)
    with pytest.raises(BadRequest, match="expired on 01/2019"):
        charge_now(Charge(amount=AMOUNT, credit_card=expired))


def test_card_expiring_this_month_is_still_good():
    today = datetime.date(2030, 6, 15)
    card = msgspec.structs.replace(
        VISA, credit_card_expiration_year=2030, credit_card_expiration_month=6
    )
    assert cards.validate(card, today) == ("visa", "0454")
    with pytest.raises(cards.CardRefused, match="expired"):
        cards.validate(card, datetime.date(2030, 7, 1))


def test_bad_month_is_refused():
    card = msgspec.structs.replace(VISA, credit_card_expiration_month=13)
    with pytest.raises(BadRequest, match="not a month"):
        charge_now(Charge(amount=AMOUNT, credit_card=card))


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        (Money("USD", 0, 0), "must be positive"),
        (Money("USD", -5, 0), "must be positive"),
        (Money("USD", 5, -1), "different signs"),
    ],
)
def test_bad_amounts_are_bad_requests(amount, message):
    with pytest.raises(BadRequest, match=message):
        charge_now(Charge(amount=amount, credit_card=VISA))


def test_luhn():
    assert cards.luhn_ok("79927398713")
    assert not cards.luhn_ok("79927398710")
