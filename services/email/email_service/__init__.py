"""Email: sends order confirmations (here, logs them and keeps the latest in memory)."""
