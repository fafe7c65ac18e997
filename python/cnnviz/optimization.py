"""cnnviz.optimization (to be filled)."""
__all__: list = []
