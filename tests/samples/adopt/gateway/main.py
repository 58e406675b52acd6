"""The gateway: a plain Starlette app calling users and orders over HTTP."""

import contextlib
import os

import clients
import models
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


@contextlib.asynccontextmanager
async def lifespan(app):
    log = os.environ.get("ADOPT_LOG")
    if log:
        with open(log, "a") as f:
            f.write("start gateway\n")
    yield
    if log:
        with open(log, "a") as f:
            f.write("stop gateway\n")


async def profile(request: Request) -> JSONResponse:
    user = await clients.users.get(f"/users/{request.path_params['id']}")
    if user.status_code != 200:
        return JSONResponse(user.json(), status_code=user.status_code)
    orders = await clients.orders.get("/orders", params={"user": request.path_params["id"]})
    return JSONResponse({"user": user.json(), "orders": orders.json(), "models": models.OWNER})


async def urls(request: Request) -> JSONResponse:
    return JSONResponse({"USERS_URL": os.environ["USERS_URL"], "ORDERS_URL": os.environ["ORDERS_URL"]})


app = Starlette(
    routes=[Route("/profile/{id}", profile), Route("/urls", urls)], lifespan=lifespan
)
