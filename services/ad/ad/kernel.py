"""The ad service's public face."""

import msgspec

from nanobuild.runtime import Contract


class Ad(msgspec.Struct, frozen=True):
    redirect_url: str  # where a click on the ad leads
    text: str


class GetAds(Contract[list[Ad]], frozen=True):
    """Ads for the categories in ``context_keys``; two random ads if none match."""

    context_keys: list[str] = msgspec.field(default_factory=list)
