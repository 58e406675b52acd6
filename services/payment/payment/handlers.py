"""Payment handlers."""

import datetime
import logging
import uuid

from nanobuild.runtime import BadRequest, handler

from . import cards
from .kernel import Charge, ChargeResult

log = logging.getLogger(__name__)


@handler
async def charge(req: Charge) -> ChargeResult:
    # async with no await: it never blocks, so it runs on the loop, with no thread hop
    problem = req.amount.problem()
    if problem is not None:
        raise BadRequest(f"invalid amount: {problem}")
    if not req.amount.is_positive():
        raise BadRequest(f"cannot charge {req.amount}: the amount must be positive")
    try:
        kind, last_four = cards.validate(req.credit_card, datetime.date.today())
    except cards.CardRefused as exc:
        raise BadRequest(str(exc)) from exc
    transaction_id = str(uuid.uuid4())
    log.info(
        "transaction %s: charged %s to %s ending %s", transaction_id, req.amount, kind, last_four
    )
    return ChargeResult(transaction_id=transaction_id)
