"""paperwire classifier service."""
