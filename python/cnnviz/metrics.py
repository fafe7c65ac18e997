"""cnnviz.metrics (to be filled)."""
__all__: list = []
