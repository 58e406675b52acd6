"""Shipping: quotes a shipping cost and ships orders."""
