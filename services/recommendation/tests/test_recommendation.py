import asyncio

import pytest
from catalog.kernel import ListProducts, Product
from money import Money
from recommendation.handlers import list_recommendations
from recommendation.kernel import ListRecommendations

from nanobuild.runtime import Unavailable
from nanobuild.runtime.testing import fake

IDS = [f"P{n}" for n in range(8)]


def product(product_id: str) -> Product:
    return Product(
        id=product_id,
        name=product_id,
        description="",
        picture="",
        price_usd=Money("USD", 1, 0),
        categories=["misc"],
    )


@pytest.fixture
def catalog_of():
    """Fake a catalog, for the whole test, holding the ids it is given; return its calls."""
    calls: list[ListProducts] = []
    stock: list[str] = []

    async def list_products(req: ListProducts) -> list[Product]:
        calls.append(req)
        return [product(i) for i in stock]

    def holding(ids: list[str]) -> list[ListProducts]:
        stock[:] = ids
        return calls

    with fake({ListProducts: list_products}):
        yield holding


def recommend(*exclude: str) -> list[str]:
    return asyncio.run(
        list_recommendations(ListRecommendations(user_id="u1", product_ids=list(exclude)))
    )


def test_recommends_five_distinct_catalog_products(catalog_of):
    calls = catalog_of(IDS)
    ids = recommend()
    assert len(ids) == 5
    assert len(set(ids)) == 5
    assert set(ids) <= set(IDS)
    assert calls == [ListProducts()]


def test_never_recommends_what_the_user_already_has(catalog_of):
    catalog_of(IDS)
    for _ in range(20):
        ids = recommend("P0", "P1", "P2")
        assert not {"P0", "P1", "P2"} & set(ids)
        assert len(ids) == 5


def test_fewer_candidates_than_five(catalog_of):
    catalog_of(IDS[:4])
    assert sorted(recommend("P3")) == ["P0", "P1", "P2"]
    assert recommend(*IDS[:4]) == []


def test_catalog_errors_reach_the_caller():
    async def down(req: ListProducts) -> list[Product]:
        raise Unavailable("catalog is down")

    with fake({ListProducts: down}), pytest.raises(Unavailable, match="catalog is down"):
        recommend()
