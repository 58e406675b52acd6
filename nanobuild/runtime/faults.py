"""How a serving process treats failures, whichever face the call came in by.

Every face that answers calls — the HTTP face, the TCP server, strict mode's
in-memory round trip, the binary's ``call`` command — tells callers and the log the
same things through these three functions (``serving.Served.failure`` uses them).

A service's exception map (nano.toml's ``[services.<name>.errors]``) turns its
handlers' own exceptions into the errors callers act on: ``exception_map`` finds the
classes once, at wiring, and ``mapping_handler`` wraps each handler of the service
(only of a service that has a map, so the others pay nothing).
"""

from __future__ import annotations

import importlib
import inspect
import logging
from collections.abc import Callable, Mapping
from typing import Any

from nanobuild.runtime import errors
from nanobuild.runtime.errors import (
    Internal,
    NanoError,
    UnknownContract,
    WiringError,
    WrongResponse,
)


def unknown_contract(service: str, contract: str) -> UnknownContract:
    """The answer to a call for a contract this process does not serve (or hides)."""
    return UnknownContract(
        f"no contract {service}.{contract} is served here", service=service, contract=contract
    )


def as_nano_error(exc: BaseException) -> NanoError:
    """What a caller is told about ``exc``: itself if it is a NanoError, else Internal.

    The details of an unexpected exception stay in this process's log.
    """
    if isinstance(exc, NanoError):
        return exc
    internal = Internal(
        f"unexpected {type(exc).__name__} in the handler; the server log has the traceback"
    )
    internal.__cause__ = exc
    return internal


# set by telemetry when calls are observed: it then logs each server fault in one line
# with the call's request id and trace id, and this module adds only a 500's traceback
OBSERVED = False


def server_fault(exc: BaseException | None) -> bool:
    """Whether ``exc`` is the server's fault (a 5xx, or no NanoError at all), not the caller's."""
    return not isinstance(exc, NanoError) or exc.status >= 500


def log_failure(log: logging.Logger, exc: NanoError) -> None:
    """Server faults reach the log (with the cause's traceback); callers' mistakes do not."""
    where = f"{exc.service}.{exc.contract}"
    if exc.status == 500:
        # the handler's own exception, whose traceback says where it went wrong
        trace = None if isinstance(exc, WrongResponse) else exc.__cause__ or exc
        log.error("%s: %s", where, exc.message, exc_info=trace)
    elif exc.status > 500 and not OBSERVED:
        log.warning("%s: %s: %s", where, exc.kind, exc.message)
    else:
        log.debug("%s: %s: %s", where, exc.kind, exc.message)


ExceptionMap = dict[type[BaseException], type[NanoError]]  # exception class -> its error


def exception_map(service: str, entries: Mapping[str, str]) -> ExceptionMap:
    """The classes ``entries`` (``"module.Class" -> "NotFound"``) name, imported.

    ``WiringError`` in one line naming the entry when a class cannot be found or is
    not an exception class.
    """
    found: ExceptionMap = {}
    for path, name in entries.items():
        where = f"services.{service}.errors: {path!r}"
        kind = getattr(errors, name, None)
        if not (isinstance(kind, type) and issubclass(kind, NanoError)):
            raise WiringError(f"{where} maps to {name!r}, which is not an error kind")
        cls = _find_class(path, where)
        if not (isinstance(cls, type) and issubclass(cls, BaseException)):
            raise WiringError(f"{where} is {cls!r}, not an exception class")
        found[cls] = kind
    return found


def _find_class(path: str, where: str) -> object:
    """The object ``a.b.C`` names: the longest importable module prefix, then attributes."""
    parts = path.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:cut])
        module = _module(module_name, where)
        if module is None:
            continue
        found: object = module
        for attribute in parts[cut:]:
            found = getattr(found, attribute, _MISSING)
            if found is _MISSING:
                raise WiringError(
                    f"{where} cannot be found: {module_name} has no {'.'.join(parts[cut:])}"
                )
        return found
    raise WiringError(f"{where} cannot be found: there is no module {parts[0]}")


_MISSING = object()


def _module(name: str, where: str) -> object | None:
    """The module ``name``, or None if there is none."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        missing = exc.name or name
        if not (name == missing or name.startswith(missing + ".")):
            raise WiringError(f"{where}: importing {name} failed: {exc}") from exc
    except Exception as exc:  # the module's own code failed: say so, not "missing"
        raise WiringError(f"{where}: importing {name} failed: {type(exc).__name__}: {exc}") from exc
    return None


def mapping_handler(handler: Callable[..., Any], table: ExceptionMap) -> Callable[..., Any]:
    """``handler``, raising the mapped NanoError for an exception of a class in ``table``.

    The most specific mapped class of the exception wins (a subclass's entry before
    its base's); the error carries the exception's message and has it as its cause.
    A NanoError the handler raises passes as it is; anything else unmapped too.
    """
    caught = tuple(table)

    def translate(exc: BaseException) -> NanoError:
        kind = next(table[cls] for cls in type(exc).__mro__ if cls in table)
        return kind(str(exc) or type(exc).__name__)

    if inspect.iscoroutinefunction(handler):

        async def mapped(request: object) -> object:
            try:
                return await handler(request)
            except NanoError:
                raise
            except caught as exc:
                raise translate(exc) from exc

        return mapped

    def mapped_sync(request: object) -> object:
        try:
            return handler(request)
        except NanoError:
            raise
        except caught as exc:
            raise translate(exc) from exc

    return mapped_sync
