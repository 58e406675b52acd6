"""Ads: short text ads chosen by the categories the user is looking at."""
