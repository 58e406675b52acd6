"""A plain Starlette app, run as `uvicorn main:app` from this folder; no lifespan."""

from models import OWNER
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def list_orders(request: Request) -> JSONResponse:
    return JSONResponse(
        {"models": OWNER, "user": request.query_params.get("user"), "root": request.scope["root_path"]}
    )


async def app_lifespan_free(scope, receive, send):  # an app without lifespan support
    if scope["type"] == "lifespan":
        raise RuntimeError("no lifespan here")
    await inner(scope, receive, send)


inner = Starlette(routes=[Route("/orders", list_orders)])
app = app_lifespan_free
