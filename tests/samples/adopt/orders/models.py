"""The orders app's own models."""

OWNER = "orders"
