"""paperwire parser service."""
