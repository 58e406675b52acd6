"""The gateway's HTTP clients for the services behind it, made in the lifespan."""

from typing import Annotated

import httpx
from fastapi import Depends, HTTPException, Request


def client(base_url: str) -> httpx.AsyncClient:
    """Every HTTP client of the gateway is made here, on this one line."""
    return httpx.AsyncClient(base_url=base_url, timeout=10.0)


def users_client(request: Request) -> httpx.AsyncClient:
    return request.app.state.users


def orders_client(request: Request) -> httpx.AsyncClient:
    return request.app.state.orders


Users = Annotated[httpx.AsyncClient, Depends(users_client)]
Orders = Annotated[httpx.AsyncClient, Depends(orders_client)]


def checked(response: httpx.Response) -> httpx.Response:
    """The service's answer, or its error raised as the gateway's own (same status, detail)."""
    if response.is_error:
        try:
            detail = response.json()["detail"]
        except (ValueError, KeyError, TypeError):
            detail = response.text
        raise HTTPException(response.status_code, detail)
    return response
