"""The gateway's HTTP clients, made in one place from the environment's base URLs."""

import os

import httpx

users = httpx.AsyncClient(base_url=os.environ["USERS_URL"])
orders = httpx.AsyncClient(base_url=os.environ["ORDERS_URL"])
