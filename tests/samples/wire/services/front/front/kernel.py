import msgspec

from nanobuild.runtime import Contract


class Relay(Contract[None], frozen=True):
    """Asks notes to nap for ``seconds``."""

    seconds: float = msgspec.field(default=0.0)
