"""paperwire entrypoints: the CLI, the all-in-one runner, the offline demo. Services live in ``services/``."""
