"""The ads, by category, read once from ``data/ads.json``."""

from __future__ import annotations

from importlib.resources import files

import msgspec

from .kernel import Ad

_ads: dict[str, list[Ad]] | None = None


def load() -> dict[str, list[Ad]]:
    global _ads
    data = (files(__package__) / "data" / "ads.json").read_bytes()
    _ads = msgspec.json.decode(data, type=dict[str, list[Ad]])
    return _ads


def by_category() -> dict[str, list[Ad]]:
    """The ads, loaded on first use if the startup hook has not run."""
    return _ads if _ads is not None else load()
