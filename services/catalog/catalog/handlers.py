"""Catalog handlers: everything is answered from the in-memory product list."""

from nanobuild.runtime import BadRequest, NotFound, handler, on_startup

from . import store
from .kernel import GetProduct, ListProducts, Product, SearchProducts


@on_startup
def load_catalog() -> None:
    store.load()


@handler
async def list_products(req: ListProducts) -> list[Product]:
    return list(store.products().values())


@handler
async def get_product(req: GetProduct) -> Product:
    product = store.products().get(req.id)
    if product is None:
        raise NotFound(f"no product {req.id!r}")
    return product


@handler
async def search_products(req: SearchProducts) -> list[Product]:
    query = req.query.strip().lower()
    if not query:
        raise BadRequest("search query is empty")
    return [
        product
        for product in store.products().values()
        if query in product.name.lower() or query in product.description.lower()
    ]
