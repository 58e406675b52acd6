"""Product recommendations: a few other products from the catalog."""
