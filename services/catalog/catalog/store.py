"""The product list, read once from ``data/products.json`` shipped in the package."""

from __future__ import annotations

from importlib.resources import files

import msgspec

from .kernel import Product

_products: dict[str, Product] | None = None


def load() -> dict[str, Product]:
    """(Re)read the product file; products keep their order in the file."""
    global _products
    data = (files(__package__) / "data" / "products.json").read_bytes()
    products = msgspec.json.decode(data, type=list[Product])
    _products = {product.id: product for product in products}
    return _products


def products() -> dict[str, Product]:
    """The catalog, loaded on first use if the startup hook has not run."""
    return _products if _products is not None else load()
