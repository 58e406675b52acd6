"""Shopping carts, one per user, kept in memory."""
