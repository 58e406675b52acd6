"""The nanobuild runtime: everything service code imports, and all that ships in a binary.

Service code imports from here alone::

    from nanobuild.runtime import Contract, handler, call, NotFound

This package imports nothing from nanobuild's build side.
"""

from nanobuild.runtime.contracts import Contract, handler, on_shutdown, on_startup
from nanobuild.runtime.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    Internal,
    NanoError,
    NotFound,
    PayloadTooLarge,
    Timeout,
    Unauthorized,
    Unavailable,
    UnknownContract,
    UnsupportedMediaType,
)
from nanobuild.runtime.router import call
from nanobuild.runtime.spec import __version__

__all__ = [
    "BadRequest",
    "Conflict",
    "Contract",
    "Forbidden",
    "Internal",
    "NanoError",
    "NotFound",
    "PayloadTooLarge",
    "Timeout",
    "Unauthorized",
    "Unavailable",
    "UnknownContract",
    "UnsupportedMediaType",
    "__version__",
    "call",
    "handler",
    "on_shutdown",
    "on_startup",
]
