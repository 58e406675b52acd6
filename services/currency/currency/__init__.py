"""Currency conversion at fixed, EUR-based exchange rates."""
