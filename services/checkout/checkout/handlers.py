"""Checkout handlers: the one place that calls six other services."""

import asyncio
import logging
import re
import uuid

import msgspec
from cart.kernel import CartItem, EmptyCart, GetCart
from catalog.kernel import GetProduct
from currency.kernel import Convert
from email_service.kernel import OrderItem, OrderResult, SendOrderConfirmation, ShippingAddress
from money import Money, total
from payment.kernel import Charge
from shipping.kernel import GetQuote, ShipmentItem, ShipOrder

from nanobuild.runtime import BadRequest, NanoError, call, handler

from .kernel import PlaceOrder

log = logging.getLogger(__name__)

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


async def _price(item: CartItem, currency_code: str) -> OrderItem:
    """``item`` with the price of one, converted to the user's currency."""
    product = await call(GetProduct(id=item.product_id))
    cost = await call(Convert(from_=product.price_usd, to_code=currency_code))
    return OrderItem(product_id=item.product_id, quantity=item.quantity, cost=cost)


async def _shipping_cost(req: PlaceOrder, items: list[ShipmentItem]) -> Money:
    quote = await call(GetQuote(address=req.address, items=items))
    return await call(Convert(from_=quote, to_code=req.user_currency))


@handler
async def place_order(req: PlaceOrder) -> OrderResult:
    if not _EMAIL.match(req.email):
        raise BadRequest(f"{req.email!r} is not an email address")
    cart = await call(GetCart(user_id=req.user_id))
    if not cart.items:
        raise BadRequest(f"the cart of user {req.user_id!r} is empty")
    shipment = [ShipmentItem(product_id=i.product_id, quantity=i.quantity) for i in cart.items]

    # price every item and the shipping concurrently: in memory that costs a few task
    # switches; split across processes it saves a network round trip per item
    priced, shipping_cost = await asyncio.gather(
        asyncio.gather(*(_price(item, req.user_currency) for item in cart.items)),
        _shipping_cost(req, shipment),
    )
    items: list[OrderItem] = list(priced)
    amount = total((i.cost * i.quantity for i in items), req.user_currency) + shipping_cost

    charged = await call(Charge(amount=amount, credit_card=req.credit_card))
    log.info("user %s paid %s: transaction %s", req.user_id, amount, charged.transaction_id)
    shipped = await call(ShipOrder(address=req.address, items=shipment))

    try:
        await call(EmptyCart(user_id=req.user_id))
    except NanoError as exc:  # the order is paid and shipped: do not fail it now
        log.warning("could not empty the cart of %s: %r", req.user_id, exc)

    order = OrderResult(
        order_id=str(uuid.uuid4()),
        shipping_tracking_id=shipped.tracking_id,
        shipping_cost=shipping_cost,
        shipping_address=ShippingAddress(**msgspec.structs.asdict(req.address)),
        items=items,
    )
    try:
        await call(SendOrderConfirmation(email=req.email, order=order))
    except NanoError as exc:
        log.warning("could not mail the confirmation of %s: %r", order.order_id, exc)
    return order
