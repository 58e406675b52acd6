import asyncio

from ad import inventory
from ad.handlers import get_ads, load_ads
from ad.kernel import Ad, GetAds


def ads_for(*keys: str) -> list[Ad]:
    return asyncio.run(get_ads(GetAds(context_keys=list(keys))))


def test_ads_of_one_category():
    ads = ads_for("kitchen")
    assert [ad.redirect_url for ad in ads] == ["/product/9SIQT8TOJO", "/product/6E92ZMYYFZ"]


def test_ads_of_several_categories_without_repeats():
    ads = ads_for("hair", "Kitchen", "hair", "nonsense")
    assert [ad.redirect_url for ad in ads] == [
        "/product/2ZYFJ3GM2N",
        "/product/9SIQT8TOJO",
        "/product/6E92ZMYYFZ",
    ]


def test_no_matching_category_gives_two_random_distinct_ads():
    every = {ad for group in inventory.by_category().values() for ad in group}
    seen = set()
    for _ in range(30):
        ads = ads_for("spaceships")
        assert len(ads) == 2 and ads[0] != ads[1]
        assert set(ads) <= every
        seen.update(ads)
    assert len(seen) > 2  # it is a random pick, not always the same two


def test_no_context_gives_random_ads_too():
    assert len(ads_for()) == 2


def test_startup_hook_loads_the_data_file():
    inventory._ads = None
    load_ads()
    assert inventory._ads is not None and set(inventory._ads) >= {"kitchen", "hair"}
