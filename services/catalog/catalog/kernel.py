"""The catalog's public face: products and the three ways to look them up."""

import msgspec
from money import Money

from nanobuild.runtime import Contract


class Product(msgspec.Struct, frozen=True):
    id: str
    name: str
    description: str
    picture: str  # path of the product's image, served by the frontend
    price_usd: Money
    categories: list[str] = []


class ListProducts(Contract[list[Product]], frozen=True):
    """Every product, in catalog order."""


class GetProduct(Contract[Product], frozen=True):
    """One product by id; NotFound if there is none."""

    id: str


class SearchProducts(Contract[list[Product]], frozen=True):
    """Products whose name or description contains ``query`` (case-insensitive)."""

    query: str
