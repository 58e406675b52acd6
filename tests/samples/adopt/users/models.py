"""The users app's own models: another app's models.py must not replace it."""

OWNER = "users"
USERS = {"u1": {"id": "u1", "name": "Ada"}}
