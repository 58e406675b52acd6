"""How a serving process treats failures, whichever face the call came in by.

Every face that answers calls — the HTTP face, the TCP server, strict mode's
in-memory round trip, the binary's ``call`` command — tells callers and the log the
same things through these three functions (``serving.Served.failure`` uses them).
"""

from __future__ import annotations

import logging

from nanobuild.runtime.errors import Internal, NanoError, UnknownContract, WrongResponse


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


def log_failure(log: logging.Logger, exc: NanoError) -> None:
    """Server faults reach the log (with the cause's traceback); callers' mistakes do not."""
    where = f"{exc.service}.{exc.contract}"
    if exc.status == 500:
        # the handler's own exception, whose traceback says where it went wrong
        trace = None if isinstance(exc, WrongResponse) else exc.__cause__ or exc
        log.error("%s: %s", where, exc.message, exc_info=trace)
    elif exc.status > 500:
        log.warning("%s: %s: %s", where, exc.kind, exc.message)
    else:
        log.debug("%s: %s: %s", where, exc.kind, exc.message)
