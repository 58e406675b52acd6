"""The shop's tests talk HTTP to running services: the gateway at SHOP_URL.

A test that reaches a service behind the gateway directly finds it at USERS_URL or
ORDERS_URL, and is skipped when that variable is not set.
"""

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

SHOP_URL = os.environ.get("SHOP_URL", "http://127.0.0.1:8000")


@dataclass
class Account:
    id: int
    name: str
    email: str
    password: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture(scope="session")
def shop() -> Iterator[httpx.Client]:
    with httpx.Client(base_url=SHOP_URL, timeout=10) as client:
        yield client


def direct(variable: str) -> Iterator[httpx.Client]:
    url = os.environ.get(variable)
    if not url:
        pytest.skip(f"{variable} is not set")
    with httpx.Client(base_url=url, timeout=10) as client:
        yield client


@pytest.fixture(scope="session")
def users() -> Iterator[httpx.Client]:
    yield from direct("USERS_URL")


@pytest.fixture(scope="session")
def orders() -> Iterator[httpx.Client]:
    yield from direct("ORDERS_URL")


def sign_up(shop: httpx.Client, name: str = "Ada") -> Account:
    """A new account (its email unique, so the tests run again on the same database)."""
    email = f"{name.lower()}-{uuid.uuid4().hex[:12]}@example.com"
    password = "correct horse battery"
    created = shop.post("/signup", json={"name": name, "email": email, "password": password})
    assert created.status_code == 201, created.text
    login = shop.post("/login", json={"email": email, "password": password})
    assert login.status_code == 200, login.text
    token = login.json()["access_token"]
    return Account(created.json()["id"], name, email, password, token)


@pytest.fixture
def account(shop: httpx.Client) -> Account:
    return sign_up(shop)


@pytest.fixture
def other(shop: httpx.Client) -> Account:
    return sign_up(shop, "Grace")
