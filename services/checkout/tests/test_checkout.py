import asyncio
import datetime
from decimal import Decimal

import pytest
from cart.kernel import Cart, CartItem, EmptyCart, GetCart
from catalog.kernel import GetProduct, Product
from checkout.handlers import place_order
from checkout.kernel import PlaceOrder
from currency.kernel import Convert
from email_service.kernel import OrderResult, SendOrderConfirmation, ShippingAddress
from money import Money, convert
from payment.kernel import Charge, ChargeResult, CreditCardInfo
from shipping.kernel import Address, GetQuote, ShipmentItem, ShipOrder, ShipOrderResult

from nanobuild.runtime import BadRequest, NotFound, Unavailable
from nanobuild.runtime.testing import fake

ADDRESS = Address(
    street_address="1600 Amphitheatre Parkway",
    city="Mountain View",
    state="CA",
    country="United States",
    zip_code=94043,
)
CARD = CreditCardInfo(
    credit_card_number="4432-8015-6152-0454",
    credit_card_cvv=672,
    credit_card_expiration_year=datetime.date.today().year + 1,
    credit_card_expiration_month=1,
)
PRICES = {
    "MUG": Money("USD", 8, 990_000_000),
    "JAR": Money("USD", 5, 490_000_000),
}
RATES = {"USD": Decimal("1.0"), "EUR": Decimal("0.5")}  # per USD, to keep the sums easy
QUOTE = Money("USD", 8, 990_000_000)


class World:
    """Fake cart, catalog, currency, shipping, payment and email, recording every call."""

    def __init__(self) -> None:
        self.carts: dict[str, list[CartItem]] = {}
        self.calls: list[object] = []
        self.failing: dict[type, Exception] = {}

    def answers(self):
        """What each faked contract answers, for ``fake``: record the call, then answer."""

        def route(contract, answer):
            def recorded(req):
                self.calls.append(req)
                if contract in self.failing:
                    raise self.failing[contract]
                return answer(req)

            return recorded

        return {
            GetCart: route(GetCart, lambda r: Cart(r.user_id, list(self.carts.get(r.user_id, [])))),
            EmptyCart: route(EmptyCart, lambda r: self.carts.pop(r.user_id, None) and None),
            GetProduct: route(GetProduct, self.product),
            Convert: route(
                Convert,
                lambda r: convert(
                    r.from_, RATES[r.to_code] / RATES[r.from_.currency_code], r.to_code
                ),
            ),
            GetQuote: route(GetQuote, lambda r: QUOTE),
            ShipOrder: route(ShipOrder, lambda r: ShipOrderResult(tracking_id="TR-1")),
            Charge: route(Charge, lambda r: ChargeResult(transaction_id="TX-1")),
            SendOrderConfirmation: route(SendOrderConfirmation, lambda r: None),
        }

    @staticmethod
    def product(req: GetProduct) -> Product:
        if req.id not in PRICES:
            raise NotFound(f"no product {req.id!r}")
        return Product(req.id, req.id, "", "", PRICES[req.id], [])

    def sent(self, contract: type) -> list:
        return [c for c in self.calls if type(c) is contract]


@pytest.fixture
def world():
    w = World()
    with fake(w.answers()):
        yield w


def order(user: str = "u1", currency: str = "EUR", email: str = "someone@example.com"):
    request = PlaceOrder(
        user_id=user, user_currency=currency, address=ADDRESS, email=email, credit_card=CARD
    )
    return asyncio.run(place_order(request))


def test_places_an_order_priced_in_the_user_currency(world):
    world.carts["u1"] = [CartItem("MUG", 2), CartItem("JAR", 1)]
    result = order()

    assert isinstance(result, OrderResult)
    assert result.order_id
    assert result.shipping_tracking_id == "TR-1"
    assert [(i.product_id, i.quantity, i.cost) for i in result.items] == [
        ("MUG", 2, Money("EUR", 4, 495_000_000)),
        ("JAR", 1, Money("EUR", 2, 745_000_000)),
    ]
    assert result.shipping_cost == Money("EUR", 4, 495_000_000)
    assert result.shipping_address == ShippingAddress(
        street_address=ADDRESS.street_address,
        city=ADDRESS.city,
        state=ADDRESS.state,
        country=ADDRESS.country,
        zip_code=ADDRESS.zip_code,
    )

    # 2 * 4.495 + 2.745 + 4.495 shipping
    [charge] = world.sent(Charge)
    assert charge.amount == Money("EUR", 16, 230_000_000)
    assert charge.credit_card == CARD

    [quote] = world.sent(GetQuote)
    [ship] = world.sent(ShipOrder)
    items = [ShipmentItem("MUG", 2), ShipmentItem("JAR", 1)]
    assert quote.items == ship.items == items
    assert quote.address == ship.address == ADDRESS

    assert "u1" not in world.carts
    [mail] = world.sent(SendOrderConfirmation)
    assert mail.email == "someone@example.com"
    assert mail.order == result


def test_order_ids_are_unique(world):
    world.carts["u1"] = [CartItem("MUG", 1)]
    first = order()
    world.carts["u1"] = [CartItem("MUG", 1)]
    assert order().order_id != first.order_id


def test_same_currency_needs_no_rounding(world):
    world.carts["u1"] = [CartItem("MUG", 3)]
    result = order(currency="USD")
    [charge] = world.sent(Charge)
    assert charge.amount == Money("USD", 35, 960_000_000)  # 3 * 8.99 + 8.99
    assert result.items[0].cost == PRICES["MUG"]


def test_empty_cart_is_a_bad_request(world):
    with pytest.raises(BadRequest, match="cart of user 'u1' is empty"):
        order()
    assert not world.sent(Charge)
    assert not world.sent(ShipOrder)


def test_bad_email_is_refused_before_anything_happens(world):
    world.carts["u1"] = [CartItem("MUG", 1)]
    with pytest.raises(BadRequest, match="not an email address"):
        order(email="nobody")
    assert world.calls == []


def test_unknown_product_fails_the_order_before_charging(world):
    world.carts["u1"] = [CartItem("MUG", 1), CartItem("GHOST", 1)]
    with pytest.raises(NotFound, match="GHOST"):
        order()
    assert not world.sent(Charge)
    assert world.carts["u1"]


def test_refused_payment_neither_ships_nor_empties_the_cart(world):
    world.carts["u1"] = [CartItem("MUG", 1)]
    world.failing[Charge] = BadRequest("card expired")
    with pytest.raises(BadRequest, match="card expired"):
        order()
    assert not world.sent(ShipOrder)
    assert not world.sent(EmptyCart)
    assert world.carts["u1"] == [CartItem("MUG", 1)]


def test_failing_email_and_cart_do_not_fail_a_paid_order(world):
    world.carts["u1"] = [CartItem("JAR", 2)]
    world.failing[SendOrderConfirmation] = Unavailable("email is down")
    world.failing[EmptyCart] = Unavailable("cart is down")
    result = order()
    assert result.shipping_tracking_id == "TR-1"
    assert len(world.sent(SendOrderConfirmation)) == 1
    assert len(world.sent(Charge)) == 1
