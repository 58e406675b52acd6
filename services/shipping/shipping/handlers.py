"""Shipping handlers."""

import logging

from money import Money

from nanobuild.runtime import BadRequest, handler

from . import rules
from .kernel import GetQuote, ShipOrder, ShipOrderResult

log = logging.getLogger(__name__)


def _validate(req: GetQuote | ShipOrder) -> None:
    problem = rules.address_problem(req.address) or rules.items_problem(req.items)
    if problem is not None:
        raise BadRequest(problem)


@handler
async def get_quote(req: GetQuote) -> Money:
    _validate(req)
    return rules.quote(req.items)


@handler
async def ship_order(req: ShipOrder) -> ShipOrderResult:
    _validate(req)
    if not req.items:
        raise BadRequest("nothing to ship")
    tracking_id = rules.tracking_id(req.address)
    log.info("shipping %d item(s) to %s: %s", len(req.items), req.address.city, tracking_id)
    return ShipOrderResult(tracking_id=tracking_id)
