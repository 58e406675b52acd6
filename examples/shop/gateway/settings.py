"""The gateway's settings, read from the environment as its container sets them."""

import os

USERS_URL = os.environ.get("USERS_URL", "http://127.0.0.1:8001")
ORDERS_URL = os.environ.get("ORDERS_URL", "http://127.0.0.1:8002")
JWT_SECRET = os.environ.get("JWT_SECRET", "dev-only-secret-change-me-in-production")
