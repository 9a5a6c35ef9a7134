"""paperwire fetcher service."""
