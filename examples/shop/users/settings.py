"""The users service's settings, read from the environment as its container sets them."""

import os

DATABASE = os.environ.get("USERS_DB", "data/users.db")
JWT_SECRET = os.environ.get("JWT_SECRET", "dev-only-secret-change-me-in-production")
TOKEN_MINUTES = int(os.environ.get("TOKEN_MINUTES", "60"))
