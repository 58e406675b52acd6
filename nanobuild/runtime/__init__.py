"""The nanobuild runtime: everything service code imports, and all that ships in a binary.

Service code imports from here alone::

    from nanobuild.runtime import Contract, handler, call, NotFound

This package imports nothing from nanobuild's build side.
"""

from typing import TYPE_CHECKING

from nanobuild.runtime import context
from nanobuild.runtime.contracts import Contract, Route, handler, on_shutdown, on_startup
from nanobuild.runtime.data import data_dir
from nanobuild.runtime.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    Incompatible,
    Internal,
    Interrupted,
    MethodNotAllowed,
    NanoError,
    NotFound,
    PayloadTooLarge,
    Timeout,
    Unauthorized,
    Unavailable,
    UnknownContract,
    Unsent,
    UnsupportedMediaType,
    WrongResponse,
)
from nanobuild.runtime.exchange import Exchange, this_call
from nanobuild.runtime.router import call, call_sync
from nanobuild.runtime.seam import CallInfo, Interceptor, Proceed
from nanobuild.runtime.spec import __version__

if TYPE_CHECKING:  # at run time, ``__getattr__`` below imports it when first asked for
    from nanobuild.runtime.models import ModelContract as ModelContract

__all__ = [
    "BadRequest",
    "CallInfo",
    "Conflict",
    "Contract",
    "Exchange",
    "Forbidden",
    "Incompatible",
    "Interceptor",
    "Internal",
    "Interrupted",
    "MethodNotAllowed",
    "NanoError",
    "NotFound",
    "PayloadTooLarge",
    "Proceed",
    "Route",
    "Timeout",
    "Unauthorized",
    "Unavailable",
    "UnknownContract",
    "Unsent",
    "UnsupportedMediaType",
    "WrongResponse",
    "__version__",
    "call",
    "call_sync",
    "context",
    "data_dir",
    "handler",
    "on_shutdown",
    "on_startup",
    "this_call",
]


def __getattr__(name: str) -> object:
    # ``ModelContract`` is pydantic's: imported on first use, so that no other service pays
    if name == "ModelContract":
        from nanobuild.runtime.models import ModelContract

        return ModelContract
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
