"""The users service's settings, read from the environment as its container sets them."""

import os

# the database file; by default users.db in the service's data folder (data_dir())
DATABASE = os.environ.get("USERS_DB", "")
JWT_SECRET = os.environ.get("JWT_SECRET", "dev-only-secret-change-me-in-production")
TOKEN_MINUTES = int(os.environ.get("TOKEN_MINUTES", "60"))
