"""The one place the version lives; the build side reads it from here."""

__version__ = "0.1.0"
