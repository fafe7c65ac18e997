"""cnnviz.regularizers (to be filled)."""
__all__: list = []
