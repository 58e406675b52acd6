"""The gateway's own models."""

OWNER = "gateway"
