"""Recommendation handlers: a random pick among the products the user is not looking at."""

import random

from catalog.kernel import ListProducts

from nanobuild.runtime import call, handler

from .kernel import ListRecommendations

MAX_RECOMMENDATIONS = 5


@handler
async def list_recommendations(req: ListRecommendations) -> list[str]:
    products = await call(ListProducts())
    excluded = set(req.product_ids)
    candidates = [product.id for product in products if product.id not in excluded]
    return random.sample(candidates, min(MAX_RECOMMENDATIONS, len(candidates)))
