"""A plain Starlette app, run as `uvicorn main:app` from this folder."""

import contextlib
import os

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
            f.write("start users\n")
    yield {"greeting": "hello"}
    if log:
        with open(log, "a") as f:
            f.write("stop users\n")


async def get_user(request: Request) -> JSONResponse:
    user = models.USERS.get(request.path_params["id"])
    if user is None:
        return JSONResponse({"detail": "no such user"}, status_code=404)
    return JSONResponse({**user, "models": models.OWNER, "state": request.state.greeting})


app = Starlette(routes=[Route("/users/{id}", get_user)], lifespan=lifespan)
