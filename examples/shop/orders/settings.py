"""The orders service's settings, read from the environment as its container sets them."""

import os

DATABASE = os.environ.get("ORDERS_DB", "data/orders.db")
JWT_SECRET = os.environ.get("JWT_SECRET", "dev-only-secret-change-me-in-production")
