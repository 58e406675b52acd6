"""The runtime's exception tree: what a handler raises and what a caller catches.

    NanoError                     any failure of a contract call
     ├── BadRequest               400  the request does not validate
     │    ├── UnsupportedMediaType 415 the body is neither JSON nor MessagePack
     │    └── PayloadTooLarge     413  the body is over the size limit
     ├── Unauthorized             401  no valid credentials
     ├── Forbidden                403  credentials, but not enough
     ├── NotFound                 404  the thing asked for does not exist
     │    └── UnknownContract     404  no such service or contract here
     ├── Conflict                 409  the request clashes with current state
     ├── Internal                 500  a handler failed unexpectedly
     ├── Unavailable              503  the service that runs the contract cannot be reached
     └── Timeout                  504  the service did not answer in time

A handler raises one of these; the caller catches the same class, whether the call
ran in memory or crossed the network. Anything else a handler raises reaches the
caller as ``Internal``. Each class carries its wire ``kind`` and HTTP ``status``, so
the mapping lives here and nowhere else.
"""

from __future__ import annotations

from typing import ClassVar


class NanoError(Exception):
    """Base of every error a contract call can raise."""

    kind: ClassVar[str] = "internal"
    status: ClassVar[int] = 500

    def __init__(self, message: str = "", *, service: str = "", contract: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.service = service
        self.contract = contract

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"

    def located(self, service: str, contract: str) -> NanoError:
        """Fill in where the error arose, unless it already says (it may come from deeper)."""
        if not self.service:
            self.service, self.contract = service, contract
        return self

    def to_wire(self) -> dict[str, str]:
        """The error body's ``error`` object (DESIGN §7)."""
        return {
            "kind": self.kind,
            "message": self.message,
            "service": self.service,
            "contract": self.contract,
        }

    @staticmethod
    def from_wire(body: dict[str, str]) -> NanoError:
        """Rebuild the error a remote handler raised, as the same class."""
        cls = ERROR_KINDS.get(body.get("kind", ""), Internal)
        return cls(
            body.get("message", ""),
            service=body.get("service", ""),
            contract=body.get("contract", ""),
        )


class BadRequest(NanoError):
    """The request does not validate against its contract."""

    kind = "bad_request"
    status = 400


class UnsupportedMediaType(BadRequest):
    """The body's content type is neither JSON nor MessagePack."""

    kind = "unsupported_media_type"
    status = 415


class PayloadTooLarge(BadRequest):
    """The body is larger than the server accepts."""

    kind = "too_large"
    status = 413


class Unauthorized(NanoError):
    """The call carries no valid credentials."""

    kind = "unauthorized"
    status = 401


class Forbidden(NanoError):
    """The caller is known but may not do this."""

    kind = "forbidden"
    status = 403


class NotFound(NanoError):
    """The thing the request names does not exist."""

    kind = "not_found"
    status = 404


class UnknownContract(NotFound):
    """No such service or contract is served here (or it is not public)."""

    kind = "unknown_contract"
    status = 404


class Conflict(NanoError):
    """The request clashes with the current state."""

    kind = "conflict"
    status = 409


class Internal(NanoError):
    """A handler failed in a way it did not declare."""

    kind = "internal"
    status = 500


class Unavailable(NanoError):
    """The service that runs the contract cannot be reached."""

    kind = "unavailable"
    status = 503


class Timeout(NanoError):
    """The service did not answer within the call's timeout."""

    kind = "timeout"
    status = 504


ERROR_KINDS: dict[str, type[NanoError]] = {
    cls.kind: cls
    for cls in (
        BadRequest,
        UnsupportedMediaType,
        PayloadTooLarge,
        Unauthorized,
        Forbidden,
        NotFound,
        UnknownContract,
        Conflict,
        Internal,
        Unavailable,
        Timeout,
    )
}
