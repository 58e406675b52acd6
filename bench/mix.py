"""The request mix of the system benchmark: Online Boutique's load generator, as the page.

The original's load generator (a locustfile) runs six tasks with these weights:
index 1, setCurrency 2, browseProduct 10, addToCart 2, viewCart 3, checkout 1. Here
each task is what the example's shop page (``frontend/app.js``) sends to the front
door for it: the page itself (a GET), then its calls at ``/api/<service>/<Contract>``,
in the order and with the concurrency the page uses (``Promise.all`` calls go out
together). One ``Action`` is one task: a list of *phases*, each a set of calls sent at
once, each phase after the previous one has answered.

A ``Shopper`` is one simulated user with the page's state (its currency, its cart):
it turns a task into the exact calls the page would make in that state. Every request
body is known in advance, so the load generator replays prepared bytes and every
system gets the same requests. The mix leans on three facts of the boutique, which
``system.py --check`` asserts against the running systems: the product list (read
here from the catalog's data file, as the page reads it from ``ListProducts``), and
that any non-empty shipment is quoted at the flat rate.
"""

from __future__ import annotations

import datetime
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

REPO = Path(__file__).resolve().parent.parent

# the locustfile's tasks and weights, currencies and quantities
TASKS = {
    "index": 1,
    "setCurrency": 2,
    "browseProduct": 10,
    "addToCart": 2,
    "viewCart": 3,
    "checkout": 1,
}
CURRENCIES = ("EUR", "USD", "JPY", "CAD")
QUANTITIES = (1, 2, 3, 4, 5, 10)

# the order form's defaults (frontend/index.html), which are also the locustfile's
ADDRESS = {
    "street_address": "1600 Amphitheatre Parkway",
    "city": "Mountain View",
    "state": "CA",
    "country": "United States",
    "zip_code": 94043,
}
EMAIL = "someone@example.com"
FLAT_QUOTE = {"currency_code": "USD", "units": 8, "nanos": 990_000_000}


def card() -> dict[str, Any]:
    """The locustfile's card; it expires next year, as the page's form defaults to."""
    return {
        "credit_card_number": "4432-8015-6152-0454",
        "credit_card_cvv": 672,
        "credit_card_expiration_year": datetime.date.today().year + 1,
        "credit_card_expiration_month": 1,
    }


def _products() -> list[dict[str, Any]]:
    path = REPO / "services" / "catalog" / "catalog" / "data" / "products.json"
    products: list[dict[str, Any]] = json.loads(path.read_text())
    return products


PRODUCTS = _products()
BY_ID = {product["id"]: product for product in PRODUCTS}


@dataclass(frozen=True)
class Call:
    """One HTTP request to the front door: ``GET path``, or a POST of a JSON body."""

    method: str
    path: str
    body: bytes = b""

    @property
    def contract(self) -> str:
        """``service/Contract`` for an API call, the path for a page."""
        return self.path.removeprefix("/api/")


Phase = tuple[Call, ...]


@dataclass(frozen=True)
class Action:
    """One task of one user: phases of calls, each phase sent together."""

    task: str
    user: str
    phases: tuple[Phase, ...]

    def calls(self) -> list[Call]:
        return [call for phase in self.phases for call in phase]


def api(service: str, contract: str, body: dict[str, Any] | None = None) -> Call:
    return Call("POST", f"/api/{service}/{contract}", msgspec.json.encode(body or {}))


