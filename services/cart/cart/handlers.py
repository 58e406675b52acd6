"""Cart handlers. The cart does not check product ids: checkout prices them later."""

from nanobuild.runtime import BadRequest, handler

from . import store
from .kernel import AddItem, Cart, CartItem, EmptyCart, GetCart


def _user(user_id: str) -> str:
    if not user_id.strip():
        raise BadRequest("user_id is empty")
    return user_id


@handler
async def add_item(req: AddItem) -> None:
    user_id = _user(req.user_id)
    if not req.item.product_id.strip():
        raise BadRequest("product_id is empty")
    if req.item.quantity <= 0:
        raise BadRequest(f"quantity must be positive, not {req.item.quantity}")
    try:
        store.add(user_id, req.item.product_id, req.item.quantity)
    except ValueError as exc:
        raise BadRequest(str(exc)) from exc


@handler
async def get_cart(req: GetCart) -> Cart:
    user_id = _user(req.user_id)
    items = [CartItem(product_id=p, quantity=q) for p, q in store.items(user_id)]
    return Cart(user_id=user_id, items=items)


@handler
async def empty_cart(req: EmptyCart) -> None:
    store.empty(_user(req.user_id))
