"""The orders service: a user's orders. Run it with ``uvicorn main:app``."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import FastAPI, HTTPException, Query, Request, Response, status
from fastapi.responses import JSONResponse

import db
import settings
from auth import CurrentUser
from models import Order, OrderCreate


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.db = await db.connect(settings.DATABASE)
    yield
    await app.state.db.close()


app = FastAPI(title="orders", lifespan=lifespan)


@app.exception_handler(db.NotFound)
async def not_found(request: Request, exc: db.NotFound) -> JSONResponse:
    return JSONResponse(status_code=status.HTTP_404_NOT_FOUND, content={"detail": str(exc)})


@app.post("/orders", status_code=status.HTTP_201_CREATED)
async def create_order(
    body: OrderCreate, me: CurrentUser, conn: db.Connection, response: Response
) -> Order:
    order = await db.insert_order(conn, me, body.item, body.quantity, body.price_cents)
    response.headers["Location"] = f"/orders/{order.id}"
    return order


@app.get("/orders")
async def list_orders(
    me: CurrentUser,
    conn: db.Connection,
    user_id: int | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
) -> list[Order]:
    if user_id is not None and user_id != me:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "you can only list your own orders")
    return await db.list_orders(conn, me, limit)


async def own_order(conn: db.Connection, order_id: int, me: int) -> Order:
    """The caller's order; someone else's is not found, so ids reveal nothing."""
    order = await db.get_order(conn, order_id)
    if order.user_id != me:
        raise db.NotFound(f"order {order_id} not found")
    return order


@app.get("/orders/{order_id}")
async def get_order(order_id: int, me: CurrentUser, conn: db.Connection) -> Order:
    return await own_order(conn, order_id, me)


@app.delete("/orders/{order_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_order(order_id: int, me: CurrentUser, conn: db.Connection) -> None:
    await own_order(conn, order_id, me)
    await db.delete_order(conn, order_id)


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}
