"""``scribe serve``: the search API (FastAPI) and the search page for writers."""
