import msgspec

from nanobuild.runtime import Contract


class Greeting(msgspec.Struct, frozen=True):
    text: str


class Greet(Contract[Greeting], frozen=True):
    id: int
