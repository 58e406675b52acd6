"""Payment: validates a credit card and charges it (no real money moves)."""
