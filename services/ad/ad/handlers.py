"""Ad handlers."""

import random

from nanobuild.runtime import handler, on_startup

from . import inventory
from .kernel import Ad, GetAds

MAX_RANDOM_ADS = 2


@on_startup
def load_ads() -> None:
    inventory.load()


@handler
async def get_ads(req: GetAds) -> list[Ad]:
    ads = inventory.by_category()
    chosen: list[Ad] = []
    for key in dict.fromkeys(k.strip().lower() for k in req.context_keys):
        chosen += [ad for ad in ads.get(key, []) if ad not in chosen]
    if chosen:
        return chosen
    everything = list(dict.fromkeys(ad for group in ads.values() for ad in group))
    return random.sample(everything, min(MAX_RANDOM_ADS, len(everything)))
