"""paperwire embedder service."""
