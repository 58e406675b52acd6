"""Checkout: turns a user's cart into a paid, shipped and confirmed order."""
