"""The services behind the gateway, reached directly (skipped unless their URL is set)."""

import httpx

from conftest import Account


def test_users_answers_its_health_check(users: httpx.Client) -> None:
    assert users.get("/health").json() == {"status": "ok"}


def test_users_get_by_id_directly(users: httpx.Client, account: Account) -> None:
    answer = users.get(f"/users/{account.id}")
    assert answer.status_code == 200
    assert answer.json()["email"] == account.email


def test_users_deletes_only_the_callers_own_account(
    users: httpx.Client, account: Account, other: Account
) -> None:
    answer = users.delete(f"/users/{account.id}", headers=other.headers)
    assert answer.status_code == 403
    assert users.get(f"/users/{account.id}").status_code == 200


def test_orders_lists_only_the_callers_own(
    orders: httpx.Client, account: Account, other: Account
) -> None:
    answer = orders.get("/orders", params={"user_id": other.id}, headers=account.headers)
    assert answer.status_code == 403
    mine = orders.get("/orders", params={"user_id": account.id}, headers=account.headers)
    assert mine.status_code == 200
    assert mine.json() == []


def test_orders_accepts_the_token_users_issued(orders: httpx.Client, account: Account) -> None:
    answer = orders.post(
        "/orders", json={"item": "pot", "quantity": 1, "price_cents": 900}, headers=account.headers
    )
    assert answer.status_code == 201
    assert answer.json()["user_id"] == account.id
