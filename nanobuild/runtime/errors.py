"""The runtime's exception trees: what a call can raise, and what stops a process starting.

    NanoError                     any failure of a contract call
     ├── BadRequest               400  the request does not validate
     │    ├── MethodNotAllowed    405  a contract called over HTTP with another method than POST
     │    ├── UnsupportedMediaType 415 the body is neither JSON nor MessagePack
     │    └── PayloadTooLarge     413  the body is over the size limit
     ├── Unauthorized             401  no valid credentials
     ├── Forbidden                403  credentials, but not enough
     ├── NotFound                 404  the thing asked for does not exist
     │    └── UnknownContract     404  no such service or contract here
     ├── Conflict                 409  the request clashes with current state
     ├── Internal                 500  a handler failed unexpectedly
     │    └── WrongResponse       500  a handler returned another type than its contract's
     ├── Unavailable              503  the service cannot be reached, or the call was cut off
     │    ├── Unsent              503  the call never left this process: it did not run
     │    │    └── Incompatible   503  not sent: the callee's build disagrees on the contract
     │    └── Interrupted         503  sent, then the connection dropped: it may have run
     └── Timeout                  504  no answer in time: the call may still run

A handler raises one of these; the caller catches the same class, whether the call
ran in memory or crossed the network. Anything else a handler raises reaches the
caller as ``Internal``. Each class carries its wire ``kind`` and HTTP ``status``, so
the mapping lives here and nowhere else.

Whether a retry is safe is a fact about one hop, known only to the caller's own
transport: ``Unsent`` says so, ``Interrupted`` and ``Timeout`` say the call may have
run, a plain ``Unavailable`` promises neither. On the wire the two subclasses are
``unavailable``, so an ``Unsent`` that escapes a handler (whose own call did run)
reaches that handler's caller as a plain ``Unavailable``.

    SetupError                    this process cannot start as configured
     ├── SettingsError            a NANO_* variable (or option) has a value it cannot use
     ├── PlacementError           the command line and environment make no placement
     ├── WiringError              a handler is missing, doubled or mistyped
     └── StartupFailed            a service's start-up hook raised

Every entry point (``serve``, the binary) catches ``SetupError`` once and prints its
message as one line.
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
        """The error body's ``error`` object: ``{kind, message, service, contract}``."""
        return {
            "kind": self.kind,
            "message": self.message,
            "service": self.service,
            "contract": self.contract,
        }

    def public(self) -> dict[str, str]:
        """The ``error`` object told to a caller without the secret: ``to_wire()``, but
        for the errors whose message may name where another process runs
        (``Unavailable``: a transport's reason names the address it could not reach)."""
        return self.to_wire()

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


class MethodNotAllowed(BadRequest):
    """A contract was called over HTTP with another method than POST."""

    status = 405


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


class WrongResponse(Internal):
    """A handler returned a value of another type than its contract's response.

    Callers see an ``Internal`` error; the log gets one line, as a traceback would
    show only the codec that noticed.
    """


class Unavailable(NanoError):
    """The service that runs the contract cannot be reached, or the call was cut off.

    Its message is for operators: a transport's names the address it could not
    reach. A caller without the secret (the public, on the HTTP face) is told the
    service, the class and what the class means (``public``); the log and trusted
    callers get the message.
    """

    kind = "unavailable"
    status = 503
    meaning: ClassVar[str] = "it cannot be reached, or the call was cut off"

    def public(self) -> dict[str, str]:
        wire = self.to_wire()
        name = type(self).__name__
        wire["message"] = f"{self.service or 'the service'} is unavailable ({name}): {self.meaning}"
        return wire


class Unsent(Unavailable):
    """The call never left this process (no connection, or none in time): it did not run.

    Sending it again, here or elsewhere, is safe.
    """

    meaning = "the call was not sent, so it did not run"


class Incompatible(Unsent):
    """A call that was not sent: the callee's build disagrees with this one on the
    contract's shape in a way that would fail the call (a field it requires and
    this side does not send, a type it would refuse...).

    It is an ``Unsent`` (so an ``Unavailable``): nothing ran. The message names the
    contract, both builds and what differs; sending it again helps only once the
    two processes run builds that agree (or to another process that does).
    """

    meaning = "its build and this one disagree on the contract; the call was not sent"


class Interrupted(Unavailable):
    """The call was sent, then its connection dropped before the answer: it may have run."""

    meaning = "the call was sent, then its connection dropped: it may have run"


class Timeout(NanoError):
    """No answer came within the call's timeout; the call may still be running.

    The callee is not told that its caller gave up, so its message always says so
    (``TIMEOUT_CAVEAT``): a timeout is no proof that nothing ran.
    """

    kind = "timeout"
    status = 504


# what a timeout's message says of the call it gave up on, {} the callee
TIMEOUT_CAVEAT = (
    "the call may still be running on {}, or have run there: send it again only if it is idempotent"
)


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


# -- the process cannot start


class SetupError(Exception):
    """This process cannot start as configured; the message says what to fix."""


class SettingsError(SetupError, ValueError):
    """A setting (an environment variable or option) has a value that cannot be used."""


class PlacementError(SetupError, ValueError):
    """The command line or environment does not make a placement that can run."""


class WiringError(SetupError):
    """The services cannot be wired: a handler is missing, doubled or mistyped."""


class StartupFailed(SetupError):
    """A service's start-up hook raised; the process must not serve."""

    def __init__(self, service: str, cause: BaseException) -> None:
        super().__init__(f"service {service} failed to start: {type(cause).__name__}: {cause}")
        self.service = service
