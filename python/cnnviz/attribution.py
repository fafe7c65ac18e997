"""cnnviz.attribution (to be filled)."""
__all__: list = []
