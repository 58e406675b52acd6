"""Email handlers."""

import logging
import re

from money import MoneyError

from nanobuild.runtime import BadRequest, handler

from . import outbox
from .kernel import SendOrderConfirmation

log = logging.getLogger(__name__)

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@handler
async def send_order_confirmation(req: SendOrderConfirmation) -> None:
    if not _EMAIL.match(req.email):
        raise BadRequest(f"{req.email!r} is not an email address")
    try:
        subject, body = outbox.render(req.order)
    except MoneyError as exc:
        raise BadRequest(f"order {req.order.order_id} has bad amounts: {exc}") from exc
    outbox.SENT.append(outbox.Sent(to=req.email, subject=subject, body=body))
    log.info("order confirmation to %s: %s", req.email, subject)
