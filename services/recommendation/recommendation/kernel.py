"""The recommendation service's public face."""

import msgspec

from nanobuild.runtime import Contract


class ListRecommendations(Contract[list[str]], frozen=True):
    """Ids of up to five catalog products, none of them among ``product_ids``."""

    user_id: str
    product_ids: list[str] = msgspec.field(default_factory=list)
