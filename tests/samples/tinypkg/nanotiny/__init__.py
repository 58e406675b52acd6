"""A package no index has: it reaches a binary only from a local wheel."""

GREETING = "hello from nanotiny"
