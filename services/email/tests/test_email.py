import asyncio

import pytest
from email_service import outbox
from email_service.handlers import send_order_confirmation
from email_service.kernel import OrderItem, OrderResult, SendOrderConfirmation, ShippingAddress
from money import Money

from nanobuild.runtime import BadRequest

ORDER = OrderResult(
    order_id="order-1",
    shipping_tracking_id="AB-44123-221234567",
    shipping_cost=Money("EUR", 7, 950_000_000),
    shipping_address=ShippingAddress(
        street_address="1600 Amphitheatre Parkway",
        city="Mountain View",
        state="CA",
        country="United States",
        zip_code=94043,
    ),
    items=[
        OrderItem(product_id="OLJCESPC7Z", quantity=2, cost=Money("EUR", 17, 680_000_000)),
        OrderItem(product_id="6E92ZMYYFZ", quantity=1, cost=Money("EUR", 7, 950_000_000)),
    ],
)


@pytest.fixture(autouse=True)
def empty_outbox():
    outbox.SENT.clear()
    yield
    outbox.SENT.clear()


def send(email: str, order: OrderResult = ORDER) -> None:
    return asyncio.run(send_order_confirmation(SendOrderConfirmation(email=email, order=order)))


def test_confirmation_is_recorded_with_totals():
    assert send("someone@example.com") is None
    [mail] = outbox.SENT
    assert mail.to == "someone@example.com"
    assert mail.subject == "Your order order-1"
    assert "Tracking: AB-44123-221234567" in mail.body
    assert "2 x OLJCESPC7Z  35.36 EUR" in mail.body
    # 2 * 17.68 + 7.95 + 7.95 shipping
    assert "total  51.26 EUR" in mail.body
    assert "94043 Mountain View CA" in mail.body


@pytest.mark.parametrize("email", ["", "someone", "a@b", "two words@example.com"])
def test_bad_email_address_is_a_bad_request(email):
    with pytest.raises(BadRequest, match="not an email address"):
        send(email)
    assert not outbox.SENT


def test_mixed_currencies_are_a_bad_request():
    order = OrderResult(
        order_id="order-2",
        shipping_tracking_id="x",
        shipping_cost=Money("USD", 1, 0),
        shipping_address=ORDER.shipping_address,
        items=ORDER.items,
    )
    with pytest.raises(BadRequest, match="bad amounts"):
        send("someone@example.com", order)
