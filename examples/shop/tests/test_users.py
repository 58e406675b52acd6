"""Sign-up, login and profiles, through the gateway."""

import uuid

import httpx

from conftest import Account


def test_signup_answers_201_with_the_user_and_no_password(shop: httpx.Client) -> None:
    email = f"ada-{uuid.uuid4().hex[:12]}@example.org"
    body = {"name": "Ada", "email": email, "password": "12345678"}
    answer = shop.post("/signup", json=body)
    assert answer.status_code == 201
    user = answer.json()
    assert set(user) == {"id", "name", "email"}
    assert (user["name"], user["email"]) == (body["name"], body["email"])


def test_the_same_email_twice_is_a_conflict(shop: httpx.Client, account: Account) -> None:
    body = {"name": "Ada again", "email": account.email, "password": "another password"}
    answer = shop.post("/signup", json=body)
    assert answer.status_code == 409
    assert answer.json() == {"detail": "already exists"}


def test_a_short_password_is_refused(shop: httpx.Client) -> None:
    answer = shop.post("/signup", json={"name": "Ada", "email": "a@b.c", "password": "short"})
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "password"]


def test_login_issues_a_bearer_token(shop: httpx.Client, account: Account) -> None:
    answer = shop.post("/login", json={"email": account.email, "password": account.password})
    assert answer.status_code == 200
    assert answer.json()["token_type"] == "bearer"
    assert answer.json()["access_token"].count(".") == 2  # a JWT: header.claims.signature


def test_a_wrong_password_is_401(shop: httpx.Client, account: Account) -> None:
    answer = shop.post("/login", json={"email": account.email, "password": "not the password"})
    assert answer.status_code == 401
    assert answer.json() == {"detail": "wrong email or password"}


def test_a_user_by_id(shop: httpx.Client, account: Account) -> None:
    answer = shop.get(f"/users/{account.id}")
    assert answer.status_code == 200
    assert answer.json() == {"id": account.id, "name": account.name, "email": account.email}


def test_an_unknown_user_is_404(shop: httpx.Client) -> None:
    answer = shop.get("/users/987654321")
    assert answer.status_code == 404
    assert answer.json() == {"detail": "user 987654321 not found"}


def test_a_user_id_must_be_a_number(shop: httpx.Client) -> None:
    answer = shop.get("/users/ada")
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["path", "user_id"]


def test_me_is_the_caller_and_their_recent_orders(shop: httpx.Client, account: Account) -> None:
    for item in ["tea", "cups", "pot", "sugar", "milk", "spoons"]:
        order = {"item": item, "quantity": 1, "price_cents": 100}
        assert shop.post("/orders", json=order, headers=account.headers).status_code == 201
    answer = shop.get("/me", headers=account.headers)
    assert answer.status_code == 200
    profile = answer.json()
    assert profile["user"] == {"id": account.id, "name": account.name, "email": account.email}
    recent = [order["item"] for order in profile["recent_orders"]]
    assert recent == ["spoons", "milk", "sugar", "pot", "cups"]


def test_me_needs_a_token(shop: httpx.Client) -> None:
    answer = shop.get("/me")
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"


def test_a_forged_token_is_401(shop: httpx.Client, account: Account) -> None:
    header, claims, signature = account.token.split(".")
    forged = f"{header}.{claims}.{signature[::-1]}"
    answer = shop.get("/me", headers={"Authorization": f"Bearer {forged}"})
    assert answer.status_code == 401
    assert answer.json() == {"detail": "invalid token"}


def test_deleting_my_account_answers_204_and_forgets_me(
    shop: httpx.Client, account: Account
) -> None:
    answer = shop.delete("/me", headers=account.headers)
    assert answer.status_code == 204
    assert answer.content == b""
    assert shop.get(f"/users/{account.id}").status_code == 404
    login = shop.post("/login", json={"email": account.email, "password": account.password})
    assert login.status_code == 401
