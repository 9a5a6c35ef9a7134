"""What every paperwire service shares: the event contract, settings, consumer plumbing, storage, logging."""
