import asyncio

import pytest
from cart import store
from cart.handlers import add_item, empty_cart, get_cart
from cart.kernel import AddItem, Cart, CartItem, EmptyCart, GetCart

from nanobuild.runtime import BadRequest


@pytest.fixture(autouse=True)
def fresh_carts():
    store.clear()
    yield
    store.clear()


def run(coro):
    return asyncio.run(coro)


def add(user, product, quantity):
    return run(add_item(AddItem(user_id=user, item=CartItem(product, quantity))))


def test_new_user_has_an_empty_cart():
    assert run(get_cart(GetCart(user_id="u1"))) == Cart(user_id="u1", items=[])


def test_quantities_of_the_same_product_add_up():
    assert add("u1", "MUG", 2) is None
    add("u1", "JAR", 1)
    add("u1", "MUG", 3)
    cart = run(get_cart(GetCart(user_id="u1")))
    assert cart.items == [CartItem("MUG", 5), CartItem("JAR", 1)]


def test_carts_are_per_user():
    add("u1", "MUG", 1)
    add("u2", "JAR", 4)
    assert run(get_cart(GetCart(user_id="u1"))).items == [CartItem("MUG", 1)]
    assert run(get_cart(GetCart(user_id="u2"))).items == [CartItem("JAR", 4)]


def test_empty_cart_only_empties_that_user():
    add("u1", "MUG", 1)
    add("u2", "JAR", 1)
    assert run(empty_cart(EmptyCart(user_id="u1"))) is None
    assert run(get_cart(GetCart(user_id="u1"))).items == []
    assert run(get_cart(GetCart(user_id="u2"))).items == [CartItem("JAR", 1)]
    run(empty_cart(EmptyCart(user_id="nobody")))  # emptying an empty cart is fine


@pytest.mark.parametrize("quantity", [0, -1])
def test_non_positive_quantity_is_a_bad_request(quantity):
    with pytest.raises(BadRequest, match="quantity must be positive"):
        add("u1", "MUG", quantity)
    assert run(get_cart(GetCart(user_id="u1"))).items == []


def test_blank_ids_are_bad_requests():
    with pytest.raises(BadRequest, match="user_id"):
        add(" ", "MUG", 1)
    with pytest.raises(BadRequest, match="product_id"):
        add("u1", "", 1)
    with pytest.raises(BadRequest, match="user_id"):
        run(get_cart(GetCart(user_id="")))


def test_quantity_is_capped():
    add("u1", "MUG", store.MAX_QUANTITY)
    with pytest.raises(BadRequest, match="at most"):
        add("u1", "MUG", 1)
    assert run(get_cart(GetCart(user_id="u1"))).items == [CartItem("MUG", store.MAX_QUANTITY)]
