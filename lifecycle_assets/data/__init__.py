"""Raw data: the built-in simulator, user sources, and the content-addressed lake."""
