"""The gateway: the shop's public API, in front of users and orders. ``uvicorn main:app``."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import httpx
from fastapi import FastAPI, Query, Request, Response, status
from fastapi.responses import JSONResponse
from nanobuild.runtime import NanoError, Unavailable, call, context

import settings
from auth import CurrentCaller
from clients import Orders, checked, client
from models import Login, NewOrder, Order, Profile, SignUp
from users.kernel import CreateUser, DeleteUser, GetUser, Health, LogIn, Token, User


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with client(settings.ORDERS_URL) as orders:
        app.state.orders = orders
        yield


app = FastAPI(title="shop gateway", lifespan=lifespan)


@app.exception_handler(httpx.TransportError)
async def upstream_down(request: Request, exc: httpx.TransportError) -> JSONResponse:
    return JSONResponse(
        status_code=status.HTTP_502_BAD_GATEWAY, content={"detail": "a service is unavailable"}
    )


@app.exception_handler(NanoError)
async def service_error(request: Request, exc: NanoError) -> JSONResponse:
    """A typed call's error, answered as the services' HTTP errors were: status and detail."""
    if isinstance(exc, Unavailable):  # the service cannot be reached, as with httpx
        return JSONResponse(
            status_code=status.HTTP_502_BAD_GATEWAY, content={"detail": "a service is unavailable"}
        )
    return JSONResponse(status_code=exc.status, content={"detail": exc.message})


@app.post("/signup", status_code=status.HTTP_201_CREATED)
async def signup(body: SignUp) -> User:
    return await call(CreateUser(name=body.name, email=body.email, password=body.password))


@app.post("/login")
async def login(body: Login) -> Token:
    return await call(LogIn(email=body.email, password=body.password))


@app.get("/users/{user_id}")
async def get_user(user_id: int) -> User:
    return await call(GetUser(user_id=user_id))


@app.get("/me")
async def me(caller: CurrentCaller, orders: Orders) -> Profile:
    recent = {"user_id": caller.user_id, "limit": 5}
    user, orders_answer = await asyncio.gather(
        call(GetUser(user_id=caller.user_id)),
        orders.get("/orders", params=recent, headers=caller.headers),
    )
    recent_orders = [Order(**order) for order in checked(orders_answer).json()]
    return Profile(user=user, recent_orders=recent_orders)


@app.delete("/me", status_code=status.HTTP_204_NO_CONTENT)
async def delete_me(caller: CurrentCaller) -> None:
    # users reads the caller's token from the call's context: headers do not cross a call
    with context.extended({"authorization": caller.headers["Authorization"]}):
        await call(DeleteUser(user_id=caller.user_id))


@app.post("/orders", status_code=status.HTTP_201_CREATED)
async def place_order(
    body: NewOrder, caller: CurrentCaller, orders: Orders, response: Response
) -> Order:
    answer = checked(await orders.post("/orders", json=body.model_dump(), headers=caller.headers))
    response.headers["Location"] = answer.headers["Location"]
    return Order(**answer.json())


@app.get("/orders")
async def list_orders(
    caller: CurrentCaller, orders: Orders, limit: Annotated[int, Query(ge=1, le=100)] = 10
) -> list[Order]:
    answer = await orders.get("/orders", params={"limit": limit}, headers=caller.headers)
    return [Order(**order) for order in checked(answer).json()]


@app.get("/orders/{order_id}")
async def get_order(order_id: int, caller: CurrentCaller, orders: Orders) -> Order:
    return Order(**checked(await orders.get(f"/orders/{order_id}", headers=caller.headers)).json())


@app.delete("/orders/{order_id}", status_code=status.HTTP_204_NO_CONTENT)
async def cancel_order(order_id: int, caller: CurrentCaller, orders: Orders) -> None:
    checked(await orders.delete(f"/orders/{order_id}", headers=caller.headers))


@app.get("/health")
async def health(orders: Orders) -> dict[str, str]:
    """ok once both services behind the gateway answer their own health check."""
    _, answer = await asyncio.gather(call(Health()), orders.get("/health"))
    checked(answer)
    return {"status": "ok"}
