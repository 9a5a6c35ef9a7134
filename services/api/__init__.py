"""paperwire api service."""