class Shopper:
    """One user of the shop page, with its currency and its cart, as the page keeps them."""

    def __init__(self, user_id: str, rng: random.Random, currency: str | None = None) -> None:
        self.user = user_id
        self.rng = rng
        # a session's currency, as if the user had picked it before (the locustfile's
        # users pick one at weight 2 of 19, so in a long session most have)
        self.currency = currency or rng.choice(CURRENCIES)
        self.cart: dict[str, int] = {}  # product id -> quantity, in the order added

    def next(self) -> Action:
        """The next task, drawn with the locustfile's weights."""
        task = self.rng.choices(list(TASKS), weights=list(TASKS.values()))[0]
        if task == "setCurrency":
            return self.set_currency(self.rng.choice(CURRENCIES))
        if task == "browseProduct":
            return self.browse(self.rng.choice(PRODUCTS)["id"])
        if task in ("addToCart", "checkout"):
            product, quantity = self.rng.choice(PRODUCTS)["id"], self.rng.choice(QUANTITIES)
            if task == "checkout":
                return self.checkout(product, quantity)
            return self.add_to_cart(product, quantity)
        return self.view_cart() if task == "viewCart" else self.index()

    # -- the tasks

    def index(self) -> Action:
        return self._action("index", self.page("/"))

    def view_cart(self) -> Action:
        """The locustfile's GET /cart: for this one-page shop, a page load too."""
        return self._action("viewCart", self.page("/cart"))

    def browse(self, product: str) -> Action:
        return self._action("browseProduct", self.page(f"/product/{product}"))

    def set_currency(self, code: str) -> Action:
        """The page's currency menu: prices converted again, then the cart."""
        self.currency = code
        return self._action("setCurrency", [self.prices(), *self.cart_phases()])

    def add_to_cart(self, product: str, quantity: int) -> Action:
        return self._action("addToCart", self._adding(product, quantity))

    def checkout(self, product: str, quantity: int) -> Action:
        """The locustfile's checkout: add to the cart first, then place the order."""
        phases = self._adding(product, quantity)
        order = {
            "user_id": self.user,
            "user_currency": self.currency,
            "address": ADDRESS,
            "email": EMAIL,
            "credit_card": card(),
        }
        phases.append((api("checkout", "PlaceOrder", order),))
        self.cart.clear()
        return self._action("checkout", phases + self.refresh())

    def _adding(self, product: str, quantity: int) -> list[Phase]:
        phases = self.page(f"/product/{product}")
        item = {"product_id": product, "quantity": quantity}
        phases.append((api("cart", "AddItem", {"user_id": self.user, "item": item}),))
        self.cart[product] = self.cart.get(product, 0) + quantity
        return phases + self.refresh()

    # -- what the page sends

    def page(self, path: str) -> list[Phase]:
        """A page load: the HTML, then app.js's start(): products and currencies, prices,
        and refresh()."""
        return [
            (Call("GET", path),),
            (api("catalog", "ListProducts"), api("currency", "GetSupportedCurrencies")),
            self.prices(),
            *self.refresh(),
        ]

    def prices(self) -> Phase:
        """renderProducts(): each price converted at once, unless the currency is USD."""
        if self.currency == "USD":
            return ()
        return tuple(
            api("currency", "Convert", {"from_": p["price_usd"], "to_code": self.currency})
            for p in PRODUCTS
        )

    def cart_phases(self) -> list[Phase]:
        """renderCart(): the cart, then (for a filled one) the quote and its conversion."""
        phases: list[Phase] = [(api("cart", "GetCart", {"user_id": self.user}),)]
        if self.cart:
            items = [{"product_id": p, "quantity": q} for p, q in self.cart.items()]
            quote = {"address": ADDRESS, "items": items}
            convert = {"from_": FLAT_QUOTE, "to_code": self.currency}
            phases += [
                (api("shipping", "GetQuote", quote),),
                (api("currency", "Convert", convert),),
            ]
        return phases

    def refresh(self) -> list[Phase]:
        """refresh(): renderCart(), then recommendations and an ad together."""
        categories = dict.fromkeys(c for p in self.cart for c in BY_ID[p]["categories"])
        related = (
            api(
                "recommendation",
                "ListRecommendations",
                {"user_id": self.user, "product_ids": list(self.cart)},
            ),
            api("ad", "GetAds", {"context_keys": list(categories)}),
        )
        return [*self.cart_phases(), related]

    def _action(self, task: str, phases: list[Phase]) -> Action:
        return Action(task, self.user, tuple(phase for phase in phases if phase))


def check_script(user: str) -> list[Action]:
    """Each task once, in an order that exercises every call the page makes."""
    shopper = Shopper(user, random.Random(0), currency="USD")
    first, second = PRODUCTS[0]["id"], PRODUCTS[6]["id"]
    return [
        shopper.index(),
        shopper.add_to_cart(first, 2),
        shopper.set_currency("JPY"),
        shopper.browse(second),
        shopper.view_cart(),
        shopper.checkout(second, 10),
        shopper.index(),
    ]


def probes(user: str) -> list[Call]:
    """Calls the boutique refuses, whose errors every system must answer alike."""
    order = {
        "user_id": user,
        "user_currency": "EUR",
        "address": ADDRESS,
        "email": EMAIL,
        "credit_card": card(),
    }
    return [
        api("catalog", "GetProduct", {"id": "NO-SUCH-ID"}),
        api("checkout", "PlaceOrder", order),  # this user's cart is empty
        api("cart", "AddItem", {"user_id": user, "item": {"product_id": "X", "quantity": 0}}),
    ]


def mean_calls(actions: int = 2000, seed: int = 1) -> float:
    """The mean number of HTTP requests per action, over a long run of one user."""
    shopper = Shopper("mean", random.Random(seed))
    return sum(len(shopper.next().calls()) for _ in range(actions)) / actions
