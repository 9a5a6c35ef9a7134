"""One module per source: how to ask it, and how far to page (the parser owns the content)."""
