"""The checkout service's public face."""

from email_service.kernel import OrderResult
from payment.kernel import CreditCardInfo
from shipping.kernel import Address

from nanobuild.runtime import Contract


class PlaceOrder(Contract[OrderResult], frozen=True):
    """Charge, ship and confirm everything in the user's cart, priced in ``user_currency``."""

    user_id: str
    user_currency: str
    address: Address
    email: str
    credit_card: CreditCardInfo
