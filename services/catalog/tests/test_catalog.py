import asyncio

import pytest
from catalog import store
from catalog.handlers import get_product, list_products, load_catalog, search_products
from catalog.kernel import GetProduct, ListProducts, Product, SearchProducts
from money import Money

from nanobuild.runtime import BadRequest, NotFound


def run(coro):
    return asyncio.run(coro)


def test_lists_every_product_with_a_valid_usd_price():
    products = run(list_products(ListProducts()))
    assert len(products) == 9
    assert len({p.id for p in products}) == 9
    for product in products:
        assert isinstance(product, Product)
        assert product.price_usd.currency_code == "USD"
        assert product.price_usd.is_valid() and product.price_usd.is_positive()
        assert product.categories
        assert product.picture.startswith("/img/")


def test_get_product():
    product = run(get_product(GetProduct(id="OLJCESPC7Z")))
    assert product.name == "Sunglasses"
    assert product.price_usd == Money("USD", 19, 990_000_000)


def test_get_unknown_product_is_not_found():
    with pytest.raises(NotFound, match="no product 'NOPE'"):
        run(get_product(GetProduct(id="NOPE")))


def test_search_matches_name_and_description_case_insensitively():
    names = {p.name for p in run(search_products(SearchProducts(query="GLASS")))}
    # "Sunglasses" by name, "Bamboo Glass Jar" by name, nothing else
    assert names == {"Sunglasses", "Bamboo Glass Jar"}
    coffee = run(search_products(SearchProducts(query="coffee")))
    assert [p.id for p in coffee] == ["6E92ZMYYFZ"]
    assert run(search_products(SearchProducts(query="spaceship"))) == []


def test_empty_search_is_a_bad_request():
    with pytest.raises(BadRequest):
        run(search_products(SearchProducts(query="   ")))


def test_startup_hook_loads_the_data_file():
    store._products = None
    load_catalog()
    assert store._products is not None and "6E92ZMYYFZ" in store._products


def test_loads_lazily_without_the_startup_hook():
    store._products = None
    assert len(run(list_products(ListProducts()))) == 9
