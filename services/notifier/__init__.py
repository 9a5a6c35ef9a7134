"""paperwire notifier service."""
