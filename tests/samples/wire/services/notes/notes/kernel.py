from typing import Any, ClassVar

import msgspec

from nanobuild.runtime import Contract, Route


class Kept(msgspec.Struct, frozen=True):
    kind: str  # the type of the payload kept


class Keep(Contract[Kept], frozen=True):
    """Keeps any value: its body may nest as deep as a client likes."""

    payload: Any = None


class Post(Contract[Kept], frozen=True):
    """Keep, at a REST route of its own."""

    http: ClassVar[Route] = Route("POST /notes", status=201)
    payload: Any = None


class Nap(Contract[None], frozen=True):
    """Answers after ``seconds``."""

    seconds: float
